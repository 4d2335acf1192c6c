"""What every stage entry point returns, shared by `moxin <stage>` and `moxin build`.

Each stage has one entry point in its component, `run_<stage>(section(s), layout, ...) -> StageResult`:
`moxin.data.commands.run_data`, `moxin.build.selfdata.run_selfdata`, `moxin.train.commands.run_pretrain`,
`moxin.finetune.commands.run_finetune`, `moxin.eval.commands.run_eval`, `moxin.release.stage.run_release` and
`run_verify`. The command and the build call the same function, so they cannot disagree on an input.

A stage that stops early (a signal during training) returns `failed` with the reason and how to go on; it never
raises `KeyboardInterrupt` for control flow. User mistakes still raise `MoxinError`.

No torch here: the CLI and `build` import this module at start-up.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Status = Literal["done", "skipped", "failed"]
STATUSES = ("done", "skipped", "failed")


@dataclass(frozen=True)
class StageResult:
    stage: str  # 'data', 'selfdata', 'pretrain', 'finetune-sft', 'eval', 'release', 'verify', ...
    status: Status
    reason: str = ""  # why it was skipped or failed ('' when done)
    outputs: tuple[Path, ...] = ()  # the files/folders it wrote (or would have written)
    notes: tuple[str, ...] = ()  # things the user should know although the stage is done

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"StageResult.status {self.status!r}: use one of {STATUSES}")
        if self.status != "done" and not self.reason:
            raise ValueError(f"a {self.status} StageResult needs a reason")

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    @classmethod
    def done(cls, stage: str, outputs=(), notes=()) -> StageResult:
        return cls(stage, "done", "", tuple(Path(p) for p in outputs), tuple(notes))

    @classmethod
    def skipped(cls, stage: str, reason: str, outputs=()) -> StageResult:
        return cls(stage, "skipped", reason, tuple(Path(p) for p in outputs))

    @classmethod
    def failed(cls, stage: str, reason: str, outputs=()) -> StageResult:
        return cls(stage, "failed", reason, tuple(Path(p) for p in outputs))

    def line(self) -> str:
        """One line for the user: '<stage>: <status>[: reason]'."""
        return f"{self.stage}: {self.status}" + (f": {self.reason}" if self.reason else "")


def interrupted(stage: str, step: int | None, outputs=()) -> StageResult:
    """A training stage stopped by a signal after writing a checkpoint (or before its first one)."""
    where = f"at step {step}" if step is not None else "before its first checkpoint"
    return StageResult.failed(stage, f"interrupted {where}; run again to resume", outputs)


def recipe_at(recipe, layout):
    """The recipe with `run.out_dir`/`run.name` pointing at `layout.root`: for stage internals that locate the run
    folder from the recipe. The caller's recipe is not changed (what `build` records keeps the out_dir as
    written), and `source_path` (recipe-relative paths) is kept."""
    root = Path(layout.root)
    view = copy.copy(recipe)
    view.run = dataclasses.replace(recipe.run, out_dir=str(root.parent), name=root.name)
    return view


__all__ = ["StageResult", "Status", "interrupted", "recipe_at"]
