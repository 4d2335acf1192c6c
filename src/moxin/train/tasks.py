"""Training tasks (the loss side of the loop). Pretraining is next-token cross-entropy with an optional z-loss."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from moxin.train import IGNORE


def forward(
    model: nn.Module, ids: torch.Tensor, positions: torch.Tensor | None = None, segment_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """ids (B, T) → logits (B, T, V) in fp32 (the softmax stays fp32 under bf16 autocast). Packed rows pass
    positions and segment ids, so attention stays inside each example and RoPE positions restart at 0."""
    return model(ids, **_packing(positions, segment_ids)).float()


def _packing(positions: torch.Tensor | None, segment_ids: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The keyword arguments a packed row adds to the model call (none for plain rows)."""
    kw = {"positions": positions, "segment_ids": segment_ids}
    return {k: v for k, v in kw.items() if v is not None}


def _is_moxin(model: nn.Module) -> bool:
    """A moxin Transformer, bare or inside DDP / torch.compile: its forward fuses the head with the loss."""
    from moxin.model.transformer import Transformer
    from moxin.parallel import unwrap

    inner = unwrap(model)
    return isinstance(getattr(inner, "_orig_mod", inner), Transformer)


class LMTask:
    """Causal language modelling on token rows.

    A batch is either an int64 tensor (B, T+1) (inputs = [:, :-1], targets = [:, 1:]) or a dict with
    `input_ids` (B, T) and `labels` (B, T) already aligned to the inputs, IGNORE (-100) where no loss is taken
    (how SFT masks prompts), and optionally `positions` and `segment_ids` of packed rows. Loss units are target
    tokens."""

    def __init__(self, z_loss: float = 0.0) -> None:
        self.z_loss = z_loss

    @staticmethod
    def _split(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if isinstance(batch, dict):
            return batch["input_ids"], batch["labels"]
        return batch[:, :-1], batch[:, 1:]

    def count(self, batch: Any) -> int:
        y = batch["labels"] if isinstance(batch, dict) else batch[:, 1:]  # a dict may carry the labels alone
        return int((y != IGNORE).sum())

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = self._split(batch)
        packed = batch if isinstance(batch, dict) else {}
        if _is_moxin(model):
            kw = _packing(packed.get("positions"), packed.get("segment_ids"))
            total, ce, z = model(x, targets=y, z_loss=self.z_loss, **kw)
            return total, ({"ce": ce, "z_loss": z} if self.z_loss else {})
        logits = forward(model, x, packed.get("positions"), packed.get("segment_ids"))  # (B, T, V)
        flat, tgt = logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
        ce = F.cross_entropy(flat, tgt, ignore_index=IGNORE, reduction="sum")
        if not self.z_loss:
            return ce, {}
        keep = tgt != IGNORE
        lse = torch.logsumexp(flat[keep], dim=-1)  # (N,)
        z = self.z_loss * (lse * lse).sum()
        return ce + z, {"ce": ce.detach(), "z_loss": z.detach()}
