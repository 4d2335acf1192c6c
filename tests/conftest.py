"""Shared fixtures: tiny random Hugging Face models written to disk, offline settings, the shared data folder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from moxintest import REPO, SHARED_DATA, run_cli  # noqa: F401 - re-exported for older imports
from releasefix import built_release, release_copy, tiny_run  # noqa: F401 - session fixtures for release and report


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


def _save(model, folder: Path) -> Path:
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def hf_mistral_dir(tmp_path_factory) -> Path:
    """A tiny random MistralForCausalLM with sliding_window 8 (shorter than the test sequences)."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=8,
                        max_position_embeddings=128, rope_theta=5000.0)
    return _save(MistralForCausalLM(cfg).eval(), tmp_path_factory.mktemp("hf-mistral"))


@pytest.fixture(scope="session")
def hf_llama_dir(tmp_path_factory) -> Path:
    """A tiny random LlamaForCausalLM with tied embeddings."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(1)
    cfg = LlamaConfig(vocab_size=300, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      max_position_embeddings=128)
    return _save(LlamaForCausalLM(cfg).eval(), tmp_path_factory.mktemp("hf-llama"))
