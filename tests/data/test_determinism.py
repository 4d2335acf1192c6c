"""Acceptance 3: the same inputs give byte-identical shards, tokenizer and manifest; changing one input file changes
the fingerprint and only what depends on it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from moxin.data.config import DataConfig, SourceConfig
from moxin.data.pipeline import run_data_stage
from moxin.tokenizer.config import TokenizerConfig


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _corpus(shared_data, root: Path) -> DataConfig:
    from moxin.data.sources import _chunks

    text = (shared_data / "tinyshakespeare" / "input.txt").read_text("utf-8")
    chunks = [c for _, c in _chunks(text, 3000)][:40]
    for name, part in (("a", chunks[:20]), ("b", chunks[20:])):
        (root / name).mkdir(parents=True)
        for i, c in enumerate(part):
            (root / name / f"{i:02d}.txt").write_text(c)
    srcs = [SourceConfig(name=n, type="text", license="LicenseRef-PublicDomain", path=str(root / n)) for n in "ab"]
    return DataConfig(sources=srcs, val_fraction=0.1, shard_tokens=4096, workers=2)


def test_same_inputs_same_bytes_and_one_change_stays_local(shared_data, tmp_path):
    cfg = _corpus(shared_data, tmp_path / "src")
    tok = TokenizerConfig(vocab_size=600, sample_bytes=200_000)
    m1 = run_data_stage(cfg, tok, 7, tmp_path / "r1", progress=False)
    m2 = run_data_stage(cfg, tok, 7, tmp_path / "r2", progress=False)
    for part in ("data", "tokenizer"):
        t1, t2 = _tree(tmp_path / "r1" / part), _tree(tmp_path / "r2" / part)
        assert t1.keys() == t2.keys() and all(t1[k] == t2[k] for k in t1), part
    assert m1 == m2 and len(m1["tokens"]["shards"]) > 4  # several shards per source

    # Unchanged inputs: the stage is skipped (nothing rewritten).
    before = (tmp_path / "r1" / "data" / "manifest.json").stat().st_mtime_ns
    assert run_data_stage(cfg, tok, 7, tmp_path / "r1", progress=False) == m1
    assert (tmp_path / "r1" / "data" / "manifest.json").stat().st_mtime_ns == before

    # Change one file of source b, with the tokenizer fixed (reused from run 1) so only b's data can change.
    f = tmp_path / "src" / "b" / "03.txt"
    f.write_text(f.read_text() + "\nA new closing line, added by hand to this one file.\n")
    fixed = dataclasses.replace(tok, path=str(tmp_path / "r1" / "tokenizer"))
    m3 = run_data_stage(cfg, fixed, 7, tmp_path / "r3", progress=False)
    ins1 = {s["name"]: s["input"]["fingerprint"] for s in m1["sources"]}
    ins3 = {s["name"]: s["input"]["fingerprint"] for s in m3["sources"]}
    assert ins1["a"] == ins3["a"] and ins1["b"] != ins3["b"]
    assert m3["inputs_fingerprint"] != m1["inputs_fingerprint"]
    assert m3["tokenizer"]["tokenizer_sha256"] == m1["tokenizer"]["tokenizer_sha256"]
    t1, t3 = _tree(tmp_path / "r1" / "data" / "tokens"), _tree(tmp_path / "r3" / "data" / "tokens")
    assert {k: v for k, v in t1.items() if k.startswith("a/")} == {k: v for k, v in t3.items() if k.startswith("a/")}
    assert {k: v for k, v in t1.items() if k.startswith("b/")} != {k: v for k, v in t3.items() if k.startswith("b/")}
    meta1 = json.loads((tmp_path / "r1" / "data" / "tokens.json").read_text())
    meta3 = json.loads((tmp_path / "r3" / "data" / "tokens.json").read_text())
    assert meta1["sources"]["a"] == meta3["sources"]["a"] and meta1["sources"]["b"] != meta3["sources"]["b"]


def test_seed_changes_tokenizer_sample_not_the_cleaning(shared_data, tmp_path):
    cfg = _corpus(shared_data, tmp_path / "src")
    tok = TokenizerConfig(vocab_size=600, sample_bytes=20_000)
    m1 = run_data_stage(cfg, tok, 1, tmp_path / "r1", progress=False)
    m2 = run_data_stage(cfg, tok, 2, tmp_path / "r2", progress=False)
    assert m1["steps"] == m2["steps"]
    assert (tmp_path / "r1" / "data" / "processed" / "a.jsonl").read_bytes() == \
        (tmp_path / "r2" / "data" / "processed" / "a.jsonl").read_bytes()
    assert m1["tokenizer"]["tokenizer_sha256"] != m2["tokenizer"]["tokenizer_sha256"]
