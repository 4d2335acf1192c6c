"""`moxin adapt RECIPE`: continued pretraining of the recipe's `[adapt] base` on its data. Heavy imports (torch)
stay inside the functions.

`run_adapt` is the adapt stage's one entry point: `moxin adapt` and `moxin build` both call it; `run_import`
(`moxin.adapt.base`) is the import stage's."""

from __future__ import annotations

import os
from collections.abc import Callable

from moxin.errors import ConfigError
from moxin.layout import RunLayout
from moxin.recipe import Recipe
from moxin.stage import StageResult, interrupted


def run_adapt(
    recipe: Recipe,
    layout: RunLayout,
    resume: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> StageResult:
    """Continue pretraining `layout.base` on `layout.data` into `layout.adapt`. `failed` when a signal stopped
    it: the next call with resume="auto" goes on from its checkpoint."""
    from moxin.adapt.run import run

    cfg = recipe.adapt
    if not cfg.enabled:
        raise ConfigError(f"{recipe.source_path} has no [adapt] base; set adapt.base to the model to adapt")
    if not (layout.base / "manifest.json").is_file():
        raise ConfigError(
            f"{layout.base} holds no imported base; run `moxin build` (it imports adapt.base first) or "
            f"`moxin import BASE {layout.base}`"
        )
    summary = run(cfg, layout, recipe.run.seed, recipe.source_path, resume=resume, progress=progress, log=log)
    outputs = (layout.run_json("adapt"), layout.checkpoints_dir("adapt"))
    if summary.get("status") == "done":
        return StageResult.done("adapt", outputs)
    last = layout.checkpoints("adapt")
    return interrupted("adapt", last[-1].step if last else None, outputs)


def adapt(recipe: Recipe, resume: str = "auto", progress: bool = True, dry_run: bool = False) -> int:
    """Continue pretraining the recipe's [adapt] base on the run's tokenized documents (LoRA or full).

    Needs <run>/base (the imported base) and <run>/data (tokenized with the base's tokenizer): `moxin build`
    makes both. SIGINT/SIGTERM write a checkpoint; running the command again resumes bit-exactly.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. adapt-ja)
        resume: auto (continue from the latest checkpoint), none (refuse if checkpoints exist), or a checkpoint path
        progress: show a progress bar
        dry_run: print the resolved recipe and the plan, then exit
    """
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def log(msg: str) -> None:
        console.print(f"[dim]adapt:[/] {msg}", markup=True, soft_wrap=True)

    layout = RunLayout.from_recipe(recipe)
    if dry_run:
        from moxin.commands import print_dry_run

        c = recipe.adapt
        mode = f"LoRA rank {c.lora.rank} alpha {c.lora.alpha}" if c.lora.rank else "full"
        print_dry_run(recipe, [f"base: {c.base}", f"{mode}; {c.steps} steps of {c.global_batch}×{c.seq_len}",
                               f"writes {layout.adapt}"])  # fmt: skip
        return 0
    res = run_adapt(recipe, layout, resume=resume, progress=progress, log=log)
    if os.environ.get("RANK", "0") == "0":
        log(f"{res.status if res.ok else res.reason}; see {layout.adapt}")
    return 0
