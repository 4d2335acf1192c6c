"""Fixtures for the evaluation tests: a small BPE tokenizer, a tiny random moxin model written as a checkpoint (the
CONTRACTS.md layout) and as a Hugging Face export of the same weights."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# Many tiny forward passes: passive OpenMP waiting keeps them fast on a shared CPU (see moxin/eval/commands.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from evalfix import make_tokenizer, tiny_cfg, write_checkpoint


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory, shared_data) -> Path:
    return make_tokenizer(shared_data, tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, tokenizer_dir) -> Path:
    from moxin.model.transformer import build

    model = build(tiny_cfg(), seed=3)
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "step-00000010", model, tokenizer_dir, 10, 5120)


@pytest.fixture(scope="session")
def tiny_hf_export(tmp_path_factory, tiny_checkpoint, tokenizer_dir) -> Path:
    """The same weights exported for transformers, with the tokenizer beside them."""
    from moxin.interop import load_model
    from moxin.interop.hf import to_hf

    out = tmp_path_factory.mktemp("hf-export")
    to_hf(load_model(tiny_checkpoint), out)
    for f in tokenizer_dir.iterdir():
        shutil.copy2(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["sliding_window"] == 16
    return out


@pytest.fixture(scope="session")
def local_task_manager(shared_data):
    from lm_eval.tasks import TaskManager

    from moxin.eval.catalog import TASKS_DIR

    return TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False, metadata={"data_dir": str(shared_data)})
