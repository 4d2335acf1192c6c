"""`moxin release`, `moxin mof check`, `moxin verify`. Heavy imports stay inside the functions."""

from __future__ import annotations

import time
from pathlib import Path

from moxin.release.runs import ReleaseError

CLASS_ORDER = {"none": 0, "III": 1, "II": 2, "I": 3}


def _disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def release(
    run: Path,
    out: Path,
    set: list[str] | None = None,
    eval_data_dir: Path | None = None,
    recipe_file: Path | None = None,
    progress: bool = True,
    sign: Path | None = None,
) -> None:
    """Bundle a run into a release: checkpoints, data, code, cards, licences, mof.yml and SHA256SUMS.

    The MOF class is computed from what ends up in OUT, and every licence is audited (see `moxin mof check`).
    Prints the release digest (SHA-256 of SHA256SUMS): publish it where the release cannot rewrite it.

    Args:
        run: the run folder (<run.out_dir>/<run.name>) with data/, pretrain/, finetune/, eval/
        out: the release folder to create (must not exist)
        set: override a [release] value of the recorded recipe, e.g. --set release.model_license=CDLA-Permissive-2.0
        eval_data_dir: the folder holding the evaluation data the results name (default: $MOXIN_EVAL_DATA_DIR)
        recipe_file: the recipe TOML the run was built with, when the run folder does not hold it
        progress: show a progress bar while copying
        sign: an Ed25519 private key (PEM or OpenSSH, unencrypted): write SHA256SUMS.sig, its signature of SHA256SUMS
    """
    import json

    from moxin.layout import RunLayout
    from moxin.release.stage import run_release

    if sign is not None:
        from moxin.release.signing import load_private_key

        load_private_key(Path(sign))  # a bad key fails before the release is built
    t0 = time.perf_counter()
    res = run_release(
        RunLayout(Path(run)),
        out,
        overrides=set,
        eval_data_dir=eval_data_dir,
        recipe_path=recipe_file,
        progress=progress,
        log=lambda m: None,
    )
    rep = json.loads((Path(out) / "mof.json").read_text("utf-8"))
    secs = time.perf_counter() - t0
    print(f"wrote {out} in {secs:.1f} s ({_disk(out) / 2**20:.1f} MiB): MOF Class {rep['class']} ({rep['class_name']})")
    for k, reasons in rep["reasons"].items():
        print(f"  Class {k} not met: " + "; ".join(reasons))
    for note in res.notes:
        print(f"  note: {note}")
    _print_digest(Path(out), sign)


def _print_digest(out: Path, sign: Path | None) -> None:
    from moxin.release.signing import release_digest, sign_release

    if sign is not None:
        sig = sign_release(out, Path(sign))
        print(f"signed: {sig} (Ed25519 signature of SHA256SUMS; check with `moxin verify {out} --key PUB`)")
    print(f"release digest (SHA-256 of SHA256SUMS): {release_digest(out)}")
    print(f"  publish it outside the release; anyone can check with `moxin verify {out} --digest <digest>`")


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
    style = {"open": "green", "warning": "yellow", "fail": "red", "missing": "red", "capped": "red"}
    table = Table(title=f"MOF {rep['framework']['version']}: Class {rep['class']} ({rep['class_name']})")
    for col in ("class", "component", "present", "licence", "verdict", "reason"):
        table.add_column(col, overflow="fold")
    for c in rep["components"]:
        name = c["name"] + (" (optional)" if c["optional"] else "")
        v = c["verdict"]
        table.add_row(
            c["mof_class"],
            name,
            "yes" if c["present"] else "no",
            c["licence"] or "-",
            f"[{style[v]}]{v}[/]",
            c["reason"],
        )
    console = Console(soft_wrap=False, width=160)
    console.print(table)
    for k, reasons in rep["reasons"].items():
        console.print(f"Class {k} not met: " + "; ".join(reasons), highlight=False, markup=False)
    if require and CLASS_ORDER[rep["class"]] < CLASS_ORDER[require]:
        raise ReleaseError(
            f"{out} achieves Class {rep['class']}, below the required Class {require}: "
            + "; ".join(r for rs in rep["reasons"].values() for r in rs)
        )


def verify(
    out: Path,
    reproduce: str | None = None,
    tolerance: float | None = None,
    progress: bool = True,
    digest: str | None = None,
    key: Path | None = None,
    rebuild: bool = False,
) -> None:
    """Verify a release: checksums, MOF class, manifests, every derived file against the chain, and optionally the
    published digest, the signature, re-run training and a whole rebuild. See docs/VERIFY.md for what each check
    protects against.

    Args:
        out: a release folder written by `moxin release`
        reproduce: K..M (checkpoint steps): re-run pretraining from checkpoint K to M and compare the weights;
            STAGE:K..M for another training stage, e.g. finetune/sft:30..60
        tolerance: max |weight difference| accepted (default: 0, bitwise, on CPU; 1e-5 on GPU)
        progress: show a progress bar while hashing
        digest: the release digest the producer published (SHA-256 of SHA256SUMS): fail unless the release has it
        key: the producer's Ed25519 public key (PEM or OpenSSH .pub): fail unless SHA256SUMS.sig is its signature
        rebuild: rebuild the whole release from its own code/, config/recipe.toml and raw data in a temporary
            folder, and compare the release digest (the SHA-256 of SHA256SUMS)
    """
    from moxin.release.signing import release_digest
    from moxin.release.stage import run_verify

    t0 = time.perf_counter()
    res = run_verify(Path(out), reproduce, tolerance, progress=progress, digest=digest, key=key, rebuild=rebuild)
    have = release_digest(Path(out)) if (Path(out) / "SHA256SUMS").is_file() else "none (no SHA256SUMS)"
    print(
        f"release digest (SHA-256 of SHA256SUMS): {have}"
        + ("" if digest else "; compare it with the one the producer published (--digest)")
    )
    if not res.ok:
        raise ReleaseError(res.reason)
    print(f"verified {out} in {time.perf_counter() - t0:.1f} s")
