"""`moxin eval`: evaluate a model, a checkpoint or every checkpoint of a run. Heavy imports stay inside.

`run_eval` is the eval stage's one entry point (a recipe's [eval] section over a run); `moxin build` calls it, and
`moxin eval RUN` goes through the same `evaluate_checkpoints`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from moxin.errors import EvalError
from moxin.layout import RunLayout
from moxin.records import run_root
from moxin.stage import StageResult

# Evaluation is many small forward passes; on a shared CPU, OpenMP's spinning threads wait out each other's time
# slices and every op costs tens of ms (measured 30-80x slower under load). Passive waiting avoids that; it must be
# set before torch starts its thread pool, and an explicit setting by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def eval_command(target: Path, tasks: list[str] | None = None, data_dir: Path | None = None, limit: int | None = None,
                 all_checkpoints: bool = False, batch_size: int = 32, dtype: str = "float32",
                 num_fewshot: int | None = None, seed: int = 1234, apply_chat_template: bool = False,
                 include_path: list[Path] | None = None, out: Path | None = None, device: str = "cpu",
                 max_length: int | None = None, parallel: int = 1,
                 executor: Literal["local", "ray"] = "local", own: list[str] | None = None) -> None:  # fmt: skip
    """Evaluate with lm-evaluation-harness (the moxin model adapter): quality, perplexity, bias and toxicity.

    TARGET is a model (moxin checkpoint or model folder, Hugging Face folder, .gguf file) or a RUN folder (its
    latest checkpoint, or every checkpoint with --all-checkpoints). Each (model SHA-256, task config hash) is
    computed once: results/<sha>-<hash>.json records the model and task hashes, lm-eval version, n-shot, batch size,
    dtype, seed, chat template use and limit (no clock: when and how long go to timings.jsonl beside it). A run also
    gets table.csv, table.md and plots/*.png (each metric against tokens seen) in RUN/eval/.

    Tasks: any lm-eval task name, or moxin's hellaswag, arc_easy, arc_challenge, piqa, winogrande, mmlu, gsm8k,
    lambada_openai, wikitext, crows_pairs_english, bbq, toxicity, jcommonsenseqa, and the suites moxin-zeroshot,
    moxin-fewshot, lambada, perplexity, bias, japanese. NAME:N sets the n-shot of one task.

    Your own items, no YAML needed: --own PATH:KIND with a JSONL file of one KIND: choice ({"question", "choices",
    "answer": index or text}), exact ({"question", "answer"}: greedy answer up to the newline, exact match after
    NFKC/case/punctuation normalisation) or perplexity ({"text"}). Each file becomes the task own_<file stem>; its
    result records the file's SHA-256. With --own and no --tasks, only the own tasks run.

    Args:
        target: model path, checkpoint folder or run folder
        tasks: tasks or suites, comma-separated (default: moxin-zeroshot)
        data_dir: folder with the evaluation data laid out like ../shared/data (without it, Hugging Face datasets)
        limit: evaluate only the first N items of each task
        all_checkpoints: evaluate every checkpoint of the run and write the table and plots
        batch_size: sequences per forward pass
        dtype: float32, bfloat16 or float16
        num_fewshot: n-shot for every task (default: the task's or suite's own)
        seed: seed for lm-eval's sampling of few-shot examples and for sampled generation
        apply_chat_template: format prompts with the tokenizer's chat template
        include_path: an extra folder of lm-eval task YAMLs (relative data paths resolve against each YAML)
        out: where results go (default: RUN/eval for a run or a checkpoint in one, else ./moxin-eval)
        device: torch device (cpu, cuda, cuda:1, ...)
        max_length: longest sequence the model sees (default: the model's max_seq_len)
        parallel: with --all-checkpoints, evaluate N checkpoints at once (worker processes or Ray tasks)
        executor: where --parallel workers run: local (processes on this machine) or ray (tasks on a Ray cluster)
        own: PATH:KIND, your own JSONL items scored as the task own_<stem>; KIND is choice, exact or perplexity
    """
    from moxin.commands import torch_dtype
    from moxin.eval.runner import Settings

    torch_dtype(dtype)  # validate early, before any model is loaded
    if limit is not None and limit < 1:
        raise EvalError(f"--limit must be at least 1, got {limit}")
    if parallel < 1:
        raise EvalError(f"--parallel must be at least 1, got {parallel}")
    if (parallel > 1 or executor != "local") and not all_checkpoints:
        raise EvalError(f"--parallel {parallel} --executor {executor} splits checkpoints; add --all-checkpoints")
    s = Settings(tasks=tasks or ([] if own else ["moxin-zeroshot"]), data_dir=data_dir, limit=limit,
                 batch_size=batch_size, dtype=dtype, num_fewshot=num_fewshot, seed=seed,
                 apply_chat_template=apply_chat_template, include_path=list(include_path or []), device=device,
                 max_length=max_length)  # fmt: skip
    _evaluate_target(target.expanduser().resolve(), s, all_checkpoints, out, parallel, executor, own or [])


def _evaluate_target(target: Path, s, all_checkpoints: bool, out: Path | None, parallel: int = 1,
                     executor: str = "local", own: Sequence[str] = ()) -> None:  # fmt: skip
    """`moxin eval TARGET`: a run (its latest or every checkpoint) or one model; results under `out`. The --own
    files are checked and turned into tasks first (in the run's eval/own/, else the private task cache)."""
    from moxin.eval import identity
    from moxin.eval.own import from_specs
    from moxin.eval.runner import evaluate, resolve_source

    if not target.exists():
        raise EvalError(f"TARGET {target} does not exist; pass a model, checkpoint or run folder")
    run = target if identity.is_run(target) else None
    if all_checkpoints and run is None:
        raise EvalError(f"--all-checkpoints needs a run folder (with pretrain/checkpoints/), but {target} is not one")
    home = run or run_root(target)
    own_tasks, own_dirs = from_specs(own, home)
    needs_data = bool(s.tasks) or s.data_dir is not None
    s.tasks, s.include_path = s.tasks + own_tasks, s.include_path + own_dirs
    s = resolve_source(s) if needs_data else s  # own tasks read their own files: no data folder, no network
    out_dir = out or (RunLayout(home).eval if home else Path.cwd() / "moxin-eval")
    if run is not None:
        evaluate_checkpoints(RunLayout(run), all_checkpoints, s, out_dir, parallel, executor)
    else:
        results, n = evaluate(identity.identify(target), s, out_dir)
        _summary(results, n, out_dir)


def evaluate_checkpoints(
    layout: RunLayout,
    all_checkpoints: bool,
    s,
    out_dir: Path,
    parallel: int = 1,
    executor: str = "local",
    models: Sequence[tuple[str, Path]] | None = None,
) -> None:
    """Evaluate a run's latest checkpoint, or every one, with settings `s`; write the table and plots. With
    `parallel` > 1 or the ray executor, the checkpoints are split over workers (moxin.eval.parallel); the results,
    table and plots are those of the serial run."""
    from moxin.eval import identity
    from moxin.eval.report import write_manifest, write_plots, write_tables
    from moxin.eval.runner import evaluate

    if models is not None:  # (stage, folder) chosen by the caller, e.g. an adapt run's base and its result
        ckpts = list(models)
    else:
        ckpts = identity.checkpoints_of(layout.root)
        ckpts = ckpts if all_checkpoints else ckpts[-1:]
    if parallel > 1 or executor != "local":
        from moxin.eval.parallel import evaluate_parallel

        everything, computed = evaluate_parallel(layout, ckpts, s, out_dir, parallel, executor)
    else:
        everything, computed = [], 0
        for stage, folder in ckpts:
            results, n = evaluate(identity.identify(folder, stage=stage), s, out_dir)
            everything += results
            computed += n
    csv_path, md_path = write_tables(out_dir, everything)
    plots = write_plots(out_dir, everything)
    write_manifest(out_dir)
    _summary(everything, computed, out_dir)
    print(f"checkpoints: {len(ckpts)}; table: {csv_path}, {md_path}; plots: {len(plots)} in {out_dir / 'plots'}")


def _summary(results: list[dict], computed: int, out_dir: Path) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"moxin eval ({computed} computed, {len(results) - computed} reused) → {out_dir}")
    for col in ("model", "step", "task", "n-shot", "metric", "value", "items", "time s"):
        table.add_column(col)
    from moxin.eval.catalog import CATALOG

    for r in results:
        spec = CATALOG.get(r["task"])
        shown = {m: v for m, v in r["metrics"].items() if spec is None or m in spec.metrics}  # all are in the file
        for metric, value in shown.items():
            table.add_row(
                Path(r["model"]["path"]).name,
                str(r["model"].get("step") or ""),
                r["task"],
                str(r["num_fewshot"] or 0),
                metric,
                "nan" if value is None else f"{value:.4f}",
                str(r.get("n_items") or ""),
                f"{r['time_s']:.1f}" if "time_s" in r else "reused",
            )
    Console(soft_wrap=True).print(table)


def eval_settings(
    cfg, resolve_path: Callable[[str], Path], extra_tasks: Sequence[str] = (), include_path: Sequence[Path] = ()
) -> tuple[Any, list[str]]:
    """The lm-eval settings of a recipe's [eval] section (an `EvalConfig`; data_dir relative to the recipe), plus
    notes. `extra_tasks` (with the YAML folders in `include_path`) run whatever data the standard tasks have;
    without eval.data_dir ($MOXIN_EVAL_DATA_DIR) and offline, the standard tasks are left out with a note when
    there are extra tasks, and are an error otherwise."""
    from moxin.eval.local_data import ENV
    from moxin.eval.runner import Settings, hf_reachable, resolve_source

    data_dir = resolve_path(cfg.data_dir) if cfg.data_dir else None
    s = Settings(
        tasks=list(extra_tasks) + list(cfg.tasks),
        data_dir=data_dir,
        limit=cfg.limit,
        batch_size=cfg.batch_size,
        dtype=cfg.dtype,
        num_fewshot=cfg.num_fewshot,
        apply_chat_template=cfg.apply_chat_template,
        include_path=[Path(p) for p in include_path],
    )
    if data_dir is not None or os.environ.get(ENV) or hf_reachable() or not extra_tasks:
        return resolve_source(s), []
    s.tasks = list(extra_tasks)
    if not cfg.tasks:
        return s, []
    note = (
        f"standard benchmarks ({', '.join(cfg.tasks)}) skipped: no eval.data_dir and Hugging Face is "
        f"unreachable; give --set eval.data_dir=../shared/data to run them"
    )
    return s, [note]


def run_eval(
    cfg,
    layout: RunLayout,
    resolve_path: Callable[[str], Path],
    extra_tasks: Sequence[str] = (),
    include_path: Sequence[Path] = (),
    models: Sequence[tuple[str, Path]] | None = None,
) -> StageResult:
    """The eval stage: a recipe's [eval] section over the run's checkpoints (every one with eval.all_checkpoints,
    else the latest; or the (stage, folder) `models` given) into `layout.eval`: results/, table.csv, table.md,
    plots/. Results already computed for a (model SHA-256, task hash) are reused."""
    from moxin.eval.own import from_config

    own_tasks, own_dirs = from_config(cfg.own, resolve_path, layout.eval / "own")
    s, notes = eval_settings(cfg, resolve_path, [*extra_tasks, *own_tasks], [*include_path, *own_dirs])
    evaluate_checkpoints(layout, cfg.all_checkpoints, s, layout.eval, models=models)
    return StageResult.done("eval", (layout.eval_results, layout.eval / "table.csv", layout.eval / "table.md"), notes)
