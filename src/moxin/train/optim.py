"""AdamW with decoupled weight decay (none on norms, biases and embeddings), and its state as flat tensors so
that checkpoints hold it in safetensors (never pickles)."""

from __future__ import annotations

import json
from typing import Any

import torch
from torch import nn

from moxin.errors import CheckpointError


def no_decay(name: str, p: torch.Tensor) -> bool:
    """Norm gains and biases (1-D) and the token embedding get no weight decay."""
    return p.ndim < 2 or name.split(".")[-2:-1] == ["embed"] or name.startswith("embed.")


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float], eps: float
) -> torch.optim.AdamW:
    decay: list[nn.Parameter] = []
    plain: list[nn.Parameter] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (plain if no_decay(_clean(name), p) else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]
    # foreach=False: the same per-parameter kernels on every world size (FSDP shards vs whole tensors).
    return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=False)


def _clean(name: str) -> str:
    for junk in ("_checkpoint_wrapped_module.", "_orig_mod.", "module."):
        name = name.replace(junk, "")
    return name


def flatten_optimizer_state(osd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """A full optimizer state dict (keyed by parameter names) → ({"<param>/<key>": tensor}, JSON-able groups)."""
    tensors = {}
    for pname, st in osd["state"].items():
        for key, value in st.items():
            t = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"{pname}/{key}"] = t.detach().cpu().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in osd["param_groups"]]
    json.dumps(groups)  # fails loudly here, not at write time, if a group holds something unexpected
    return tensors, groups


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], groups: list[dict[str, Any]]) -> dict[str, Any]:
    state: dict[str, dict[str, torch.Tensor]] = {}
    for flat, t in tensors.items():
        pname, _, key = flat.rpartition("/")
        if not pname:
            raise CheckpointError(f"optimizer state key {flat!r} is not '<parameter>/<name>'")
        state.setdefault(pname, {})[key] = t
    fixed = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in groups]
    return {"state": state, "param_groups": fixed}
