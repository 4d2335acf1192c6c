"""`moxin release`, `moxin mof check`, `moxin verify`. Heavy imports stay inside the functions."""

from __future__ import annotations

import time
from pathlib import Path

from moxin.release.runs import ReleaseError

CLASS_ORDER = {"none": 0, "III": 1, "II": 2, "I": 3}


def _disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def release(run: Path, out: Path, set: list[str] | None = None, eval_data_dir: Path | None = None,  # noqa: A002
            recipe_file: Path | None = None, progress: bool = True) -> None:
    """Bundle a run into a release: checkpoints, data, code, cards, licences, mof.yml and SHA256SUMS.

    The MOF class is computed from what ends up in OUT, and every licence is audited (see `moxin mof check`).

    Args:
        run: the run folder (<run.out_dir>/<run.name>) with data/, pretrain/, finetune/, eval/
        out: the release folder to create (must not exist)
        set: override a [release] value of the recorded recipe, e.g. --set release.model_license=CDLA-Permissive-2.0
        eval_data_dir: the folder holding the evaluation data the results name (default: $MOXIN_EVAL_DATA_DIR)
        recipe_file: the recipe TOML the run was built with, when the run folder does not hold it
        progress: show a progress bar while copying
    """
    from moxin.release.bundle import build_release

    t0 = time.perf_counter()
    rep = build_release(run, out, overrides=set, progress=progress, eval_data_dir=eval_data_dir,
                        recipe_path=recipe_file)
    secs = time.perf_counter() - t0
    print(f"wrote {out} in {secs:.1f} s ({_disk(out) / 2**20:.1f} MiB): MOF Class {rep['class']} "
          f"({rep['class_name']})")
    for k, reasons in rep["reasons"].items():
        print(f"  Class {k} not met: " + "; ".join(reasons))
    for note in rep.get("notes", []):
        print(f"  note: {note}")


def mof_check(out: Path, require: str | None = None) -> None:
    """Print the Model Openness Framework table of a release, computed from its files.

    Args:
        out: a release folder written by `moxin release`
        require: fail (exit 2) unless this class is achieved: I, II or III
    """
    from rich.console import Console
    from rich.table import Table

    from moxin.release.mof import report

    if not Path(out).is_dir():
        raise ReleaseError(f"release folder not found: {out}")
    if require is not None and require not in ("I", "II", "III"):
        raise ReleaseError(f"--require {require!r}: use I, II or III")
    rep = report(Path(out))
    style = {"open": "green", "warning": "yellow", "fail": "red", "missing": "red"}
    table = Table(title=f"MOF {rep['framework']['version']}: Class {rep['class']} ({rep['class_name']})")
    for col in ("class", "component", "present", "licence", "verdict", "reason"):
        table.add_column(col, overflow="fold")
    for c in rep["components"]:
        name = c["name"] + (" (optional)" if c["optional"] else "")
        v = c["verdict"]
        table.add_row(c["mof_class"], name, "yes" if c["present"] else "no", c["licence"] or "-",
                      f"[{style[v]}]{v}[/]", c["reason"])
    console = Console(soft_wrap=False, width=160)
    console.print(table)
    for k, reasons in rep["reasons"].items():
        console.print(f"Class {k} not met: " + "; ".join(reasons), highlight=False, markup=False)
    if require and CLASS_ORDER[rep["class"]] < CLASS_ORDER[require]:
        raise ReleaseError(f"{out} achieves Class {rep['class']}, below the required Class {require}: "
                           + "; ".join(r for rs in rep["reasons"].values() for r in rs))


def verify(out: Path, reproduce: str | None = None, tolerance: float | None = None, progress: bool = True,
           rebuild: bool = False) -> None:
    """Verify a release: checksums, MOF class against the contents, manifests, and optionally re-run training.

    Args:
        out: a release folder written by `moxin release`
        reproduce: K..M (checkpoint steps): re-run pretraining from checkpoint K to M and compare the weights;
            STAGE:K..M for another training stage, e.g. finetune/sft:30..60
        tolerance: max |weight difference| accepted (default: 0, bitwise, on CPU; 1e-5 on GPU)
        progress: show a progress bar while hashing
        rebuild: rebuild the whole release from its own code/, config/recipe.toml and raw data in a temporary
            folder, and compare the release digest (the SHA-256 of SHA256SUMS)
    """
    from moxin.release.verify import verify_release

    t0 = time.perf_counter()
    checks = verify_release(Path(out), reproduce, tolerance, progress=progress)
    if rebuild:
        checks.append(_rebuild_check(Path(out)))
    for c in checks:
        print(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.summary}")
        for p in c.problems[:20]:
            print(f"     {p}")
    bad = [p for c in checks for p in c.problems]
    if bad:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise ReleaseError(f"verify failed for {out}: {bad[0]}{more}")
    print(f"verified {out} in {time.perf_counter() - t0:.1f} s")


def _rebuild_check(out: Path):
    """`verify --rebuild` as one more check: the rebuilt release's digest must equal this one's."""
    from moxin.release.rebuild import rebuild
    from moxin.release.verify import Check

    c = Check("rebuild")
    r = rebuild(out)
    if not r.ok:
        files = ", ".join(r.differing[:10]) + (f" and {len(r.differing) - 10} more" if len(r.differing) > 10 else "")
        c.problems.append(f"the rebuilt release has digest {r.rebuilt_digest[:16]}…, not {r.digest[:16]}…; "
                          f"{len(r.differing)} files differ: {files}")
    c.summary = f"rebuilt in {r.seconds:.0f} s, digest {r.rebuilt_digest[:16]}…" + (" (identical)" if r.ok else "")
    return c
