"""The build's stage runner: skip on unchanged inputs, rerun what changed and everything downstream."""

import pytest

from moxin.build.stages import Stage, run_stages, upstream
from moxin.provenance import atomic_write_json


def _pipeline(tmp_path, calls, params, fail_at=None):
    state = tmp_path / ".build"
    a_out, b_out = tmp_path / "a", tmp_path / "b"

    def run_a():
        calls.append("a")
        atomic_write_json(a_out / "manifest.json", {"value": params["a"]})

    def run_b():
        calls.append("b")
        if fail_at == "b":
            raise KeyboardInterrupt
        atomic_write_json(b_out / "manifest.json", {"value": params["b"]})

    return [Stage("a", lambda: {"a": params["a"]}, run_a, [a_out]),
            Stage("b", lambda: {"b": params["b"], "a": upstream(state, "a")}, run_b, [b_out])], state


def test_skip_rerun_and_resume_after_interrupt(tmp_path):
    calls, params = [], {"a": 1, "b": 1}
    stages, state = _pipeline(tmp_path, calls, params, fail_at="b")
    with pytest.raises(KeyboardInterrupt):
        run_stages(stages, state)
    assert calls == ["a", "b"]
    stages, state = _pipeline(tmp_path, calls, params)
    results = run_stages(stages, state)
    assert calls == ["a", "b", "b"] and [r.skipped for r in results] == [True, False]
    assert [r.skipped for r in run_stages(stages, state)] == [True, True]
    params["b"] = 2  # only b's input changes
    assert [r.skipped for r in run_stages(stages, state)] == [True, False]
    params["a"] = 2  # a changes, so b (which depends on a's fingerprint) reruns too
    assert [r.skipped for r in run_stages(stages, state)] == [False, False]


def test_tampered_output_is_rebuilt(tmp_path):
    calls, params = [], {"a": 1, "b": 1}
    stages, state = _pipeline(tmp_path, calls, params)
    run_stages(stages, state)
    (tmp_path / "b" / "manifest.json").write_text("{}")
    assert [r.skipped for r in run_stages(stages, state)] == [True, False]
