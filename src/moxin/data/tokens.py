"""Token shards on disk: the contract between the data stage (which writes them) and training, evaluation and
tracing (which read them).

Layout of a tokenized data folder::

    tokens.json                      dtype, vocab_size, eos_id, and per source and split: shards (file, tokens,
                                     sha256) and document count. Its SHA-256 is the data fingerprint.
    tokens/<source>/<split>-00000.bin   flat little-endian token ids (uint16 if the vocab fits, else uint32);
                                     each document is followed by eos_id
    tokens/<source>/<split>-docs.npy     int64 (n_docs, 2): start offset within the source split, length (EOS incl.)
    tokens/<source>/<split>-ids.txt      one document id per line, in the same order

Every token is addressed by (source, split, offset); `TokenData.document_at` maps it back to its document.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from moxin.errors import DataError
from moxin.provenance import atomic_write_bytes, atomic_write_json, sha256_bytes, sha256_file

META_NAME = "tokens.json"


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass(frozen=True)
class DocSpan:
    source: str
    split: str
    doc_id: str
    start: int  # offset of the document's first token within the source split
    length: int  # tokens, EOS included

    @property
    def end(self) -> int:
        return self.start + self.length


class _Stream:
    """One (source, split) being written: the current shard buffer and the document table."""

    def __init__(self, folder: Path, split: str, dtype: np.dtype, shard_tokens: int) -> None:
        self.folder, self.split, self.dtype, self.shard_tokens = folder, split, dtype, shard_tokens
        self.buf: list[np.ndarray] = []
        self.buffered = 0
        self.offset = 0
        self.shards: list[dict] = []
        self.docs: list[tuple[int, int]] = []
        self.ids: list[str] = []

    def add(self, doc_id: str, ids: np.ndarray) -> None:
        self.docs.append((self.offset, len(ids)))
        self.ids.append(doc_id)
        self.offset += len(ids)
        self.buf.append(ids)
        self.buffered += len(ids)
        while self.buffered >= self.shard_tokens:
            self._flush(self.shard_tokens)

    def _flush(self, n: int) -> None:
        flat = np.concatenate(self.buf) if len(self.buf) > 1 else self.buf[0]
        head, rest = flat[:n], flat[n:]
        name = f"{self.split}-{len(self.shards):05d}.bin"
        data = head.astype(self.dtype.newbyteorder("<"), copy=False).tobytes()
        atomic_write_bytes(self.folder / name, data)
        self.shards.append({"file": name, "tokens": len(head), "sha256": sha256_bytes(data)})
        self.buf, self.buffered = ([rest] if len(rest) else []), len(rest)

    def close(self) -> dict:
        if self.buffered:
            self._flush(self.buffered)
        table = np.asarray(self.docs, dtype=np.int64).reshape(-1, 2)
        bio = io.BytesIO()
        np.save(bio, table)
        atomic_write_bytes(self.folder / f"{self.split}-docs.npy", bio.getvalue())
        ids_text = "".join(i.replace("\n", " ") + "\n" for i in self.ids)
        atomic_write_bytes(self.folder / f"{self.split}-ids.txt", ids_text.encode("utf-8"))
        return {
            "shards": self.shards,
            "tokens": int(self.offset),
            "documents": len(self.ids),
            "docs_sha256": sha256_file(self.folder / f"{self.split}-docs.npy"),
            "ids_sha256": sha256_bytes(ids_text.encode("utf-8")),
        }


class TokenWriter:
    """Append documents (already tokenized) per source and split; `close()` writes tokens.json.

    Documents must be added in a deterministic order: the bytes of the shards depend on it."""

    def __init__(self, folder: str | Path, vocab_size: int, eos_id: int, shard_tokens: int = 1 << 24) -> None:
        self.folder = Path(folder)
        self.vocab_size, self.eos_id, self.shard_tokens = vocab_size, eos_id, shard_tokens
        self.dtype = token_dtype(vocab_size)
        self.streams: dict[tuple[str, str], _Stream] = {}
        self.finished: dict[tuple[str, str], dict] = {}

    def add(self, source: str, split: str, doc_id: str, ids) -> None:
        """Store one document's token ids; EOS is appended here."""
        key = (source, split)
        if key in self.finished:
            raise DataError(f"TokenWriter: source {source!r} was already finished; add all its documents first")
        if key not in self.streams:
            self.streams[key] = _Stream(self.folder / "tokens" / source, split, self.dtype, self.shard_tokens)
        arr = np.empty(len(ids) + 1, dtype=np.int64)
        arr[:-1] = ids
        arr[-1] = self.eos_id
        self.streams[key].add(doc_id, arr)

    def finish(self, source: str) -> None:
        """Write out a source's last partial shards now (optional; `close` does it otherwise). Bounds memory to
        one shard buffer per split of the source being written, however many sources there are."""
        for key in sorted(k for k in self.streams if k[0] == source):
            self.finished[key] = self.streams.pop(key).close()

    def close(self) -> dict:
        meta: dict[str, Any] = {
            "format": 1,
            "dtype": self.dtype.name,
            "vocab_size": self.vocab_size,
            "eos_id": self.eos_id,
            "shard_tokens": self.shard_tokens,
            "sources": {},
        }
        for key in list(self.streams):
            self.finished[key] = self.streams.pop(key).close()
        for (source, split), info in sorted(self.finished.items()):
            meta["sources"].setdefault(source, {})[split] = info
        atomic_write_json(self.folder / META_NAME, meta)
        return meta


