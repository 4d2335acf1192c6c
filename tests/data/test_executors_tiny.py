"""Issue 18's acceptance on the real `tiny` recipe (the interpreter's standard library as corpus): its data stage
under datatrove's local executor (2 workers) and under Ray (4 tasks) gives `data/` and `tokenizer/` byte-identical to
the in-process run, and a run killed with SIGKILL after some of its tasks completed resumes from datatrove's
completion markers to the same bytes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("datatrove")
pytestmark = pytest.mark.slow


def _cmd(out: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "moxin.cli", "data", "tiny", "--set", f"run.out_dir={out}", *args]


def _files(run: Path) -> dict[str, bytes]:
    return {p.relative_to(run).as_posix(): p.read_bytes() for sub in ("data", "tokenizer")
            for p in sorted((run / sub).rglob("*")) if p.is_file()}  # fmt: skip


def _run(out: Path, *args: str) -> dict[str, bytes]:
    res = subprocess.run(_cmd(out, *args), capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, res.stderr[-2000:]
    return _files(out / "tiny")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("tiny-data")
    files = _run(root / "inprocess")
    assert {"data/manifest.json", "data/tokens.json", "tokenizer/tokenizer.json"} <= set(files)
    return root, files


def _assert_same(ref: dict[str, bytes], got: dict[str, bytes]) -> None:
    assert sorted(got) == sorted(ref)
    assert [name for name in ref if got[name] != ref[name]] == []


def test_tiny_data_under_local_and_ray_is_byte_identical(reference):
    root, ref = reference
    _assert_same(ref, _run(root / "local", "--executor", "local", "--tasks", "2", "--workers", "2"))
    _assert_same(ref, _run(root / "ray", "--executor", "ray", "--tasks", "4", "--workers", "2"))


def test_tiny_data_killed_with_sigkill_resumes_from_completion_markers(reference):
    root, ref = reference
    out = root / "killed"
    run = out / "tiny"
    proc = subprocess.Popen(_cmd(out, "--executor", "local", "--tasks", "4", "--workers", "1"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 300
    done: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        done = list(run.glob(".scale/*/logs/completions/*"))
        if done:
            os.killpg(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert done, "no task completed before the run ended"
    assert not (run / "data" / "manifest.json").exists(), "the killed run must not have finished"
    finished = len(list(run.glob(".scale/*/logs/completions/*")))
    assert 1 <= finished < 4
    _assert_same(ref, _run(out, "--executor", "local", "--tasks", "4", "--workers", "1"))
