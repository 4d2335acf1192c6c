"""Reading files: compressed streams, JSON documents and JSONL records, with one-line errors that name the file
(and the line). Torch-free: data, eval and release code import it at start-up."""

from __future__ import annotations

import io
import json
import lzma
import re
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple, cast

from moxin.errors import MoxinError

COMPRESSED = (".gz", ".xz", ".zst", ".bz2")
MAX_JSON_DEPTH = 64  # nesting a record may have; deeper ones are rejected (deep recursion elsewhere would crash)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")  # a JSON escape of a UTF-16 surrogate (pairs are fine)


class JsonLine(NamedTuple):
    """One parsed JSONL line: `value` (None when rejected), `reason` (a short code, "" when good) and `detail`."""

    value: Any
    reason: str = ""
    detail: str = ""


def parse_json_line(line: str | bytes, want_object: bool = True) -> JsonLine:
    """Parse one JSONL line without ever raising: invalid UTF-8, malformed JSON, nesting deeper than
    MAX_JSON_DEPTH, integers longer than Python converts, lone surrogates (which cannot be written back as UTF-8)
    and (with `want_object`) anything but a JSON object come back as a reason code and a one-line detail."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as e:
            return JsonLine(None, "invalid-utf8", f"invalid UTF-8 at byte {e.start} of the line")
    try:
        value = json.loads(line)
    except json.JSONDecodeError as e:
        return JsonLine(None, "malformed-json", f"{e.msg} at column {e.colno}")
    except RecursionError:
        return JsonLine(None, "too-deep", f"nested deeper than the parser allows (limit {MAX_JSON_DEPTH})")
    except ValueError as e:  # int-str conversion limit: an integer of more than 4300 digits
        return JsonLine(None, "number-too-long", str(e).split(";")[0])
    if want_object and not isinstance(value, dict):
        return JsonLine(None, "not-an-object", f"expected a JSON object, got {type(value).__name__}")
    if line.count("[") + line.count("{") > MAX_JSON_DEPTH and _depth(value) > MAX_JSON_DEPTH:
        return JsonLine(None, "too-deep", f"nested more than {MAX_JSON_DEPTH} levels deep")
    if _SURROGATE_ESCAPE.search(line) and _has_lone_surrogate(value):
        return JsonLine(None, "lone-surrogate", "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff escape)")
    return JsonLine(value)


def _children(v: Any) -> list:
    return list(v.keys()) + list(v.values()) if isinstance(v, dict) else v if isinstance(v, list) else []


def _depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in _children(v))
    return deepest


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return True
        else:
            stack.extend(_children(v))
    return False


def _read_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, lzma.LZMAError)
    try:
        import zstandard

        errors += (zstandard.ZstdError,)
    except ImportError:  # pragma: no cover - zstandard is a dependency, but only .zst files need it
        pass
    return errors


READ_ERRORS = _read_errors()  # what a broken (truncated, corrupt) compressed stream raises while it is read


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

        # typeshed types GzipFile as a BufferedIOBase only (its LZMAFile and BZ2File are IO[bytes] too); it is one
        return cast(IO[bytes], gzip.open(raw, "rb"))
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
    JSON object (see `parse_json_line`) raises `error_cls` naming `file:line`, an unreadable file names the file."""
    path = Path(path)
    label = f" ({what})" if what else ""
    try:
        with open_compressed(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                rec = parse_json_line(line)
                if rec.reason == "malformed-json":
                    raise error_cls(f"{path}:{n}{label}: not valid JSON ({rec.detail}); fix or remove that line")
                if rec.reason:
                    raise error_cls(
                        f"{path}:{n}{label}: {rec.detail} ({rec.reason}); each line must hold one "
                        f"JSON object: fix or remove that line"
                    )
                yield n, rec.value
    except READ_ERRORS as e:
        why = f"{type(e).__name__}: {e}"
        raise error_cls(f"{path}{label}: cannot be read ({why}); replace it with a good copy") from None
