"""The data stage's records name outside inputs by name and content, never by absolute path: the same sources in two
folders give the same manifest, and no record holds either folder."""

import shutil
from pathlib import Path

from moxin.data.config import DataConfig, SourceConfig, recorded_name
from moxin.data.pipeline import run_data_stage
from moxin.tokenizer.config import TokenizerConfig


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for i in range(40):
        words = " ".join(f"w{(i * 7 + j) % 97}" for j in range(60))
        (folder / f"doc{i:02d}.txt").write_text(f"Document {i}. {words}.\n", "utf-8")
    return folder


def _stage(root: Path, corpus: Path, workers: int = 1) -> bytes:
    cfg = DataConfig(
        sources=[SourceConfig(name="local", type="text", path=str(corpus), license="CC0-1.0")],
        dedup_fuzzy=False,
        langid=False,
        workers=workers,
        val_fraction=0.1,
    )
    run_data_stage(cfg, TokenizerConfig(vocab_size=300, sample_bytes=100_000), 0, root / "run", progress=False)
    return (root / "run" / "data" / "manifest.json").read_bytes()


def test_the_same_sources_in_two_folders_give_the_same_manifest(tmp_path: Path) -> None:
    a = _corpus(tmp_path / "alice" / "corpus")
    b = tmp_path / "bob" / "elsewhere" / "corpus"
    shutil.copytree(a, b)
    ma, mb = _stage(tmp_path / "alice", a), _stage(tmp_path / "bob", b)
    assert ma == mb
    for m in (ma, mb):
        assert b"alice" not in m and b"bob" not in m and str(tmp_path).encode() not in m


def test_recorded_name_keeps_relative_paths_and_names_absolute_ones() -> None:
    assert recorded_name("../shared/data/gutenberg") == "../shared/data/gutenberg"
    assert recorded_name("/home/alice/corpus/books.jsonl") == "books.jsonl"
    assert recorded_name("") == ""


def test_the_stdlib_corpus_leaves_out_the_interpreters_build_record() -> None:
    """`_sysconfigdata*.py` is generated per machine (install prefix, compiler flags): never part of the corpus."""
    from moxin.data.sources import _stdlib_files, stdlib_root

    names = [p.name for p in _stdlib_files()]
    assert names and not any(n.startswith("_sysconfigdata") for n in names)
    assert any(p.name.startswith("_sysconfigdata") for p in stdlib_root().glob("_sysconfigdata*.py"))


def test_how_many_workers_ran_the_steps_is_not_recorded(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "corpus")
    assert _stage(tmp_path / "one", corpus, workers=1) == _stage(tmp_path / "two", corpus, workers=2)
