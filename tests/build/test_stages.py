"""The build's stage runner: skip on unchanged inputs, rerun what changed and everything downstream; a failed
stage (e.g. training stopped by a signal) stops the build without a marker, and the next build resumes it."""

import pytest

from moxin.build.stages import Stage, run_stages, upstream
from moxin.provenance import atomic_write_json
from moxin.stage import StageResult, interrupted


def _pipeline(tmp_path, calls, params, fail_at=None):
    state = tmp_path / ".build"
    a_out, b_out, c_out = tmp_path / "a", tmp_path / "b", tmp_path / "c"

    def run_a():
        calls.append("a")
        atomic_write_json(a_out / "manifest.json", {"value": params["a"]})

    def run_b():
        calls.append("b")
        if fail_at == "b":
            return interrupted("b", 7)
        atomic_write_json(b_out / "manifest.json", {"value": params["b"]})
        return StageResult.done("b", [b_out])

    def run_c():
        calls.append("c")
        atomic_write_json(c_out / "manifest.json", {"b": upstream(state, "b")})

    return [Stage("a", lambda: {"a": params["a"]}, run_a, [a_out]),
            Stage("b", lambda: {"b": params["b"], "a": upstream(state, "a")}, run_b, [b_out]),
            Stage("c", lambda: {"b": upstream(state, "b")}, run_c, [c_out])], state


def test_failed_stage_stops_the_build_and_the_next_build_resumes_it(tmp_path):
    calls, params = [], {"a": 1, "b": 1}
    stages, state = _pipeline(tmp_path, calls, params, fail_at="b")
    results = run_stages(stages, state)
    assert calls == ["a", "b"]  # c never ran
    assert [r.status for r in results] == ["done", "failed"]
    assert results[-1].reason == "interrupted at step 7; run again to resume"
    assert not (state / "b.json").exists() and (state / "a.json").exists()
    stages, state = _pipeline(tmp_path, calls, params)
    results = run_stages(stages, state)
    assert calls == ["a", "b", "b", "c"] and [r.status for r in results] == ["skipped", "done", "done"]
    assert [r.skipped for r in run_stages(stages, state)] == [True, True, True]
    params["b"] = 2  # only b's input changes: b and its dependant c rerun
    assert [r.skipped for r in run_stages(stages, state)] == [True, False, False]
    params["a"] = 2  # a changes, so b (which depends on a's fingerprint) reruns too
    assert [r.skipped for r in run_stages(stages, state)] == [False, False, False]


def test_tampered_output_is_rebuilt(tmp_path):
    calls, params = [], {"a": 1, "b": 1}
    stages, state = _pipeline(tmp_path, calls, params)
    run_stages(stages, state)
    (tmp_path / "b" / "manifest.json").write_text("{}")
    assert [r.skipped for r in run_stages(stages, state)] == [True, False, True]


def test_markers_name_outputs_relative_to_the_run_so_a_moved_run_stays_up_to_date(tmp_path):
    calls, params = [], {"a": 1, "b": 1}
    run = tmp_path / "one"
    run.mkdir()
    stages, state = _pipeline(run, calls, params)
    run_stages(stages, state)
    assert str(tmp_path) not in (state / "a.json").read_text()
    moved = run.rename(tmp_path / "two")
    stages, state = _pipeline(moved, calls, params)
    assert [r.skipped for r in run_stages(stages, state)] == [True, True, True]


def test_stage_result_contract():
    assert StageResult.done("x").ok and StageResult.skipped("x", "up to date").ok
    res = interrupted("pretrain", None)
    assert not res.ok and res.reason == "interrupted before its first checkpoint; run again to resume"
    assert res.line() == "pretrain: failed: interrupted before its first checkpoint; run again to resume"
    with pytest.raises(ValueError):
        StageResult("x", "failed")  # a failure without a reason
    with pytest.raises(ValueError):
        StageResult("x", "interrupted", "why")  # not a status
