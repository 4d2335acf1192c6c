"""What was evaluated: a model's identity (SHA-256), its checkpoint metadata, and the checkpoints of a run.

A checkpoint's identity is the SHA-256 of its manifest.json (docs/CONTRACTS.md); before it is evaluated, every file
is checked against that manifest, so a result can never be filed under a hash its weights do not have."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import CheckpointError, EvalError
from moxin.provenance import fingerprint, sha256_file, verify_manifest

STEP_DIR = re.compile(r"^step-(\d+)$")


@dataclass
class ModelRef:
    path: Path
    sha256: str
    kind: str  # checkpoint | native | hf | gguf
    step: int | None = None
    tokens_seen: int | None = None
    stage: str | None = None  # pretrain | finetune/<name>
    info: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256, "kind": self.kind, "step": self.step,
                "tokens_seen": self.tokens_seen, "stage": self.stage}


def is_checkpoint(p: Path) -> bool:
    return p.is_dir() and (p / "model").is_dir() and (p / "manifest.json").is_file()


def _train_state(p: Path) -> dict[str, Any]:
    path = p / "train_state.json"
    if not path.is_file():
        return {}
    try:
        state = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the checkpoint is damaged") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} must hold a JSON object with step and tokens_seen")
    return state


def verified(p: Path) -> str:
    """SHA-256 of the folder's manifest.json, after checking every file it lists."""
    problems = verify_manifest(p)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(f"checkpoint {p} fails its manifest: {problems[0]}{more}; it changed after it was "
                              f"written; restore it or re-create it before evaluating")
    return sha256_file(p / "manifest.json")


def identify(path: str | Path, stage: str | None = None) -> ModelRef:
    from moxin.interop import model_kind

    p = Path(path).expanduser().resolve()
    kind = model_kind(p)  # raises a clear InteropError for anything unusable
    if kind == "gguf":
        return ModelRef(p, sha256_file(p), "gguf")
    if is_checkpoint(p):
        state = _train_state(p)
        return ModelRef(p, verified(p), "checkpoint", _int(state.get("step")), _int(state.get("tokens_seen")), stage)
    if (p / "manifest.json").is_file():
        return ModelRef(p, verified(p), kind)
    files = {f.relative_to(p).as_posix(): sha256_file(f) for f in sorted(p.rglob("*")) if f.is_file()
             and not f.name.startswith(".")}
    return ModelRef(p, fingerprint(files), kind)


def _int(v: Any) -> int | None:
    return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def run_checkpoints(run: Path) -> list[tuple[str, Path]]:
    """(stage, folder) of every checkpoint of a run: pretrain first, then each finetune, each by step."""
    found = []
    stages = [("pretrain", run / "pretrain")]
    stages += [(f"finetune/{d.name}", d) for d in sorted((run / "finetune").glob("*")) if d.is_dir()]
    for stage, folder in stages:
        steps = []
        for d in (folder / "checkpoints").glob("step-*"):
            m = STEP_DIR.match(d.name)
            if m and d.is_dir():
                steps.append((int(m.group(1)), d))
        found.extend((stage, d) for _, d in sorted(steps))
    return found


def is_run(p: Path) -> bool:
    return p.is_dir() and ((p / "pretrain").is_dir() or (p / "finetune").is_dir())


def checkpoints_of(run: Path) -> list[tuple[str, Path]]:
    found = run_checkpoints(run)
    if not found:
        raise EvalError(f"{run} has no checkpoints (looked for {run}/pretrain/checkpoints/step-*/ and "
                        f"{run}/finetune/*/checkpoints/step-*/); pass a run folder written by `moxin pretrain`")
    return found


def run_of(path: Path) -> Path | None:
    """The run folder a checkpoint lives in (…/RUN/pretrain/checkpoints/step-N → RUN), if it follows the layout."""
    p = path.resolve()
    if p.parent.name == "checkpoints" and STEP_DIR.match(p.name):
        stage_dir = p.parent.parent
        return stage_dir.parent if stage_dir.name == "pretrain" else stage_dir.parent.parent
    return None
