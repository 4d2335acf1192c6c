"""`moxin verify RELEASE --rebuild`: rebuild the whole release from its own code/, config/recipe.toml and the raw
data the recipe names, in a temporary folder, and compare the release digest (the SHA-256 of SHA256SUMS).

The build runs in a subprocess with PYTHONPATH set to a copy of the release's `code/src`, so it is the release's
code, not the installed moxin, that builds. Before anything runs, every input the recipe names is looked up (raw
data sources, decontamination sets, fine-tuning data, a parent model given by path, evaluation data): a rebuild
that cannot succeed fails at once, naming what is missing. No torch here: `moxin verify` imports this module."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.provenance import sha256_file
from moxin.release.runs import ReleaseError
from moxin.release.verify import Check

SUMS = "SHA256SUMS"
RECIPE = Path("config") / "recipe.toml"
CODE = Path("code") / "src" / "moxin"
_STAGE_NAMES = ("pretrain", "sft", "dpo", "grpo")


@dataclass
class Rebuild:
    digest: str  # the release's: SHA-256 of its SHA256SUMS
    rebuilt_digest: str
    seconds: float
    differing: list[str] = field(default_factory=list)  # files whose SHA-256 differs, or present on one side only

    @property
    def ok(self) -> bool:
        return self.digest == self.rebuilt_digest


def release_digest(root: Path) -> str:
    return sha256_file(Path(root) / SUMS)


def _inputs(recipe: dict[str, Any]) -> list[tuple[str, str]]:
    """(recipe key, path as written) of every local input a build reads, besides the release's own files."""
    out: list[tuple[str, str]] = []
    data = recipe.get("data") or {}
    for i, s in enumerate(data.get("sources") or []):
        local = s.get("type") != "hf" or str(s.get("path", "")).startswith((".", "/", "~"))  # else a hub name
        if s.get("type") != "python-stdlib" and s.get("path") and local:
            out.append((f"data.sources[{i}] ({s.get('name')}).path", str(s["path"])))
    for i, e in enumerate(data.get("decontaminate") or []):
        out.append((f"data.decontaminate[{i}].path", str(e.get("path", ""))))
    ft = recipe.get("finetune") or {}
    for i, e in enumerate(ft.get("decontaminate") or []):
        out.append((f"finetune.decontaminate[{i}].path", str(e.get("path", ""))))
    for key in ("parent", "tokenizer"):
        if ft.get(key) and ft[key] not in _STAGE_NAMES:
            out.append((f"finetune.{key}", str(ft[key])))
    for mode in ("sft", "dpo", "grpo"):
        m = ft.get(mode) or {}
        if m.get("parent") and m["parent"] not in _STAGE_NAMES:
            out.append((f"finetune.{mode}.parent", str(m["parent"])))
        for i, d in enumerate(m.get("data") or []):
            if "{run}" not in str(d.get("path", "")):
                out.append((f"finetune.{mode}.data[{i}].path", str(d.get("path", ""))))
    if (recipe.get("eval") or {}).get("data_dir"):
        out.append(("eval.data_dir", str(recipe["eval"]["data_dir"])))
    return out


def missing_inputs(root: Path) -> list[str]:
    """What a rebuild of the release needs and does not find: code/, config/recipe.toml, raw inputs (each named
    with its recipe key and where it was looked for). Empty when a rebuild can start."""
    root = Path(root)
    missing = []
    if not (root / CODE / "cli.py").is_file():
        missing.append(f"{CODE.parent.parent}/ (the moxin source that built the release: {CODE}/cli.py)")
    if not (root / RECIPE).is_file():
        missing.append(f"{RECIPE} (the recipe; a release built without one has only config/run.json)")
        return missing
    try:
        recipe = tomllib.loads((root / RECIPE).read_text("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        return [*missing, f"{RECIPE} is not valid TOML ({e})"]
    for key, written in _inputs(recipe):
        p = Path(written).expanduser()
        p = p if p.is_absolute() else Path(os.path.normpath((root / RECIPE).parent / p))
        base = Path(str(p).split("*")[0]) if "*" in str(p) else p  # a glob: its fixed part must exist
        if not base.exists():
            missing.append(f"raw input {key} = {written!r} ({p} not found)")
    if not (root / SUMS).is_file():
        missing.append(f"{SUMS} (the digest to compare with)")
    return missing


def _differing(a: Path, b: Path) -> list[str]:
    def table(p: Path) -> dict[str, str]:
        rows = (line.split(None, 1) for line in p.read_text("utf-8").splitlines() if line.strip())
        return {name.lstrip("*").strip(): digest for digest, name in rows}

    ta, tb = table(a), table(b)
    return sorted(k for k in set(ta) | set(tb) if ta.get(k) != tb.get(k))


def rebuild(root: Path, workdir: Path | None = None, timeout: float | None = None,
            keep: bool = False) -> Rebuild:
    """Rebuild `root` into a temporary folder (under `workdir` when given) and compare the digests. The folder
    is removed afterwards unless `keep`. Raises ReleaseError naming what is missing, or the build's last error."""
    root = Path(root).resolve()
    missing = missing_inputs(root)
    if missing:
        raise ReleaseError(f"cannot rebuild {root}: missing {'; '.join(missing)}")
    recipe = tomllib.loads((root / RECIPE).read_text("utf-8"))
    name = (recipe.get("run") or {}).get("name")
    tmp = Path(tempfile.mkdtemp(prefix="moxin-rebuild-", dir=workdir))
    try:
        # the whole code/ folder: the build copies its own source tree (src/ with README, pyproject) into code/
        shutil.copytree(root / "code", tmp / "code")
        env = dict(os.environ, PYTHONPATH=str(tmp / "code" / "src"), PYTHONDONTWRITEBYTECODE="1")
        cmd = [sys.executable, "-m", "moxin.cli", "build", str(root / RECIPE), "--out", str(tmp / "out")]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True, timeout=timeout,
                              check=False)
        secs = time.perf_counter() - t0
        rebuilt = tmp / "out" / str(name) / "release"
        if proc.returncode != 0 or not (rebuilt / SUMS).is_file():
            last = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["no output"])[-1]
            raise ReleaseError(f"rebuilding {root} with its own code failed (exit {proc.returncode}): {last[:300]}")
        return Rebuild(release_digest(root), release_digest(rebuilt), secs, _differing(root / SUMS, rebuilt / SUMS))
    finally:
        if not keep:
            shutil.rmtree(tmp, ignore_errors=True)


def check_rebuild(out: Path) -> Check:
    """`verify --rebuild` as one more check: the rebuilt release's digest must equal this one's."""
    c = Check("rebuild")
    r = rebuild(out)
    if not r.ok:
        files = ", ".join(r.differing[:10]) + (f" and {len(r.differing) - 10} more" if len(r.differing) > 10 else "")
        c.problems.append(f"the rebuilt release has digest {r.rebuilt_digest[:16]}…, not {r.digest[:16]}…; "
                          f"{len(r.differing)} files differ: {files}")
    c.summary = f"rebuilt in {r.seconds:.0f} s, digest {r.rebuilt_digest[:16]}…" + (" (identical)" if r.ok else "")
    return c
