"""`moxin verify OUT`: check a release against itself.

1. checksums: every file listed in SHA256SUMS exists and matches; no file is missing from it (names each one);
2. MOF: the assessment recomputed from the files equals mof.json, and mof.yml is valid for the Model Openness
   Tool's schema and lists exactly the components present;
3. manifests: every checkpoint matches its manifest.json; its data fingerprint is the release data's; each
   lineage parent hash is its parent's checkpoint sha; model/ is the final checkpoint's weights;
4. with `--reproduce K[..M]`: training re-run from checkpoint K to M with the recorded recipe, data order and RNG
   state, weights compared with the published checkpoint M (bitwise on CPU; a stated tolerance on GPU); a
   non-finite difference or loss is a mismatch;
5. chain (moxin.release.chain): every derived file recomputed from what it was derived from;
6. with `--digest HEX`: the SHA-256 of SHA256SUMS is HEX; with `--key PUB`: SHA256SUMS.sig is PUB's signature.

SHA256SUMS.sig (moxin.release.signing) is the one file outside SHA256SUMS. docs/VERIFY.md says what each check
protects against.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.provenance import sha256_file, verify_manifest
from moxin.release.runs import ReleaseError, all_checkpoints, read_json

SUMS = "SHA256SUMS"
SIG = "SHA256SUMS.sig"  # the detached signature: beside SHA256SUMS, not listed in it (moxin.release.signing)
_LINE = re.compile(r"^([0-9a-f]{64}) [ *](.+)$")


@dataclass
class Check:
    name: str
    problems: list[str] = field(default_factory=list)
    summary: str = ""
    skipped: str = ""  # why the check could not run here (said, never a silent pass)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def status(self) -> str:
        return "FAIL" if self.problems else ("skip" if self.skipped else "ok  ")


# ------------------------------------------------------------------------------------------------ checksums
def check_checksums(root: Path, advance: Callable[[int], None] = lambda n: None) -> Check:
    """`advance(bytes)` is called after each file is hashed (for a progress bar)."""
    c = Check("checksums")
    sums = root / SUMS
    if not sums.is_file():
        c.problems.append(f"{SUMS} missing from {root}")
        return c
    listed: dict[str, str] = {}
    for i, line in enumerate(sums.read_text("utf-8").splitlines(), 1):
        m = _LINE.match(line)
        if not m:
            c.problems.append(f"{SUMS}:{i}: not '<sha256>  <path>': {line[:60]!r}")
            continue
        listed[m.group(2)] = m.group(1)
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()} - {SUMS, SIG}
    for rel, digest in sorted(listed.items()):
        if rel not in present:
            c.problems.append(f"missing file: {rel}")
        else:
            if sha256_file(root / rel) != digest:
                c.problems.append(f"changed file: {rel} (SHA-256 differs from {SUMS})")
            advance((root / rel).stat().st_size)
    c.problems += [f"extra file: {rel} (not in {SUMS})" for rel in sorted(present - set(listed))]
    c.summary = f"{len(listed)} files"
    return c


# ------------------------------------------------------------------------------------------------ MOF
_COMPARED = ("present", "licence", "verdict")


def check_mof(root: Path) -> Check:
    import yaml

    from moxin.release.mof import report, validate_schema

    c = Check("MOF")
    stored = read_json(root / "mof.json", "MOF audit") if (root / "mof.json").is_file() else None
    if stored is None:
        c.problems.append("mof.json missing")
        return c
    now = report(root)
    if now["class"] != stored.get("class"):
        why = "; ".join(r for rs in now["reasons"].values() for r in rs)[:200]
        c.problems.append(
            f"mof.json claims Class {stored.get('class')} but the contents give Class {now['class']}"
            + (f" ({why})" if why else "")
        )
    old = {x["name"]: x for x in stored.get("components", [])}
    for comp in now["components"]:
        was = old.get(comp["name"], {})
        diffs = [f"{k} {was.get(k)!r} → {comp[k]!r}" for k in _COMPARED if was.get(k) != comp[k]]
        if diffs:
            c.problems.append(f"mof.json component '{comp['name']}' does not match the contents: {', '.join(diffs)}")
    try:
        doc = yaml.safe_load((root / "mof.yml").read_text("utf-8"))
    except (OSError, yaml.YAMLError) as e:
        c.problems.append(f"mof.yml unreadable ({e})")
        return c
    c.problems += [f"mof.yml: {e}" for e in validate_schema(doc)]
    listed = {x.get("name") for x in (doc.get("release") or {}).get("components") or [] if isinstance(x, dict)}
    present = {x["name"] for x in now["components"] if x["present"]}
    if not c.problems and listed != present:
        c.problems.append(
            f"mof.yml lists {sorted(listed - present, key=str)} not present, omits {sorted(present - listed)}"
        )
    c.summary = f"Class {now['class']}"
    return c


# ------------------------------------------------------------------------------------------------ manifests
def _checkpoint_problems(
    root: Path, ck, fingerprint: str | None, by_sha: dict[str, Any], omitted: set[str]
) -> list[str]:
    rel = ck.path.relative_to(root).as_posix()
    probs = [p.replace(str(ck.path) + "/", "") for p in verify_manifest(ck.path) if not any(o in p for o in omitted)]
    probs = [f"checkpoint {rel}: {p}" for p in probs]
    if ck.stage == "pretrain" and fingerprint and ck.data_fingerprint and ck.data_fingerprint != fingerprint:
        probs.append(
            f"checkpoint {rel}: data fingerprint {ck.data_fingerprint[:12]}… is not the release data's "
            f"{fingerprint[:12]}… (data/tokens.json)"
        )
    base_sha, base_path = ck.base.get("sha256"), str(ck.base.get("path") or "")
    same_name = [p for p in by_sha.values() if base_path and p.path.name == Path(base_path).name and p is not ck]
    if base_sha and same_name and not any(p.sha == base_sha for p in same_name):
        probs.append(
            f"checkpoint {rel}: base model {Path(base_path).name} has sha {same_name[0].sha[:12]}…, not the "
            f"recorded {base_sha[:12]}…"
        )
    parent_sha, parent_path = ck.parent.get("sha256"), str(ck.parent.get("path") or "")
    named = [p for p in by_sha.values() if parent_path and p.path.name == Path(parent_path).name]
    if parent_sha and named and not any(p.sha == parent_sha for p in named):
        probs.append(
            f"checkpoint {rel}: lineage parent {parent_path} has sha {named[0].sha[:12]}…, not the recorded "
            f"{parent_sha[:12]}…"
        )
    return probs


def check_manifests(root: Path) -> Check:
    from moxin.release.runs import data_fingerprint

    c = Check("manifests")
    rel = read_json(root / "release.json", "release record") if (root / "release.json").is_file() else {}
    omitted = set(rel.get("omitted") or [])
    cks = all_checkpoints(root)
    fp = data_fingerprint(root / "data")
    if fp is None:
        c.problems.append("data/tokens.json missing: cannot check the data fingerprint")
    by_sha = {ck.sha: ck for ck in cks}
    for ck in cks:
        c.problems += _checkpoint_problems(root, ck, fp, by_sha, omitted)
    if (root / "data" / "manifest.json").is_file() and "files" in read_json(root / "data" / "manifest.json"):
        c.problems += [f"data: {p.replace(str(root) + '/', '')}" for p in verify_manifest(root / "data")]
    final = rel.get("final_checkpoint") or {}
    from moxin.release.runs import with_merged

    match = [ck for ck in with_merged(cks) if ck.name == final.get("name")]
    if not match:
        c.problems.append(f"release.json's final checkpoint {final.get('name')!r} is not in the release")
    else:
        ck = match[0]
        if final.get("sha256") and ck.sha != final["sha256"]:
            c.problems.append(
                f"checkpoint {ck.path.relative_to(root).as_posix()}: sha {ck.sha[:12]}… is not the "
                f"release.json record {final['sha256'][:12]}…"
            )
        weights = root / "model" / "model.safetensors"
        if weights.is_file() and sha256_file(weights) != sha256_file(ck.path / "model" / "model.safetensors"):
            c.problems.append(f"model/model.safetensors differs from the final checkpoint {ck.name}")
    c.summary = f"{len(cks)} checkpoints, data fingerprint {fp[:12] if fp else 'none'}…"
    return c


# ------------------------------------------------------------------------------------------------ reproduce
def parse_span(text: str, steps: list[int]) -> tuple[int, int]:
    """'K..M' → (K, M); 'K' → (K, the next checkpoint after K)."""
    m = re.fullmatch(r"\s*(\d+)\s*(?:\.\.\s*(\d+))?\s*", text or "")
    if not m:
        raise ReleaseError(f"--reproduce {text!r}: write K..M (checkpoint steps, e.g. --reproduce 2..4) or K")
    k = int(m.group(1))
    if m.group(2):
        return k, int(m.group(2))
    later = [s for s in steps if s > k]
    if not later:
        raise ReleaseError(f"--reproduce {text}: no checkpoint after step {k} (checkpoints: {steps})")
    return k, later[0]


def reproducer() -> Callable[..., Any]:
    """Integration point with the trainer: `moxin.train.reproduce.reproduce(path, K, M, data_dir)` re-runs
    pretraining from checkpoint K to M and returns the max weight difference (see that module)."""
    try:
        from moxin.train.reproduce import reproduce
    except ImportError as e:
        raise ReleaseError(
            f"verify --reproduce needs moxin.train.reproduce, which this installation lacks ({e})"
        ) from None
    return reproduce


def parse_stage(span: str) -> tuple[str, str]:
    """'finetune/sft:30..60' → ('finetune/sft', '30..60'); a plain 'K..M' is pretraining."""
    from moxin.layout import STAGE_RE

    stage, sep, rest = (span or "").rpartition(":")
    if not sep:
        return "pretrain", span
    if not STAGE_RE.match(stage.strip()):
        raise ReleaseError(
            f"--reproduce {span!r}: the stage before ':' must be pretrain, adapt or finetune/<name> "
            f"(e.g. --reproduce finetune/sft:30..60)"
        )
    return stage.strip(), rest


def check_reproduce(root: Path, span: str, tolerance: float | None = None) -> Check:
    """Re-run a training stage K..M from the release's own checkpoints and data; compare with checkpoint M."""
    import math

    import torch

    from moxin.layout import RunLayout

    c = Check("reproduce")
    stage, steps_text = parse_stage(span)
    layout = RunLayout(root)
    steps = [ck.step for ck in layout.checkpoints(stage)] if stage in layout.training_stages() else []
    k, m = parse_span(steps_text, steps)
    for s in (k, m):
        if s not in steps:
            raise ReleaseError(f"--reproduce {span}: no {stage} checkpoint at step {s} in {root} (have {steps})")
    start = layout.checkpoint(stage, k)
    if not (start / "optimizer.safetensors").is_file():
        raise ReleaseError(
            f"--reproduce {span}: {start.relative_to(root)} has no optimizer.safetensors (released "
            "with release.optimizer_state = false?); re-running training needs the optimizer state"
        )
    if stage == "pretrain":
        result = reproducer()(root, k, m, data_dir=root / "data")
    else:
        from moxin.train.reproduce import reproduce_stage

        result = reproduce_stage(root, stage, k, m, data_dir=root / "data")
    target = layout.rel(layout.checkpoint(stage, m))
    tol = 0.0 if tolerance is None and not torch.cuda.is_available() else (tolerance if tolerance is not None else 1e-5)
    diff = float(result.max_abs_diff)
    nonfinite = list(getattr(result, "nonfinite", []) or [])
    if nonfinite:
        c.problems.append(
            f"checkpoint {target}: re-running steps {k}..{m} gives non-finite values ({', '.join(nonfinite[:5])})"
        )
    elif diff > tol or not math.isfinite(diff):
        what = "not bitwise equal" if tol == 0.0 else f"beyond tolerance {tol:g}"
        what = f"{what}, or not finite" if not math.isfinite(diff) else what
        c.problems.append(
            f"checkpoint {target}: re-running steps {k}..{m} gives weights {what} (max |difference| {diff:.3e})"
        )
    c.problems += _loss_problems(result, target, k, m)
    loss = f", max loss difference {result.max_loss_diff:.3e}" if result.max_loss_diff is not None else ""
    where = "" if stage == "pretrain" else f"{stage} "
    c.summary = (
        f"{where}steps {k}..{m}: " + ("bitwise identical" if diff == 0.0 else f"max |difference| {diff:.3e}") + loss
    )
    return c


