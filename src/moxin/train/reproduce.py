"""Re-run part of a pretraining or fine-tuning run and compare: what `moxin verify --reproduce [STAGE:]K..M`
calls (`reproduce` for pretraining, `reproduce_stage` for either).

`reproduce(path, K, M)` loads checkpoint K (verified by hash), trains steps K..M-1 in one plain process with the
config, seed and data recorded in the checkpoint, and compares the resulting weights with checkpoint M, tensor by
tensor, and the per-step losses with the run's metrics.jsonl when it is there. The weights are bitwise equal when
the original run used one process, the same precision and the same torch build and thread count; a multi-process
FSDP run re-run in one process matches to float rounding (losses within ~1e-5). A non-finite weight or loss is
never a match: the difference is then inf and the steps are named."""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

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
    stage: str = "pretrain"
    nonfinite: list[str] = field(default_factory=list)  # what was not finite (tensors, steps): always a mismatch


def checkpoints_root(path: Path) -> Path:
    """A folder holding step-XXXXXXXX checkpoints: given directly, or a run / pretrain / release folder."""
    path = Path(path)
    for cand in (path, path / "checkpoints", path / "pretrain" / "checkpoints"):
        if ckpt.list_checkpoints(cand):
            return cand
    raise CheckpointError(
        f"no step-XXXXXXXX checkpoints under {path} (looked in ., checkpoints/, pretrain/checkpoints/)"
    )


def nonfinite_tensors(path: Path) -> list[str]:
    """Names of the tensors of a model.safetensors file holding a NaN or an infinity."""
    return sorted(
        k
        for k, t in read_safetensors(Path(path)).items()
        if t.is_floating_point() and not bool(torch.isfinite(t).all())
    )


def compare_weights(a: Path, b: Path) -> float:
    """Max |a - b| over all tensors of two model.safetensors files: inf when names or shapes differ or when any
    value on either side is not finite (NaN compares false with everything, so it must never pass a tolerance)."""
    ta, tb = read_safetensors(Path(a)), read_safetensors(Path(b))
    if set(ta) != set(tb) or any(ta[k].shape != tb[k].shape for k in ta):
        return float("inf")
    worst = 0.0
    for k in ta:
        if not ta[k].numel():
            continue
        x, y = ta[k].double(), tb[k].double()
        d = float((x - y).abs().max())
        if not math.isfinite(d) or not bool(torch.isfinite(x).all() & torch.isfinite(y).all()):
            return float("inf")
        worst = max(worst, d)
    return worst


def _result(
    stage: str, k: int, m: int, rebuilt: Path, target: Path, losses: dict[int, float], metrics: Path
) -> Reproduction:
    """Compare the re-run's checkpoint `rebuilt` with the published `target`, and its losses with `metrics`."""
    ours, theirs = rebuilt / "model" / "model.safetensors", target / "model" / "model.safetensors"
    diff = compare_weights(ours, theirs)
    bad = [f"re-run {n}" for n in nonfinite_tensors(ours)] + [f"published {n}" for n in nonfinite_tensors(theirs)]
    bad += [f"loss at step {s}" for s, v in sorted(losses.items()) if not math.isfinite(v)]
    logged = {r["step"]: r["loss"] for r in read_metrics(metrics)}
    common = [s for s in losses if s in logged]
    loss_diff = max((abs(losses[s] - logged[s]) for s in common), default=None) if common else None
    if loss_diff is not None and not math.isfinite(loss_diff):
        loss_diff = float("inf")
    if bad:
        diff = float("inf")
    return Reproduction(k, m, diff, diff == 0.0, losses, loss_diff, stage, bad)


def reproduce(path: Path, from_step: int, to_step: int, data_dir: Path | None = None) -> Reproduction:
    from moxin.layout import run_of
    from moxin.train.pretrain import Setup, recorded_data_dir

    root = checkpoints_root(path)
    start, target = _span_dirs(root, f"{from_step}..{to_step}", from_step, to_step)
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
        return _result(
            "pretrain",
            from_step,
            to_step,
            Path(tmp) / "checkpoints" / target.name,
            target,
            dict(trainer.losses),
            root.parent / "metrics.jsonl",
        )


def _span_dirs(root: Path, what: str, from_step: int, to_step: int) -> tuple[Path, Path]:
    from moxin.layout import checkpoint_name

    start, target = root / checkpoint_name(from_step), root / checkpoint_name(to_step)
    for p in (start, target):
        if not p.is_dir():
            have = ", ".join(str(s) for s, _ in ckpt.list_checkpoints(root))
            raise CheckpointError(f"--reproduce {what}: {p} does not exist (checkpoints: {have})")
        ckpt.verify(p)
    if to_step <= from_step:
        raise CheckpointError(f"--reproduce {what}: the end step must be after the start step")
    return start, target


def find_parent(run: Path, start: Path) -> Path:
    """The parent model a fine-tuning checkpoint records (lineage.base), found by its SHA-256 among the run's
    (or release's) checkpoints, else at its recorded path when that still has the recorded hash."""
    from moxin.finetune import lineage as lin
    from moxin.layout import RunLayout
    from moxin.records import recorded_path

    base = (ckpt.read_state(start).get("lineage") or {}).get("base") or {}
    want = base.get("sha256")
    for c in RunLayout(run).all_checkpoints():
        if want and ckpt.checkpoint_sha(c.path) == want:
            return c.path
    for cand in sorted((run / "finetune").glob("*/final")):  # a LoRA stage's merged result
        if want and (cand / "manifest.json").is_file() and ckpt.checkpoint_sha(cand) == want:
            return cand
    if base.get("path") and want and lin.current_sha(base, run) == want:  # run-relative, or as the recipe wrote it
        return recorded_path(base["path"], run)
    raise CheckpointError(
        f"{start}: its parent model (sha256 {str(want)[:12]}…, {base.get('path')}) is not in "
        f"{run} and not at its recorded path; re-running fine-tuning needs the parent's weights"
    )


def reproduce_stage(run: Path, stage: str, from_step: int, to_step: int, data_dir: Path | None = None) -> Reproduction:
    """`reproduce` for any training stage of a run or release: 'pretrain', 'adapt' or 'finetune/<name>'."""
    from moxin.layout import RunLayout

    if stage == "pretrain":
        return reproduce(run, from_step, to_step, data_dir)
    from moxin.finetune.run import reproduce_steps

    layout = RunLayout(Path(run))
    what = f"{stage}:{from_step}..{to_step}"
    start, target = _span_dirs(layout.checkpoints_dir(stage), what, from_step, to_step)
    if stage == "adapt":  # the checkpoint holds every weight (LoRA: the base's too): no parent to find
        from moxin.adapt.run import reproduce_steps as adapt_steps
        from moxin.train.pretrain import recorded_data_dir

        data = data_dir or recorded_data_dir(ckpt.read_state(start)["config"], [layout.root])
        with tempfile.TemporaryDirectory(prefix="moxin-reproduce-") as tmp:
            losses = adapt_steps(start, to_step, Path(tmp), data)
            return _result(
                stage,
                from_step,
                to_step,
                Path(tmp) / "checkpoints" / target.name,
                target,
                losses,
                layout.metrics(stage),
            )
    parent = find_parent(layout.root, start)
    with tempfile.TemporaryDirectory(prefix="moxin-reproduce-") as tmp:
        losses = reproduce_steps(layout.stage_dir(stage), start, to_step, Path(tmp), parent)
        return _result(
            stage, from_step, to_step, Path(tmp) / "checkpoints" / target.name, target, losses, layout.metrics(stage)
        )
