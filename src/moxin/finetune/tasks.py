"""SFT and DPO as tasks of the shared Trainer (`moxin.train.trainer.Task`: `count` and `loss` returning sums).

SFT's loss units are assistant tokens; DPO's are pairs. Packed SFT rows pass positions and segment ids to the
model, so attention stays inside each example and RoPE positions restart at 0."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from moxin.finetune.losses import dpo_loss, token_logps
from moxin.train.tasks import LMTask, forward


class SFTTask(LMTask):
    """Next-token cross-entropy on the labelled (assistant) tokens only: `LMTask`'s dict path, without z-loss."""

    def __init__(self) -> None:
        super().__init__(z_loss=0.0)


def pair_logps(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed response log-probs of chosen and rejected (B,) each, in one forward over the 2B rows."""
    ids = torch.cat([batch["chosen_ids"], batch["rejected_ids"]])  # (2B, T)
    labels = torch.cat([batch["chosen_labels"], batch["rejected_labels"]])
    lp = token_logps(forward(model, ids), labels).sum(dim=1)  # (2B,)
    B = batch["chosen_ids"].shape[0]
    return lp[:B], lp[B:]


class DPOTask:
    """DPO against cached reference log-probs (the batch carries them: the reference model is not needed here)."""

    def __init__(self, beta: float, label_smoothing: float = 0.0) -> None:
        self.beta, self.label_smoothing = beta, label_smoothing

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["chosen_ids"].shape[0])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pc, pr = pair_logps(model, batch)
        loss, rc, rr = dpo_loss(
            pc,
            pr,
            batch["ref_chosen"].to(pc.dtype),
            batch["ref_rejected"].to(pc.dtype),
            self.beta,
            self.label_smoothing,
        )
        metrics = {
            "reward_chosen": rc.sum(),
            "reward_rejected": rr.sum(),
            "reward_margin": (rc - rr).sum(),
            "reward_accuracy": (rc > rr).float().sum(),
        }
        return loss.sum(), metrics


@torch.no_grad()
def reference_logps(model: nn.Module, batches: Any, n: int, micro: int, progress: bool = False) -> torch.Tensor:
    """(n, 2) summed log-probs of chosen and rejected under `model` (the frozen reference), micro-batch by micro."""
    from rich.progress import track

    was = model.training
    model.eval()
    out = torch.empty(n, 2, dtype=torch.float64)
    starts = range(0, n, micro)
    for i in track(starts, description="reference log-probs", disable=not progress, transient=True):
        idx = list(range(i, min(n, i + micro)))
        pc, pr = pair_logps(model, batches.collate(idx))
        out[idx, 0], out[idx, 1] = pc.double(), pr.double()
    model.train(was)
    return out
