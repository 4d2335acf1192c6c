"""Trainer callbacks: what the loop does besides training, one concern each (the shape of OLMo-core's
`train/callbacks`).

The `Trainer` sets `callback.trainer` when it is built and calls, in list order:

- `on_fit_start()` once before the first step of `fit`;
- `on_step_end(step, metrics)` after each optimizer step (`step` = the step just done, 0-based). `metrics` is the
  step's record; a callback may add keys to it (evaluation adds `val_*` before the metrics logger writes it), so
  order matters: `default_callbacks` puts evaluation first. `trainer.checkpoint_due` (a checkpoint follows this
  step by the cadence, a forced step or the last step) and `trainer.stopping` (a signal asked to stop) are set;
- `on_checkpoint(path, step)` after a checkpoint was written completely;
- `on_fit_end(status)` once when `fit` returns ('done' | 'interrupted') or raises ('failed').
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moxin.train import checkpoint as ckpt
from moxin.train.metrics import MetricsLog, Progress, plot_loss

if TYPE_CHECKING:
    from torch import nn

    from moxin.train.config import TrainConfig
    from moxin.train.trainer import Plan, Trainer

Evaluate = Callable[["nn.Module", int], dict[str, float]]


class Callback:
    """A no-op for every hook: subclasses override what they need."""

    trainer: Trainer

    def on_fit_start(self) -> None:
        pass

    def on_step_end(self, step: int, metrics: dict[str, Any]) -> None:
        pass

    def on_checkpoint(self, path: Path, step: int) -> None:
        pass

    def on_fit_end(self, status: str) -> None:
        pass


class Evaluation(Callback):
    """Held-out evaluation at every step a checkpoint follows; its results join that step's metrics. Runs on every
    rank (an FSDP model needs every rank in each forward)."""

    def __init__(self, evaluate: Evaluate) -> None:
        self.evaluate = evaluate

    def on_step_end(self, step: int, metrics: dict[str, Any]) -> None:
        if self.trainer.checkpoint_due:
            metrics.update(self.evaluate(self.trainer.model, self.trainer.step))


class MetricsLogger(Callback):
    """metrics.jsonl (and TensorBoard): every `every`-th step, and every step a checkpoint or a stop follows, so the
    log is complete up to each checkpoint. On resume the entries past the checkpoint are dropped. Rank 0 only."""

    def __init__(self, path: Path, every: int = 1, tensorboard: bool = False) -> None:
        self.path, self.every, self.tensorboard = Path(path), every, tensorboard
        self.log: MetricsLog | None = None

    def on_fit_start(self) -> None:
        t = self.trainer
        self.log = MetricsLog(self.path, t.step, enabled=t.dist.is_main, tensorboard=self.tensorboard)

    def on_step_end(self, step: int, metrics: dict[str, Any]) -> None:
        t = self.trainer
        # Logged before the checkpoint is saved: a run killed in between re-runs (and re-logs) this step on resume.
        if self.log is not None and (step % self.every == 0 or t.stopping or t.checkpoint_due):
            self.log.log(metrics)

    def on_fit_end(self, status: str) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None


class LossPlot(Callback):
    """loss.png from metrics.jsonl when `fit` ends (also after a failure: the curve up to it). Rank 0 only."""

    def __init__(self, metrics_path: Path, out_png: Path) -> None:
        self.metrics_path, self.out_png = Path(metrics_path), Path(out_png)

    def on_fit_end(self, status: str) -> None:
        if self.trainer.dist.is_main:
            plot_loss(self.metrics_path, self.out_png)


class PruneCheckpoints(Callback):
    """The retention policy, applied after each checkpoint: keep the last `keep_last`, every `keep_every`-th step
    and the `protected` steps (phase ends); delete the rest. Rank 0 deletes."""

    def __init__(self, keep_last: int, keep_every: int = 0, protected: set[int] | frozenset[int] = frozenset()) -> None:
        self.keep_last, self.keep_every, self.protected = keep_last, keep_every, set(protected)

    def on_checkpoint(self, path: Path, step: int) -> None:
        ckpt.prune(Path(path).parent, self.keep_last, self.keep_every, self.protected)


class ProgressBar(Callback):
    """A rich bar over optimizer steps with rate and ETA, showing the latest loss and throughput. Rank 0 only."""

    def __init__(self) -> None:
        self.bar: Progress | None = None

    def on_fit_start(self) -> None:
        t = self.trainer
        self.bar = Progress(t.until, t.step, enabled=t.dist.is_main)

    def on_step_end(self, step: int, metrics: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.update(step + 1, f"loss {metrics['loss']:.4f} {metrics['tokens_per_s']:,.0f} tok/s")

    def on_fit_end(self, status: str) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def default_callbacks(stage_dir: Path, cfg: TrainConfig, plan: Plan, evaluate: Evaluate | None = None,
                      progress: bool = True, record: bool = True) -> list[Callback]:
    """What a training stage runs with: evaluation (when given), metrics.jsonl + loss.png in `stage_dir` (unless
    `record` is off), checkpoint retention per `cfg.checkpoint` with the plan's forced saves protected, and the
    progress bar (when `progress`)."""
    stage_dir = Path(stage_dir)
    out: list[Callback] = [Evaluation(evaluate)] if evaluate is not None else []
    if record:
        metrics = stage_dir / "metrics.jsonl"
        out += [MetricsLogger(metrics, cfg.log_every, cfg.tensorboard), LossPlot(metrics, stage_dir / "loss.png")]
    c = cfg.checkpoint
    out.append(PruneCheckpoints(c.keep_last, c.keep_every, plan.forced_saves))
    if progress:
        out.append(ProgressBar())
    return out