def _loss_problems(result, target: str, k: int, m: int) -> list[str]:
    """Non-finite re-computed losses, or a non-finite difference to the run's logged losses, are mismatches."""
    losses = getattr(result, "losses", None) or {}
    bad = sorted(s for s, v in losses.items() if not math.isfinite(float(v)))
    probs = (
        [
            f"checkpoint {target}: re-running steps {k}..{m} gives a non-finite loss at step(s) "
            f"{', '.join(map(str, bad[:5]))}"
        ]
        if bad
        else []
    )
    ld = result.max_loss_diff
    if ld is not None and not math.isfinite(float(ld)):
        probs.append(
            f"checkpoint {target}: re-running steps {k}..{m} gives losses whose difference to "
            f"metrics.jsonl is not finite ({ld})"
        )
    return probs


# ------------------------------------------------------------------------------------------------ digest, signature
def check_digest(root: Path, digest: str) -> Check:
    from moxin.release.signing import check_digest_text, release_digest

    c = Check("digest")
    want = check_digest_text("--digest", digest)
    have = release_digest(root) if (root / SUMS).is_file() else None
    if have != want:
        c.problems.append(
            f"{SUMS}: the release digest (SHA-256 of {SUMS}) is {have or 'absent'}, not the "
            f"published {want}: some file of the release differs from the published one"
        )
    c.summary = f"{want} = published"
    return c


