"""`moxin compare`: two checkpoints of one run, a base against its fine-tune on added data, the paired bootstrap
against hand-computed cases, items won and lost, reuse of evaluation results, the written files, bad paths.

The run is tests/releasefix.py's tiny run (a real pretraining run with checkpoints at steps 2, 4, 6 and an SFT
stage on an added, licensed data set), built once per session and only read here."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from moxintest import run_cli


def _ckpt(run: Path, stage: str, step: int) -> Path:
    from moxin.layout import RunLayout

    return RunLayout(run).checkpoint(stage, step)


def test_two_checkpoints_of_one_run(tiny_run, tmp_path):
    from moxin.compare import compare

    doc = compare(_ckpt(tiny_run, "pretrain", 2), _ckpt(tiny_run, "pretrain", 6), None, max_new_tokens=0,
                  heldout_tokens=0, log=lambda s: None)  # fmt: skip
    d = doc["differs"]
    assert d["config_identical"] and d["config"] == [] and d["data"]["identical"]
    assert d["same_run"] == {"stage": "pretrain", "step_a": 2, "step_b": 6, "steps": 4, "tokens": 512}
    assert d["lineage"]["common_ancestor"]["name"] == "pretrain/checkpoints/step-00000002"
    assert [n["step"] for n in d["lineage"]["b_path"]] == [4, 6] and d["lineage"]["a_path"] == []
    assert doc["summary"][0].startswith(
        "two checkpoints of one run (pretrain): identical config and data; B is 4 steps"
    )
    assert [s["name"] for s in doc["a"]["sources"]] == ["gutenberg", "python_docs"]
    assert sum(s["share"] for s in doc["a"]["sources"]) == pytest.approx(1.0)


def test_base_against_finetune_on_added_data(tiny_run, tmp_path):
    """Through the CLI: the added data set with its licence, the lineage from the base, held-out bits per byte with
    intervals for both pretraining sources, 8 prompts side by side, compare.json and compare.md written."""
    out = tmp_path / "cmp"
    code, stdout, err = run_cli("compare", str(_ckpt(tiny_run, "pretrain", 6)),
                                str(tiny_run / "finetune" / "sft" / "checkpoints" / "step-00000002"),
                                "--out", str(out), "--max-new-tokens", "3", "--heldout-tokens", "48")  # fmt: skip
    assert code == 0, err[-3000:]
    doc = json.loads((out / "compare.json").read_text("utf-8"))
    (added,) = doc["differs"]["data"]["added"]
    assert (added["name"], added["license"], added["documents"], added["stage"]) == (
        "rasbt_instruction_data", "Apache-2.0", 1100, "finetune/sft")  # fmt: skip
    assert doc["differs"]["data"]["removed"] == [] and "same_run" not in doc["differs"]
    lin = doc["differs"]["lineage"]
    assert lin["common_ancestor"]["sha256"] == doc["a"]["sha256"]
    assert [n["name"] for n in lin["b_path"]] == ["finetune/sft/checkpoints/step-00000002"]
    assert [h["source"] for h in doc["heldout"]] == ["gutenberg", "python_docs"]
    for h in doc["heldout"]:
        assert 0 < h["a"] < 20 and 0 < h["b"] < 20 and h["tokens"] <= 48
        assert h["ci95"][0] <= h["delta"] <= h["ci95"][1]
    assert len(doc["prompts"]) == 8 and sum("日本" in p["prompt"] or "昔々" in p["prompt"] for p in doc["prompts"]) == 2
    assert "data added in B: rasbt_instruction_data (Apache-2.0, 1100 documents)" in doc["summary"]
    assert any(s.startswith("bits/byte on gutenberg: ") for s in doc["summary"])
    md = (out / "compare.md").read_text("utf-8")
    assert "## What changed" in md and "| added | rasbt_instruction_data | Apache-2.0 | 1100 |" in md
    assert "rasbt_instruction_data" in stdout and str(tiny_run) not in json.dumps(doc)


def test_paired_bootstrap_hand_computed():
    from moxin.compare.stats import aggregate, paired_bootstrap

    same = paired_bootstrap("acc", [1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0])
    assert (same.delta, same.low, same.high, same.significant) == (0.0, 0.0, 0.0, False)
    won = paired_bootstrap("acc", [0.0] * 10, [1.0] * 10)
    assert (won.delta, won.low, won.high, won.significant) == (1.0, 1.0, 1.0, True)
    # Two items, B better on one: a resample's delta is 0, 0.5 or 1 (p = 1/4, 1/2, 1/4): the 95% interval is [0, 1].
    half = paired_bootstrap("acc", [0.0, 1.0], [1.0, 1.0])
    assert (half.a, half.b, half.delta, half.low, half.high, half.significant) == (0.5, 1.0, 0.5, 0.0, 1.0, False)
    # Corpus metrics: items are (loglikelihood, bytes); bits per byte is −Σll / Σbytes / ln 2.
    import numpy as np

    pairs = np.array([[[-8 * math.log(2), 8.0], [-4 * math.log(2), 2.0]]])
    assert aggregate("bits_per_byte", pairs)[0] == pytest.approx(12 / 10)
    assert aggregate("word_perplexity", pairs)[0] == pytest.approx(math.exp(12 * math.log(2) / 10))
    with pytest.raises(ValueError):
        paired_bootstrap("acc", [1.0], [1.0, 0.0])


def _result(sha: str, task: str, accs: list[float], h: str = "cfg1") -> dict:
    items = [{"doc_id": i, "acc": a, "example": f"question {i} → answer"} for i, a in enumerate(accs)]
    return {"result_version": 2, "task": task, "lm_eval_task": task, "task_config_hash": h,
            "model": {"sha256": sha}, "metrics": {"acc": sum(accs) / len(accs)}, "items": items}  # fmt: skip


def test_won_lost_and_reused_results(tiny_run, tmp_path):
    """Results already filed under each side's SHA-256 are paired by task config hash (never recomputed); B wins
    the items it gets right and A got wrong, with at most 5 examples each; bias tasks are set apart."""
    from moxin.compare import compare
    from moxin.records import model_identity

    a, b = _ckpt(tiny_run, "pretrain", 2), _ckpt(tiny_run, "pretrain", 4)
    sha_a, sha_b = model_identity(a)[1], model_identity(b)[1]
    acc_a = [0.0] * 12 + [1.0] * 8 + [1.0] * 2
    acc_b = [1.0] * 12 + [1.0] * 8 + [0.0] * 2  # 12 won, 2 lost, 8 tied
    results = tmp_path / "out" / "eval" / "results"
    results.mkdir(parents=True)
    docs = [(sha_a, _result(sha_a, "arc_easy", acc_a)), (sha_b, _result(sha_b, "arc_easy", acc_b)),
            (sha_b, _result(sha_b, "piqa", acc_b, "cfg2")),  # no counterpart in A: left out
            (sha_a, _result(sha_a, "crows_pairs_english", acc_a, "cfg3")),
            (sha_b, _result(sha_b, "crows_pairs_english", acc_a, "cfg3"))]  # fmt: skip
    for sha, doc in docs:
        (results / f"{sha}-{doc['task_config_hash']}.json").write_text(json.dumps(doc))
    doc = compare(a, b, tmp_path / "out", max_new_tokens=0, heldout_tokens=0, log=lambda s: None)
    (ev,) = doc["evals"]
    assert ev["task"] == "arc_easy"
    (acc,) = ev["metrics"]
    assert acc["delta"] == pytest.approx(10 / 22, abs=1e-6) and acc["significant"] and acc["ci95"][0] > 0
    wl = ev["won_lost"]
    assert (wl["metric"], wl["items"], wl["won"], wl["lost"]) == ("acc", 22, 12, 2)
    assert [x["doc_id"] for x in wl["won_examples"]] == [0, 1, 2, 3, 4] and len(wl["lost_examples"]) == 2
    assert wl["lost_examples"][0] == {"doc_id": 20, "a": 1.0, "b": 0.0, "example": "question 20 → answer"}
    (bias,) = doc["bias"]
    assert bias["task"] == "crows_pairs_english" and bias["metrics"][0]["ci95"] == [0.0, 0.0]
    assert "arc_easy: B wins 12 and loses 2 of 22 items (acc)" in doc["summary"]
    assert any(s.startswith("arc_easy acc: 0.4545 → 0.9091 (+0.4545, 95% CI +") for s in doc["summary"])
    assert "crows_pairs_english acc (bias): no significant change" in " ".join(doc["summary"])
    md = (tmp_path / "out" / "compare.md").read_text("utf-8")
    assert "arc_easy: items won 12, lost 2 of 22 (acc)" in md and "| won | 0 | 0 | 1 | question 0 → answer |" in md


def one_line_error(result: tuple[int, str, str], *needles: str) -> None:
    code, _, err = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), (code, err)
    assert all(n in lines[0] for n in needles), lines[0]


def test_bad_paths_are_one_line(tmp_path):
    one_line_error(run_cli("compare", str(tmp_path / "nope"), str(tmp_path)), "no such file or folder", "nope")
    (tmp_path / "notes.txt").write_text("hello")
    one_line_error(run_cli("compare", str(tmp_path / "notes.txt"), str(tmp_path)), "not a .gguf model", "notes.txt")
    (tmp_path / "empty").mkdir()
    one_line_error(run_cli("compare", str(tmp_path / "empty"), str(tmp_path / "empty")), "is none of", "empty")


def test_eval_computes_what_is_missing_once(tiny_run, tmp_path, shared_data):
    """--eval runs lm-eval (per-item results) only where a side has no result; a second compare reuses them."""
    from moxin.compare import compare

    a, b, out = _ckpt(tiny_run, "pretrain", 4), _ckpt(tiny_run, "pretrain", 6), tmp_path / "out"
    logs: list[str] = []
    kw = {"tasks": ["piqa"], "data_dir": shared_data, "limit": 4, "max_new_tokens": 0, "heldout_tokens": 0}
    doc = compare(a, b, out, log=logs.append, **kw)
    assert [ln for ln in logs if "result(s) computed" in ln] == [
        "step-00000004: 1 result(s) computed, the rest reused",
        "step-00000006: 1 result(s) computed, the rest reused",
    ]
    (ev,) = doc["evals"]
    assert ev["task"] == "piqa" and ev["won_lost"]["items"] == 4
    assert all(len(m["ci95"]) == 2 and m["n"] == 4 for m in ev["metrics"])
    cached = {p.name: p.read_bytes() for p in (out / "eval" / "results").glob("*.json")}
    existing = {p.name: p.read_bytes() for p in (tiny_run / "eval" / "results").glob(f"{doc['b']['sha256']}-*.json")}
    assert len(existing) == 2 and len(cached) == 4 and existing.items() <= cached.items()  # the run's own, as they were
    logs.clear()
    again = compare(a, b, out, log=logs.append, **kw)
    assert next(ln for ln in logs if "result(s) computed" in ln).startswith("step-00000004: 0 result(s) computed")
    assert again["evals"] == doc["evals"]
