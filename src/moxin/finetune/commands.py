"""`moxin finetune sft|dpo|grpo RECIPE` and `moxin lineage CKPT`. Heavy imports (torch) stay inside the functions.

`run_finetune` is a fine-tuning stage's one entry point: `moxin finetune MODE` and `moxin build` both call it."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from moxin.layout import RunLayout, finetune_name
from moxin.recipe import Recipe
from moxin.stage import StageResult, interrupted, recipe_at


def run_finetune(
    recipe: Recipe,
    layout: RunLayout,
    mode: str,
    resume: str = "auto",
    progress: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> StageResult:
    """Fine-tune (MODE: sft, dpo or grpo) into `layout.finetune(<name>)` (its summary: that folder's run.json).
    `failed` when a signal stopped it: the next call with resume="auto" goes on from its checkpoint.

    Takes the recipe because the mode resolves its parent ('pretrain', another mode, or a recipe-relative path),
    its data ('{run}/...' or recipe-relative) and the shared [finetune] settings; the run folder is `layout`'s."""
    from moxin.finetune.run import run

    summary = run(recipe_at(recipe, layout), mode, resume=resume, progress=progress, log=log)
    folder = f"finetune/{finetune_name(recipe.finetune, mode)}"
    stage, outputs = f"finetune-{mode}", (layout.run_json(folder), layout.checkpoints_dir(folder))
    if summary.get("status") == "done":
        return StageResult.done(stage, outputs)
    last = layout.checkpoints(folder)
    return interrupted(stage, last[-1].step if last else None, outputs)


def _run(recipe: Recipe, mode: str, resume: str, progress: bool, dry_run: bool) -> int:
    from rich.console import Console

    console = Console(stderr=True, highlight=False)

    def log(msg: str) -> None:
        console.print(f"[dim]finetune {mode}:[/] {msg}", markup=True, soft_wrap=True)

    if dry_run:
        from moxin.commands import print_dry_run
        from moxin.finetune.run import context

        ctx = context(recipe, mode)
        c = ctx.cfg
        lora = (
            f"LoRA rank {c.lora.rank} alpha {c.lora.alpha} on {', '.join(c.lora.targets)}"
            if c.lora.rank
            else "full fine-tuning"
        )
        print_dry_run(
            recipe,
            [
                f"parent: {ctx.parent['kind']} {ctx.parent_path} (sha256 {ctx.parent['sha256'][:12]}…)",
                f"data: {', '.join(d.path for d in c.data) or 'none'}",
                lora,
                f"writes {ctx.out}",
            ],
        )
        return 0
    res = run_finetune(recipe, RunLayout.from_recipe(recipe), mode, resume=resume, progress=progress, log=log)
    if not res.ok:
        log(res.reason)
    if os.environ.get("RANK", "0") != "0":
        return 0  # rank 0 writes run.json and reports
    summary = json.loads(res.outputs[0].read_text("utf-8"))
    for when in ("before", "after"):
        if when in summary:
            log(f"held-out {when}: " + ", ".join(f"{k} {v:.4f}" for k, v in summary[when].items()))
    log(
        f"{summary['status']}; last checkpoint {summary['last_checkpoint']}"
        + (f"; merged model {summary['final']}" if summary.get("final") else "")
    )
    return 0


def sft(recipe: Recipe, resume: str = "auto", progress: bool = True, dry_run: bool = False) -> int:
    """Supervised fine-tuning on the recipe's [finetune.sft] data (loss on assistant turns only).

    The parent (finetune.parent or finetune.sft.parent) is a moxin checkpoint, a Hugging Face folder or a GGUF
    file. Use `torchrun --nproc_per_node N -m moxin.cli finetune sft RECIPE` for FSDP2/DDP.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        resume: auto (continue from the latest checkpoint), none (refuse if checkpoints exist), or a checkpoint path
        progress: show a progress bar
        dry_run: print the resolved recipe and the plan, then exit
    """
    return _run(recipe, "sft", resume, progress, dry_run)


def dpo(recipe: Recipe, resume: str = "auto", progress: bool = True, dry_run: bool = False) -> int:
    """Direct preference optimisation on [finetune.dpo] preference pairs against the frozen parent.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        resume: auto (continue from the latest checkpoint), none (refuse if checkpoints exist), or a checkpoint path
        progress: show a progress bar
        dry_run: print the resolved recipe and the plan, then exit
    """
    return _run(recipe, "dpo", resume, progress, dry_run)


def grpo(recipe: Recipe, resume: str = "auto", progress: bool = True, dry_run: bool = False) -> int:
    """GRPO on [finetune.grpo] problems with checkable answers: sampled groups, verifiable reward, KL to the parent.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        resume: auto (continue from the latest checkpoint), none (refuse if checkpoints exist), or a checkpoint path
        progress: show a progress bar
        dry_run: print the resolved recipe and the plan, then exit
    """
    return _run(recipe, "grpo", resume, progress, dry_run)


def lineage(checkpoint: Path, json_out: bool = False) -> None:
    """Print a checkpoint's chain back to the raw data: parents, data manifests, licences, code and recipe.

    Args:
        checkpoint: a checkpoint folder (step-XXXXXXXX) or a fine-tuning final/ folder
        json_out: print the chain as JSON instead of text
    """
    from moxin.finetune.lineage import chain, format_chain

    nodes = chain(checkpoint)
    print(json.dumps(nodes, indent=2) if json_out else "\n".join(format_chain(nodes)))
