"""Tokenize processed documents into token shards (`moxin.data.tokens.TokenWriter`), using both cores:
`tokenizers`' `encode_batch_fast` runs a batch on all threads (Rust, GIL released) while the next batch is read.

Per source the processed file is read in order; each document goes to `train` or `val` by its split flag, so
`tokens/<source>/<split>-docs.npy` row i is the i-th document of that split in processed order, and
`processed/<source>.split.npy` maps it back to its processed row (used by `moxin data trace`)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator

import numpy as np

from moxin.data.tokens import TokenWriter

BATCH_BYTES = 4 << 20
SPLITS = ("train", "val")


def load_bpe(tokenizer_dir: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))


def _read_batches(path: Path, split: np.ndarray) -> Iterator[list[tuple[str, str, str]]]:
    """[(doc id, split name, text)] batches of about BATCH_BYTES from processed/<source>.jsonl."""
    batch, size = [], 0
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            rec = json.loads(line)
            batch.append((rec["id"], SPLITS[int(split[i])], rec["text"]))
            size += len(line)
            if size >= BATCH_BYTES:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def encode(tok, texts: list[str]) -> list[np.ndarray]:
    """Token ids per text, without special tokens (EOS is added by TokenWriter)."""
    encs = tok.encode_batch_fast(texts, add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int64) for e in encs]


def tokenize_processed(processed: Path, out: Path, sources: list[str], splits: dict[str, np.ndarray], tok,
                       eos_id: int, shard_tokens: int, progress=None) -> dict:
    """Write tokens.json + tokens/ under `out` for every source; returns tokens.json's content."""
    writer = TokenWriter(out, vocab_size=tok.get_vocab_size(), eos_id=eos_id, shard_tokens=shard_tokens)
    total = sum((processed / f"{s}.jsonl").stat().st_size for s in sources)
    task = progress.add_task("tokenize", total=total) if progress else None
    with ThreadPoolExecutor(1) as ex:  # reads+parses batch k+1 while Rust encodes batch k
        for s in sources:
            batches = _read_batches(processed / f"{s}.jsonl", splits[s])
            nxt = ex.submit(next, batches, None)
            while (batch := nxt.result()) is not None:
                nxt = ex.submit(next, batches, None)
                for (doc_id, split, _), ids in zip(batch, encode(tok, [t for _, _, t in batch])):
                    writer.add(s, split, doc_id, ids)
                if task is not None:
                    progress.advance(task, sum(len(t.encode("utf-8")) for _, _, t in batch))
    return writer.close()
