"""Helpers and fixtures for the evaluation tests (a module with a unique name, not a nested conftest.py, which would
shadow tests/conftest.py for `from conftest import ...`). Test modules import the fixtures they use by name:
a small BPE tokenizer, a tiny random moxin checkpoint (the CONTRACTS.md layout) and its Hugging Face export."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

# Many tiny forward passes: passive OpenMP waiting keeps them fast on a shared CPU (see moxin/eval/commands.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

TASKS = ["hellaswag_local", "arc_easy_local", "piqa_local", "winogrande_local"]


VOCAB = 2048


def make_tokenizer(shared: Path, out: Path) -> Path:
    """A byte-level BPE (2,048 tokens) trained on WikiText-2 test text: seconds to build, realistic English splits."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    text = (shared / "wikitext2" / "wiki.test.raw").read_text("utf-8").splitlines()[:1500]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(text, trainer)
    PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>").save_pretrained(out)
    return out


def tiny_cfg(window: int | None = 16):
    from moxin.model.config import ModelConfig

    return ModelConfig(
        vocab_size=VOCAB,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=128,
        max_seq_len=512,
        sliding_window=window,
        tie_embeddings=True,
        arch="mistral" if window else "llama",
        rope_theta=10000.0,
    )


def write_checkpoint(folder: Path, model, tokenizer_dir: Path, step: int, tokens_seen: int) -> Path:
    """A checkpoint written as the trainer writes one (moxin.train.checkpoint.save_checkpoint): model/, tokenizer/,
    optimizer.safetensors, train_state.json, manifest.json. `folder` is <root>/step-XXXXXXXX."""
    import torch

    from moxin.train.checkpoint import save_checkpoint

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    state = {"step": step, "tokens_seen": tokens_seen, "phase": "0", "data": {"fingerprint": "0" * 64}}
    assert save_checkpoint(Path(folder).parent, step, model, opt, model.cfg, state, tokenizer_dir) == Path(folder)
    return folder


from moxintest import run_cli  # noqa: F401 - one shared helper for every test folder


def one_line_error(result: tuple[int, str, str], *needles: str) -> str:
    code, out, err = result
    assert code == 2, (code, out[-2000:], err[-2000:])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def data_copy(shared: Path, dest: Path, *names: str) -> Path:
    """A data folder holding links to some of ../shared/data's folders (the rest is absent)."""
    dest.mkdir(parents=True, exist_ok=True)
    for n in names:
        (dest / n).symlink_to(shared / n, target_is_directory=True)
    return dest


def train_steps(model, tokenizer, texts: list[str], steps: int, lr: float = 3e-3, seed: int = 0, seq: int = 64):
    """Plain AdamW on next-token loss over `texts` (each its own sequence, EOS-terminated, right-padded)."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(seed)
    ids = [tokenizer.encode(t)[: seq - 1] + [tokenizer.eos_token_id] for t in texts]
    x = torch.full((len(ids), seq), tokenizer.eos_token_id)
    mask = torch.zeros(len(ids), seq, dtype=torch.bool)
    for i, row in enumerate(ids):
        x[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    model.train()
    for _ in range(steps):
        logits = model(x[:, :-1])  # (B, T-1, V)
        loss = F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        loss = (loss * mask[:, 1:].flatten()).sum() / mask[:, 1:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    return float(loss.detach())


def wiki_texts(shared: Path, n: int, start: int = 0) -> list[str]:
    lines = [ln for ln in (shared / "wikitext2" / "wiki.test.raw").read_text("utf-8").splitlines() if len(ln) > 80]
    return lines[start : start + n]


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


def trained_run(root: Path, tokenizer_dir: Path, shared: Path, steps: tuple[int, ...]) -> Path:
    """ROOT/tiny with pretrain checkpoints at `steps` of one real (tiny) training run on WikiText text."""
    from transformers import AutoTokenizer

    from moxin.layout import RunLayout
    from moxin.model.transformer import build

    layout = RunLayout(root / "tiny")
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = build(tiny_cfg(), seed=0)
    texts = wiki_texts(shared, 8)
    done = 0
    for step in steps:
        train_steps(model, tok, texts, step - done)
        done = step
        write_checkpoint(layout.checkpoint("pretrain", step), model, tokenizer_dir, step, step * 16 * 64)
    return layout.root
