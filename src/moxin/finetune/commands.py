"""`moxin finetune sft|dpo|grpo RECIPE` and `moxin lineage CKPT`. Heavy imports (torch) stay inside the functions."""

from __future__ import annotations

import json
from pathlib import Path

from moxin.recipe import Recipe


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
        lora = f"LoRA rank {c.lora.rank} alpha {c.lora.alpha} on {', '.join(c.lora.targets)}" if c.lora.rank else \
            "full fine-tuning"
        print_dry_run(recipe, [f"parent: {ctx.parent['kind']} {ctx.parent_path} (sha256 {ctx.parent['sha256'][:12]}…)",
                               f"data: {', '.join(d.path for d in c.data) or 'none'}", lora,
                               f"writes {ctx.out}"])
        return 0
    from moxin.finetune.run import run

    summary = run(recipe, mode, resume=resume, progress=progress, log=log)
    for when in ("before", "after"):
        if when in summary:
            log(f"held-out {when}: " + ", ".join(f"{k} {v:.4f}" for k, v in summary[when].items()))
    log(f"{summary['status']}; last checkpoint {summary['last_checkpoint']}"
        + (f"; merged model {summary['final']}" if summary.get("final") else ""))
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
