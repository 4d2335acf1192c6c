"""Acceptance 2 and 3: FSDP2 and DDP with 2 gloo processes (real torchrun) match a single process within 1e-5;
a run resumes on a different world size with the same sample sequence; sharded (DCP) checkpoints round-trip."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import one_thread, small_tokens, sub_env, write_recipe  # noqa: F401 (fixture)

from moxin.interop.safetensors_io import read_safetensors
from moxin.train import checkpoint as ckpt
from moxin.train.metrics import read_metrics
from moxintest import run_cli

pytestmark = pytest.mark.slow  # each torchrun launch costs two torch imports
STEPS = 10  # phases of 5 + 5 steps; checkpoints at 5 (phase end) and 10


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    return small_tokens(tmp_path_factory.mktemp("tok") / "data")


def _recipe(tmp: Path, data: Path, name: str, extra: str = "") -> Path:
    return write_recipe(tmp / f"{name}.toml", data, tmp / name, every=5, steps_a=5, steps_b=5, extra=extra)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun(recipe: Path, *args: str, n: int = 2) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n), "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()),
           "-m", "moxin.cli", "pretrain", str(recipe), "--no-progress", *args]
    done = subprocess.run(cmd, env=sub_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]


def _losses(tmp: Path, name: str) -> list[float]:
    return [r["loss"] for r in read_metrics(tmp / name / "t" / "pretrain" / "metrics.jsonl")]


def _ckpt(tmp: Path, name: str, step: int) -> Path:
    return tmp / name / "t" / "pretrain" / "checkpoints" / f"step-{step:08d}"


@pytest.fixture(scope="module")
def single(tmp_path_factory, data):
    tmp = tmp_path_factory.mktemp("single")
    import torch as t

    before = t.get_num_threads()
    t.set_num_threads(1)
    assert run_cli("pretrain", str(_recipe(tmp, data, "one")), "--no-progress")[0] == 0
    t.set_num_threads(before)
    return tmp, _losses(tmp, "one")


@pytest.mark.parametrize("mode", ["fsdp", "ddp"])
def test_two_processes_match_one(tmp_path, data, single, mode):
    rec = _recipe(tmp_path, data, mode, extra="")
    _torchrun(rec, "--set", f'pretrain.parallel="{mode}"')
    ref = single[1]
    got = _losses(tmp_path, mode)
    assert len(got) == len(ref) == STEPS
    assert max(abs(a - b) for a, b in zip(got, ref)) < 1e-5
    w1 = read_safetensors(_ckpt(single[0], "one", STEPS) / "model" / "model.safetensors")
    w2 = read_safetensors(_ckpt(tmp_path, mode, STEPS) / "model" / "model.safetensors")
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-5


def test_elastic_resume_2_to_1_and_1_to_2(tmp_path, data, single):
    ref = single[1]
    # 2 FSDP processes → resume the second phase in 1 process
    rec = _recipe(tmp_path, data, "two_one")
    _torchrun(rec)
    shutil.rmtree(_ckpt(tmp_path, "two_one", STEPS))
    assert run_cli("pretrain", str(rec), "--no-progress")[0] == 0
    assert max(abs(a - b) for a, b in zip(_losses(tmp_path, "two_one"), ref)) < 1e-5
    # 1 process → resume in 2 FSDP processes
    rec = _recipe(tmp_path, data, "one_two")
    shutil.copytree(single[0] / "one" / "t", tmp_path / "one_two" / "t")
    shutil.rmtree(_ckpt(tmp_path, "one_two", STEPS))
    _torchrun(rec)
    got = _losses(tmp_path, "one_two")
    assert len(got) == STEPS and max(abs(a - b) for a, b in zip(got, ref)) < 1e-5


def test_sharded_checkpoints_round_trip_and_reshard(tmp_path, data, single):
    rec = _recipe(tmp_path, data, "sharded", extra="")
    _torchrun(rec, "--set", "pretrain.checkpoint.sharded=true")
    c5 = _ckpt(tmp_path, "sharded", 5)
    assert (c5 / "dcp" / ".metadata").is_file() and not (c5 / "model").exists()
    assert ckpt.read_state(c5)["world_size"] == 2
    # DCP shards (2 ranks) → one plain process: the exact tensors of the 2-process full-format run
    full = tmp_path / "full"
    _torchrun(_recipe(tmp_path, data, "full"))
    ckpt.consolidate(c5)
    a = read_safetensors(c5 / "model" / "model.safetensors")
    b = read_safetensors(_ckpt(tmp_path, "full", 5) / "model" / "model.safetensors")
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    oa = read_safetensors(c5 / "optimizer.safetensors")
    ob = read_safetensors(_ckpt(tmp_path, "full", 5) / "optimizer.safetensors")
    assert set(oa) == set(ob) and all(torch.equal(oa[k], ob[k]) for k in oa)
    assert full.exists()
    # resuming the sharded run in one process continues the same loss sequence
    shutil.rmtree(_ckpt(tmp_path, "sharded", STEPS))
    assert run_cli("pretrain", str(rec), "--no-progress")[0] == 0
    assert max(abs(a - b) for a, b in zip(_losses(tmp_path, "sharded"), single[1])) < 1e-5