def check_signature(root: Path, key: Path) -> Check:
    from moxin.release.signing import verify_signature

    c = Check("signature")
    c.problems = verify_signature(root, Path(key))
    c.summary = f"{SIG} signed by {Path(key).name}"
    return c


# ------------------------------------------------------------------------------------------------ all
def _checksums_with_bar(root: Path) -> Check:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and p.name != SUMS)
    with Progress(
        TextColumn("checksums"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    ) as bar:
        task = bar.add_task("hash", total=total)
        return check_checksums(root, lambda n: bar.advance(task, n))


def verify_release(
    root: Path,
    reproduce: str | None = None,
    tolerance: float | None = None,
    progress: bool = False,
    digest: str | None = None,
    key: Path | None = None,
    chain: bool = True,
) -> list[Check]:
    from moxin.release.chain import check_chain

    root = Path(root)
    if not root.is_dir():
        raise ReleaseError(f"release folder not found: {root}")
    checks = [check_digest(root, digest)] if digest else []
    checks += [check_signature(root, key)] if key else []
    checks += [_checksums_with_bar(root) if progress else check_checksums(root), check_mof(root), check_manifests(root)]
    checks += check_chain(root) if chain else []
    for c in checks:  # a skipped check says so wherever its summary is shown (CLI, the build's verify.txt)
        if c.skipped and not c.summary:
            c.summary = f"skipped: {c.skipped}"
    if reproduce:
        checks.append(check_reproduce(root, reproduce, tolerance))
    return checks
