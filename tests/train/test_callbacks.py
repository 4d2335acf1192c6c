"""The loop's callbacks (hook order and arguments, each concern on its own), `fit(until=...)`, and the shared
`mean_loss` evaluation helper."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import one_thread, small_tokens, write_recipe  # noqa: F401 (fixture)

from moxin.model.config import preset
from moxin.model.transformer import build
from moxin.parallel import Dist
from moxin.recipe import load_recipe
from moxin.train import checkpoint as ckpt
from moxin.train.callbacks import Callback, Evaluation, MetricsLogger, PruneCheckpoints, default_callbacks
from moxin.train.evaluate import Samples, mean_loss
from moxin.train.metrics import read_metrics
from moxin.train.pretrain import Setup
from moxin.train.tasks import LMTask
from moxin.train.trainer import Checkpointing, Trainer, TrainingError


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    return small_tokens(tmp_path_factory.mktemp("tok") / "data")


def _setup(tmp_path, data, every=2, steps_a=3, steps_b=2):
    rec = write_recipe(tmp_path / "r.toml", data, tmp_path / "runs", every=every, steps_a=steps_a, steps_b=steps_b)
    return Setup.from_recipe(load_recipe(rec))


def _bare(setup, callbacks=()):
    """A Trainer built by hand: checkpoints only, plus the given callbacks."""
    plan = setup.plan()
    c = Checkpointing(setup.run_dir / "checkpoints", setup.model_cfg, setup.seed, state={"kind": "pretrain"})
    return Trainer(setup.build_model(Dist()), LMTask(), setup.sampler, setup.cfg, plan, c, callbacks)


class Recorder(Callback):
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_fit_start(self) -> None:
        self.calls.append(("start", self.trainer.step, self.trainer.until))

    def on_step_end(self, step, metrics) -> None:
        self.calls.append(("step", step, self.trainer.checkpoint_due, "val_loss" in metrics, sorted(metrics)))

    def on_checkpoint(self, path, step) -> None:
        self.calls.append(("checkpoint", step, path.name, path.is_dir() and (path / "manifest.json").is_file()))

    def on_fit_end(self, status) -> None:
        self.calls.append(("end", status))


def test_hooks_run_in_order_with_the_loop_state(tmp_path, data):
    setup = _setup(tmp_path, data)  # 5 steps, checkpoints at 2, 4 and 5 (phase a ends at 3: forced)
    rec = Recorder()
    trainer = _bare(setup, [Evaluation(setup.evaluator()), rec])
    assert trainer.fit() == "done"
    kinds = [c[0] for c in rec.calls]
    assert kinds == ["start", "step", "step", "checkpoint", "step", "checkpoint", "step", "checkpoint", "step",
                     "checkpoint", "end"]
    assert rec.calls[0] == ("start", 0, 5) and rec.calls[-1] == ("end", "done")
    steps = [c for c in rec.calls if c[0] == "step"]
    # Evaluation ran before the recorder, exactly at the steps a checkpoint follows, and added val_loss there.
    assert [(s[1], s[2], s[3]) for s in steps] == [(0, False, False), (1, True, True), (2, True, True),
                                                   (3, True, True), (4, True, True)]
    assert {"loss", "lr", "grad_norm", "tokens_seen", "step_time", "tokens_per_s", "phase"} <= set(steps[0][4])
    saved = [c for c in rec.calls if c[0] == "checkpoint"]
    assert [(s[1], s[2], s[3]) for s in saved] == [(2, "step-00000002", True), (3, "step-00000003", True),
                                                   (4, "step-00000004", True), (5, "step-00000005", True)]


def test_without_callbacks_only_checkpoints_are_written(tmp_path, data):
    setup = _setup(tmp_path, data)
    setup.cfg.checkpoint.keep_last = 1  # no pruning callback: the policy is not applied
    assert _bare(setup).fit() == "done"
    assert [s for s, _ in ckpt.list_checkpoints(setup.run_dir / "checkpoints")] == [2, 3, 4, 5]
    assert not (setup.run_dir / "metrics.jsonl").exists() and not (setup.run_dir / "loss.png").exists()


def test_default_callbacks_write_metrics_plot_and_prune(tmp_path, data):
    setup = _setup(tmp_path, data, every=4)  # checkpoints at 3 (phase end), 4 (cadence), 5 (end)
    setup.cfg.checkpoint.keep_last = 1
    setup.cfg.log_every = 3
    trainer = _bare(setup, default_callbacks(setup.run_dir, setup.cfg, setup.plan(), setup.evaluator(), False))
    assert trainer.fit() == "done"
    # keep_last 1 plus the phase ends (3 and 5) protected: 4 was pruned after 5 was written.
    assert [s for s, _ in ckpt.list_checkpoints(setup.run_dir / "checkpoints")] == [3, 5]
    rows = read_metrics(setup.run_dir / "metrics.jsonl")
    assert [r["step"] for r in rows] == [0, 2, 3, 4]  # every 3rd step, and every step a checkpoint follows
    assert [r["step"] for r in rows if "val_loss" in r] == [2, 3, 4]
    assert (setup.run_dir / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_failure_reaches_on_fit_end_and_closes_the_metrics(tmp_path, data):
    setup = _setup(tmp_path, data)
    rec, log = Recorder(), MetricsLogger(setup.run_dir / "metrics.jsonl")
    trainer = _bare(setup, [log, rec])

    class Boom(LMTask):
        def loss(self, model, batch):
            if trainer.step == 3:
                raise RuntimeError("boom")
            return super().loss(model, batch)

    trainer.task = Boom()
    with pytest.raises(RuntimeError, match="boom"):
        trainer.fit()
    assert rec.calls[-1] == ("end", "failed") and log.log is None
    assert [r["step"] for r in read_metrics(setup.run_dir / "metrics.jsonl")] == [0, 1, 2]


def test_fit_until_stops_early_with_a_checkpoint_and_checks_its_bound(tmp_path, data):
    setup = _setup(tmp_path, data, every=100)
    trainer = _bare(setup)
    with pytest.raises(TrainingError, match=r"fit\(until=9\).*1\.\.5"):
        trainer.fit(until=9)
    assert trainer.fit(until=2) == "done" and trainer.step == 2 and setup.plan().total_steps == 5
    assert [s for s, _ in ckpt.list_checkpoints(setup.run_dir / "checkpoints")] == [2]
    assert trainer.fit() == "done" and trainer.step == 5  # the plan itself was never changed
    assert [s for s, _ in ckpt.list_checkpoints(setup.run_dir / "checkpoints")] == [2, 3, 5]


def test_prune_keeps_last_every_and_protected(tmp_path):
    root = tmp_path / "checkpoints"
    for s in range(1, 9):
        (root / f"step-{s:08d}").mkdir(parents=True)
    PruneCheckpoints(keep_last=2, keep_every=4, protected={3}).on_checkpoint(root / "step-00000008", 8)
    assert [s for s, _ in ckpt.list_checkpoints(root)] == [3, 4, 7, 8]


def test_mean_loss_is_the_mean_over_target_tokens_in_eval_mode():
    torch.manual_seed(0)
    model = build(preset("tiny"), seed=0)
    model.train()
    rows = [np.random.default_rng(i).integers(0, 512, 9) for i in range(5)]
    held_out = Samples(rows, lambda r: torch.from_numpy(np.stack(r)))
    with torch.no_grad():
        model.eval()
        x = torch.from_numpy(np.stack(rows))
        ref = float(torch.nn.functional.cross_entropy(model(x[:, :-1]).float().reshape(-1, 512),
                                                      x[:, 1:].reshape(-1), reduction="sum")) / (5 * 8)
        model.train()
    got = mean_loss(model, LMTask(), held_out, micro_batch=2)
    assert model.training and set(got) == {"loss"}
    assert got["loss"] == pytest.approx(ref, rel=1e-5)
    assert mean_loss(model, LMTask(), held_out, micro_batch=5)["loss"] == pytest.approx(ref, rel=1e-5)
    z = mean_loss(model, LMTask(z_loss=1e-2), held_out, micro_batch=3)  # the task's metrics are means too
    assert z["ce"] == pytest.approx(ref, rel=1e-5) and z["loss"] == pytest.approx(z["ce"] + z["z_loss"], rel=1e-6)
    bf16 = mean_loss(model, LMTask(), held_out, micro_batch=2, precision="bf16")["loss"]
    assert bf16 != got["loss"] and bf16 == pytest.approx(ref, rel=2e-2)  # autocast applies, close to fp32
