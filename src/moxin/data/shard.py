"""Tokenize processed documents into token shards (`moxin.data.tokens.TokenWriter`), using both cores:
`tokenizers`' `encode_batch_fast` runs a batch on all threads (Rust, GIL released) in a background thread while the
previous batch is written.

Per source the processed file is read in order; each document goes to `train` or `val` by its split flag, so
`tokens/<source>/<split>-docs.npy` row i is the i-th document of that split in processed order, and
`processed/<source>.split.npy` maps it back to its processed row (used by `moxin data trace`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from moxin.data.tokens import TokenWriter

BATCH_BYTES = 8 << 20
SPLITS = ("train", "val")


def load_bpe(tokenizer_dir: Path):
    from tokenizers import Tokenizer

    return Tokenizer.from_file(str(Path(tokenizer_dir) / "tokenizer.json"))


def _read_batches(path: Path, split: np.ndarray) -> Iterator[tuple[list[tuple[str, str]], list[str], int]]:
    """([(doc id, split name)], [text], bytes read) batches of about BATCH_BYTES from processed/<source>.jsonl."""
    keys, texts, size = [], [], 0
    with open(path, "rb") as fh:
        for i, line in enumerate(fh):
            rec = json.loads(line)
            keys.append((rec["id"], SPLITS[int(split[i])]))
            texts.append(rec["text"])
            size += len(line)
            if size >= BATCH_BYTES:
                yield keys, texts, size
                keys, texts, size = [], [], 0
    if keys:
        yield keys, texts, size


def encode(tok, texts: list[str]) -> list[list[int]]:
    """Token ids per text, without special tokens (EOS is added by TokenWriter). `encode_batch_fast` skips the
    character offsets, which shards do not need. Longest texts go first so that no thread is left alone with
    one long book at the end of a batch (the results are put back in input order)."""
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    encs = tok.encode_batch_fast([texts[i] for i in order], add_special_tokens=False)
    out: list[list[int]] = [[] for _ in texts]
    for i, e in zip(order, encs):
        out[i] = e.ids
    return out


def _encoded(batches, tok) -> Iterator[tuple[list[tuple[str, str]], list[list[int]], int]]:
    for keys, texts, size in batches:
        yield keys, encode(tok, texts), size


def tokenize_processed(
    processed: Path,
    out: Path,
    sources: list[str],
    splits: dict[str, np.ndarray],
    tok,
    eos_id: int,
    shard_tokens: int,
    progress=None,
) -> dict:
    """Write tokens.json + tokens/ under `out` for every source; returns tokens.json's content."""
    writer = TokenWriter(out, vocab_size=tok.get_vocab_size(), eos_id=eos_id, shard_tokens=shard_tokens)
    total = sum((processed / f"{s}.jsonl").stat().st_size for s in sources)
    task = progress.add_task("tokenize", total=total) if progress else None
    with ThreadPoolExecutor(1) as ex:  # reads and encodes batch k+1 (the GIL is released) while k is written
        for s in sources:
            batches = _encoded(_read_batches(processed / f"{s}.jsonl", splits[s]), tok)
            nxt = ex.submit(next, batches, None)
            while (batch := nxt.result()) is not None:
                nxt = ex.submit(next, batches, None)
                keys, ids_list, size = batch
                for (doc_id, split), ids in zip(keys, ids_list):
                    writer.add(s, split, doc_id, ids)
                if task is not None:
                    progress.advance(task, size)
            writer.finish(s)
    return writer.close()
