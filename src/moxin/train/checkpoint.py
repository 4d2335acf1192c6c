"""Checkpoints (layout in docs/CONTRACTS.md): written atomically, verified by SHA-256 before use, pruned by a
retention policy. One code path for a plain model, DDP and FSDP2: full state dicts are gathered with
`torch.distributed.checkpoint.state_dict` (so a checkpoint loads on any world size); with `sharded=True` each rank
writes its shards with `torch.distributed.checkpoint` (DCP) and `consolidate` turns them into the single files.

    step-00000100/
      model/model.safetensors, model/model_config.json   (absent in a sharded checkpoint until consolidated)
      dcp/                                               (sharded checkpoints only)
      tokenizer/                                         copy of the run's tokenizer, when it has one
      optimizer.safetensors                              AdamW state, "<param>/<exp_avg|exp_avg_sq|step>"
      train_state.json                                   step, phase, tokens, data position + fingerprint, RNG,
                                                         resolved config, lineage, optimizer param groups
      manifest.json                                      SHA-256 of every file; its own hash = checkpoint sha
"""

from __future__ import annotations

import base64
import dataclasses
import errno
import json
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from moxin.errors import CheckpointError
from moxin.interop.native import save_model
from moxin.interop.safetensors_io import read_safetensors, write_safetensors
from moxin.layout import checkpoint_name, list_checkpoints, parse_step
from moxin.model.config import ModelConfig
from moxin.provenance import atomic_dir, atomic_write_json, clean_stale_tmp, environment, sha256_file, verify_manifest
from moxin.records import STATE_NAME, TrainState, read_train_state, train_state, write_stage_manifest, write_train_state
from moxin.train.optim import flatten_optimizer_state, unflatten_optimizer_state

if TYPE_CHECKING:
    from torch.distributed.checkpoint.state_dict import ValueType

__all__ = [
    "STATE_NAME",
    "checkpoint_sha",
    "consolidate",
    "list_checkpoints",
    "load_checkpoint",
    "previous_good",
    "prune",
    "read_state",
    "save_checkpoint",
    "verify",
]


def checkpoint_sha(path: Path) -> str:
    return sha256_file(Path(path) / "manifest.json")


# ------------------------------------------------------------------------------------------------ RNG
def rng_state() -> dict[str, Any]:
    # numpy's global RandomState is an MT19937: the legacy state is the tuple (name, keys, pos, has_gauss, gauss)
    np_state = cast("tuple[str, np.ndarray, int, int, float]", np.random.get_state())
    py_state = random.getstate()
    return {
        "torch": base64.b64encode(torch.get_rng_state().numpy().tobytes()).decode(),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_state[0], list(py_state[1]), py_state[2]],
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(torch.frombuffer(bytearray(base64.b64decode(state["torch"])), dtype=torch.uint8))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    p = state["python"]
    random.setstate((p[0], tuple(p[1]), p[2]))


# ------------------------------------------------------------------------------------------------ state dicts
def _opts(full: bool):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=full, cpu_offload=full)


