"""Re-run part of a pretraining run and compare: what `moxin verify --reproduce K..M` calls.

`reproduce(path, K, M)` loads checkpoint K (verified by hash), trains steps K..M-1 in one plain process with the
config, seed and data recorded in the checkpoint, and compares the resulting weights with checkpoint M, tensor by
tensor, and the per-step losses with the run's metrics.jsonl when it is there. The weights are bitwise equal when
the original run used one process, the same precision and the same torch build and thread count; a multi-process
FSDP run re-run in one process matches to float rounding (losses within ~1e-5)."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from moxin.errors import CheckpointError
from moxin.interop.safetensors_io import read_safetensors
from moxin.parallel import Dist
from moxin.train import checkpoint as ckpt
from moxin.train.metrics import read_metrics


@dataclass
class Reproduction:
    from_step: int
    to_step: int
    max_abs_diff: float  # over every weight tensor
    bitwise_equal: bool
    losses: dict[int, float] = field(default_factory=dict)  # re-computed per-step losses
    max_loss_diff: float | None = None  # against metrics.jsonl, when the run's metrics are available


def checkpoints_root(path: Path) -> Path:
    """A folder holding step-XXXXXXXX checkpoints: given directly, or a run / pretrain / release folder."""
    path = Path(path)
    for cand in (path, path / "checkpoints", path / "pretrain" / "checkpoints"):
        if ckpt.list_checkpoints(cand):
            return cand
    raise CheckpointError(f"no step-XXXXXXXX checkpoints under {path} (looked in ., checkpoints/, "
                          f"pretrain/checkpoints/)")


def compare_weights(a: Path, b: Path) -> float:
    """Max |a - b| over all tensors of two model.safetensors files (inf when names or shapes differ)."""
    ta, tb = read_safetensors(Path(a)), read_safetensors(Path(b))
    if set(ta) != set(tb) or any(ta[k].shape != tb[k].shape for k in ta):
        return float("inf")
    return max(float((ta[k].double() - tb[k].double()).abs().max()) if ta[k].numel() else 0.0 for k in ta)


def reproduce(path: Path, from_step: int, to_step: int, data_dir: Path | None = None) -> Reproduction:
    from moxin.layout import checkpoint_name, run_of
    from moxin.train.pretrain import Setup, recorded_data_dir

    root = checkpoints_root(path)
    start, target = root / checkpoint_name(from_step), root / checkpoint_name(to_step)
    for p in (start, target):
        if not p.is_dir():
            have = ", ".join(str(s) for s, _ in ckpt.list_checkpoints(root))
            raise CheckpointError(f"--reproduce {from_step}..{to_step}: {p} does not exist (checkpoints: {have})")
        ckpt.verify(p)
    if to_step <= from_step:
        raise CheckpointError(f"--reproduce {from_step}..{to_step}: the end step must be after the start step")
    state = ckpt.read_state(start)
    home = run_of(start)
    data_dir = data_dir or recorded_data_dir(state["config"], [home] if home is not None else [])
    with tempfile.TemporaryDirectory(prefix="moxin-reproduce-") as tmp:
        setup = Setup.from_info(state["config"], Path(tmp), data_dir)
        dist = Dist()
        model = setup.build_model(dist)
        trainer = setup.trainer(model, dist, log=lambda m: None, progress=False, run_dir=Path(tmp), evaluate=False)
        trainer.resume(start)
        trainer.fit(until=to_step)
        diff = compare_weights(Path(tmp) / "checkpoints" / target.name / "model" / "model.safetensors",
                               target / "model" / "model.safetensors")
        losses = dict(trainer.losses)
    logged = {r["step"]: r["loss"] for r in read_metrics(root.parent / "metrics.jsonl")}
    common = [s for s in losses if s in logged]
    loss_diff = max((abs(losses[s] - logged[s]) for s in common), default=None) if common else None
    return Reproduction(from_step, to_step, diff, diff == 0.0, losses, loss_diff)
