"""moxin.io: compressed streams of every supported format, JSON/JSONL readers with one-line errors."""

from __future__ import annotations

import bz2
import gzip
import lzma

import pytest
import zstandard

from moxin.errors import DataError, ReleaseError
from moxin.io import open_compressed, read_json, read_jsonl, strip_compression

PAYLOAD = '{"a": 1}\n\n{"a": "é"}\n'.encode()
WRITERS = {".gz": gzip.compress, ".xz": lzma.compress, ".bz2": bz2.compress,
           ".zst": lambda b: zstandard.ZstdCompressor().compress(b), "": lambda b: b}


@pytest.mark.parametrize("ext", list(WRITERS))
def test_open_compressed_reads_every_format_as_bytes_and_text(tmp_path, ext):
    p = tmp_path / f"x.jsonl{ext}"
    p.write_bytes(WRITERS[ext](PAYLOAD))
    with open_compressed(p) as fh:
        assert fh.read() == PAYLOAD
    with open_compressed(p, "rt") as fh:
        assert fh.read() == PAYLOAD.decode()
    assert [r for _, r in read_jsonl(p, DataError)] == [{"a": 1}, {"a": "é"}]


def test_open_compressed_decompresses_a_given_raw_file(tmp_path):
    p = tmp_path / "x.txt.gz"
    p.write_bytes(gzip.compress(b"hello"))
    raw = open(p, "rb")
    with open_compressed(p, fileobj=raw) as fh:
        assert fh.read() == b"hello"
    assert raw.tell() == p.stat().st_size  # the caller's raw file was the one consumed


def test_strip_compression():
    assert strip_compression("a.jsonl.zst") == "a.jsonl"
    assert strip_compression("a.json.bz2") == "a.json"
    assert strip_compression("a.txt") == "a.txt"


def test_read_json_errors_name_the_file(tmp_path):
    p = tmp_path / "rec.json"
    with pytest.raises(ReleaseError, match=r"release record not found: .*rec\.json; check the path"):
        read_json(p, ReleaseError, "release record")
    p.write_text("{oops", "utf-8")
    with pytest.raises(ReleaseError, match=r"rec\.json is not valid JSON .*release record is corrupted"):
        read_json(p, ReleaseError, "release record")
    p.write_text('{"k": [1, 2]}', "utf-8")
    assert read_json(p, ReleaseError) == {"k": [1, 2]}


def test_read_jsonl_errors_name_file_and_line(tmp_path):
    p = tmp_path / "d.jsonl"
    p.write_text('{"a": 1}\n\n{"a": \n', "utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:3: not valid JSON"):
        list(read_jsonl(p, DataError))
    p.write_text('{"a": 1}\n[1]\n', "utf-8")
    with pytest.raises(DataError, match=r"d\.jsonl:2 \(eval set 'x'\): expected a JSON object, got list"):
        list(read_jsonl(p, DataError, what="eval set 'x'"))
    bad = tmp_path / "d.jsonl.xz"
    bad.write_bytes(b"not xz at all")
    with pytest.raises(DataError, match=r"d\.jsonl\.xz: cannot be read"):
        list(read_jsonl(bad, DataError))
    with pytest.raises(DataError, match=r"missing\.jsonl: cannot be read"):
        list(read_jsonl(tmp_path / "missing.jsonl", DataError))