def gather_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, dict]:
    """Full (unsharded, CPU) model and optimizer state dicts keyed by parameter names; collective under FSDP."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict, get_optimizer_state_dict

    return (
        get_model_state_dict(model, options=_opts(True)),
        get_optimizer_state_dict(model, optimizer, options=_opts(True)),
    )


class _Weights:
    """What `save_model` needs from a model: its config and a state dict (here the gathered full one)."""

    def __init__(self, sd: dict[str, torch.Tensor], cfg: ModelConfig) -> None:
        self.cfg, self._sd = cfg, sd

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self._sd


def _is_main() -> bool:
    import torch.distributed as dist

    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


# ------------------------------------------------------------------------------------------------ save
def save_checkpoint(
    root: Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    model_cfg: ModelConfig,
    state: dict[str, Any] | TrainState,
    tokenizer_dir: Path | None = None,
    sharded: bool = False,
) -> Path:
    """Write `root/step-XXXXXXXX` atomically (every rank calls this; rank 0 writes the single files). `state`
    becomes train_state.json through `moxin.records.TrainState` (its `step` must be `step`).

    A failure (e.g. disk full) leaves the previous checkpoints untouched and raises CheckpointError."""
    root, final = Path(root), Path(root) / checkpoint_name(step)
    state = train_state(state, f"the train state of {final}")
    if state.step != step:
        raise CheckpointError(f"save_checkpoint({final.name}): the train state's step is {state.step}, not {step}")
    full = not sharded
    gathered = gather_state(model, optimizer) if full else None
    prev = list_checkpoints(root)
    try:
        if sharded:
            _save_sharded(final, model, optimizer, model_cfg, state, tokenizer_dir)
        elif _is_main():
            with atomic_dir(final, overwrite=True) as tmp:
                _write_files(tmp, gathered, model_cfg, state, tokenizer_dir)
    except OSError as e:
        last = f"{prev[-1][1]} is intact" if prev else "no earlier checkpoint exists"
        why = "disk full" if e.errno == errno.ENOSPC else f"write failed ({e.strerror or e})"
        raise CheckpointError(f"{why} while writing checkpoint {final}; {last}; free space and resume") from None
    _barrier()
    return final


def _write_files(
    tmp: Path, gathered: tuple[dict, dict] | None, model_cfg: ModelConfig, state: TrainState, tokenizer_dir: Path | None
) -> None:
    """`gathered`: the full model and optimizer state dicts (None for a sharded checkpoint: its dcp/ holds them)."""
    if gathered is not None:
        model_sd, optim_sd = gathered
        save_model(_Weights(model_sd, model_cfg), tmp / "model")
        tensors, groups = flatten_optimizer_state(optim_sd)
        write_safetensors(tmp / "optimizer.safetensors", tensors, metadata={"producer": "moxin"})
        state = dataclasses.replace(state, optimizer_groups=groups)
    if tokenizer_dir is not None and Path(tokenizer_dir).is_dir():
        shutil.copytree(tokenizer_dir, tmp / "tokenizer", ignore=shutil.ignore_patterns(".*"))
    write_train_state(tmp, state)
    write_stage_manifest(
        tmp, state.kind, {"checkpoint": checkpoint_name(state.step), "step": state.step, "environment": environment()}
    )


def _save_sharded(final: Path, model, optimizer, model_cfg, state, tokenizer_dir) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict

    tmp = final.with_name(f".tmp-{final.name}-sharded")
    if _is_main():
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    _barrier()
    msd, osd = get_state_dict(model, optimizer, options=_opts(False))
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(tmp / "dcp"))
    _barrier()
    if _is_main():
        groups = [{k: v for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        state = dataclasses.replace(
            state,
            sharded=True,
            world_size=dist.get_world_size() if dist.is_initialized() else 1,
            optimizer_param_groups=json.loads(json.dumps(groups, default=list)),
        )
        with atomic_dir(final, overwrite=True) as out:
            shutil.copytree(tmp / "dcp", out / "dcp")
            atomic_write_json(out / "model_config.json", model_cfg.__dict__)
            _write_files(out, None, model_cfg, state, tokenizer_dir)
        shutil.rmtree(tmp, ignore_errors=True)


# ------------------------------------------------------------------------------------------------ verify, load
def verify(path: Path) -> None:
    """Refuse a checkpoint whose files do not match its manifest, naming the previous good checkpoint."""
    path = Path(path)
    problems = verify_manifest(path)
    if problems:
        good = previous_good(path.parent, before=_step_of(path))
        offer = (
            f"resume from the previous good checkpoint with --resume {good}"
            if good
            else "no earlier checkpoint verifies; start again without --resume"
        )
        raise CheckpointError(f"checkpoint {path} fails its SHA-256 check ({problems[0]}); {offer}")


def _step_of(path: Path) -> int:
    step = parse_step(Path(path).name)
    return step if step is not None else 1 << 62


def previous_good(root: Path, before: int) -> Path | None:
    for step, p in reversed(list_checkpoints(root)):
        if step < before and not verify_manifest(p):
            return p
    return None


def read_state(path: Path) -> dict[str, Any]:
    """train_state.json as a plain dict, read and checked by `moxin.records.read_train_state`."""
    return read_train_state(path).to_dict()


def load_checkpoint(
    path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None, check: bool = True
) -> dict[str, Any]:
    """Verify, then load weights (and optimizer state) into a plain, DDP or FSDP2 model; returns train_state.

    A full checkpoint loads on any world size; a sharded one is resharded by DCP."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict, set_optimizer_state_dict

    path = Path(path)
    if check:
        verify(path)
    state = read_state(path)
    if state.get("sharded"):
        _load_sharded(path, model, optimizer)
        return state
    # torch types the state dict as an invariant dict of its value union; a dict of tensors is one
    sd = cast("dict[str, ValueType]", read_safetensors(path / "model" / "model.safetensors"))
    set_model_state_dict(model, sd, options=_opts(True))
    if optimizer is not None:
        tensors = read_safetensors(path / "optimizer.safetensors")
        osd = unflatten_optimizer_state(tensors, state["optimizer_groups"])
        set_optimizer_state_dict(model, optimizer, osd, options=_opts(True))
    return state


