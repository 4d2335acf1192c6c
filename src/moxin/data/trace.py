"""Trace any token of the shards back to its document (raw material traceability).

Addressing: a global token index N counts over the **train** split of every source in **sorted source-name order**
(the order of `tokens.json`), i.e. N = (tokens of all sources sorting before S) + offset within S. Alternatively
give `source` (and `split`), and N is the offset within that source split."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moxin.data.tokens import META_NAME, TokenData
from moxin.errors import DataError


@dataclass
class Trace:
    source: str
    split: str
    offset: int  # within the source split
    token_id: int
    piece: str  # the token as text (byte-level symbols decoded)
    doc_id: str
    doc_index: int  # row in tokens/<source>/<split>-docs.npy
    position: int  # token position within the document (== length - 1 for the EOS)
    is_eos: bool
    text: str
    lang: str
    where: str  # file:line of the raw record
    verified: bool  # re-tokenizing `text` gives `token_id` at `position`


def data_folder(path: str | Path) -> Path:
    """Accept the data folder itself or a run folder holding data/."""
    p = Path(path)
    if (p / META_NAME).is_file():
        return p
    if (p / "data" / META_NAME).is_file():
        return p / "data"
    raise DataError(
        f"{p} is not a tokenized data folder (no {META_NAME} in it or in {p / 'data'}); run `moxin data RECIPE` first"
    )


def locate(td: TokenData, token: int, source: str | None, split: str) -> tuple[str, str, int]:
    """(source, split, offset) for a global or per-source token index."""
    if source is not None:
        n = td.length(source, split)
        if not 0 <= token < n:
            raise DataError(f"--token {token} is outside {source}/{split} (0..{n - 1})")
        return source, split, token
    pos = token
    for s in td.sources:
        n = td.length(s, "train") if "train" in td.splits(s) else 0
        if 0 <= pos < n:
            return s, "train", pos
        pos -= n
    total = sum(td.length(s, "train") for s in td.sources if "train" in td.splits(s))
    raise DataError(
        f"--token {token} is outside the train tokens (0..{total - 1}, sources in sorted order); "
        f"use --source to address one source"
    )


def _processed_record(folder: Path, source: str, split: str, doc_index: int) -> dict:
    proc = folder / "processed"
    flags = np.load(proc / f"{source}.split.npy", allow_pickle=False)
    rows = np.flatnonzero(flags == (1 if split == "val" else 0))
    off, n = np.load(proc / f"{source}.offsets.npy", allow_pickle=False)[int(rows[doc_index])]
    with open(proc / f"{source}.jsonl", "rb") as fh:
        fh.seek(int(off))
        return json.loads(fh.read(int(n)))


def tokenizer_for(folder: Path):
    from tokenizers import Tokenizer

    for cand in (folder.parent / "tokenizer" / "tokenizer.json", folder / "tokenizer" / "tokenizer.json"):
        if cand.is_file():
            return Tokenizer.from_file(str(cand))
    raise DataError(
        f"no tokenizer found beside {folder} (looked for {folder.parent / 'tokenizer'}); "
        f"run `moxin tokenizer` or `moxin data` for this run"
    )


def trace_token(path: str | Path, token: int, source: str | None = None, split: str = "train") -> Trace:
    folder = data_folder(path)
    td = TokenData(folder)
    src, sp, offset = locate(td, token, source, split)
    span = td.document_at(src, offset, sp)
    docs = td.documents(src, sp)
    i = int(np.searchsorted(docs[:, 0], offset, side="right")) - 1
    rec = _processed_record(folder, src, sp, i)
    if rec["id"] != span.doc_id:
        raise DataError(
            f"{folder}: processed/{src}.jsonl and tokens/{src} disagree on document {i} "
            f"({rec['id']!r} vs {span.doc_id!r}); the folder was modified, re-run `moxin data`"
        )
    tid = int(td.read(src, offset, 1, sp)[0])
    pos = offset - span.start
    tok = tokenizer_for(folder)
    ids = tok.encode(rec["text"], add_special_tokens=False).ids + [td.eos_id]
    piece = tok.decode([tid], skip_special_tokens=False)
    return Trace(
        src,
        sp,
        offset,
        tid,
        piece,
        span.doc_id,
        i,
        pos,
        pos == span.length - 1,
        rec["text"],
        rec.get("lang", ""),
        rec.get("where", ""),
        pos < len(ids) and ids[pos] == tid,
    )
