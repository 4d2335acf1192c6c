"""The one training loop (pretraining and every fine-tuning mode): see `moxin.train` for the API.

A step: set the LR → fetch this rank's slice of the step's global batch → split into micro-batches → count the
loss units of the whole global batch (one all-reduce) → forward/backward each micro-batch with its loss scaled by
world / global units (so DDP/FSDP's gradient averaging yields the exact global mean) → clip → NaN check → AdamW.
"""

from __future__ import annotations

import contextlib
import math
import random
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch
from torch import nn

from moxin.errors import DataError, TrainingError
from moxin.layout import parse_step
from moxin.model.config import ModelConfig
from moxin.parallel import Dist, all_reduce, grad_sync
from moxin.train import checkpoint as ckpt
from moxin.train.config import TrainConfig
from moxin.train.metrics import measure_peak_flops
from moxin.train.optim import build_optimizer

if TYPE_CHECKING:
    from moxin.train.callbacks import Callback


class Task(Protocol):
    """What a training mode computes. `count` must not need a forward pass (it normalises the global batch)."""

    def count(self, batch: Any) -> int:
        """Loss units in a micro-batch (target tokens for language modelling, pairs for DPO)."""

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(sum of the loss over the micro-batch's units, {metric: sum over units}) — sums, not means."""


class Batches(Protocol):
    """A deterministic batch source keyed by step: its only state is the step itself."""

    fingerprint: str  # identity of the data; a checkpoint refuses to resume on other data

    def batch(self, step: int, rank: int, world: int) -> Any:
        """This rank's part of the global batch of `step`: a tensor, a dict of tensors or a list (dim 0 = samples)."""


@dataclass
class Plan:
    """The run's shape along the step axis."""

    total_steps: int
    lr: Callable[[int], float]  # LR of a step
    phase: Callable[[int], str] = lambda step: "train"
    forced_saves: set[int] = field(default_factory=set)  # completed-step counts that always get a checkpoint
    flops_per_unit: Callable[[int], float] | None = None  # training FLOPs per loss unit at a step (for MFU)
    tokens_per_step: Callable[[int], int] | None = None  # for tokens_seen; default: global loss units


@dataclass
class Checkpointing:
    """What the loop needs to write and resume checkpoints besides the weights and the optimizer."""

    root: Path  # the stage's checkpoints/ folder
    model_cfg: ModelConfig  # written beside the weights
    seed: int = 0  # seeds the global RNGs at construction; recorded in every train_state.json
    tokenizer_dir: Path | None = None  # copied into every checkpoint
    state: dict[str, Any] = field(default_factory=dict)  # merged into every train_state.json (config, kind, ...)
    lineage: dict[str, Any] = field(default_factory=dict)  # what the run started from (e.g. a fine-tune's base)


def split_micro(batch: Any, size: int) -> list[Any]:
    """Cut dim 0 into micro-batches of `size` samples (tensor, dict of tensors, or list)."""
    n = len(batch) if not isinstance(batch, dict) else len(next(iter(batch.values())))
    if isinstance(batch, dict):
        return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]
    return [batch[i : i + size] for i in range(0, n, size)]