def _load_sharded(path: Path, model, optimizer) -> None:
    import torch.distributed as dist
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_state_dict,
        set_model_state_dict,
        set_state_dict,
    )

    no_dist = not (dist.is_available() and dist.is_initialized())
    if optimizer is None:
        target: dict[str, Any] = {"model": get_model_state_dict(model, options=_opts(False))}
        dcp.load(target, checkpoint_id=str(path / "dcp"), no_dist=no_dist)
        set_model_state_dict(model, target["model"], options=_opts(False))
        return
    msd, osd = get_state_dict(model, optimizer, options=_opts(False))
    target = {"model": msd, "optim": osd}  # dcp.load fills both in place
    dcp.load(target, checkpoint_id=str(path / "dcp"), no_dist=no_dist)
    set_state_dict(
        model, optimizer, model_state_dict=target["model"], optim_state_dict=target["optim"], options=_opts(False)
    )


def consolidate(path: Path) -> Path:
    """Turn a sharded (DCP) checkpoint into the single-file layout (model/ + optimizer.safetensors), in place,
    in one plain process (any world size wrote it). Returns the checkpoint path."""
    from moxin.model.config import from_json_dict
    from moxin.model.transformer import Transformer
    from moxin.train.config import TrainConfig
    from moxin.train.optim import build_optimizer

    path = Path(path)
    verify(path)
    state = read_state(path)
    if not state.get("sharded"):
        return path
    cfg = from_json_dict(json.loads((path / "model_config.json").read_text("utf-8")), str(path / "model_config.json"))
    model = Transformer(cfg)
    tc = TrainConfig()
    opt = build_optimizer(model, tc.lr, tc.weight_decay, (tc.betas[0], tc.betas[1]), tc.eps)
    _load_sharded(path, model, opt)
    gathered = gather_state(model, opt)
    state = {k: v for k, v in state.items() if k not in ("sharded", "optimizer_param_groups")}
    state["consolidated_from_world_size"] = state.pop("world_size", None)
    record = train_state(state, str(path / STATE_NAME))
    tok = path / "tokenizer"
    with atomic_dir(path, overwrite=True) as tmp:
        _write_files(tmp, gathered, cfg, record, tok if tok.is_dir() else None)
    return path


# ------------------------------------------------------------------------------------------------ retention
def prune(root: Path, keep_last: int, keep_every: int, protected: set[int]) -> list[Path]:
    """Delete checkpoints outside the policy: keep the last `keep_last`, every `keep_every`-th step, `protected`
    (phase ends). Returns what was removed. Called only after a new checkpoint was written successfully."""
    if not _is_main():
        return []
    clean_stale_tmp(root)
    ckpts = list_checkpoints(root)
    last = {s for s, _ in ckpts[-keep_last:]}
    removed = []
    for step, p in ckpts:
        if step in last or step in protected or (keep_every and step % keep_every == 0):
            continue
        shutil.rmtree(p, ignore_errors=True)
        removed.append(p)
    return removed
