"""A tiny random checkpoint with a small byte-level BPE tokenizer and a ChatML template, built offline.

A plain module, not a conftest.py: a second conftest would shadow `tests/conftest.py` for `from conftest import`.
Test files import the fixtures from here; the checkpoint is built once per process."""

from __future__ import annotations

import atexit
import functools
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def _corpus() -> list[str]:
    # Synthetic text (no third-party data): English words, digits and Japanese, so byte-level merges include
    # multi-byte characters and the random model emits partial UTF-8 sequences.
    words = ["moxin", "model", "open", "data", "train", "serve", "token", "chat", "hello", "world"]
    ja = ["日本語", "東京", "モデル", "学習", "こんにちは", "データ"]
    return [" ".join(words[(i * 7 + j) % len(words)] for j in range(12)) + f" {i} " + ja[i % len(ja)] * 3
            for i in range(400)]


def build_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHATML)


def make_checkpoint(folder: Path, preset: str = "tiny", seed: int = 0, std: float = 0.02) -> Path:
    """folder/model (moxin model dir) + folder/tokenizer, the layout `load_model` / `load_tokenizer` accept."""
    import dataclasses

    from moxin.interop.native import save_model
    from moxin.model import build
    from moxin.model import preset as get_preset

    cfg = dataclasses.replace(get_preset(preset), init_std=std)
    save_model(build(cfg, seed=seed), folder / "model")
    build_tokenizer().save_pretrained(folder / "tokenizer")
    return folder


@functools.cache
def _toy_ckpt() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="moxin-toy-ckpt-"))
    atexit.register(shutil.rmtree, folder, True)
    # A larger init std gives peaked logits, so greedy choices are far from ties (batched == single exactly).
    return make_checkpoint(folder, std=0.2)


@functools.cache
def _toy():
    from moxin.interop import load_model
    from moxin.interop.tokenizer import load_tokenizer

    return load_model(_toy_ckpt()).eval(), load_tokenizer(_toy_ckpt())


@pytest.fixture(scope="session")
def toy_ckpt() -> Path:
    return _toy_ckpt()


@pytest.fixture(scope="session")
def toy():
    """(model, tokenizer) loaded from the toy checkpoint."""
    return _toy()


# ------------------------------------------------------------------------------------------------ a real server process
def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_serve(ckpt: Path, port: int, *flags: str, env: dict[str, str], **popen) -> subprocess.Popen:
    """`python -m moxin.cli serve CKPT --port PORT --name toy FLAGS...` in its own process (run from the repo root)."""
    cmd = [sys.executable, "-m", "moxin.cli", "serve", str(ckpt), "--port", str(port), "--name", "toy", *flags]
    return subprocess.Popen(cmd, env=env, cwd=Path(__file__).parents[2], **popen)


def wait_healthy(url: str, proc: subprocess.Popen, why: Callable[[], str], poll: float = 0.2,
                 timeout: float = 90) -> None:  # fmt: skip
    """Poll URL/health until it answers 200; fail with `why()` (the server's output) if the process ends or time
    runs out first."""
    import time

    import httpx

    deadline = time.time() + timeout
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.time() < deadline, why()
        time.sleep(poll)
