"""Readers: each source type streams `Document`s in a deterministic order (files sorted, records in file order).

A record that cannot become a document (malformed JSON, invalid UTF-8, missing or non-text field, empty file) is
counted in the ledger with file:line and skipped; nothing is skipped silently. A path that matches nothing is an
error up front, since a typo there would silently train on less data."""

from __future__ import annotations

import glob as globmod
import sysconfig
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from moxin.data.config import SourceConfig
from moxin.data.document import Document, Ledger, reject_record
from moxin.errors import DataError
from moxin.io import READ_ERRORS, open_compressed, parse_json_line, strip_compression
from moxin.provenance import fingerprint, sha256_file

JSONL_EXTS = (".jsonl", ".json", ".ndjson")
HTML_EXTS = (".html", ".htm", ".xhtml")
STDLIB_SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}


# ------------------------------------------------------------------------------------------------ files
class Meter:
    """Bytes of the input files consumed so far (compressed bytes for compressed files): drives the progress bar."""

    def __init__(self) -> None:
        self.base = 0
        self.raw: IO[bytes] | None = None

    @property
    def position(self) -> int:
        raw = self.raw
        try:
            return self.base + (raw.tell() if raw is not None and not raw.closed else 0)
        except (OSError, ValueError):
            return self.base

    def done(self, path: Path) -> None:
        self.raw = None
        self.base += path.stat().st_size


def _open(path: Path, meter: Meter | None = None) -> IO[bytes]:
    """A binary stream over a (possibly compressed) file whose compressed position `meter` follows."""
    raw = open(path, "rb")
    if meter is not None:
        meter.raw = raw
    return open_compressed(path, fileobj=raw)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    """The stdlib's .py files without tests and installed packages, sorted by relative path. os.walk prunes the
    skipped folders (site-packages alone can hold more files than the stdlib). `_sysconfigdata*.py` is left out: it
    is generated when the interpreter is built and records that machine's install paths, not library code."""
    import os

    root = stdlib_root()
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in STDLIB_SKIP_DIRS)
        for name in filenames:
            if name.endswith(".py") and not name.startswith(("test_", "_sysconfigdata")):
                out.append(Path(dirpath) / name)
    return sorted(out, key=lambda p: p.relative_to(root).as_posix())


def source_files(cfg: SourceConfig, where: str = "data.sources") -> list[Path]:
    """The files a source reads, sorted. Raises DataError (naming the key and value) if there are none."""
    if cfg.type == "python-stdlib":
        return _stdlib_files()
    if cfg.type == "hf":
        p = Path(cfg.path)
        return sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else []
    p = Path(cfg.path)
    if any(ch in cfg.path for ch in "*?["):
        files = sorted(Path(f) for f in globmod.glob(cfg.path, recursive=True) if Path(f).is_file())
    elif p.is_dir():
        files = sorted(
            f for f in p.rglob("*") if f.is_file() and not any(x.startswith(".") for x in f.relative_to(p).parts)
        )
        files = [f for f in files if _wanted(cfg, f)]
    elif p.is_file():
        files = [p]
    else:
        raise DataError(
            f"{where}: source {cfg.name!r} path {cfg.path!r} does not exist; fix "
            f"data.sources path (relative paths resolve against the recipe file)"
        )
    if not files:
        raise DataError(
            f"{where}: source {cfg.name!r} path {cfg.path!r} matches no {cfg.type} files; check the glob or folder"
        )
    return files


def _wanted(cfg: SourceConfig, f: Path) -> bool:
    base = strip_compression(f.name)
    if cfg.type == "jsonl":
        return base.endswith(JSONL_EXTS)
    if cfg.type == "parquet":
        return base.endswith(".parquet")
    return True


def source_fingerprint(cfg: SourceConfig, where: str = "data.sources") -> dict:
    """SHA-256 over the sorted (relative path, file SHA-256) list, plus the file count and bytes."""
    if cfg.type == "hf" and not Path(cfg.path).is_dir():
        ident = {"dataset": cfg.path, "config": cfg.hf_name, "split": cfg.hf_split}
        return {"fingerprint": fingerprint(ident), "files": 0, "bytes": 0, "remote": True}
    files = source_files(cfg, where)
    base = stdlib_root() if cfg.type == "python-stdlib" else _common_root(files)
    entries = [(f.relative_to(base).as_posix(), sha256_file(f)) for f in files]
    return {"fingerprint": fingerprint(entries), "files": len(files), "bytes": sum(f.stat().st_size for f in files)}


