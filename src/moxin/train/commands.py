"""`moxin pretrain` commands. Heavy imports (torch) stay inside the functions."""

from __future__ import annotations

import os
from pathlib import Path

from moxin.errors import ConfigError
from moxin.recipe import Recipe


def pretrain(recipe: Recipe, resume: str = "auto", allow_data_change: bool = False, progress: bool = True,
             dry_run: bool = False) -> int:
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
    from moxin.train.pretrain import run

    status = run(recipe, resume=resume, allow_data_change=allow_data_change, progress=progress, log=log)
    if os.environ.get("RANK", "0") == "0":
        log(f"{status}; see {Path(recipe.run.out_dir) / recipe.run.name / 'pretrain'}")
    return 0


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
