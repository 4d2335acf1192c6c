"""Held-out evaluation for the loop: `mean_loss`, the one evaluation helper of pretraining, SFT and DPO.

A held-out set is anything with `len()` and `collate(indices) -> batch` (`moxin.finetune.batches.PreferenceBatches`
is one; `Samples` makes one from a list of samples and a collate function). The mean is over the task's loss units
(target tokens, pairs), as in training, and the forward runs in the run's precision (bf16 autocast or fp32)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from moxin.train.trainer import Task, to_device


class HeldOut(Protocol):
    def __len__(self) -> int: ...

    def collate(self, idx: list[int]) -> Any:
        """A micro-batch of the samples `idx` (tensor, dict of tensors or list; dim 0 = samples)."""


@dataclass
class Samples:
    """A held-out set from a list of samples and the function that makes a batch of some of them."""

    items: Sequence[Any]
    make: Callable[[list[Any]], Any]

    def __len__(self) -> int:
        return len(self.items)

    def collate(self, idx: list[int]) -> Any:
        return self.make([self.items[i] for i in idx])


@torch.no_grad()
def mean_loss(model: nn.Module, task: Task, batches: HeldOut, micro_batch: int, precision: str = "fp32"
              ) -> dict[str, float]:
    """{"loss": mean over units, <metric>: mean over units, ...} of `task` on `batches`, `micro_batch` samples per
    forward, in eval mode (restored after). Every rank must call it with the same set (FSDP forwards together)."""
    n = len(batches)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    sums: dict[str, float] = {}
    units = 0
    try:
        for i in range(0, n, micro_batch):
            batch = to_device(batches.collate(list(range(i, min(n, i + micro_batch)))), device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss, metrics = task.loss(model, batch)
            for k, v in {"loss": loss, **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            units += task.count(batch)
    finally:
        model.train(was)
    return {k: v / max(units, 1) for k, v in sums.items()}
