"""`moxin build` itself, in CI: the reduced tiny recipe built in two folders under two $HOMEs, the second one
stopped by SIGINT (a clean, resumable stop: exit 1 and one line) and then killed with SIGKILL before it is re-run
to completion, gives the same release bytes; no release file records either folder or either $HOME; and the
release verifies."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from buildfix import run_build, start_build, tiny_build, wait_for  # noqa: F401 - tiny_build is a fixture
from moxin.layout import RunLayout
from moxintest import run_cli

pytestmark = pytest.mark.slow


def _sums(release: Path) -> dict[str, str]:
    out = {}
    for line in (release / "SHA256SUMS").read_text("utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        out[name.lstrip("*")] = digest
    return out


def _files_containing(release: Path, needles: list[str]) -> dict[str, list[str]]:
    found = {}
    for p in sorted(release.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            hits = [n for n in needles if n.encode() in data]
            if hits:
                found[p.relative_to(release).as_posix()] = hits
    return found


def _interrupted_then_killed_build(root: Path) -> tuple[RunLayout, list[str]]:
    """Build in ROOT/builds under ROOT/home: SIGINT early in pretraining (the build must stop with exit 1 and say
    how to resume), SIGKILL once the step-10 checkpoint exists, then re-run until the build completes."""
    home, out, cwd = root / "home", root / "builds", root / "work"
    cwd.mkdir(parents=True)
    lay, notes = RunLayout(out / "tiny"), []
    proc = start_build(out, home, cwd, root / "build-1.log")
    metrics = lay.metrics("pretrain")
    if wait_for(proc, lambda: metrics.is_file() and len(metrics.read_text("utf-8").splitlines()) >= 2):
        proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 1, (root / "build-1.log").read_text("utf-8")[-3000:]
    log = " ".join((root / "build-1.log").read_text("utf-8").split())
    assert "build stopped at stage pretrain: interrupted at step" in log and "run again to resume" in log, log[-2000:]
    assert lay.checkpoints("pretrain") and not (lay.release / "SHA256SUMS").exists()
    notes.append(f"SIGINT: stopped at {lay.checkpoints('pretrain')[-1].path.name}")
    proc = start_build(out, home, cwd, root / "build-2.log")
    if wait_for(proc, lambda: lay.checkpoint("pretrain", 10).is_dir()):
        proc.send_signal(signal.SIGKILL)
        notes.append("SIGKILL: once pretrain step-00000010 existed")
    proc.wait(timeout=300)
    for attempt in range(3):
        res = run_build(out, home, cwd)
        if res.returncode == 0:
            return lay, notes
        notes.append(f"re-run {attempt + 1}: exit {res.returncode}: {res.stdout[-500:]}")
    raise AssertionError("the resumed build never completed: " + "; ".join(notes))


def _first_metric_difference(rel_a: Path, rel_b: Path) -> str:
    """Where two builds' training diverged: the first line of pretrain/metrics.jsonl that differs (for triage)."""
    a, b = ((r / "pretrain" / "metrics.jsonl").read_text("utf-8").splitlines() for r in (rel_a, rel_b))
    for i, (la, lb) in enumerate(zip(a, b)):
        if la != lb:
            return f"pretrain metrics first differ at line {i + 1}: {la} vs {lb}"
    return f"pretrain metrics equal ({len(a)} and {len(b)} lines)"


def _machine() -> str:
    """The CPU and thread counts the builds ran with (bitwise equality holds per CPU kind and thread count)."""
    import os

    import torch

    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.is_file() else []
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return f"{names[0] if names else 'unknown CPU'}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"


def test_two_folders_two_homes_interrupted_and_killed_give_the_same_release(tiny_build, tmp_path):
    a = tiny_build
    lay_b, notes = _interrupted_then_killed_build(tmp_path / "second")
    rel_a, rel_b = a["release"], lay_b.release
    sums_a, sums_b = _sums(rel_a), _sums(rel_b)
    differ = sorted(n for n in sums_a.keys() | sums_b.keys() if sums_a.get(n) != sums_b.get(n))
    needles = [str(a["out"].resolve()), str(a["home"].resolve()), str((tmp_path / "second" / "builds").resolve()),
               str((tmp_path / "second" / "home").resolve())]
    leaks = {"first": _files_containing(rel_a, needles), "second": _files_containing(rel_b, needles)}
    for release in (rel_a, rel_b):
        code, _, err = run_cli("verify", str(release), "--no-progress")
        assert code == 0, f"moxin verify {release} failed: {err[-1500:]}"
    assert not differ and not leaks["first"] and not leaks["second"], (
        f"{len(differ)} of {len(sums_a)} SHA256SUMS entries differ; {_first_metric_difference(rel_a, rel_b)}; "
        f"{_machine()}; ({'; '.join(notes)}); files recording a build folder or $HOME: {leaks}; differing: {differ}")
