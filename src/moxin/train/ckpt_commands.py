"""`moxin checkpoint ...` commands. Heavy imports (torch) stay inside the functions; no torch at module level."""

from __future__ import annotations

from pathlib import Path

from moxin.errors import CheckpointError


def sharded_checkpoints(path: Path) -> list[Path]:
    """Sharded (DCP) checkpoints at or under `path`: a checkpoint folder itself, or every one of a run, a release
    or a stage folder (`checkpoints/step-*` with `dcp/` and no `model/`), by stage then step."""
    from moxin.layout import RunLayout, list_checkpoints, parse_step

    path = Path(path)

    def sharded(p: Path) -> bool:
        return (p / "dcp").is_dir() and not (p / "model").is_dir()

    if parse_step(path.name) is not None:
        return [path] if sharded(path) else []
    cands = [c.path for c in RunLayout(path).all_checkpoints()]
    for folder in (path, path / "checkpoints"):  # a stage folder or a checkpoints/ folder given directly
        cands += [p for _, p in list_checkpoints(folder)]
    return list(dict.fromkeys(p for p in cands if sharded(p)))


def consolidate(dir: Path) -> None:  # the CLI shows the parameter name as DIR
    """Turn sharded (FSDP2/DCP) checkpoints into the single-file layout (model/, optimizer.safetensors), in place.

    Each checkpoint is verified against its manifest first and rewritten atomically; its manifest (and so its
    checkpoint sha) changes, since the files change.

    Args:
        dir: a sharded checkpoint (step-XXXXXXXX with dcp/), or a run, stage or release folder: every sharded
            checkpoint under it is consolidated
    """
    from moxin.train.checkpoint import checkpoint_sha
    from moxin.train.checkpoint import consolidate as consolidate_one

    path = Path(dir)
    if not path.exists():
        raise CheckpointError(f"{path} not found; give a sharded checkpoint (step-XXXXXXXX with dcp/) or a run folder")
    found = sharded_checkpoints(path)
    if not found:
        raise CheckpointError(
            f"no sharded checkpoint (step-XXXXXXXX with dcp/ and no model/) at or under {path}; nothing to consolidate"
        )
    for ck in found:
        before = checkpoint_sha(ck)
        consolidate_one(ck)
        print(f"consolidated {ck} (sha {before[:12]}… → {checkpoint_sha(ck)[:12]}…)")
