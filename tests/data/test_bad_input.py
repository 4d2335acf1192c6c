"""Acceptance 4: bad input is counted and reported with file:line (or a clear error when nothing usable remains),
never a crash and never a silent skip. Also the other readers: compressed JSONL, Parquet, a local HF dataset."""

from __future__ import annotations

import gzip
import json

import pytest
from datahelpers import run_cli

from moxin.data.config import DataConfig, SourceConfig
from moxin.data.document import Ledger
from moxin.data.process import STEPS
from moxin.data.sources import read_source
from moxin.errors import ConfigError, DataError

PROSE = ("The old harbour town woke slowly under a grey sky, and the fishermen carried their nets down to the "
         "boats while the children watched from the wall. ") * 6


def _read(cfg: SourceConfig):
    ledger = Ledger(STEPS)
    docs = list(read_source(cfg, ledger))
    return docs, ledger


def test_bad_jsonl_records_counted_with_file_and_line(tmp_path):
    f = tmp_path / "bad.jsonl"
    lines = [json.dumps({"text": PROSE}).encode(), b"{not json", json.dumps({"body": "x"}).encode(),
             b'{"text": "caf\xe9"}', json.dumps({"text": 42}).encode(), b"[1, 2]", json.dumps({"text": "  "}).encode(),
             json.dumps({"text": PROSE + "!"}).encode()]
    f.write_bytes(b"\n".join(lines) + b"\n")
    (tmp_path / "empty.jsonl").write_bytes(b"")
    docs, ledger = _read(SourceConfig(name="s", type="jsonl", license="MIT", path=str(tmp_path)))
    assert [d.id for d in docs] == ["s/bad.jsonl:1", "s/bad.jsonl:8"]
    assert ledger.errors["s"] == {"malformed-json": 1, "missing-field": 1, "invalid-utf8": 1, "not-text": 1,
                                  "not-an-object": 1, "empty-text": 1, "empty-file": 1}
    text = "\n".join(ledger.error_lines)
    for n, reason in [(2, "malformed-json"), (3, "missing-field"), (4, "invalid-utf8"), (5, "not-text"),
                      (6, "not-an-object"), (7, "empty-text")]:
        assert f"s/bad.jsonl:{n}: {reason}" in text  # source name and file within it: no absolute path recorded
    assert "s/empty.jsonl:1: empty-file" in text and str(tmp_path) not in text
    read = ledger.counts[("s", "read")]
    assert read.docs_in == 7 and sum(read.dropped.values()) == 7  # the errors; documents are counted by the stage


def test_invalid_utf8_in_text_file_is_repaired_and_reported(tmp_path):
    f = tmp_path / "t.txt"
    f.write_bytes(PROSE.encode() + b"\nline two \xff\xfe here\n")
    docs, ledger = _read(SourceConfig(name="t", type="text", license="MIT", path=str(f)))
    assert len(docs) == 1 and "\ufffd" in docs[0].text
    assert ledger.error_lines == [f"t/{f.name}:2: invalid-utf8-replaced: invalid UTF-8 at byte {len(PROSE) + 10}; "
                                  f"bad bytes replaced with U+FFFD"]
    assert ledger.counts[("t", "read")].modified == {"invalid-utf8-replaced": 1}


def test_missing_path_and_unknown_type_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match=r"data.sources: source 'x' path '.*nope' does not exist"):
        _read(SourceConfig(name="x", type="jsonl", license="MIT", path=str(tmp_path / "nope")))
    (tmp_path / "d").mkdir()
    with pytest.raises(DataError, match="matches no jsonl files"):
        _read(SourceConfig(name="x", type="jsonl", license="MIT", path=str(tmp_path / "d")))
    recipe = tmp_path / "r.toml"
    recipe.write_text('[[data.sources]]\nname = "x"\ntype = "jsnl"\nlicense = "MIT"\npath = "a.jsonl"\n')
    from moxin.recipe import load_recipe

    with pytest.raises(ConfigError, match=r"data.sources\[0\].type .* did you mean 'jsonl'"):
        load_recipe(recipe)
    recipe.write_text('[[data.sources]]\nname = "x"\ntype = "jsonl"\nlicense = "not a licence!"\npath = "a"\n')
    with pytest.raises(ConfigError, match=r"data.sources\[0\].license .* SPDX"):
        load_recipe(recipe)


def test_cli_reports_bad_path_in_one_line(tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'[run]\nout_dir = "{tmp_path}"\n[[data.sources]]\nname = "x"\ntype = "jsonl"\n'
                      f'license = "MIT"\npath = "missing/*.jsonl"\n')
    code, out, err = run_cli("data", str(recipe))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "data.sources[0] (x)" in err and "missing/*.jsonl" in err


def test_nothing_usable_left_is_a_clear_error(tmp_path):
    from moxin.data.pipeline import run_data_stage
    from moxin.tokenizer.config import TokenizerConfig

    f = tmp_path / "a.jsonl"
    f.write_text(json.dumps({"text": "too short"}) + "\n{broken\n")
    cfg = DataConfig(sources=[SourceConfig(name="a", type="jsonl", license="MIT", path=str(f))], workers=1)
    with pytest.raises(DataError, match="no documents left after the steps.*gopher_too_few_words"):
        run_data_stage(cfg, TokenizerConfig(vocab_size=300), 0, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "data").exists()  # nothing half-written


def test_compressed_parquet_and_local_hf_sources(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    rows = [{"text": PROSE + str(i), "uid": f"u{i}"} for i in range(3)]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "j").mkdir()
    (tmp_path / "j" / "a.jsonl.gz").write_bytes(gzip.compress(body))
    (tmp_path / "j" / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body))
    docs, ledger = _read(SourceConfig(name="j", type="jsonl", license="MIT", path=str(tmp_path / "j"), id_field="uid"))
    assert [d.id for d in docs] == ["j/u0", "j/u1", "j/u2"] * 2 and not ledger.errors
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "p.parquet")
    docs, ledger = _read(SourceConfig(name="p", type="parquet", license="MIT", path=str(tmp_path / "p.parquet")))
    assert [d.text for d in docs] == [r["text"] for r in rows]
    docs, ledger = _read(SourceConfig(name="p", type="parquet", license="MIT", path=str(tmp_path / "p.parquet"),
                                      text_field="content"))
    assert docs == [] and ledger.errors["p"] == {"missing-field": 1} and ":0: missing-field" in ledger.error_lines[0]
    import datasets

    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "hf"))
    docs, _ = _read(SourceConfig(name="h", type="hf", license="MIT", path=str(tmp_path / "hf")))
    assert [d.text for d in docs] == [r["text"] for r in rows]


def test_unreachable_hf_dataset_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(DataError, match="cannot load Hugging Face dataset 'nobody/no-such-set'.*local copy"):
        _read(SourceConfig(name="h", type="hf", license="MIT", path="nobody/no-such-set"))


def test_stdlib_source_is_deterministic_code_without_tests():
    docs, ledger = _read(SourceConfig(name="py", type="python-stdlib", license="PSF-2.0", max_docs=30))
    again, _ = _read(SourceConfig(name="py", type="python-stdlib", license="PSF-2.0", max_docs=30))
    assert [d.id for d in docs] == [d.id for d in again] == sorted(d.id for d in docs)
    from moxin.data.sources import _stdlib_files, stdlib_root

    rels = [p.relative_to(stdlib_root()).as_posix() for p in _stdlib_files()]
    assert "os.py" in rels and "json/decoder.py" in rels and len(rels) > 500
    assert not any("/test/" in r or r.startswith(("test/", "site-packages/")) or "/tests/" in r for r in rels)
