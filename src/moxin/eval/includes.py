"""User task folders (`--include-path`) with local data: relative data paths resolve against the YAML's own folder.

lm-eval hands `dataset_kwargs.data_files` to `datasets.load_dataset`, which resolves a relative path against the
process's working directory, so a task folder only works when run from one place. moxin copies the folder (Python
helpers included, so `!function utils.x` still resolves) and rewrites each YAML's relative data paths to absolute
ones, leaving everything else, `!function` tags included, untouched. The copies live in a per-user cache and are
checked byte for byte before they are reused."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from moxin.errors import EvalError


class _Func(str):
    """A `!function` value carried through load/dump unchanged."""


class _Loader(yaml.SafeLoader):
    pass


class _Dumper(yaml.SafeDumper):
    pass


_Loader.add_constructor("!function", lambda loader, node: _Func(loader.construct_scalar(node)))
_Dumper.add_representer(_Func, lambda dumper, value: dumper.represent_scalar("!function", str(value)))


def function_tag(name: str) -> str:
    """A value that `dump_yaml` writes as lm-eval's `!function NAME` tag."""
    return _Func(name)


def dump_yaml(cfg: dict[str, Any]) -> str:
    """A task config as YAML text, `function_tag` values as `!function` tags, Unicode kept as it is."""
    return yaml.dump(cfg, Dumper=_Dumper, allow_unicode=True, sort_keys=False)


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


def cache_root() -> Path:
    """The per-user folder of task mirrors: `$XDG_CACHE_HOME/moxin/eval-tasks` (default `~/.cache/...`), private to
    its owner. Never a shared temporary folder, where another user could plant or edit a task YAML."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    root = base / "moxin" / "eval-tasks"
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    st = root.stat()
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise EvalError(
            f"{root} (moxin's task cache) belongs to another user; remove it or set XDG_CACHE_HOME to a "
            f"folder of your own"
        )
    if st.st_mode & 0o022:
        os.chmod(root, 0o700)
    return root


def _content(folder: Path) -> dict[str, bytes]:
    """What the mirror of `folder` holds: its files, with each YAML's relative data paths made absolute."""
    out: dict[str, bytes] = {}
    for p in sorted(p for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
        rel = p.relative_to(folder).as_posix()
        out[rel] = p.read_bytes()
        if p.suffix in (".yaml", ".yml"):
            try:
                cfg = yaml.load(out[rel].decode("utf-8"), Loader=_Loader)
            except (yaml.YAMLError, UnicodeDecodeError) as e:
                raise EvalError(f"{p} is not valid YAML ({str(e).splitlines()[0]})") from None
            if isinstance(cfg, dict):
                text = yaml.dump(rewrite(cfg, p.parent), Dumper=_Dumper, allow_unicode=True, sort_keys=False)
                out[rel] = text.encode("utf-8")
    return out


def _holds(dest: Path, content: dict[str, bytes]) -> bool:
    """Whether `dest` holds exactly `content` (an existing mirror is checked byte for byte before it is used)."""
    have = {p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    return have == set(content) and all((dest / rel).read_bytes() == data for rel, data in content.items())


def mirror(folder: Path) -> Path:
    """A copy of `folder` whose YAMLs carry absolute data paths, in the per-user cache (`cache_root`), named by the
    SHA-256 of the folder's path and content. A cached copy is used only when its bytes are exactly what this
    folder gives now; otherwise it is written again."""
    folder = folder.expanduser().resolve()
    if not folder.is_dir():
        raise EvalError(f"--include-path {folder} is not a folder of lm-eval task YAMLs")
    content = _content(folder)
    digest = hashlib.sha256(str(folder).encode())
    for rel, data in sorted(content.items()):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    root = cache_root()
    dest = root / digest.hexdigest()[:16]
    if dest.is_dir() and _holds(dest, content):
        return dest
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    for rel, data in content.items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_bytes(data)
    if dest.exists():  # a copy that was edited or is incomplete: replace it
        shutil.rmtree(dest, ignore_errors=True)
    try:
        tmp.rename(dest)
    except OSError:  # another process wrote the same copy first: use it only if it is right
        shutil.rmtree(tmp, ignore_errors=True)
        if not _holds(dest, content):
            raise EvalError(f"could not write the task mirror {dest}; remove it and run again") from None
    return dest
