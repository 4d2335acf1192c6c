"""Helpers for the evaluation tests (a module with a unique name: `conftest` is ambiguous across test folders)."""

from __future__ import annotations

import shutil
from pathlib import Path

TASKS = ["hellaswag_local", "arc_easy_local", "piqa_local", "winogrande_local"]


def tiny_cfg(window: int | None = 16):
    from moxin.model.config import ModelConfig

    return ModelConfig(vocab_size=49152, dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=128, max_seq_len=512,
                       sliding_window=window, tie_embeddings=True, arch="mistral" if window else "llama",
                       rope_theta=10000.0)


def write_checkpoint(folder: Path, model, tokenizer_dir: Path, step: int, tokens_seen: int) -> Path:
    """A checkpoint as the trainer writes it: model/, tokenizer/, train_state.json, manifest.json."""
    from moxin.interop.native import save_model
    from moxin.provenance import atomic_dir, atomic_write_json, write_manifest

    with atomic_dir(folder) as tmp:
        save_model(model, tmp / "model")
        shutil.copytree(tokenizer_dir, tmp / "tokenizer")
        atomic_write_json(tmp / "train_state.json", {"step": step, "tokens_seen": tokens_seen, "phase": 0})
        write_manifest(tmp, {"kind": "checkpoint", "step": step})
    return folder