def _common_root(files: list[Path]) -> Path:
    return files[0].parent if len(files) == 1 else Path(_commonpath([str(f) for f in files]))


def _commonpath(paths: list[str]) -> str:
    import os

    return os.path.commonpath(paths)


# ------------------------------------------------------------------------------------------------ readers
def read_source(
    cfg: SourceConfig,
    ledger: Ledger,
    where: str = "data.sources",
    meter: Meter | None = None,
    only: set[int] | None = None,
) -> Iterator[Document]:
    """Stream the documents of one source, recording unreadable records in `ledger`. `only`: read just these
    file indices (of `source_files`), for sharded runs (moxin.data.scale)."""
    reader = {
        "jsonl": _read_jsonl,
        "text": _read_text,
        "parquet": _read_parquet,
        "python-stdlib": _read_stdlib,
        "hf": _read_hf,
    }[cfg.type]
    for n, doc in enumerate(reader(cfg, ledger, where, meter or Meter(), only), 1):
        doc.metadata.setdefault("source", cfg.name)
        yield doc
        if cfg.max_docs and n >= cfg.max_docs:
            return


def _read_jsonl(
    cfg: SourceConfig, ledger: Ledger, where: str, meter: Meter, only: set[int] | None
) -> Iterator[Document]:
    for f, rel in _selected(cfg, where, only):
        yield from _jsonl_file(cfg, ledger, f, rel, meter)


def _jsonl_file(cfg: SourceConfig, ledger: Ledger, f: Path, rel: str, meter: Meter) -> Iterator[Document]:
    empty, lineno, offset = True, 0, 0
    try:
        with _open(f, meter) as fh:
            for lineno, raw in enumerate(fh, 1):
                offset += len(raw)
                if not raw.strip():
                    continue
                empty = False
                doc = _jsonl_record(cfg, ledger, f, rel, lineno, raw)
                if doc is not None:
                    yield doc
    except READ_ERRORS as e:
        _stream_error(cfg, ledger, f, rel, lineno, offset, e)
        return
    meter.done(f)
    if empty:
        ledger.error(cfg.name, "empty-file", f"{cfg.name}/{rel}:1", "file has no records", reject=reject_record(rel, 0))


def _stream_error(
    cfg: SourceConfig, ledger: Ledger, f: Path, rel: str, lineno: int, offset: int, e: BaseException
) -> None:
    """A file that cannot be opened, or a compressed stream that breaks off (truncated or corrupt): one read error
    with the byte offset (of the decompressed text) where reading stopped; the rest of the file is not read."""
    why = f"{type(e).__name__}: {e}"
    if lineno == 0 and offset == 0:
        ledger.error(cfg.name, "unreadable-file", f"{cfg.name}/{rel}", why, reject=reject_record(rel, 0, error=why))
        return
    msg = (
        f"stream breaks off after byte {offset} (line {lineno}; {why}); the rest of the file was not read: "
        f"replace it with a complete copy"
    )
    ledger.error(
        cfg.name,
        "truncated-stream",
        f"{cfg.name}/{rel}:{lineno + 1}",
        msg,
        reject=reject_record(rel, lineno + 1, byte_offset=offset, error=why),
    )


def _jsonl_record(cfg: SourceConfig, ledger: Ledger, f: Path, rel: str, lineno: int, raw: bytes) -> Document | None:
    at = f"{cfg.name}/{rel}:{lineno}"
    rec = parse_json_line(raw)
    if rec.reason:
        ledger.error(cfg.name, rec.reason, at, rec.detail, reject=reject_record(rel, lineno, raw))
        return None
    return _record_doc(cfg, ledger, rec.value, at, f"{cfg.name}/{rel}:{lineno}", reject_record(rel, lineno, raw))


