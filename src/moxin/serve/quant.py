"""Weight-only int8 for decoding on CPU: batch 1-8 decode is a matrix-vector product bound by reading the weights,
and MKL/oneDNN reach only 10-15 GB/s on those shapes here; int8 weights halve the bytes of bf16, and PyTorch's
`_weight_int8pack_mm` kernel (the one gpt-fast uses) multiplies them without materialising a bf16 copy.

Symmetric per-output-channel scales: w ≈ q · s with q in [-127, 127], s = max|w_row| / 127. Activations, norms,
the KV cache and attention stay in the model's dtype (bf16). The quantized model is for serving only; callers report
its logit difference and its effect on a score (see benchmarks/serve.py)."""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, cast

import torch
from torch import nn

from moxin.errors import ModelError

if TYPE_CHECKING:
    from moxin.model.transformer import Transformer


def quantize_rows(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """w (N, K) float → (q (N, K) int8, scales (N,) fp32) with w ≈ q * scales[:, None]."""
    w = w.detach().float()
    scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0  # (N,)
    q = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8)
    return q, scales


class Int8Linear(nn.Module):
    """y = x @ (q · s)ᵀ for x (..., K) in bf16 (or fp16): weight-only int8, no bias."""

    qweight: torch.Tensor
    scales: torch.Tensor

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        q, s = quantize_rows(weight)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("qweight", q.contiguous())  # (N, K) int8
        self.register_buffer("scales", s.to(dtype))  # (N,)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features).to(self.scales.dtype)  # (M, K)
        y = torch.ops.aten._weight_int8pack_mm(x2, self.qweight, self.scales)  # (M, N)
        return y.reshape(*lead, self.out_features)

    def dequantized(self) -> torch.Tensor:
        return self.qweight.float() * self.scales.float()[:, None]


class QuantizedHead(nn.Module):
    """The output projection (tied or not) as an Int8Linear: hidden (B, T, dim) → logits (B, T, V)."""

    def __init__(self, weight: torch.Tensor, dtype: torch.dtype = torch.bfloat16) -> None:
        super().__init__()
        self.proj = Int8Linear(weight, dtype)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.proj(hidden)


def quantize_int8(model: Transformer, dtype: torch.dtype = torch.bfloat16) -> tuple[nn.Module, nn.Module]:
    """A copy of `model` in `dtype` with every block's linear layer int8, plus its int8 output head.

    Use with `Engine(..., head=head)`: the engine asks the model for hidden states and applies the head itself,
    since the model computes its logits from the (possibly tied) weight directly."""
    if dtype not in (torch.bfloat16, torch.float16):
        raise ModelError(f"int8 weights need bf16 or fp16 activations for the CPU kernel, got {dtype}")
    q = copy.deepcopy(model).to(dtype)
    for block in q.layers:
        for parent in (block.attn, block.mlp):
            for name, child in list(cast(nn.Module, parent).named_children()):
                if isinstance(child, nn.Linear):
                    setattr(parent, name, Int8Linear(child.weight, dtype))
    head = QuantizedHead(model.output_weight, dtype)
    return q.eval(), head.eval()
