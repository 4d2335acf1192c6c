"""Issue 18, item 2: `moxin eval RUN --all-checkpoints --parallel N` (worker processes) and `--executor ray` give
the serial run's result files, table and plots; the results/ cache is shared, so a second run computes nothing.

Result files hold no clock (when and how long go to eval/timings.jsonl), so every result file, the table and the
plots must be byte-identical."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from evalfix import one_line_error, run_cli, tokenizer_dir, trained_run  # noqa: F401

STEPS = (2, 4, 6, 8)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, tokenizer_dir, shared_data):
    """RUN/pretrain/checkpoints/step-N for four points of a real (tiny) training run on WikiText text."""
    return trained_run(tmp_path_factory.mktemp("run"), tokenizer_dir, shared_data, STEPS)


def _eval(run: Path, out: Path, shared: Path, *extra: str) -> tuple[str, float]:
    t0 = time.perf_counter()
    code, stdout, err = run_cli(
        "eval",
        str(run),
        "--all-checkpoints",
        "--tasks",
        "piqa,arc_easy",
        "--limit",
        "4",
        "--data-dir",
        str(shared),
        "--batch-size",
        "8",
        "--out",
        str(out),
        *extra,
    )
    assert code == 0, err[-3000:]
    return stdout, time.perf_counter() - t0


def _assert_same(a: Path, b: Path) -> None:
    ra, rb = sorted((a / "results").glob("*.json")), sorted((b / "results").glob("*.json"))
    assert [p.name for p in ra] == [p.name for p in rb] and len(ra) == 2 * len(STEPS)
    for pa, pb in zip(ra, rb, strict=True):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
    for name in ("table.csv", "table.md"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    pa, pb = sorted((a / "plots").glob("*.png")), sorted((b / "plots").glob("*.png"))
    assert [p.name for p in pa] == [p.name for p in pb] and len(pa) == 4
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(pa, pb, strict=True))


@pytest.fixture(scope="module")
def serial(tiny_run, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    stdout, seconds = _eval(tiny_run, out, shared_data)
    assert f"({2 * len(STEPS)} computed, 0 reused)" in stdout
    print(f"\nserial: {seconds:.1f} s")
    return out


def test_parallel_workers_match_serial_and_share_the_cache(tiny_run, shared_data, serial, tmp_path):
    stdout, seconds = _eval(tiny_run, tmp_path, shared_data, "--parallel", "2")
    print(f"\n--parallel 2: {seconds:.1f} s")
    assert f"({2 * len(STEPS)} computed, 0 reused)" in stdout and f"checkpoints: {len(STEPS)}" in stdout
    _assert_same(serial, tmp_path)

    results = sorted((tmp_path / "results").glob("*.json"))
    before = {p: p.stat().st_mtime_ns for p in results}
    stdout, _ = _eval(tiny_run, tmp_path, shared_data, "--parallel", "2")
    assert f"(0 computed, {2 * len(STEPS)} reused)" in stdout
    assert {p: p.stat().st_mtime_ns for p in sorted((tmp_path / "results").glob("*.json"))} == before

    # a partly filled cache: only what is missing is computed, by whichever worker holds that checkpoint
    removed = [p for p in results if json.loads(p.read_text())["model"]["step"] in (4, 8)]
    for p in removed:
        p.unlink()
    stdout, _ = _eval(tiny_run, tmp_path, shared_data, "--parallel", "2")
    assert f"({len(removed)} computed, {2 * len(STEPS) - len(removed)} reused)" in stdout
    assert {p: p.stat().st_mtime_ns for p in results if p not in removed} == {
        p: before[p] for p in results if p not in removed
    }
    _assert_same(serial, tmp_path)


def test_ray_tasks_match_serial(tiny_run, shared_data, serial, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # a loopback test cluster: no token written to ~/.ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        stdout, seconds = _eval(tiny_run, tmp_path, shared_data, "--executor", "ray", "--parallel", "2")
        print(f"\n--executor ray --parallel 2: {seconds:.1f} s")
        assert f"({2 * len(STEPS)} computed, 0 reused)" in stdout
        _assert_same(serial, tmp_path)
        stdout, _ = _eval(tiny_run, tmp_path, shared_data, "--executor", "ray", "--parallel", "2")
        assert f"(0 computed, {2 * len(STEPS)} reused)" in stdout
    finally:
        ray.shutdown()


def test_worker_failure_names_the_checkpoint(tiny_run, shared_data, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    bad = run / "pretrain" / "checkpoints" / "step-00000006" / "model" / "model.safetensors"
    assert bad.is_file()
    bad.write_bytes(bad.read_bytes()[:-8] + b"\0" * 8)  # weights no longer match the checkpoint's manifest
    line = one_line_error(
        run_cli(
            "eval",
            str(run),
            "--all-checkpoints",
            "--tasks",
            "piqa",
            "--limit",
            "2",
            "--data-dir",
            str(shared_data),
            "--parallel",
            "2",
            "--out",
            str(tmp_path / "o"),
        ),
        "pretrain/checkpoints/step-00000006",
    )
    assert "checkpoint" in line
    print(f"\n{line}")


def test_parallel_needs_all_checkpoints(tiny_run, shared_data):
    one_line_error(
        run_cli("eval", str(tiny_run), "--tasks", "piqa", "--data-dir", str(shared_data), "--parallel", "2"),
        "--all-checkpoints",
    )
    one_line_error(
        run_cli(
            "eval",
            str(tiny_run),
            "--all-checkpoints",
            "--tasks",
            "piqa",
            "--data-dir",
            str(shared_data),
            "--parallel",
            "0",
        ),
        "--parallel",
        "0",
    )
