"""What was evaluated: a model's identity (SHA-256), its checkpoint metadata, and the checkpoints of a run.

A checkpoint's identity is the SHA-256 of its manifest.json (docs/CONTRACTS.md); before it is evaluated, every file
is checked against that manifest, so a result can never be filed under a hash its weights do not have."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import EvalError
from moxin.layout import RunLayout
from moxin.records import model_identity, read_train_state, run_root


@dataclass
class ModelRef:
    path: Path
    sha256: str
    kind: str  # checkpoint | model | hf | gguf | file (moxin.records.model_identity)
    step: int | None = None
    tokens_seen: int | None = None
    stage: str | None = None  # pretrain | finetune/<name>
    info: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """What a result records: the path relative to the model's run folder (the file name outside a run)."""
        home = run_root(self.path)
        path = RunLayout(home).rel(self.path) if home is not None else self.path.name
        return {
            "path": path,
            "sha256": self.sha256,
            "kind": self.kind,
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "stage": self.stage,
        }


def is_checkpoint(p: Path) -> bool:
    return p.is_dir() and (p / "model").is_dir() and (p / "manifest.json").is_file()


def identify(path: str | Path, stage: str | None = None) -> ModelRef:
    """The model at `path` and its identity (`moxin.records.model_identity`: a checkpoint's files are checked
    against its manifest first, so a result can never be filed under a hash its weights do not have)."""
    from moxin.interop import model_kind

    p = Path(path).expanduser().resolve()
    model_kind(p)  # raises a clear InteropError for anything unusable
    kind, sha = model_identity(p)
    if kind == "checkpoint" and is_checkpoint(p):
        state = read_train_state(p)
        return ModelRef(p, sha, kind, state.step, state.tokens_seen, stage)
    return ModelRef(p, sha, kind, stage=stage)


def is_run(p: Path) -> bool:
    return p.is_dir() and ((p / "pretrain").is_dir() or (p / "finetune").is_dir())


def checkpoints_of(run: Path) -> list[tuple[str, Path]]:
    """(stage, folder) of every checkpoint of a run: pretrain first, then each finetune, each by step."""
    found = [(c.stage, c.path) for c in RunLayout(Path(run)).all_checkpoints()]
    if not found:
        raise EvalError(
            f"{run} has no checkpoints (looked for {run}/pretrain/checkpoints/step-*/ and "
            f"{run}/finetune/*/checkpoints/step-*/); pass a run folder written by `moxin pretrain`"
        )
    return found
