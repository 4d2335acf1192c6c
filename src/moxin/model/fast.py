"""Fast CPU inference: bf16 linear layers through oneDNN with weights pre-packed once.

Batch-1 decoding is a chain of matrix-vector products bound by memory bandwidth. A plain bf16 `F.linear` on CPU
reaches ~25 GB/s here; the same product with the weight reordered once into oneDNN's blocked layout reaches
~40-46 GB/s and gives bit-identical results (measured in tests/model/test_fast.py). The packed copy is rebuilt
whenever the weight changes (tracked by its version counter), and training or autograd always take the plain path.
"""

from __future__ import annotations

import types
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from moxin.model.transformer import Transformer


def supported() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if (
        self.training
        or torch.is_grad_enabled()
        or x.dtype != torch.bfloat16
        or w.dtype != torch.bfloat16
        or x.device.type != "cpu"
        or self.bias is not None
    ):
        return F.linear(x, w, self.bias)
    key = (w.data_ptr(), w._version)
    if getattr(self, "_moxin_pack_key", None) != key:
        self._moxin_packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), x.shape[0] if x.dim() == 2 else 1)
        self._moxin_pack_key = key
    shape = x.shape
    out = torch.ops.mkldnn._linear_pointwise(x.reshape(-1, shape[-1]), self._moxin_packed, None, "none", [], "")
    return out.reshape(*shape[:-1], out.shape[-1])


def enable(model: Transformer) -> Transformer:
    """Route every bias-free Linear of `model` through the packed bf16 path (a no-op for other dtypes)."""
    if not supported():
        return model
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and not hasattr(mod, "_moxin_pack_key"):
            _patch(mod)
    if getattr(model, "head", 1) is None and hasattr(model, "embed") and "_tied_head" not in model.__dict__:
        # A tied output head: a Linear view sharing the embedding's Parameter, kept out of the module tree so the
        # state dict and parameter list are unchanged.
        tied = nn.Linear(model.embed.weight.shape[1], model.embed.weight.shape[0], bias=False, device="meta")
        tied.weight = model.embed.weight
        tied.train(False)
        model.__dict__["_tied_head"] = _patch(tied)
    return model


def _patch(mod: nn.Linear) -> nn.Linear:
    mod.__dict__["_moxin_pack_key"] = None
    mod.forward = types.MethodType(_packed_forward, mod)  # type: ignore[method-assign]
    return mod


def disable(model: nn.Module) -> nn.Module:
    model.__dict__.pop("_tied_head", None)
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and hasattr(mod, "_moxin_pack_key"):
            del mod.forward, mod._moxin_pack_key
            if hasattr(mod, "_moxin_packed"):
                del mod._moxin_packed
    return model
