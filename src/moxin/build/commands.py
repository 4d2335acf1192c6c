"""`moxin build`: the whole system from one recipe."""

from __future__ import annotations

from pathlib import Path

from moxin.recipe import Recipe


def build(recipe: Recipe, out: Path | None = None, force: bool = False, dry_run: bool = False) -> int:
    """Build a fully open LLM end to end: data → tokenizer → pretrain → fine-tune → eval → release → verify.

    Each stage is skipped when its inputs' fingerprint is unchanged, so an interrupted build (Ctrl-C or even
    SIGKILL) resumes where it stopped and ends with the same release bytes. A stage that stops early (a signal
    during training) ends the build with exit code 1 and says so; running the build again resumes it. Without
    RECIPE arguments it builds the embedded default (`tiny`: the Python standard library as corpus, a few
    minutes on 2 CPU cores).

    Args:
        recipe: recipe TOML file, or a shipped recipe name (tiny, gutenberg-small, moxin-7b)
        out: folder for runs (default: the recipe's run.out_dir); the run goes to OUT/<run.name>
        force: re-run every stage even when its inputs are unchanged
        dry_run: print the resolved recipe and the plan (parameters, tokens and FLOPs per phase, memory per GPU
            under FSDP2, GPU-hours), then exit
    """
    from moxin.build.plan import plan_lines
    from moxin.build.run import build as run_build
    from moxin.build.run import plan_names
    from moxin.commands import print_dry_run
    from moxin.layout import RunLayout

    if dry_run:
        lines = [f"run folder: {RunLayout.from_recipe(recipe, out).root}",
                 "stages: " + " → ".join(plan_names(recipe))]
        print_dry_run(recipe, lines + plan_lines(recipe.model, recipe.pretrain, recipe.build))
        return 0
    return 0 if run_build(recipe, out, force=force)["ok"] else 1


build.default_recipe = "tiny"  # `moxin build` alone builds the embedded default
