"""Parallelism applied from outside the model, in torchtitan's order (models/llama3/parallelize.py):
activation checkpointing per block → torch.compile per block → FSDP2 `fully_shard` per block, then the root (or
DDP). The same code runs on CPU (gloo) and GPU (NCCL); `init_distributed` reads torchrun's environment.

Multi-node: run on every node
    torchrun --nnodes N --nproc_per_node G --node_rank R --rdzv_backend c10d --rdzv_endpoint HOST:29500 \
        -m moxin.cli pretrain RECIPE
(or `$(which moxin)` instead of `-m moxin.cli`); every node must see the same recipe and data folder.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

if TYPE_CHECKING:
    from moxin.model.transformer import Transformer


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_distributed() -> Dist:
    """Join the process group torchrun describes (WORLD_SIZE > 1); a single process needs nothing."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
        # Bit-exact resume on GPU needs deterministic kernels (CPU kernels already are); untested here (no GPU).
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
    if world <= 1:
        return Dist(device=device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), local, device)


def parallelize(
    model: Transformer,
    d: Dist,
    mode: Literal["fsdp", "ddp"] = "fsdp",
    activation_checkpointing: bool = False,
    compile: bool = False,
    bf16_params: bool = False,
) -> nn.Module:
    """Wrap `model` (a moxin Transformer already on `d.device`) for training. Returns the module to train."""
    if activation_checkpointing:
        from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper

        for i, block in enumerate(model.layers):
            model.layers[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    if compile:
        for block in model.layers:
            block.compile()
    if not d.distributed:
        return model
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16_params else None, reduce_dtype=torch.float32)
    for block in model.layers:
        fully_shard(block, mp_policy=mp)
    fully_shard(model, mp_policy=mp)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The moxin Transformer inside a DDP wrapper (FSDP2 and compile-per-block keep the module itself)."""
    return getattr(model, "module", model)


@contextlib.contextmanager
def grad_sync(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation."""
    wrapped: Any = model  # DDP and FSDP2 add these methods to the module
    if hasattr(model, "no_sync") and not enabled:  # DDP
        with wrapped.no_sync():
            yield
        return
    if hasattr(model, "set_requires_gradient_sync"):  # FSDP2
        wrapped.set_requires_gradient_sync(enabled)
    yield


def all_reduce(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
    return t


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
