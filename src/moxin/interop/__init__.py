"""Interop: moxin model directories, Hugging Face directories and GGUF files behind one `load_model`.

Every load of a moxin checkpoint or model folder checks it against its `manifest.json` first (and fails naming
the file that does not match); Hugging Face folders and GGUF files carry no manifest and load as they are."""

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
    """Load a model from a moxin checkpoint, a Hugging Face directory or a GGUF file (a moxin folder is verified
    against its manifest first: CheckpointError names the file that fails)."""
    return load_verified(path, dtype)[0]


def load_verified(path: str | Path, dtype: torch.dtype = torch.float32):
    """(model, manifest) where manifest is the `moxin.interop.native.Sealed` record the moxin folder's bytes were
    checked against (its `sha256` is the checkpoint sha of exactly what was loaded), or None for an unsealed
    folder, a Hugging Face directory or a GGUF file."""
    from moxin.interop import gguf, hf, native

    p = Path(path)
    kind = model_kind(p)
    if kind == "gguf":
        return gguf.from_gguf(p, dtype=dtype), None
    if kind == "hf":
        return hf.from_hf(p, dtype=dtype), None
    folder = p if native.is_native(p) else p / "model"
    return native.load_verified(folder, dtype=dtype)
