"""User task folders (`--include-path`) with local data: relative data paths resolve against the YAML's own folder.

lm-eval hands `dataset_kwargs.data_files` to `datasets.load_dataset`, which resolves a relative path against the
process's working directory, so a task folder only works when run from one place. moxin copies the folder (Python
helpers included, so `!function utils.x` still resolves) and rewrites each YAML's relative data paths to absolute
ones, leaving everything else, `!function` tags included, untouched."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from moxin.errors import EvalError

_ROOT = Path(tempfile.gettempdir()) / "moxin-eval-tasks"


class _Func(str):
    """A `!function` value carried through load/dump unchanged."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda loader, node: _Func(loader.construct_scalar(node)))
_Dumper.add_representer(_Func, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def _absolute(value: Any, base: Path) -> Any:
    if isinstance(value, str):
        p = Path(value).expanduser()
        return value if p.is_absolute() or "://" in value else str((base / p).resolve())
    if isinstance(value, list):
        return [_absolute(v, base) for v in value]
    if isinstance(value, dict):
        return {k: _absolute(v, base) for k, v in value.items()}
    return value


def rewrite(cfg: dict[str, Any], base: Path) -> dict[str, Any]:
    kwargs = cfg.get("dataset_kwargs")
    if isinstance(kwargs, dict):
        for key in ("data_files", "data_dir"):
            if key in kwargs:
                kwargs[key] = _absolute(kwargs[key], base)
    path = cfg.get("dataset_path")
    if isinstance(path, str) and path.startswith((".", "~")):  # a local folder or loading script
        cfg["dataset_path"] = _absolute(path, base)
    return cfg


def mirror(folder: Path) -> Path:
    """A copy of `folder` whose YAMLs carry absolute data paths (cached by the folder's content)."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise EvalError(f"--include-path {folder} is not a folder of lm-eval task YAMLs")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256(str(folder).encode())
    for p in files:
        digest.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    dest = _ROOT / digest.hexdigest()[:16]
    if dest.is_dir():
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_ROOT if _ROOT.is_dir() else _mk()))
    for p in files:
        target = tmp / p.relative_to(folder)
        target.parent.mkdir(parents=True, exist_ok=True)
        if p.suffix in (".yaml", ".yml"):
            try:
                cfg = yaml.load(p.read_text("utf-8"), Loader=_Loader)  # noqa: S506 - SafeLoader subclass
            except yaml.YAMLError as e:
                raise EvalError(f"{p} is not valid YAML ({str(e).splitlines()[0]})") from None
            if isinstance(cfg, dict):
                target.write_text(yaml.dump(rewrite(cfg, p.parent), Dumper=_Dumper, allow_unicode=True,
                                            sort_keys=False), "utf-8")
                continue
        shutil.copy2(p, target)
    try:
        tmp.rename(dest)
    except OSError:  # another process made the same copy first
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _mk() -> Path:
    _ROOT.mkdir(parents=True, exist_ok=True)
    return _ROOT