def to_device(batch: Any, device: torch.device) -> Any:
    """A batch (tensor, dict of tensors, or anything else left as is) on `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """`Trainer(model, task, batches, cfg, plan, checkpointing, callbacks)`; `resume(...)`; `fit()`.

    `model` is already parallelised (`moxin.parallel.parallelize`); checkpoints go to `checkpointing.root`.
    Everything else the loop does (metrics.jsonl, loss.png, held-out evaluation, checkpoint retention, the progress
    bar) is a callback (`moxin.train.callbacks`; `default_callbacks` assembles a stage's). `log` receives the loop's
    messages (resume, skipped batches, signals)."""

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        batches: Batches,
        cfg: TrainConfig,
        plan: Plan,
        checkpointing: Checkpointing,
        callbacks: Sequence[Callback] = (),
        dist: Dist | None = None,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.model, self.task, self.batches, self.cfg, self.plan = model, task, batches, cfg, plan
        self.checkpointing = checkpointing
        self.dist = dist or Dist()
        self.log = log or (lambda msg: None)
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            cb.trainer = self
        # Python's, NumPy's and torch's global generators are saved in every checkpoint: seed them so a fresh run's
        # checkpoints are byte-identical to another fresh run's (resume restores them from the checkpoint).
        seed = checkpointing.seed
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
        self.optimizer = build_optimizer(model, cfg.lr, cfg.weight_decay, (cfg.betas[0], cfg.betas[1]), cfg.eps)
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.step = 0
        self.tokens_seen = 0
        self.last_checkpoint: Path | None = None
        self.losses: dict[int, float] = {}
        self._stop_signal: int | None = None
        # Loop state the callbacks read: the step `fit` trains up to, whether a checkpoint follows the current step
        # (cadence, forced step or the last step) and the signal that asked to stop (0: none).
        self.until = plan.total_steps
        self.checkpoint_due = False
        self.stopping = 0

    # ------------------------------------------------------------------------------------------ resume
    def resume(self, path: Path, allow_data_change: bool = False) -> dict[str, Any]:
        """Load a checkpoint (verified by hash) and continue after it; the data fingerprint must match."""
        state = ckpt.load_checkpoint(path, self.model, self.optimizer)
        theirs = state.get("data", {}).get("fingerprint")
        if theirs != self.batches.fingerprint and not allow_data_change:
            raise DataError(
                f"the data changed since checkpoint {path} (fingerprint {str(theirs)[:12]}… → "
                f"{self.batches.fingerprint[:12]}…); resume on the original data, or pass "
                f"--allow-data-change to continue on the new data"
            )
        rngs = state.get("rng", [])
        if rngs:
            ckpt.set_rng_state(rngs[self.dist.rank] if len(rngs) == self.dist.world else rngs[0])
        self.step, self.tokens_seen = int(state["step"]), int(state.get("tokens_seen", 0))
        self.last_checkpoint = Path(path)
        self.log(f"resumed from {path} at step {self.step}")
        return state

    # ------------------------------------------------------------------------------------------ one step
    def _autocast(self):
        if self.cfg.precision != "bf16":
            return contextlib.nullcontext()
        return torch.autocast(self.dist.device.type, dtype=torch.bfloat16)

    def train_step(self, step: int) -> dict[str, float]:
        lr = self.plan.lr(step)
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        local = self.batches.batch(step, self.dist.rank, self.dist.world)
        micros = split_micro(local, self.cfg.micro_batch)
        units = all_reduce(torch.tensor([float(sum(self.task.count(m) for m in micros))]))[0].item()
        if units <= 0:
            raise TrainingError(f"step {step}: the global batch has no loss units (all targets masked?)")
        scale = self.dist.world / units
        loss_sum = torch.zeros((), dtype=torch.float64)
        metric_sums: dict[str, float] = {}
        for i, micro in enumerate(micros):
            with grad_sync(self.model, i == len(micros) - 1), self._autocast():
                total, metrics = self.task.loss(self.model, to_device(micro, self.dist.device))
            (total * scale).backward()
            loss_sum += total.detach().double().cpu()
            for k, v in metrics.items():
                metric_sums[k] = metric_sums.get(k, 0.0) + float(v)
        loss = all_reduce(loss_sum.reshape(1))[0].item() / units
        norm = self._clip()
        out = {"loss": loss, "lr": lr, "grad_norm": norm, "units": units}
        out.update(
            {
                k: all_reduce(torch.tensor([v], dtype=torch.float64))[0].item() / units
                for k, v in sorted(metric_sums.items())
            }
        )
        if not (math.isfinite(loss) and math.isfinite(norm)):
            self._non_finite(step, loss, norm)
            out["skipped"] = True
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return out

    def _clip(self) -> float:
        max_norm = self.cfg.grad_clip if self.cfg.grad_clip > 0 else float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.params, max_norm, foreach=False)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        return float(norm)

    def _non_finite(self, step: int, loss: float, norm: float) -> None:
        what = f"loss={loss}" if not math.isfinite(loss) else f"gradient norm={norm}"
        if self.cfg.on_nan == "skip":
            self.log(f"step {step}: {what}; skipping this batch (on_nan = 'skip')")
            return
        good = self.last_checkpoint or "none (no checkpoint written yet)"
        raise TrainingError(
            f"step {step}: non-finite {what}; stopped without updating the weights; last good "
            f"checkpoint: {good}; lower the LR, or set on_nan = 'skip' in the recipe to skip such "
            f"batches"
        )

    # ------------------------------------------------------------------------------------------ checkpoints
    def save(self) -> Path:
        """Write a checkpoint of the current step, then tell the callbacks (`on_checkpoint`)."""
        parent, c = self.last_checkpoint, self.checkpointing
        lineage = dict(c.lineage)
        record = self._parent_record(parent) if parent is not None and (parent / "manifest.json").is_file() else None
        if record:
            lineage["parent"] = record
        rng: list[dict[str, Any] | None] = [ckpt.rng_state()]
        if self.dist.distributed:
            import torch.distributed as dist

            rng = [None] * self.dist.world
            dist.all_gather_object(rng, ckpt.rng_state())
        state = {
            **c.state,
            "step": self.step,
            "phase": self.plan.phase(max(self.step - 1, 0)),
            "tokens_seen": self.tokens_seen,
            "seed": c.seed,
            "world_size": self.dist.world,
            "data": {"fingerprint": self.batches.fingerprint, "position": {"next_step": self.step}},
            "rng": rng,
            "lineage": lineage,
        }
        path = ckpt.save_checkpoint(
            c.root,
            self.step,
            self.model,
            self.optimizer,
            c.model_cfg,
            state,
            c.tokenizer_dir,
            sharded=self.cfg.checkpoint.sharded,
        )
        self.last_checkpoint = path
        for cb in self.callbacks:
            cb.on_checkpoint(path, self.step)
        return path

    def _parent_record(self, parent: Path) -> dict[str, Any] | None:
        """The previous checkpoint on the schedule. One written only because a signal stopped the run is passed
        over (its own parent is taken), so that a stopped and resumed run records the lineage, and so writes the
        bytes, of an uninterrupted one."""
        step = parse_step(parent.name)
        c = self.cfg.checkpoint
        if step is not None and not (
            step % c.every == 0 or step in self.plan.forced_saves or step == self.plan.total_steps
        ):
            return ckpt.read_state(parent)["lineage"].get("parent")
        return {"path": parent.name, "sha256": ckpt.checkpoint_sha(parent)}

    def _due(self) -> bool:
        c = self.cfg.checkpoint
        return self.step % c.every == 0 or self.step in self.plan.forced_saves or self.step == self.until

    # ------------------------------------------------------------------------------------------ loop
    @contextlib.contextmanager
    def _signals(self):
        """SIGINT/SIGTERM: finish the current step, write a checkpoint, return normally."""

        def handler(signum, frame):
            self._stop_signal = signum

        old = {}
        try:
            for s in (signal.SIGINT, signal.SIGTERM):
                old[s] = signal.signal(s, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def fit(self, until: int | None = None) -> str:
        """Train until step `until` (default: plan.total_steps; a checkpoint is written there) or a signal.
        Returns 'done' or 'interrupted'."""
        until = self.plan.total_steps if until is None else int(until)
        if not 0 < until <= self.plan.total_steps:
            raise TrainingError(
                f"fit(until={until}): the stop step must be within 1..{self.plan.total_steps} (the plan's total_steps)"
            )
        self.until = until
        peak = self.cfg.peak_flops or measure_peak_flops(self.cfg.precision)
        source = (
            "recipe" if self.cfg.peak_flops else f"measured at start: best of 5 square torch.mm in {self.cfg.precision}"
        )
        # The measured peak is a wall-clock figure: it goes to the log, never into a checkpoint (checkpoints are
        # byte-reproducible).
        self.log(f"MFU is measured against {peak / 1e9:,.1f} GFLOP/s per device ({source})")
        for cb in self.callbacks:
            cb.on_fit_start()
        status = "failed"
        try:
            with self._signals():
                status = self._loop(peak)
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(status)
        return status

    def _loop(self, peak: float) -> str:
        while self.step < self.until:
            t0 = time.perf_counter()
            step = self.step
            out = self.train_step(step)
            dt = time.perf_counter() - t0
            tokens = self.plan.tokens_per_step(step) if self.plan.tokens_per_step else int(out["units"])
            self.step, self.tokens_seen = step + 1, self.tokens_seen + tokens
            self.losses[step] = out["loss"]
            record = {
                "step": step,
                "phase": self.plan.phase(step),
                **{k: v for k, v in out.items() if k != "units"},
                "tokens_seen": self.tokens_seen,
                "step_time": dt,
                "tokens_per_s": tokens / dt,
            }
            if self.plan.flops_per_unit is not None:
                achieved = self.plan.flops_per_unit(step) * out["units"] / dt
                record.update(flops_per_s=achieved, mfu=achieved / (peak * self.dist.world))
            self.stopping, self.checkpoint_due = self._stop_requested(), self._due()
            for cb in self.callbacks:
                cb.on_step_end(step, record)
            if self.checkpoint_due or self.stopping:
                self.save()
            if self.stopping:
                self.log(f"signal {self.stopping}: wrote {self.last_checkpoint} and stopped at step {self.step}")
                return "interrupted"
        return "done"

    def _stop_requested(self) -> int:
        flag = torch.tensor([float(self._stop_signal or 0)])
        return int(all_reduce(flag, op="max")[0].item())
