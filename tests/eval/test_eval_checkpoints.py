"""Acceptance 3: `moxin eval RUN --all-checkpoints` on a tiny pretraining run writes the table (CSV, Markdown) and
one PNG per metric against tokens seen; running it again computes nothing new."""

from __future__ import annotations

import csv
import json

import pytest
from evalfix import run_cli, tokenizer_dir, trained_run  # noqa: F401

STEPS = (2, 4, 6)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizer_dir, shared_data):
    """RUN/pretrain/checkpoints/step-N for three points of a real (tiny) training run on WikiText text."""
    return trained_run(tmp_path_factory.mktemp("run"), tokenizer_dir, shared_data, STEPS)


def test_all_checkpoints_table_plots_and_no_recompute(tiny_run, shared_data):
    args = (
        "eval",
        str(tiny_run),
        "--all-checkpoints",
        "--tasks",
        "piqa,arc_easy",
        "--limit",
        "8",
        "--data-dir",
        str(shared_data),
        "--batch-size",
        "16",
    )
    code, out, err = run_cli(*args)
    assert code == 0, err[-3000:]
    ev = tiny_run / "eval"
    results = sorted((ev / "results").glob("*.json"))
    assert len(results) == len(STEPS) * 2
    rec = json.loads(results[0].read_text())
    for key in (
        "task_config_hash",
        "lm_eval_version",
        "num_fewshot",
        "batch_size",
        "dtype",
        "seed",
        "apply_chat_template",
        "limit",
    ):
        assert key in rec, key
    assert "time_s" not in rec and "created" not in rec  # no clock in a result: the bytes are reproducible
    timings = [json.loads(x) for x in (ev / "timings.jsonl").read_text().splitlines()]
    assert {t["result"] for t in timings} == {p.name for p in results} and all(t["time_s"] >= 0 for t in timings)
    assert len(rec["model"]["sha256"]) == 64 and rec["limit"] == 8 and rec["n_items"] == 8
    assert [i["doc_id"] for i in rec["items"]] == list(range(8)) and all(i["example"] for i in rec["items"])
    assert sum(i["acc"] for i in rec["items"]) / 8 == pytest.approx(rec["metrics"]["acc"])
    assert rec["model"]["tokens_seen"] in {s * 16 * 64 for s in STEPS}

    rows = list(csv.DictReader((ev / "table.csv").open()))
    assert [int(r["step"]) for r in rows] == list(STEPS)
    assert [int(r["tokens_seen"]) for r in rows] == [s * 16 * 64 for s in STEPS]
    for col in ("piqa[0-shot]/acc", "piqa[0-shot]/acc_norm", "arc_easy[0-shot]/acc", "arc_easy[0-shot]/acc_norm"):
        assert all(0.0 <= float(r[col]) <= 1.0 for r in rows), col
    md = (ev / "table.md").read_text()
    assert md.count("\n") == 2 + len(STEPS) and "piqa[0-shot]/acc" in md
    plots = sorted((ev / "plots").glob("*.png"))
    assert len(plots) == 4 and all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in plots)

    before = {p: p.stat().st_mtime_ns for p in results}
    table = (ev / "table.csv").read_bytes()
    code, out, err = run_cli(*args)
    assert code == 0, err[-3000:]
    assert "(0 computed, 6 reused)" in out
    assert {p: p.stat().st_mtime_ns for p in sorted((ev / "results").glob("*.json"))} == before
    assert (ev / "table.csv").read_bytes() == table


def test_run_without_flag_evaluates_latest_checkpoint(tiny_run, shared_data, tmp_path):
    code, out, err = run_cli(
        "eval", str(tiny_run), "--tasks", "piqa", "--limit", "4", "--data-dir", str(shared_data), "--out", str(tmp_path)
    )
    assert code == 0, err[-3000:]
    (res,) = [json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json")]
    assert res["model"]["step"] == STEPS[-1]
