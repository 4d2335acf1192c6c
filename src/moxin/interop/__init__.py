"""Interop: moxin model directories, Hugging Face directories and GGUF files behind one `load_model`."""

from __future__ import annotations

from pathlib import Path

import torch

from moxin.errors import InteropError


def model_kind(path: str | Path) -> str:
    """'gguf', 'native' (moxin), or 'hf'; a clear error for anything else."""
    from moxin.interop.native import is_native

    p = Path(path)
    if p.is_file() and p.suffix == ".gguf":
        return "gguf"
    if is_native(p):
        return "native"
    if p.is_dir() and (p / "model" / "model_config.json").is_file():
        return "native"
    if p.is_dir() and (p / "config.json").is_file():
        return "hf"
    if not p.exists():
        raise InteropError(f"model path not found: {p}")
    raise InteropError(f"{p} is not a moxin checkpoint, a Hugging Face directory (config.json) or a .gguf file")


def load_model(path: str | Path, dtype: torch.dtype = torch.float32):
    """Load a model from a moxin checkpoint, a Hugging Face directory or a GGUF file."""
    from moxin.interop import gguf, hf, native

    p = Path(path)
    kind = model_kind(p)
    if kind == "gguf":
        return gguf.from_gguf(p, dtype=dtype)
    if kind == "hf":
        return hf.from_hf(p, dtype=dtype)
    folder = p if native.is_native(p) else p / "model"
    return native.load_model(folder, dtype=dtype)
