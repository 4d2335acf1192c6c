"""Tiny token folders and recipes for the training tests (byte-level ids: vocab 257, EOS 256)."""

from __future__ import annotations

import json
import lzma
import os
from pathlib import Path

import pytest

from moxin.data.tokens import TokenWriter

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
EOS = 256


@pytest.fixture(autouse=True)
def one_thread():
    """Import into a test module: torch on one thread. The machine is shared, and OpenMP spin-waiting on a busy
    machine makes 2-thread steps erratic; subprocesses get OMP_NUM_THREADS=1 too (`sub_env`), so in-process and
    subprocess runs compute identically."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def sub_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def shakespeare_docs(limit_bytes: int) -> list[str]:
    text = (SHARED / "tinyshakespeare" / "input.txt").read_text("utf-8")[:limit_bytes]
    return [p for p in text.split("\n\n") if p.strip()]


def python_docs(limit_docs: int, max_chars: int = 4000) -> list[str]:
    with lzma.open(SHARED / "python_docs" / "python311_docs_rst.jsonl.xz", "rt", encoding="utf-8") as f:
        out = []
        for line in f:
            out.append(json.loads(line)["text"][:max_chars])
            if len(out) == limit_docs:
                break
    return out


def write_bytes_tokens(folder: Path, sources: dict[str, list[str]], val_every: int = 10) -> Path:
    """Every `val_every`-th document goes to the val split; token ids are the UTF-8 bytes."""
    w = TokenWriter(folder, vocab_size=257, eos_id=EOS, shard_tokens=1 << 15)  # small shards: reads cross them
    for source, docs in sources.items():
        for i, d in enumerate(docs):
            w.add(source, "val" if i % val_every == val_every - 1 else "train", f"{source}/{i}", list(d.encode()))
    w.close()
    return folder


def small_tokens(folder: Path) -> Path:
    return write_bytes_tokens(folder, {"shakespeare": shakespeare_docs(60_000), "python": python_docs(12)})


RECIPE = """
[run]
name = "t"
seed = 7
out_dir = "{out}"

[model]
preset = "tiny"
vocab_size = 257
dim = 32
ffn_dim = 64
n_heads = 2
n_kv_heads = 1
sliding_window = 24

[pretrain]
data_dir = "{data}"
global_batch = 4
micro_batch = 2
lr = 3e-3
precision = "{precision}"
eval_batches = 1
log_every = 1

[pretrain.checkpoint]
every = {every}
keep_last = 100

[[pretrain.phases]]
name = "a"
seq_len = 32
steps = {steps_a}
warmup_steps = 2
schedule = "wsd"
mixture = {{shakespeare = 0.75, python = 0.25}}

[[pretrain.phases]]
name = "b"
seq_len = 48
steps = {steps_b}
schedule = "cosine"
"""


def write_recipe(path: Path, data: Path, out: Path, precision: str = "fp32", every: int = 3, steps_a: int = 4,
                 steps_b: int = 4, extra: str = "") -> Path:
    path.write_text(RECIPE.format(out=out, data=data, precision=precision, every=every, steps_a=steps_a,
                                  steps_b=steps_b) + extra)
    return path
