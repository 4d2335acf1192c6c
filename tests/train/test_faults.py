"""Acceptance 5: a corrupted checkpoint, a changed data manifest on resume, NaN in the loss, a full disk."""

from __future__ import annotations

import errno
import shutil

import pytest
import torch
from helpers import one_thread, python_docs, shakespeare_docs, small_tokens, write_bytes_tokens, write_recipe  # noqa: F401

from moxin.errors import CheckpointError
from moxin.parallel import Dist
from moxin.provenance import sha256_file, verify_manifest
from moxin.recipe import load_recipe
from moxin.train import checkpoint as ckpt
from moxin.train.metrics import read_metrics
from moxin.train.pretrain import Setup
from moxin.train.tasks import LMTask
from moxin.train.trainer import TrainingError
from moxintest import run_cli


def _one_line(code, out, err, *needles):
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("pretrain:")]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    for n in needles:
        assert n in lines[0], (n, lines[0])


@pytest.fixture()
def run(tmp_path, shared_data, one_thread):
    data = small_tokens(tmp_path / "data")
    rec = write_recipe(tmp_path / "r.toml", data, tmp_path / "runs", every=3)
    assert run_cli("pretrain", str(rec), "--no-progress")[0] == 0
    return rec, tmp_path / "runs" / "t" / "pretrain" / "checkpoints"


def test_corrupted_checkpoint_is_refused_and_previous_offered(run):
    rec, root = run
    good = sha256_file(root / "step-00000008" / "model" / "model.safetensors")
    weights = root / "step-00000008" / "model" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-5] ^= 0xFF
    weights.write_bytes(bytes(raw))
    _one_line(*run_cli("pretrain", str(rec), "--no-progress"), "step-00000008", "SHA-256",
              f"--resume {root / 'step-00000006'}")
    # taking the offer re-trains 6..8 and lands on the original bytes
    shutil.rmtree(root / "step-00000008")
    assert run_cli("pretrain", str(rec), "--no-progress", "--resume", str(root / "step-00000006"))[0] == 0
    assert sha256_file(root / "step-00000008" / "model" / "model.safetensors") == good


def test_changed_data_is_refused_unless_allowed(run, tmp_path):
    rec, root = run
    shutil.rmtree(tmp_path / "data")
    write_bytes_tokens(tmp_path / "data", {"shakespeare": shakespeare_docs(61_000), "python": python_docs(12)})
    _one_line(*run_cli("pretrain", str(rec), "--no-progress"), "data changed", "--allow-data-change",
              str(root / "step-00000008"))
    code, out, err = run_cli("pretrain", str(rec), "--no-progress", "--allow-data-change")
    assert code == 0, err


def _setup(tmp_path, on_nan: str):
    data = small_tokens(tmp_path / "data")
    rec = write_recipe(tmp_path / "r.toml", data, tmp_path / "runs", every=2)
    recipe = load_recipe(rec, [f"pretrain.on_nan={on_nan!r}".replace("'", '"')])
    return Setup.from_recipe(recipe)


class NaNAt(LMTask):
    def __init__(self, step_of, bad: int) -> None:
        super().__init__()
        self.step_of, self.bad = step_of, bad

    def loss(self, model, batch):
        total, metrics = super().loss(model, batch)
        return (total * float("nan") if self.step_of() == self.bad else total), metrics


def test_nan_loss_stops_with_step_and_last_checkpoint(tmp_path, shared_data):
    setup = _setup(tmp_path, "stop")
    model = setup.build_model(Dist())
    trainer = setup.trainer(model, Dist(), log=lambda m: None, progress=False)
    trainer.task = NaNAt(lambda: trainer.step, 5)
    with pytest.raises(TrainingError, match=r"step 5: non-finite loss=nan.*step-00000004.*on_nan = 'skip'"):
        trainer.fit()
    before = ckpt.read_state(setup.run_dir / "checkpoints" / "step-00000004")
    assert before["step"] == 4 and not verify_manifest(setup.run_dir / "checkpoints" / "step-00000004")
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [r["step"] for r in read_metrics(setup.run_dir / "metrics.jsonl")] == [0, 1, 2, 3, 4]


def test_nan_loss_skipped_when_the_recipe_says_so(tmp_path, shared_data):
    setup = _setup(tmp_path, "skip")
    model = setup.build_model(Dist())
    trainer = setup.trainer(model, Dist(), log=lambda m: None, progress=False)
    trainer.task = NaNAt(lambda: trainer.step, 5)
    assert trainer.fit() == "done"
    rows = read_metrics(setup.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows if r.get("skipped")] == [5] and len(rows) == 8
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_disk_full_during_checkpoint_keeps_the_previous_one(tmp_path, shared_data, monkeypatch):
    setup = _setup(tmp_path, "stop")
    model = setup.build_model(Dist())
    trainer = setup.trainer(model, Dist(), log=lambda m: None, progress=False)
    real = ckpt.write_safetensors
    calls = {"n": 0}

    def full_disk(path, tensors, metadata=None):
        calls["n"] += 1
        if calls["n"] > 1:  # the optimizer file of step 2 is written; at step 4 (model already in tmp) the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, tensors, metadata)

    monkeypatch.setattr(ckpt, "write_safetensors", full_disk)
    with pytest.raises(CheckpointError, match=r"disk full while writing checkpoint .*step-00000004.*"
                                              r"step-00000002 is intact"):
        trainer.fit()
    root = setup.run_dir / "checkpoints"
    assert [p.name for p in root.iterdir()] == ["step-00000002"]  # no half-written folder left behind
    assert not verify_manifest(root / "step-00000002")