def _record_doc(
    cfg: SourceConfig, ledger: Ledger, rec: dict, at: str, default_id: str, reject: dict
) -> Document | None:
    if cfg.text_field not in rec:
        ledger.error(
            cfg.name,
            "missing-field",
            at,
            f"no field {cfg.text_field!r} (fields: {', '.join(sorted(rec))[:120]}); set text_field",
            reject=reject,
        )
        return None
    text = rec[cfg.text_field]
    if not isinstance(text, str):
        ledger.error(
            cfg.name, "not-text", at, f"field {cfg.text_field!r} is {type(text).__name__}, not a string", reject=reject
        )
        return None
    if not text.strip():
        ledger.error(cfg.name, "empty-text", at, f"field {cfg.text_field!r} is empty", reject=reject)
        return None
    if _lone_surrogate(text):  # parquet and hf strings can hold them too; they cannot be written as UTF-8
        ledger.error(
            cfg.name, "lone-surrogate", at, f"field {cfg.text_field!r} holds a lone UTF-16 surrogate", reject=reject
        )
        return None
    doc_id = f"{cfg.name}/{rec[cfg.id_field]}" if cfg.id_field and rec.get(cfg.id_field) is not None else default_id
    return Document(doc_id, text, {"where": at})


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _selected(cfg: SourceConfig, where: str, only: set[int] | None) -> Iterator[tuple[Path, str]]:
    """The source's files to read (all, or those numbered in `only`), each with its path relative to their root."""
    files = source_files(cfg, where)
    root = _common_root(files)
    for k, f in enumerate(files):
        if only is None or k in only:
            yield f, f.relative_to(root).as_posix()


