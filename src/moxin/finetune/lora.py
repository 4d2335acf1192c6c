"""LoRA (Hu et al. 2021), own code: y = W x + (α/r) · B (A x), with W frozen, A (r, in) Kaiming-uniform from a
seeded generator and B (out, r) zero, so training starts exactly at the parent model.

A LoRA layer keeps the frozen weight under its original name (`layers.0.attn.q.weight`) and adds
`layers.0.attn.q.lora_a` / `.lora_b`, so a LoRA checkpoint holds the parent's tensors unchanged plus the adapters;
`merge` folds them in (W' = W + (α/r) B A, in fp32) and gives back plain `nn.Linear` layers: the merged model is an
ordinary moxin model that every other command loads."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

from moxin.errors import CheckpointError
from moxin.finetune.config import LoRAConfig

if TYPE_CHECKING:
    from moxin.model.transformer import Transformer

ATTN, MLP = ("q", "k", "v", "o"), ("gate", "up", "down")


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float, gen: torch.Generator) -> None:
        super().__init__()
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.weight.requires_grad_(False)
        self.bias = base.bias
        if self.bias is not None:
            self.bias.requires_grad_(False)
        dev, dt = base.weight.device, base.weight.dtype
        a = torch.empty(rank, self.in_features, dtype=torch.float32)
        bound = 1.0 / math.sqrt(self.in_features)  # kaiming_uniform_(a=sqrt(5)), as nn.Linear and peft
        a.uniform_(-bound, bound, generator=gen)
        self.lora_a = nn.Parameter(a.to(device=dev, dtype=dt))  # (r, in)
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=dev, dtype=dt))  # (out, r)
        self.scale, self.dropout = alpha / rank, dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (..., in) → (..., out)."""
        y = F.linear(x, self.weight, self.bias)
        h = F.dropout(x, self.dropout, self.training) if self.dropout else x
        return y + F.linear(F.linear(h, self.lora_a), self.lora_b) * self.scale

    def merged(self) -> nn.Linear:
        lin = nn.Linear(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype,
        )
        with torch.no_grad():
            delta = (self.lora_b.float() @ self.lora_a.float()) * self.scale  # (out, in)
            lin.weight.copy_((self.weight.float() + delta).to(self.weight.dtype))
            if self.bias is not None:
                lin.bias.copy_(self.bias)
        return lin


def _targets(model: nn.Module, names: list[str]) -> list[tuple[nn.Module, str, str]]:
    """(parent module, attribute, dotted name) of every targeted linear layer of a moxin Transformer."""
    out = []
    for i, block in enumerate(cast("Transformer", model).layers):
        block = getattr(block, "_checkpoint_wrapped_module", block)
        for attr in names:
            owner = cast(nn.Module, block.attn if attr in ATTN else block.mlp)
            kind = "attn" if attr in ATTN else "mlp"
            out.append((owner, attr, f"layers.{i}.{kind}.{attr}"))
    return out


def apply_lora(model: nn.Module, cfg: LoRAConfig, seed: int = 0) -> dict[str, Any]:
    """Freeze `model` and add adapters to the target layers, in place. Returns what the checkpoint records."""
    for p in model.parameters():
        p.requires_grad_(False)
    gen = torch.Generator().manual_seed(seed)
    for owner, attr, _ in _targets(model, cfg.targets):
        base = getattr(owner, attr)
        if not isinstance(base, nn.Linear):
            raise CheckpointError(
                f"LoRA target {attr!r} is a {type(base).__name__}, not a linear layer (LoRA applied twice?)"
            )
        setattr(owner, attr, LoRALinear(base, cfg.rank, cfg.alpha, cfg.dropout, gen))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {
        "rank": cfg.rank,
        "alpha": cfg.alpha,
        "dropout": cfg.dropout,
        "targets": list(cfg.targets),
        "seed": seed,
        "trainable_params": trainable,
        "total_params": total,
    }


def has_lora(model: nn.Module) -> bool:
    return any(isinstance(m, LoRALinear) for m in model.modules())


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its weight, in place; the model becomes a plain moxin Transformer again."""
    for module in list(model.modules()):
        for attr, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, attr, child.merged())
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def load_lora_weights(
    model_dir, info: dict[str, Any], dtype: torch.dtype = torch.float32, sd: dict[str, torch.Tensor] | None = None
) -> Transformer:
    """A LoRA checkpoint's model/ folder (parent tensors + adapters) → the merged plain model (`sd`: its
    weights, already read and verified by the caller)."""
    from pathlib import Path

    from moxin.interop.native import read_model_config
    from moxin.interop.safetensors_io import read_safetensors
    from moxin.model.transformer import Transformer

    folder = Path(model_dir)
    model = Transformer(read_model_config(folder))
    cfg = LoRAConfig(
        rank=info["rank"], alpha=info["alpha"], dropout=info.get("dropout", 0.0), targets=list(info["targets"])
    )
    apply_lora(model, cfg, info.get("seed", 0))
    sd = read_safetensors(folder / "model.safetensors") if sd is None else sd
    missing, unexpected = model.load_state_dict(sd, strict=False)
    if missing or unexpected:
        raise CheckpointError(
            f"{folder}: LoRA weights do not match the recorded adapters (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    merge_lora(model)  # in place: `model` is a plain Transformer again
    return model.to(dtype)
