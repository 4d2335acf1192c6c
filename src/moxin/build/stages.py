"""Stage runner for `moxin build`: each stage runs only when the fingerprint of its inputs changed.

A stage declares `inputs()` (everything its result depends on: its config section, the seed, the fingerprints of
the upstream outputs it reads, the code version) and the output folders it writes. After a stage completes, a
marker `<run>/.build/<stage>.json` records the inputs' fingerprint and the SHA-256 of each output's manifest.
On the next build a stage is skipped when both still match; otherwise it runs again. Stages write their outputs
atomically, so a build killed at any point (even SIGKILL) leaves either a completed stage or none, and the next
build resumes at the first stage that is not complete (a killed pretraining stage resumes from its last checkpoint).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from moxin.provenance import atomic_write_json, fingerprint, sha256_file


@dataclass
class Stage:
    name: str
    inputs: Callable[[], dict[str, Any]]
    run: Callable[[], Any]
    outputs: list[Path] = field(default_factory=list)
    describe: str = ""


@dataclass
class StageResult:
    name: str
    skipped: bool
    seconds: float
    fingerprint: str


def output_fingerprint(path: Path) -> str | None:
    """SHA-256 of an output's manifest (a folder's manifest.json, or the file itself); None when absent."""
    target = path / "manifest.json" if path.is_dir() else path
    return sha256_file(target) if target.is_file() else None


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
    return all(recorded.get(str(p)) == output_fingerprint(p) is not None for p in stage.outputs)


def upstream(state_dir: Path, name: str) -> str | None:
    """The fingerprint a completed stage recorded: downstream stages put it in their inputs."""
    marker = state_dir / f"{name}.json"
    if not marker.is_file():
        return None
    return json.loads(marker.read_text("utf-8")).get("fingerprint")


def run_stages(stages: list[Stage], state_dir: Path, on_start: Callable[[int, Stage, bool], None] | None = None,
               force: bool = False) -> list[StageResult]:
    state_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, stage in enumerate(stages):
        fp = fingerprint({"stage": stage.name, "inputs": stage.inputs()})
        done = not force and is_complete(state_dir, stage, fp)
        if on_start:
            on_start(i, stage, done)
        t = time.perf_counter()
        if not done:
            _marker(state_dir, stage).unlink(missing_ok=True)
            stage.run()
            outputs = {str(p): output_fingerprint(p) for p in stage.outputs}
            atomic_write_json(_marker(state_dir, stage), {"fingerprint": fp, "outputs": outputs})
        results.append(StageResult(stage.name, done, time.perf_counter() - t, fp))
    return results
