"""What changed in the numbers: evaluation results of both sides (found in their runs' eval/results and in the
comparison's own cache), paired by task config hash, with bootstrap intervals over items, items won and lost, and
bias metrics side by side. `--eval` computes missing results with `moxin.eval.runner.evaluate`, which never
recomputes a result that exists."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from moxin.compare.resolve import Side
from moxin.compare.stats import pair_items, paired_bootstrap

EXAMPLES = 5
BIAS_PREFIXES = ("crows_pairs", "bbq")
LOWER_IS_BETTER = ("perplexity", "bits_per_byte", "word_perplexity", "byte_perplexity")


def result_dirs(side: Side, cache: Path | None, extra: Sequence[Path] = ()) -> list[Path]:
    """Where a side's results may lie: its run's eval/results, the cache, and `extra` result folders (a build's
    eval/results for the base model it imported, which lies in the run but is no checkpoint of it)."""
    dirs = [side.root / "eval" / "results"] if side.root is not None else []
    return dirs + ([cache / "results"] if cache is not None else []) + list(extra)


def results_of(side: Side, cache: Path | None, extra: Sequence[Path] = ()) -> dict[str, dict[str, Any]]:
    """task config hash → result, for every result filed under the side's model SHA-256."""
    found: dict[str, dict[str, Any]] = {}
    for folder in result_dirs(side, cache, extra):
        for path in sorted(folder.glob(f"{side.sha256}-*.json")) if folder.is_dir() else []:
            try:
                doc = json.loads(path.read_text("utf-8"))
            except (OSError, ValueError):
                continue  # unreadable: not a result to compare
            h = doc.get("task_config_hash") or path.stem.split("-", 1)[-1]
            if isinstance(doc, dict) and isinstance(doc.get("metrics"), dict):
                found.setdefault(str(h), doc)
    return found


def compute_missing(sides: list[Side], tasks: list[str], data_dir: Path | None, limit: int | None, cache: Path,
                    log: Callable[[str], None] = print) -> None:  # fmt: skip
    """Evaluate `tasks` on each side into `cache`, after copying the side's existing results there (results are
    the same bytes wherever they were computed), so that only what is missing is computed."""
    from moxin.eval.identity import identify
    from moxin.eval.runner import Settings, evaluate, resolve_source
    from moxin.provenance import atomic_write_bytes

    s = resolve_source(Settings(tasks=list(tasks), data_dir=data_dir, limit=limit))
    for side in sides:
        for folder in result_dirs(side, None):
            for path in sorted(folder.glob(f"{side.sha256}-*.json")) if folder.is_dir() else []:
                if not (cache / "results" / path.name).is_file():
                    atomic_write_bytes(cache / "results" / path.name, path.read_bytes())
        _, computed = evaluate(identify(side.model, side.stage), s, cache, log=log)
        log(f"{side.label}: {computed} result(s) computed, the rest reused")


def is_bias(result: dict[str, Any]) -> bool:
    names = (str(result.get("task") or ""), str(result.get("lm_eval_task") or ""))
    return any(n.startswith(BIAS_PREFIXES) for n in names)


def compare_results(a: dict[str, dict[str, Any]], b: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per task both sides have a result for under the same task config hash."""
    return [compare_task(a[h], b[h]) for h in sorted(set(a) & set(b), key=lambda h: (a[h].get("task") or "", h))]


def compare_task(ra: dict[str, Any], rb: dict[str, Any]) -> dict[str, Any]:
    raw_a, raw_b = ra.get("items"), rb.get("items")  # a list from result_version 2 on
    per_item = isinstance(raw_a, list) and isinstance(raw_b, list)
    items_a: list[dict[str, Any]] = raw_a if isinstance(raw_a, list) else []
    items_b: list[dict[str, Any]] = raw_b if isinstance(raw_b, list) else []
    metrics = []
    for name in sorted(set(ra["metrics"]) & set(rb["metrics"])):
        va, vb = ra["metrics"][name], rb["metrics"][name]
        if va is None or vb is None:
            continue
        row: dict[str, Any] = {"metric": name, "a": va, "b": vb, "delta": round(vb - va, 6), "ci95": None}
        ids, pa, pb = pair_items(items_a, items_b, name) if per_item else ([], [], [])
        if ids:
            row.update(paired_bootstrap(name, pa, pb).record())
        metrics.append(row)
    out: dict[str, Any] = {
        "task": ra.get("task"),
        "task_config_hash": ra.get("task_config_hash"),
        "num_fewshot": ra.get("num_fewshot"),
        "bias": is_bias(ra),
        "metrics": metrics,
    }
    if per_item and not out["bias"]:
        out.update(won_lost(items_a, items_b))
    return out


def primary_metric(items: list[dict[str, Any]]) -> str | None:
    """The per-item metric that decides won/lost: acc when present, else the first scalar one."""
    names = [k for i in items[:1] for k, v in i.items() if k not in ("doc_id", "example") and isinstance(v, float)]
    return "acc" if "acc" in names else (names[0] if names else None)


def won_lost(items_a: list[dict[str, Any]], items_b: list[dict[str, Any]]) -> dict[str, Any]:
    """Items B scores better on than A (won) and worse (lost), on the primary metric; 5 examples of each."""
    metric = primary_metric(items_a)
    if metric is None:
        return {}
    ids, pa, pb = pair_items(items_a, items_b, metric)
    sign = -1 if metric.split(",")[0] in LOWER_IS_BETTER else 1
    examples = {i["doc_id"]: i.get("example", "") for i in items_b}
    won = [(d, x, y) for d, x, y in zip(ids, pa, pb) if sign * (y - x) > 0]
    lost = [(d, x, y) for d, x, y in zip(ids, pa, pb) if sign * (y - x) < 0]

    def show(rows: list[tuple]) -> list[dict[str, Any]]:
        return [{"doc_id": d, "a": x, "b": y, "example": examples.get(d, "")} for d, x, y in rows[:EXAMPLES]]

    return {"won_lost": {"metric": metric, "items": len(ids), "won": len(won), "lost": len(lost),
                         "won_examples": show(won), "lost_examples": show(lost)}}  # fmt: skip
