"""Scale-out: the same steps under datatrove's LocalPipelineExecutor (2 tasks) give byte-identical processed
output and identical counts to the single-process pipeline."""

from __future__ import annotations

import json

import pytest

from moxin.data.config import DataConfig, SourceConfig
from moxin.data.process import Processor

pytest.importorskip("datatrove")

PROSE = (
    "The ferry left the island at dawn, carrying crates of apples, two bicycles and a sleepy dog. The captain "
    "hummed an old song while the gulls followed the boat across the grey water towards the harbour. On the "
    "quay a baker was already selling bread, and the school children ran past him with their bags. "
)
MORE = ["Later it rained for an hour.", "Nobody noticed the missing crate.", "The dog found a warm corner."]


def _corpus(root):
    (root / "j").mkdir(parents=True)
    for f in range(5):
        rows = [json.dumps({"text": f"Part {f}.{i}. " + PROSE + MORE[i % 3]}) for i in range(6)]
        rows.insert(2, "{broken json")
        rows.append(json.dumps({"text": "Part 0.1. " + PROSE + MORE[1]}))  # an exact duplicate across files
        (root / "j" / f"{f}.jsonl").write_text("\n".join(rows) + "\n")
    (root / "t").mkdir()
    for f in range(3):
        (root / "t" / f"{f}.txt").write_text(f"Note {f}. " + PROSE + "Mail me at someone@mailhost.com.\n")
    return DataConfig(
        sources=[
            SourceConfig(name="j", type="jsonl", license="MIT", path=str(root / "j")),
            SourceConfig(name="t", type="text", license="MIT", path=str(root / "t")),
        ],
        workers=1,
    )


def test_datatrove_local_executor_matches_local_run(tmp_path):
    from datatrove.executor import LocalPipelineExecutor

    from moxin.data.scale import AnalyzeShard, merge_analyzed

    cfg = _corpus(tmp_path / "src")
    (tmp_path / "local").mkdir()
    local = Processor(cfg, tmp_path / "local").run()
    LocalPipelineExecutor(
        pipeline=[AnalyzeShard(cfg, tmp_path / "work")], tasks=2, workers=1, logging_dir=str(tmp_path / "logs")
    ).run()
    assert sorted(p.name for p in (tmp_path / "work" / "analyzed").glob("*.jsonl")) == ["00000.jsonl", "00001.jsonl"]
    scaled = merge_analyzed(cfg, tmp_path / "work", tmp_path / "scaled")
    for name in ("j", "t"):
        assert (tmp_path / "local" / f"{name}.jsonl").read_bytes() == (
            tmp_path / "scaled" / f"{name}.jsonl"
        ).read_bytes()
        assert local.ledger.source_steps(name) == scaled.ledger.source_steps(name)
    assert local.ledger.error_lines == scaled.ledger.error_lines and len(local.ledger.error_lines) == 5
    steps = {s["step"]: s for s in local.ledger.step_table(["j", "t"])}
    assert steps["dedup_exact"]["dropped"] == {"duplicate": 5} and steps["dedup_fuzzy"]["dropped"]
    assert steps["read"]["dropped"] == {"malformed-json": 5}
