"""Helpers for the fine-tuning tests: fixtures (a small byte-level BPE tokenizer with a ChatML template, a tiny
moxin "pretrain" checkpoint whose data manifest names its sources and licences), recipes, JSONL files, the CLI
in-process and in a killable subprocess.

Fixtures live here, not in a conftest.py: a conftest.py in a sub-folder shadows tests/conftest.py for
`from conftest import ...` in other folders' tests. Test modules import the fixtures they use."""

from __future__ import annotations

import json
import os
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


def write_recipe(folder: Path, body: str) -> Path:
    path = folder / "recipe.toml"
    path.write_text(f'[run]\nname = "ft"\nseed = 0\nout_dir = "{folder / "runs"}"\n\n[model]\npreset = "tiny"\n\n'
                    + body, "utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), "utf-8")
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """`moxin ARGS` in-process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from moxin.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def sub_env() -> dict[str, str]:
    """One thread in every run (as tests/train does): in-process and subprocess runs then compute identically."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def cli_cmd(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "moxin.cli", *args]


def run_sub(*args: str) -> None:
    import subprocess

    proc = subprocess.run(cli_cmd(*args), env=sub_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def kill_after(args: list[str], metrics: Path, step: int, timeout: float = 300) -> int:
    """Start `moxin ARGS`, SIGKILL it once metrics.jsonl has logged `step` (modelled on tests/train's helper);
    returns the last logged step."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cli_cmd(*args), env=sub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        if metrics.exists():
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            last = rows[-1]["step"] if rows else -1
            if last >= step:
                break
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return last
