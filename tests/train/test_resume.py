"""Acceptance 1: a run killed with SIGKILL after a checkpoint and resumed ends with bitwise-identical weights and
identical per-step losses, in fp32 and in bf16 autocast (real subprocesses, several kill points)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from helpers import one_thread, small_tokens, sub_env, write_recipe  # noqa: F401 (fixture)

from moxin.cli import main
from moxin.interop.safetensors_io import read_safetensors
from moxin.train.metrics import read_metrics

STEPS_A, STEPS_B, EVERY = 10, 10, 4  # checkpoints at 4, 8, 10 (phase end), 12, 16, 20


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    return small_tokens(tmp_path_factory.mktemp("tok") / "data")


def _recipe(tmp: Path, data: Path, precision: str, name: str) -> Path:
    return write_recipe(tmp / f"{name}.toml", data, tmp / name, precision=precision, every=EVERY,
                        steps_a=STEPS_A, steps_b=STEPS_B)


def _cmd(recipe: Path) -> list[str]:
    return [sys.executable, "-m", "moxin.cli", "pretrain", str(recipe), "--no-progress"]


def _kill_after(recipe: Path, metrics: Path, step: int) -> int:
    """Start a run, SIGKILL it once it has logged `step`; returns the last logged step at kill time."""
    proc = subprocess.Popen(_cmd(recipe), env=sub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = read_metrics(metrics) if metrics.exists() else []
        if rows and rows[-1]["step"] >= step:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return read_metrics(metrics)[-1]["step"]


def _final(run: Path) -> Path:
    return run / "t" / "pretrain" / "checkpoints" / f"step-{STEPS_A + STEPS_B:08d}"


@pytest.mark.slow
@pytest.mark.parametrize("precision,kill_steps", [("fp32", [5, 13]), ("bf16", [9, 17])])
def test_sigkill_resume_is_bit_exact(tmp_path, data, precision, kill_steps):
    ref = _recipe(tmp_path, data, precision, "ref")
    assert main(["pretrain", str(ref), "--no-progress"]) == 0
    ref_run = tmp_path / "ref"
    ref_losses = [r["loss"] for r in read_metrics(ref_run / "t" / "pretrain" / "metrics.jsonl")]
    assert len(ref_losses) == STEPS_A + STEPS_B
    for kill in kill_steps:
        name = f"killed{kill}"
        rec = _recipe(tmp_path, data, precision, name)
        metrics = tmp_path / name / "t" / "pretrain" / "metrics.jsonl"
        last = _kill_after(rec, metrics, kill)
        assert last < STEPS_A + STEPS_B - 1, "the run finished before it could be killed"
        ckpts = sorted(p.name for p in (tmp_path / name / "t" / "pretrain" / "checkpoints").iterdir())
        assert f"step-{STEPS_A + STEPS_B:08d}" not in ckpts
        # resume in a fresh process too (a real restart), from the latest checkpoint
        done = subprocess.run(_cmd(rec), env=sub_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "resumed from" in done.stderr
        losses = [r["loss"] for r in read_metrics(metrics)]
        assert losses == ref_losses  # every step, exactly (the killed run's extra lines were dropped)
        a, b = read_safetensors(_final(ref_run) / "model" / "model.safetensors"), \
            read_safetensors(_final(tmp_path / name) / "model" / "model.safetensors")
        assert all(torch.equal(a[k], b[k]) for k in a) and set(a) == set(b)
        assert (_final(ref_run) / "optimizer.safetensors").read_bytes() == \
            (_final(tmp_path / name) / "optimizer.safetensors").read_bytes()
        state = json.loads((_final(tmp_path / name) / "train_state.json").read_text())
        assert state["lineage"]["parent"]["path"].startswith("step-")


def test_sigterm_writes_a_checkpoint_and_exits_0(tmp_path, data):
    rec = write_recipe(tmp_path / "r.toml", data, tmp_path / "run", every=1000, steps_a=400, steps_b=10)
    metrics = tmp_path / "run" / "t" / "pretrain" / "metrics.jsonl"
    proc = subprocess.Popen(_cmd(rec), env=sub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    while not (metrics.exists() and read_metrics(metrics)):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    ckpts = list((tmp_path / "run" / "t" / "pretrain" / "checkpoints").iterdir())
    assert len(ckpts) == 1
    step = int(ckpts[0].name.split("-")[1])
    assert 0 < step < 400 and read_metrics(metrics)[-1]["step"] == step - 1
