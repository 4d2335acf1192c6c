"""`moxin pretrain` commands. Heavy imports (torch) stay inside the functions.

`run_pretrain` is the pretraining stage's one entry point: `moxin pretrain` and `moxin build` both call it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from moxin.errors import ConfigError
from moxin.layout import RunLayout
from moxin.recipe import Recipe
from moxin.stage import StageResult, interrupted, recipe_at


def run_pretrain(
    recipe: Recipe,
    layout: RunLayout,
    resume: str = "auto",
    allow_data_change: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> StageResult:
    """Pretrain into `layout.pretrain` (single process or one rank of torchrun). `failed` when a signal stopped
    it: the checkpoint it wrote is where the next call (resume="auto") goes on from.

    Takes the recipe (model, pretrain, run.seed and recipe-relative data paths) because the trainer's set-up
    reads those sections; the run folder is `layout`'s, whatever the recipe's run.out_dir says."""
    from moxin.train.pretrain import run

    status = run(
        recipe_at(recipe, layout), resume=resume, allow_data_change=allow_data_change, progress=progress, log=log
    )
    outputs = (layout.run_json("pretrain"), layout.checkpoints_dir("pretrain"))
    if status == "done":
        return StageResult.done("pretrain", outputs)
    last = layout.checkpoints("pretrain")
    return interrupted("pretrain", last[-1].step if last else None, outputs)


def pretrain(
    recipe: Recipe, resume: str = "auto", allow_data_change: bool = False, progress: bool = True, dry_run: bool = False
) -> int:
    """Pretrain a model through the recipe's phases, with checkpoints, metrics.jsonl and loss.png.

    Launch with `torchrun --nproc_per_node N -m moxin.cli pretrain RECIPE` for FSDP2/DDP (gloo on CPU, NCCL on
    GPU). SIGINT/SIGTERM write a checkpoint and exit 0; re-running the command resumes bit-exactly.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        resume: auto (continue from the latest checkpoint), none (refuse if checkpoints exist), or a checkpoint path
        allow_data_change: resume even though the tokenized data changed since the checkpoint
        progress: show a progress bar
        dry_run: print the resolved recipe and the phase plan, then exit
    """
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def log(msg: str) -> None:
        console.print(f"[dim]pretrain:[/] {msg}", markup=True, soft_wrap=True)

    if dry_run:
        from moxin.commands import print_dry_run
        from moxin.train.pretrain import Setup

        setup = Setup.from_recipe(recipe)
        print_dry_run(recipe, [*setup.describe(), f"writes {setup.run_dir}"])
        return 0
    layout = RunLayout.from_recipe(recipe)
    res = run_pretrain(recipe, layout, resume=resume, allow_data_change=allow_data_change, progress=progress, log=log)
    if os.environ.get("RANK", "0") == "0":
        log(f"{res.status if res.ok else res.reason}; see {layout.pretrain}")
    return 0  # an interrupted run exits 0 too (documented): the checkpoint is written, re-running resumes


def show_batch(run: Path, step: int | None = None, data_dir: Path | None = None) -> None:
    """List the documents (source, doc id, token span) that the samples of one training step were cut from.

    Args:
        run: the run folder (runs/<name>) or its pretrain/ folder
        step: the global step to show
        data_dir: the tokenized data folder, if it moved since the run
    """
    from moxin.train.pretrain import show_batch as lines

    if step is None:
        raise ConfigError("--step is required: moxin pretrain show-batch RUN --step N")
    print("\n".join(lines(run, step, data_dir)))
