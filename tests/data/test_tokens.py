"""The token-shard contract: writer and reader agree, documents are traceable, bytes are deterministic."""

import numpy as np
import pytest

from moxin.data.tokens import TokenData, TokenWriter
from moxin.errors import DataError


def _write(folder, docs, shard_tokens=7, vocab=300):
    w = TokenWriter(folder, vocab_size=vocab, eos_id=0, shard_tokens=shard_tokens)
    for source, split, doc_id, ids in docs:
        w.add(source, split, doc_id, ids)
    return w.close()


DOCS = [
    ("a", "train", "a/1", [5, 6, 7]),
    ("a", "train", "a/2", [8] * 10),
    ("b", "train", "b/1", [9, 10]),
    ("a", "val", "a/3", [11, 12]),
]


def test_round_trip_across_shards(tmp_path):
    meta = _write(tmp_path, DOCS)
    assert meta["dtype"] == "uint16" and len(meta["sources"]["a"]["train"]["shards"]) == 3
    td = TokenData(tmp_path)
    assert td.sources == ["a", "b"] and td.length("a") == 4 + 11
    assert td.read("a", 0, 15).tolist() == [5, 6, 7, 0] + [8] * 10 + [0]
    assert td.read("a", 6, 4).tolist() == [8, 8, 8, 8]
    assert td.read("a", 0, 3, split="val").tolist() == [11, 12, 0]
    span = td.document_at("a", 9)
    assert (span.doc_id, span.start, span.length) == ("a/2", 4, 11)
    assert [d.doc_id for d in td.documents_in("a", 2, 5)] == ["a/1", "a/2"]
    assert td.verify() == []


def test_uint32_for_large_vocab_and_determinism(tmp_path):
    _write(tmp_path / "x", DOCS, vocab=70000)
    _write(tmp_path / "y", DOCS, vocab=70000)
    assert TokenData(tmp_path / "x").dtype == np.uint32
    assert TokenData(tmp_path / "x").fingerprint == TokenData(tmp_path / "y").fingerprint
    assert TokenData(tmp_path / "x").fingerprint != (
        _write(tmp_path / "z", DOCS[:2]) and TokenData(tmp_path / "z").fingerprint
    )


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(DataError, match="tokens.json not found"):
        TokenData(tmp_path)
    _write(tmp_path, DOCS)
    td = TokenData(tmp_path)
    with pytest.raises(DataError, match="outside"):
        td.read("a", 10, 10)
    with pytest.raises(DataError, match="source 'c'"):
        td.length("c")
    shard = tmp_path / "tokens" / "a" / "train-00000.bin"
    shard.write_bytes(b"\x00" * shard.stat().st_size)
    assert any("SHA-256 mismatch" in p for p in TokenData(tmp_path).verify())


def test_finish_writes_a_source_early_with_the_same_bytes(tmp_path):
    _write(tmp_path / "x", DOCS)
    w = TokenWriter(tmp_path / "y", vocab_size=300, eos_id=0, shard_tokens=7)
    for source, split, doc_id, ids in sorted(DOCS, key=lambda d: d[0]):
        w.add(source, split, doc_id, ids)
        if doc_id == "a/3":
            w.finish("a")
            assert not any(k[0] == "a" for k in w.streams)
    w.close()
    assert TokenData(tmp_path / "x").fingerprint == TokenData(tmp_path / "y").fingerprint
    with pytest.raises(DataError, match="already finished"):
        w.add("a", "train", "a/9", [1])