class TokenData:
    """Read-only view of a tokenized data folder (shards are memory-mapped, nothing is loaded up front)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        path = self.folder / META_NAME
        try:
            self.meta = json.loads(path.read_text("utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path} not found; run `moxin data` first or point to a tokenized data folder") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{path} is corrupted ({e}); re-run `moxin data`") from None
        self.fingerprint = sha256_file(path)
        self.vocab_size: int = self.meta["vocab_size"]
        self.eos_id: int = self.meta["eos_id"]
        self.dtype = np.dtype(self.meta["dtype"])
        self._maps: dict[tuple[str, str, int], np.memmap] = {}
        self._docs: dict[tuple[str, str], np.ndarray] = {}
        self._ids: dict[tuple[str, str], list[str]] = {}

    @property
    def sources(self) -> list[str]:
        return sorted(self.meta["sources"])

    def splits(self, source: str) -> list[str]:
        return sorted(self._source(source))

    def _source(self, source: str) -> dict:
        if source not in self.meta["sources"]:
            raise DataError(f"source {source!r} not in {self.folder / META_NAME}; it has {', '.join(self.sources)}")
        return self.meta["sources"][source]

    def _split(self, source: str, split: str) -> dict:
        s = self._source(source)
        if split not in s:
            raise DataError(f"source {source!r} has no {split!r} split in {self.folder}; it has {', '.join(sorted(s))}")
        return s[split]

    def length(self, source: str, split: str = "train") -> int:
        return int(self._split(source, split)["tokens"]) if split in self._source(source) else 0

    def _shard(self, source: str, split: str, k: int) -> np.memmap:
        key = (source, split, k)
        if key not in self._maps:
            info = self._split(source, split)["shards"][k]
            path = self.folder / "tokens" / source / info["file"]
            if not path.is_file():
                raise DataError(f"token shard missing: {path}")
            self._maps[key] = np.memmap(path, dtype=self.dtype.newbyteorder("<"), mode="r")
        return self._maps[key]

    def read(self, source: str, start: int, n: int, split: str = "train") -> np.ndarray:
        """Tokens [start, start+n) of a source split as int64, across shard boundaries."""
        total = self.length(source, split)
        if start < 0 or start + n > total:
            raise DataError(f"read of tokens [{start}, {start + n}) is outside {source}/{split} (0..{total})")
        out = np.empty(n, dtype=np.int64)
        pos, filled = 0, 0
        for k, info in enumerate(self._split(source, split)["shards"]):
            lo, hi = pos, pos + info["tokens"]
            if hi > start and lo < start + n and filled < n:
                a, b = max(start, lo), min(start + n, hi)
                out[a - start : b - start] = self._shard(source, split, k)[a - lo : b - lo]
                filled += b - a
            pos = hi
        return out

    def documents(self, source: str, split: str = "train") -> np.ndarray:
        """int64 (n_docs, 2): start offset, length."""
        key = (source, split)
        if key not in self._docs:
            self._docs[key] = np.load(self.folder / "tokens" / source / f"{split}-docs.npy", allow_pickle=False)
        return self._docs[key]

    def doc_ids(self, source: str, split: str = "train") -> list[str]:
        key = (source, split)
        if key not in self._ids:
            path = self.folder / "tokens" / source / f"{split}-ids.txt"
            self._ids[key] = path.read_text("utf-8").splitlines()
        return self._ids[key]

    def document_at(self, source: str, offset: int, split: str = "train") -> DocSpan:
        """The document that token `offset` of a source split belongs to."""
        docs = self.documents(source, split)
        i = int(np.searchsorted(docs[:, 0], offset, side="right")) - 1
        if i < 0 or offset >= docs[i, 0] + docs[i, 1]:
            raise DataError(f"token offset {offset} is outside {source}/{split} (0..{self.length(source, split)})")
        return DocSpan(source, split, self.doc_ids(source, split)[i], int(docs[i, 0]), int(docs[i, 1]))

    def documents_in(self, source: str, start: int, n: int, split: str = "train") -> list[DocSpan]:
        """Every document overlapping tokens [start, start+n)."""
        docs = self.documents(source, split)
        lo = max(int(np.searchsorted(docs[:, 0], start, side="right")) - 1, 0)
        hi = int(np.searchsorted(docs[:, 0], start + n, side="left"))
        ids = self.doc_ids(source, split)
        return [DocSpan(source, split, ids[i], int(docs[i, 0]), int(docs[i, 1])) for i in range(lo, hi)]

    def verify(self) -> list[str]:
        """Problems found when re-hashing every shard against tokens.json (empty when intact)."""
        problems = []
        for source, splits in self.meta["sources"].items():
            for info in splits.values():
                for shard in info["shards"]:
                    path = self.folder / "tokens" / source / shard["file"]
                    if not path.is_file():
                        problems.append(f"{path}: missing")
                    elif sha256_file(path) != shard["sha256"]:
                        problems.append(f"{path}: SHA-256 mismatch")
        return problems
