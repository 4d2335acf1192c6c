"""The release and verify stages' entry points: `moxin release` / `moxin verify` and `moxin build` call these.

No torch at module level: `build` imports this module at start-up.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from moxin.layout import RunLayout
from moxin.stage import StageResult


def run_release(
    layout: RunLayout,
    out: Path | None = None,
    overrides: list[str] | None = None,
    eval_data_dir: Path | None = None,
    recipe_path: Path | None = None,
    replace: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> StageResult:
    """Bundle the run into `out` (default: `layout.release`). `replace` removes an existing `out` first (what
    the build does: a release is rebuilt whole); otherwise an existing `out` is an error. The MOF audit is in
    `out/mof.json`; the result's notes say what the release could not include."""
    from moxin.release.bundle import build_release

    out = Path(out) if out is not None else layout.release
    if replace and out.exists():
        shutil.rmtree(out)
    rep = build_release(
        layout.root, out, overrides=overrides, progress=progress, eval_data_dir=eval_data_dir, recipe_path=recipe_path
    )
    log(f"release: MOF Class {rep['class']} ({rep['class_name']})")
    return StageResult.done("release", (out / "SHA256SUMS", out / "mof.json"), rep.get("notes", []))


def reproduce_range(layout: RunLayout, wanted: str | None = None) -> str | None:
    """`wanted` (build.reproduce), else the last two pretraining checkpoints of the run or release `layout` (an
    adapt run, which has no pretraining: its last two adapt checkpoints, as 'adapt:K..M')."""
    if wanted:
        return wanted
    steps = [c.step for c in layout.checkpoints("pretrain")]
    if len(steps) < 2 and layout.checkpoints("adapt"):
        steps = [c.step for c in layout.checkpoints("adapt")]
        return f"adapt:{steps[-2]}..{steps[-1]}" if len(steps) >= 2 else None
    return f"{steps[-2]}..{steps[-1]}" if len(steps) >= 2 else None


def run_verify(
    release: Path,
    reproduce: str | None = None,
    tolerance: float | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    digest: str | None = None,
    key: Path | None = None,
    rebuild: bool = False,
) -> StageResult:
    """Verify a release (checksums, MOF class, manifests, the chain of derived files; the published `digest` and
    the `key`'s signature when given; re-run training over `reproduce` K..M; rebuild the whole release when
    `rebuild`). Logs one line per check and its problems; `failed` names the first problem (and how many more)."""
    from moxin.release.verify import verify_release

    checks = verify_release(Path(release), reproduce, tolerance, progress=progress, digest=digest, key=key)
    if rebuild:
        from moxin.release.rebuild import check_rebuild

        checks.append(check_rebuild(Path(release)))
    for c in checks:
        log(f"{c.status} {c.name}: {c.summary}")
        for p in c.problems[:20]:
            log(f"     {p}")
    bad = [p for c in checks for p in c.problems]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        return StageResult.failed("verify", f"verify failed for {release}: {bad[0]}{more}")
    return StageResult.done("verify")
