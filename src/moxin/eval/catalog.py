"""moxin's task catalogue and suites: a user-facing name → lm-eval's built-in task (used when Hugging Face datasets
are reachable) and moxin's local twin (same prompts and metrics, reading a data folder laid out like
../shared/data). Names outside the catalogue go to lm-eval unchanged, so any lm-eval task works."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from moxin.errors import EvalError

TASKS_DIR = Path(__file__).resolve().parent / "tasks"


@dataclass(frozen=True)
class TaskSpec:
    builtin: str | None  # lm-eval's task name (Hugging Face data)
    local: str | None  # moxin's local task name (data folder)
    data: str | None = None  # key of moxin.eval.local_data.FILES
    metrics: tuple[str, ...] = ("acc", "acc_norm")  # what the checkpoint table and plots show


CATALOG: dict[str, TaskSpec] = {
    "hellaswag": TaskSpec("hellaswag", "hellaswag_local", "hellaswag"),
    "arc_easy": TaskSpec("arc_easy", "arc_easy_local", "arc_easy"),
    "arc_challenge": TaskSpec("arc_challenge", "arc_challenge_local", "arc_challenge"),
    "piqa": TaskSpec("piqa", "piqa_local", "piqa"),
    "winogrande": TaskSpec("winogrande", "winogrande_local", "winogrande", ("acc",)),
    "mmlu": TaskSpec("mmlu", None, None, ("acc",)),
    "gsm8k": TaskSpec("gsm8k", "gsm8k_local", "gsm8k", ("exact_match,strict-match", "exact_match,flexible-extract")),
    "lambada_openai": TaskSpec("lambada_openai", "lambada_openai_local", "lambada_openai", ("acc", "perplexity")),
    "wikitext": TaskSpec("wikitext", "wikitext_local", "wikitext", ("word_perplexity", "bits_per_byte")),
    "crows_pairs_english": TaskSpec(
        "crows_pairs_english", "crows_pairs_english_local", "crows_pairs_english", ("pct_stereotype", "likelihood_diff")
    ),
    "bbq": TaskSpec(
        "bbq", "bbq_local", "bbq", ("acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score")
    ),
    # lm-eval's realtoxicityprompts needs the Perspective API; moxin's measure runs offline on either source.
    "toxicity": TaskSpec(None, "toxicity_local", "toxicity", ("flagged_rate", "new_flagged_rate")),
    "jcommonsenseqa": TaskSpec("ja_leaderboard_jcommonsenseqa", "jcommonsenseqa_local", "jcommonsenseqa", ("acc",)),
}

# suite → [(task, n-shot or None for the task's own default)]
SUITES: dict[str, list[tuple[str, int | None]]] = {
    "moxin-zeroshot": [("arc_easy", 0), ("arc_challenge", 0), ("hellaswag", 0), ("piqa", 0), ("winogrande", 0)],
    "moxin-fewshot": [("arc_challenge", 25), ("hellaswag", 10), ("mmlu", 5), ("winogrande", 5)],
    "lambada": [("lambada_openai", 0)],
    "perplexity": [("wikitext", 0)],
    "bias": [("crows_pairs_english", 0), ("bbq", 0)],
    "japanese": [("jcommonsenseqa", 3)],
}
ALIASES = {
    "arc_e": "arc_easy",
    "arc_c": "arc_challenge",
    "arc-easy": "arc_easy",
    "arc-challenge": "arc_challenge",
    "lambada": "lambada_openai",
    "crows_pairs": "crows_pairs_english",
    "jcqa": "jcommonsenseqa",
}


@dataclass(frozen=True)
class Planned:
    name: str  # user-facing name (the table column)
    lm_eval_task: str  # what lm-eval runs
    num_fewshot: int | None
    source: str  # "local" | "hf" | "lm-eval"
    spec: TaskSpec | None
    suite: str | None = None


def parse_tasks(items: list[str]) -> list[tuple[str, int | None]]:
    """'hellaswag,arc_easy:25' and repeated flags → [(name, n-shot or None)]."""
    out = []
    for item in items:
        for part in (p.strip() for p in item.split(",")):
            if not part:
                continue
            name, _, shots = part.partition(":")
            if shots and not shots.isdigit():
                raise EvalError(f"--tasks {part!r}: the n-shot after ':' must be a whole number, e.g. {name}:5")
            out.append((name, int(shots) if shots else None))
    return out


def plan(
    items: list[str], local: bool, known: set[str], num_fewshot: int | None = None
) -> tuple[list[Planned], list[str]]:
    """Expand suites and aliases; pick the built-in or local task. Returns (plan, notes about skipped tasks)."""
    planned, notes = [], []
    for name, shots in parse_tasks(items):
        if name in SUITES:
            for task, n in SUITES[name]:
                try:
                    planned.append(
                        _one(
                            task,
                            shots if shots is not None else (num_fewshot if num_fewshot is not None else n),
                            local,
                            known,
                            name,
                        )
                    )
                except EvalError as e:  # a suite member without data is skipped, and said so
                    notes.append(f"{name}: skipped {task}: {e}")
            continue
        planned.append(_one(ALIASES.get(name, name), shots if shots is not None else num_fewshot, local, known, None))
    if not planned:
        raise EvalError(
            "no task to run; pass --tasks (e.g. --tasks moxin-zeroshot or --tasks hellaswag)"
            + (f" ({'; '.join(notes)})" if notes else "")
        )
    return planned, notes


def _one(name: str, shots: int | None, local: bool, known: set[str], suite: str | None) -> Planned:
    spec = CATALOG.get(name)
    if spec is None:
        if name not in known:
            raise unknown_task(name, known)
        return Planned(name, name, shots, "lm-eval", None, suite)
    if local or spec.builtin is None:
        if spec.local is None:
            raise EvalError(
                f"task {name!r} has no local data set in moxin (its data is not in ../shared/data); it needs "
                f"Hugging Face datasets: run without --data-dir on a machine that reaches huggingface.co"
            )
        return Planned(name, spec.local, shots, "local", spec, suite)
    return Planned(name, spec.builtin, shots, "hf", spec, suite)


def unknown_task(name: str, known: set[str]) -> EvalError:
    choices = sorted(set(CATALOG) | set(SUITES) | set(ALIASES) | known)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    hint = (
        f"did you mean {', '.join(repr(c) for c in close)}?"
        if close
        else f"moxin tasks: {', '.join(CATALOG)}; suites: {', '.join(SUITES)}"
    )
    return EvalError(f"unknown task {name!r} (--tasks); {hint}")