def _decode_text(cfg: SourceConfig, ledger: Ledger, rel: str, data: bytes) -> str:
    """Text files: invalid UTF-8 bytes become U+FFFD, counted with the line of the first bad byte."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        ledger.error(
            cfg.name,
            "invalid-utf8-replaced",
            f"{cfg.name}/{rel}:{line}",
            f"invalid UTF-8 at byte {e.start}; bad bytes replaced with U+FFFD",
            lost=False,
        )
        return data.decode("utf-8", errors="replace")


def _read_text(
    cfg: SourceConfig, ledger: Ledger, where: str, meter: Meter, only: set[int] | None
) -> Iterator[Document]:
    for f, rel in _selected(cfg, where, only):
        base = strip_compression(f.name).lower()
        if base.endswith(JSONL_EXTS):  # a folder of a user's files mixes JSONL records in with text
            yield from _jsonl_file(cfg, ledger, f, rel, meter)
            continue
        try:
            with _open(f) as fh:
                data = fh.read()
        except READ_ERRORS as e:
            why = f"{type(e).__name__}: {e}"
            ledger.error(cfg.name, "unreadable-file", f"{cfg.name}/{rel}", why, reject=reject_record(rel, 0, error=why))
            continue
        finally:
            meter.done(f)
        if not data.strip():
            ledger.error(cfg.name, "empty-file", f"{cfg.name}/{rel}:1", "file is empty", reject=reject_record(rel, 0))
            continue
        text = _decode_text(cfg, ledger, rel, data)
        if base.endswith(HTML_EXTS):
            text = html_text(text)
        if not cfg.doc_chars:
            yield Document(f"{cfg.name}/{rel}", text, {"where": f"{cfg.name}/{rel}:1"})
            continue
        for k, (line, chunk) in enumerate(_chunks(text, cfg.doc_chars)):
            yield Document(f"{cfg.name}/{rel}#{k}", chunk, {"where": f"{cfg.name}/{rel}:{line}"})


def html_text(markup: str) -> str:
    """The visible text of an HTML page: tags, scripts and styles dropped, block elements as line breaks."""
    from html.parser import HTMLParser

    blocks = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article", "pre"}

    class Text(HTMLParser):
        def __init__(self) -> None:
            super().__init__(convert_charrefs=True)
            self.parts: list[str] = []
            self.hidden = 0

        def handle_starttag(self, tag: str, attrs) -> None:
            self.hidden += tag in ("script", "style")
            if tag in blocks:
                self.parts.append("\n")

        def handle_endtag(self, tag: str) -> None:
            self.hidden -= tag in ("script", "style") and self.hidden > 0

        def handle_data(self, data: str) -> None:
            if not self.hidden:
                self.parts.append(data)

    parser = Text()
    parser.feed(markup)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


def _chunks(text: str, limit: int) -> Iterator[tuple[int, str]]:
    """Pack blank-line-separated paragraphs into chunks of at most `limit` chars (a longer paragraph stands
    alone); yields (first line number, chunk)."""
    paras = text.split("\n\n")
    buf: list[str] = []
    size, line, start = 0, 1, 1
    for p in paras:
        if buf and size + len(p) + 2 > limit:
            yield start, "\n\n".join(buf)
            buf, size, start = [], 0, line
        buf.append(p)
        size += len(p) + 2
        line += p.count("\n") + 2
    if buf and "".join(buf).strip():
        yield start, "\n\n".join(buf)


def _read_stdlib(
    cfg: SourceConfig, ledger: Ledger, where: str, meter: Meter, only: set[int] | None
) -> Iterator[Document]:
    root = stdlib_root()
    for k, f in enumerate(_stdlib_files()):
        if only is not None and k not in only:
            continue
        data = f.read_bytes()
        meter.done(f)
        if not data.strip():
            continue  # empty __init__.py files: not records, nothing to count
        rel = f.relative_to(root).as_posix()
        text = _decode_text(cfg, ledger, rel, data)
        yield Document(f"{cfg.name}/{rel}", text, {"where": f"{cfg.name}/{rel}:1", "kind": "code"})


def _read_parquet(
    cfg: SourceConfig, ledger: Ledger, where: str, meter: Meter, only: set[int] | None
) -> Iterator[Document]:
    import pyarrow.parquet as pq

    for f, rel in _selected(cfg, where, only):
        try:
            pf = pq.ParquetFile(f)
        except Exception as e:
            why = f"not a Parquet file ({type(e).__name__}: {e})"
            ledger.error(cfg.name, "unreadable-file", f"{cfg.name}/{rel}", why, reject=reject_record(rel, 0, error=why))
            continue
        names = pf.schema_arrow.names
        if cfg.text_field not in names:
            ledger.error(
                cfg.name,
                "missing-field",
                f"{cfg.name}/{rel}:0",
                f"no column {cfg.text_field!r} (columns: {', '.join(names)}); set text_field",
                reject=reject_record(rel, 0),
            )
            continue
        cols = [cfg.text_field] + ([cfg.id_field] if cfg.id_field in names else [])
        row = 0
        for batch in pf.iter_batches(batch_size=1024, columns=cols):
            for rec in batch.to_pylist():
                row += 1
                doc = _record_doc(
                    cfg, ledger, rec, f"{cfg.name}/{rel}:row {row}", f"{cfg.name}/{rel}:{row}", reject_record(rel, row)
                )
                if doc is not None:
                    yield doc
        meter.done(f)


def _read_hf(cfg: SourceConfig, ledger: Ledger, where: str, meter: Meter, only: set[int] | None) -> Iterator[Document]:
    """Hugging Face `datasets`: a local `save_to_disk` folder, or a hub dataset when the hub is reachable."""
    if only is not None and 0 not in only:  # one stream: the shard holding "file" 0 reads it
        return
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"{where}: source {cfg.name!r} has type 'hf' but the `datasets` package is not installed; "
            f"pip install datasets"
        ) from None
    try:
        if Path(cfg.path).is_dir():
            ds = datasets.load_from_disk(cfg.path)
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[cfg.hf_split]
        else:
            ds = datasets.load_dataset(cfg.path, cfg.hf_name or None, split=cfg.hf_split, streaming=True)
    except Exception as e:
        raise DataError(
            f"{where}: source {cfg.name!r}: cannot load Hugging Face dataset {cfg.path!r} "
            f"({type(e).__name__}: {str(e)[:160]}); it is used only when reachable: use a local copy "
            f"(save_to_disk folder or JSONL) or remove the source"
        ) from None
    for i, rec in enumerate(ds):
        doc = _record_doc(
            cfg, ledger, rec, f"{cfg.path}:row {i + 1}", f"{cfg.name}/{i}", reject_record(Path(cfg.path).name, i + 1)
        )
        if doc is not None:
            yield doc
