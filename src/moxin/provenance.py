"""Fingerprints, SHA-256, atomic writes and code-version capture: the building blocks of every manifest."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20
# The process umask, read once: files and folders written through temp names get the permissions a plain open()
# or mkdir() would give them (mkstemp/mkdtemp alone would leave a published release readable by its owner only).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace variation: the input of every fingerprint."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def fingerprint(obj: Any) -> str:
    """SHA-256 of the canonical JSON form of a config, manifest or any JSON-able value."""
    return sha256_bytes(canonical_json(obj).encode("utf-8"))


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every filesystem supports opening directories.
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write via a temp file in the same folder, fsync, then rename: readers see the old or the new file, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.fchmod(fd, 0o666 & ~_UMASK)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n")


def fsync_tree(root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
    for p in sorted([root, *[d for d in root.rglob("*") if d.is_dir()]]):
        _fsync_dir(p)


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `final`; on success fsync it and rename it into place.

    A crash or Ctrl-C leaves only a `.tmp-*` folder, which `clean_stale_tmp` removes; `final` is never half-written.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=final.parent))
    os.chmod(tmp, 0o777 & ~_UMASK)
    try:
        yield tmp
        fsync_tree(tmp)
        if final.exists():
            if not overwrite:
                raise FileExistsError(f"{final} already exists")
            old = final.with_name(f".old-{final.name}-{os.getpid()}")
            os.replace(final, old)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
        _fsync_dir(final.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def clean_stale_tmp(folder: str | os.PathLike) -> None:
    """Remove temp folders that an interrupted `atomic_dir` left behind."""
    folder = Path(folder)
    if folder.is_dir():
        for p in folder.glob(".tmp-*"):
            shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def write_manifest(folder: str | os.PathLike, info: dict[str, Any], name: str = "manifest.json") -> dict[str, Any]:
    """Write `name` in `folder` with `info` plus the SHA-256 of every other file in the folder."""
    folder = Path(folder)
    files = {
        p.relative_to(folder).as_posix(): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != name and not p.name.startswith(".")
    }
    manifest = {**info, "files": files}
    atomic_write_json(folder / name, manifest)
    return manifest


def verify_manifest(folder: str | os.PathLike, name: str = "manifest.json") -> list[str]:
    """Return the problems found (missing or changed files), empty when the folder matches its manifest."""
    folder = Path(folder)
    mpath = folder / name
    if not mpath.is_file():
        return [f"{mpath}: manifest missing"]
    try:
        manifest = json.loads(mpath.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        return [f"{mpath}: unreadable manifest ({e})"]
    problems = []
    for rel, digest in manifest.get("files", {}).items():
        p = folder / rel
        if not p.is_file():
            problems.append(f"{p}: missing")
        elif sha256_file(p) != digest:
            problems.append(f"{p}: SHA-256 mismatch (file changed or corrupted)")
    return problems


def code_version() -> dict[str, Any]:
    """Package version and, when run from a git checkout, the commit and whether the tree is dirty. Code run from
    a release's `code/` folder (no git there) reports the version that folder records in `code/VERSION.json`, so
    a rebuild from a release records the commit the release was built from."""
    from moxin import __version__

    info: dict[str, Any] = {"package": "moxin", "version": __version__, "git_commit": None, "git_dirty": None}
    src = Path(__file__).resolve().parent
    shipped = src.parent.parent / "VERSION.json"  # <release>/code/src/moxin → <release>/code/VERSION.json
    if shipped.is_file() and not (src.parent.parent / ".git").exists():
        try:
            recorded = json.loads(shipped.read_text("utf-8"))
        except (OSError, ValueError):
            recorded = None
        if isinstance(recorded, dict) and recorded.get("package") == "moxin":
            return {**info, **{k: recorded.get(k) for k in ("version", "git_commit", "git_dirty")}}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=src,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        info["git_commit"], info["git_dirty"] = commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def environment() -> dict[str, Any]:
    """Interpreter, platform and key library versions, recorded in every manifest."""
    env: dict[str, Any] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for mod in ("torch", "numpy", "tokenizers", "transformers", "safetensors"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception:
            env[mod] = None
    return env
