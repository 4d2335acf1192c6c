"""`moxin build`: the whole system from one recipe."""

from __future__ import annotations

from pathlib import Path

from moxin.recipe import Recipe


def build(recipe: Recipe, out: Path | None = None, force: bool = False, dry_run: bool = False) -> None:
    """Build a fully open LLM end to end: data → tokenizer → pretrain → fine-tune → eval → release → verify.

    Each stage is skipped when its inputs' fingerprint is unchanged, so an interrupted build (Ctrl-C or even
    SIGKILL) resumes where it stopped and ends with the same release bytes. Without RECIPE arguments it builds
    the embedded default (`tiny`: the Python standard library as corpus, a few minutes on 2 CPU cores).

    Args:
        recipe: recipe TOML file, or a shipped recipe name (tiny, gutenberg-small, moxin-7b)
        out: folder for runs (default: the recipe's run.out_dir); the run goes to OUT/<run.name>
        force: re-run every stage even when its inputs are unchanged
        dry_run: print the resolved recipe and the plan (parameters, tokens and FLOPs per phase, memory per GPU
            under FSDP2, GPU-hours), then exit
    """
    from moxin.build.plan import plan_lines
    from moxin.build.run import build as run_build
    from moxin.build.run import finetune_modes, run_dir
    from moxin.commands import print_dry_run

    if dry_run:
        stages = ["data", "selfdata", "pretrain"] + [f"finetune-{m}" for m in finetune_modes(recipe)]
        stages += ["eval", "release", "verify"]
        lines = [f"run folder: {run_dir(recipe, out)}", "stages: " + " → ".join(stages)]
        print_dry_run(recipe, lines + plan_lines(recipe.model, recipe.pretrain, recipe.build))
        return
    run_build(recipe, out, force=force)


build.default_recipe = "tiny"  # `moxin build` alone builds the embedded default
