"""Fine-tuning fixtures: a small byte-level BPE tokenizer with a ChatML template, a tiny moxin "pretrain"
checkpoint (with a data manifest naming its sources and licences) and recipe writing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]


def _corpus(shared: Path) -> list[str]:
    recs = json.loads((shared / "rasbt_instruction_data" / "instruction-data.json").read_text("utf-8"))
    texts = [f"{r['instruction']}\n{r['input']}\n{r['output']}" for r in recs]
    texts += [f"What is {a} + {b}? {a} + {b} = {a + b}\n#### {a + b}" for a in range(10) for b in range(10)]
    return texts


@pytest.fixture(scope="session")
def tok_dir(tmp_path_factory, shared_data) -> Path:
    """A 480-token byte-level BPE (fits the tiny preset's 512 vocabulary) with ChatML, saved HF-style."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from moxin.finetune.template import CHATML

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=480, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(shared_data), trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHATML, eos_token="<|endoftext|>",
                                 pad_token="<|pad|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                 clean_up_tokenization_spaces=False)
    out = tmp_path_factory.mktemp("tok")
    hf.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tok(tok_dir):
    from moxin.interop.tokenizer import load_tokenizer

    return load_tokenizer(tok_dir)


@pytest.fixture(scope="session")
def pretrain_ckpt(tmp_path_factory, tok_dir) -> Path:
    """A tiny moxin model saved as a pretraining checkpoint whose data manifest lists two licensed sources."""
    import torch

    from moxin.model import build, preset
    from moxin.provenance import write_manifest
    from moxin.train.checkpoint import save_checkpoint
    from moxin.train.optim import build_optimizer

    root = tmp_path_factory.mktemp("pre")
    data = root / "data"
    data.mkdir()
    write_manifest(data, {"stage": "data", "sources": [
        {"name": "python", "license": "PSF-2.0", "path": "<stdlib>", "docs_kept": 1790},
        {"name": "gutenberg", "license": "LicenseRef-PD-US", "path": "../shared/data/gutenberg", "docs_kept": 377}]})
    model = build(preset("tiny"), seed=3)
    opt = build_optimizer(model, 1e-3, 0.0, (0.9, 0.95), 1e-8)
    state = {"step": 100, "kind": "pretrain", "config": {"data_dir": str(data)}, "lineage": {}, "rng": []}
    torch.manual_seed(0)
    return save_checkpoint(root / "pretrain" / "checkpoints", 100, model, opt, model.cfg, state, tok_dir)
