"""Stage runner for `moxin build`: each stage runs only when the fingerprint of its inputs changed.

A stage declares `inputs()` (everything its result depends on: its config section, the seed, the fingerprints of
the upstream outputs it reads, the code version) and the output folders it writes. After a stage completes, a
marker `<run>/.build/<stage>.json` records the inputs' fingerprint and the SHA-256 of each output's manifest.
On the next build a stage is skipped when both still match; otherwise it runs again. Stages write their outputs
atomically, so a build killed at any point (even SIGKILL) leaves either a completed stage or none, and the next
build resumes at the first stage that is not complete (a killed pretraining stage resumes from its last checkpoint).

A stage's `run()` returns its entry point's `moxin.stage.StageResult` (or None: done). A `failed` result (e.g. a
training stage stopped by a signal) stops the build there without a marker, so the next build runs it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.provenance import atomic_write_json, fingerprint, sha256_file
from moxin.stage import StageResult


@dataclass
class Stage:
    name: str
    inputs: Callable[[], dict[str, Any]]
    run: Callable[[], StageResult | None]
    outputs: list[Path] = field(default_factory=list)
    describe: str = ""


@dataclass
class Outcome:
    """What the build did with one stage: 'skipped' (up to date: no run at all), or its entry point's status."""

    name: str
    status: str  # 'done' | 'skipped' | 'failed'
    seconds: float
    fingerprint: str
    reason: str = ""

    @property
    def skipped(self) -> bool:
        return self.status == "skipped"

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "skipped": self.skipped,
            "seconds": self.seconds,
            "reason": self.reason,
        }


def output_fingerprint(path: Path) -> str | None:
    """SHA-256 of an output's manifest (a folder's manifest.json, or the file itself); None when absent."""
    target = path / "manifest.json" if path.is_dir() else path
    return sha256_file(target) if target.is_file() else None


def _key(state_dir: Path, path: Path) -> str:
    """An output's key in a marker: its path relative to the run folder (the state folder's parent), so that a
    moved run folder keeps its markers."""
    try:
        return Path(path).relative_to(state_dir.parent).as_posix()
    except ValueError:
        return str(path)


def _marker(state_dir: Path, stage: Stage) -> Path:
    return state_dir / f"{stage.name}.json"


def is_complete(state_dir: Path, stage: Stage, fp: str) -> bool:
    marker = _marker(state_dir, stage)
    if not marker.is_file():
        return False
    try:
        saved = json.loads(marker.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    if saved.get("fingerprint") != fp:
        return False
    recorded = saved.get("outputs", {})
    return all(recorded.get(_key(state_dir, p)) == output_fingerprint(p) is not None for p in stage.outputs)


def upstream(state_dir: Path, name: str) -> str | None:
    """The fingerprint a completed stage recorded: downstream stages put it in their inputs."""
    marker = state_dir / f"{name}.json"
    if not marker.is_file():
        return None
    return json.loads(marker.read_text("utf-8")).get("fingerprint")


def run_stages(
    stages: list[Stage],
    state_dir: Path,
    on_start: Callable[[int, Stage, bool], None] | None = None,
    force: bool = False,
) -> list[Outcome]:
    """Run the stages in order, skipping those up to date; stop after the first that fails."""
    state_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, stage in enumerate(stages):
        fp = fingerprint({"stage": stage.name, "inputs": stage.inputs()})
        done = not force and is_complete(state_dir, stage, fp)
        if on_start:
            on_start(i, stage, done)
        t = time.perf_counter()
        if done:
            results.append(Outcome(stage.name, "skipped", 0.0, fp, "inputs unchanged"))
            continue
        _marker(state_dir, stage).unlink(missing_ok=True)
        res = stage.run() or StageResult.done(stage.name)
        results.append(Outcome(stage.name, res.status, time.perf_counter() - t, fp, res.reason))
        if res.status == "failed":
            break
        outputs = {_key(state_dir, p): output_fingerprint(p) for p in stage.outputs}
        atomic_write_json(_marker(state_dir, stage), {"fingerprint": fp, "outputs": outputs})
    return results
