"""A reduced `tiny` build for tests that run `moxin build` itself (a plain module with a unique name: nested
conftest.py files would shadow tests/conftest.py). The reduction keeps every stage: a small slice of the stdlib
corpus, a 512-token vocabulary, 20 pretraining steps with checkpoints at 10 and 20, 4 SFT steps, eval on the
generated tasks with 4 items, a release with 2-token samples and a verify that re-runs steps 10..20."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from moxintest import REPO

REDUCED = [
    'data.sources=[{name="python-stdlib", type="python-stdlib", license="PSF-2.0", max_docs=300}]',
    "data.workers=1", "data.val_fraction=0.1",
    "tokenizer.vocab_size=512", "tokenizer.sample_bytes=400000",
    'pretrain.phases=[{name="ctx64", seq_len=64, steps=20, warmup_steps=2}]',
    "pretrain.global_batch=8", "pretrain.micro_batch=8", "pretrain.eval_batches=1", "pretrain.peak_flops=1e11",
    "pretrain.checkpoint={every=10, keep_every=10, keep_last=2}",
    "finetune.sft.steps=4", "finetune.sft.global_batch=4", "finetune.sft.micro_batch=4", "finetune.sft.seq_len=128",
    "finetune.sft.peak_flops=1e11", "finetune.sft.checkpoint={every=2, keep_last=2}",
    "eval.limit=4", "eval.all_checkpoints=false", "eval.batch_size=8",
    "release.sample_max_new_tokens=2",
]


def build_cmd(out: Path, *extra: str) -> list[str]:
    """`python -m moxin.cli build tiny --out OUT --set ...` (the reduced recipe)."""
    sets = [a for s in [*REDUCED, *extra] for a in ("--set", s)]
    return [sys.executable, "-m", "moxin.cli", "build", "tiny", "--out", str(out), *sets]


def build_env(home: Path) -> dict[str, str]:
    """The environment of a build under another $HOME: offline, this checkout's moxin first on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOXIN_")}
    src = str(REPO / "src")
    env.update(HOME=str(home), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               PYTHONPATH=os.pathsep.join([src, *[p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]]),
               HF_HOME=str(home / ".cache" / "huggingface"), XDG_CACHE_HOME=str(home / ".cache"))
    return env


def run_build(out: Path, home: Path, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(build_cmd(out), cwd=cwd, env=build_env(home), capture_output=True, text=True,
                          timeout=timeout, check=False)


def start_build(out: Path, home: Path, cwd: Path, log: Path) -> subprocess.Popen:
    """The reduced build in the background, its output going to `log`."""
    home.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as f:
        return subprocess.Popen(build_cmd(out), cwd=cwd, env=build_env(home), stdout=f, stderr=subprocess.STDOUT)


def wait_for(proc: subprocess.Popen, ready, timeout: float = 300) -> bool:
    """Poll until `ready()` (True) or the process ends (False)."""
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if ready():
            return True
        if proc.poll() is not None:
            return bool(ready())
        time.sleep(0.05)
    raise TimeoutError(f"build {proc.args} not ready after {timeout} s")


@pytest.fixture(scope="session")
def tiny_build(tmp_path_factory) -> dict[str, Path]:
    """The reduced tiny recipe built once, uninterrupted, by `moxin build` in a subprocess with its own $HOME.
    Keys: root (folder holding everything), home, out (--out), run (out/tiny), release, cwd."""
    root = tmp_path_factory.mktemp("tiny-build")
    paths = {"root": root, "home": root / "home", "out": root / "builds", "cwd": root / "work"}
    paths["cwd"].mkdir()
    res = run_build(paths["out"], paths["home"], paths["cwd"])
    assert res.returncode == 0, f"reduced tiny build failed (exit {res.returncode}):\n{res.stdout[-3000:]}" \
                                f"\n{res.stderr[-3000:]}"
    paths["run"] = paths["out"] / "tiny"
    paths["release"] = paths["run"] / "release"
    return paths
