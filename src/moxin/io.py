"""Reading files: compressed streams, JSON documents and JSONL records, with one-line errors that name the file
(and the line). Torch-free: data, eval and release code import it at start-up."""

from __future__ import annotations

import io
import json
import lzma
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from moxin.errors import MoxinError

COMPRESSED = (".gz", ".xz", ".zst", ".bz2")


def strip_compression(name: str) -> str:
    """`a.jsonl.gz` → `a.jsonl`; a name without a compression suffix is returned as it is."""
    for ext in COMPRESSED:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def open_compressed(path: str | Path, mode: str = "rb", fileobj: IO[bytes] | None = None) -> IO:
    """A stream over `path`, decompressing .gz/.xz/.zst/.bz2 on the fly (never the whole file in memory).

    mode "rb" gives bytes, "rt" strict UTF-8 text. `fileobj`, when given, is the already opened raw file (callers
    that measure progress by its compressed position pass their own)."""
    if mode not in ("rb", "rt"):
        raise ValueError(f"open_compressed mode must be 'rb' or 'rt', got {mode!r}")
    name = Path(path).name
    raw = fileobj if fileobj is not None else open(path, "rb")
    try:
        stream = _decompress(name, raw)
    except BaseException:
        raw.close()
        raise
    return io.TextIOWrapper(stream, encoding="utf-8", errors="strict") if mode == "rt" else stream


def _decompress(name: str, raw: IO[bytes]) -> IO[bytes]:
    if name.endswith(".gz"):
        import gzip

        return gzip.open(raw, "rb")
    if name.endswith(".xz"):
        return lzma.open(raw, "rb")
    if name.endswith(".bz2"):
        import bz2

        return bz2.open(raw, "rb")
    if name.endswith(".zst"):
        import zstandard

        return io.BufferedReader(zstandard.ZstdDecompressor().stream_reader(raw, closefd=True))
    return raw


def read_json(path: str | Path, error_cls: type[MoxinError], what: str = "file", hint: str = "") -> Any:
    """The parsed JSON document at `path`; a missing or invalid file raises `error_cls` naming it.

    `what` says what the file is ("release record"); `hint` replaces the default advice on a missing file."""
    path = Path(path)
    try:
        return json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise error_cls(f"{what} not found: {path}; {hint or 'check the path'}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise error_cls(f"{path} is not valid JSON ({e}); the {what} is corrupted: restore or re-create it") from None


def read_jsonl(path: str | Path, error_cls: type[MoxinError], what: str = "") -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, record) for every non-empty line of a JSONL file (compressed or not); a line that is not a
    JSON object raises `error_cls` naming `file:line`, an unreadable file names the file."""
    path = Path(path)
    label = f" ({what})" if what else ""
    try:
        with open_compressed(path, "rt") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise error_cls(f"{path}:{n}{label}: not valid JSON ({e.msg}); fix or remove that line") from None
                if not isinstance(obj, dict):
                    raise error_cls(f"{path}:{n}{label}: expected a JSON object, got {type(obj).__name__}; "
                                    f"each line must hold one record")
                yield n, obj
    except (OSError, EOFError, UnicodeDecodeError, lzma.LZMAError) as e:
        why = f"{type(e).__name__}: {e}"
        raise error_cls(f"{path}{label}: cannot be read ({why}); replace it with a good copy") from None
