"""`moxin.compare.compare(A, B, out)`: what differs between two models, what it did to the numbers, what they say,
and a short summary derived only from those numbers. Writes compare.json and compare.md into `out` when given."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


def compare(a: str | Path, b: str | Path, out: Path | None = None, tasks: list[str] | None = None,
            data_dir: Path | None = None, limit: int | None = None, prompts: Path | None = None,
            max_new_tokens: int = 32, heldout_tokens: int = 4096, results: Sequence[Path] = (),
            log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """The comparison of A and B as a JSON-ready dict (see docs of `moxin compare`). `tasks` evaluates what is
    missing into `out` (or a cache folder); max_new_tokens=0 skips the prompts, heldout_tokens=0 the held-out
    perplexity; `results` are more eval/results folders to look in (reused, never recomputed)."""
    from moxin.compare import differ, effects
    from moxin.compare.models import held_out, read_prompts, run_models
    from moxin.compare.resolve import resolve

    side_a, side_b = resolve(a), resolve(b)
    prompt_list = read_prompts(prompts) if max_new_tokens > 0 else []
    cache = Path(out) / "eval" if out is not None else None
    if tasks:
        cache = cache or default_cache()
        effects.compute_missing([side_a, side_b], tasks, data_dir, limit, cache, log)
    evals = effects.compare_results(
        effects.results_of(side_a, cache, results), effects.results_of(side_b, cache, results)
    )
    docs = held_out([side_a, side_b], heldout_tokens) if heldout_tokens > 0 else []
    ran = run_models(side_a, side_b, docs, prompt_list, max_new_tokens, log) if docs or prompt_list else {}
    doc: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "a": side_a.record(),
        "b": side_b.record(),
        "differs": differ.differences(side_a, side_b),
        "evals": [e for e in evals if not e["bias"]],
        "bias": [e for e in evals if e["bias"]],
        "heldout": ran.get("heldout", []),
        "prompts": ran.get("prompts", []),
    }
    doc["summary"] = summary(doc)
    if out is not None:
        write(doc, Path(out))
    return doc


def default_cache() -> Path:
    import os

    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "moxin" / "compare"


def write(doc: dict[str, Any], out: Path) -> None:
    from moxin.compare.render import markdown
    from moxin.provenance import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "compare.json", doc)
    atomic_write_text(out / "compare.md", markdown(doc))


# ------------------------------------------------------------------------------------------------ summary
def fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}" if abs(x) >= 1e-3 or x == 0 else f"{x:.2e}"


def signed(x: float) -> str:
    return ("+" if x > 0 else "−" if x < 0 else "±") + fmt(abs(x))


def delta_text(label: str, row: dict[str, Any]) -> str:
    """'label: A → B (Δ, 95% CI lo..hi)', or 'no significant change' when the interval holds 0."""
    a, b, d, ci = row["a"], row["b"], row["delta"], row.get("ci95")
    if ci is None:
        why = "one item" if row.get("n") == 1 else "no per-item results"
        return f"{label}: {fmt(a)} → {fmt(b)} ({signed(d)}; {why}, so no interval)"
    interval = f"95% CI {signed(ci[0])}..{signed(ci[1])}"
    if not row.get("significant"):
        return f"{label}: no significant change ({fmt(a)} → {fmt(b)}, {interval})"
    return f"{label}: {fmt(a)} → {fmt(b)} ({signed(d)}, {interval})"


def summary(doc: dict[str, Any]) -> list[str]:
    """What changed, in a few lines, each read off a number in `doc` (nothing here is not in the tables)."""
    d = doc["differs"]
    lines = _what_differs(d, doc["a"], doc["b"])
    for h in doc["heldout"]:
        lines.append(delta_text(f"bits/byte on {h['source']}", h))
    for e in doc["evals"]:
        first = _headline(e)
        if first is not None:
            lines.append(delta_text(f"{e['task']} {first['metric']}", first))
        wl = e.get("won_lost")
        if wl and wl["items"]:
            lines.append(f"{e['task']}: B wins {wl['won']} and loses {wl['lost']} of {wl['items']} items "
                         f"({wl['metric']})")  # fmt: skip
    for e in doc["bias"]:
        for m in e["metrics"]:
            lines.append(delta_text(f"{e['task']} {m['metric']} (bias)", m))
    return lines


def _headline(e: dict[str, Any]) -> dict[str, Any] | None:
    by = {m["metric"]: m for m in e["metrics"]}
    for name in ("acc", "exact_match", "bits_per_byte", "acc_norm"):
        if name in by:
            return by[name]
    return e["metrics"][0] if e["metrics"] else None


def _what_differs(d: dict[str, Any], a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    lines = []
    if d["same_model"]:
        lines.append(f"A and B are the same model (SHA-256 {a['sha256'][:12]})")
    run = d.get("same_run")
    if run:
        same = "identical config and data" if d["config_identical"] and d["data"]["identical"] else "one run"
        lines.append(f"two checkpoints of one run ({run['stage']}): {same}; B is {run['steps']} steps "
                     f"({run['tokens']} tokens) after A (step {run['step_a']} → {run['step_b']})")  # fmt: skip
    elif d["config"]:
        keys = ", ".join(r["key"] for r in d["config"][:3]) + (", ..." if len(d["config"]) > 3 else "")
        lines.append(f"{len(d['config'])} config key(s) differ: {keys}")
    for s in d["data"]["added"]:
        lines.append(f"data added in B: {s['name']} ({s.get('license') or 'no licence recorded'}, "
                     f"{s.get('documents') if s.get('documents') is not None else '?'} documents)")  # fmt: skip
    for s in d["data"]["removed"]:
        lines.append(f"data only in A: {s['name']} ({s.get('license') or 'no licence recorded'})")
    for s in d["data"]["changed"]:
        fields = ", ".join(f"{k} {v[0]} → {v[1]}" for k, v in s.items() if k != "name")
        lines.append(f"data source {s['name']} changed: {fields}")
    anc = d["lineage"]["common_ancestor"]
    if anc and not d["same_model"] and not run:
        lines.append(f"common ancestor: {anc['name']} [{anc['sha256'][:12]}]")
    if not d["tokenizer_identical"] and d["tokenizer"]:
        lines.append("the tokenizers differ (held-out perplexity is per byte of the same text)")
    if d["architecture"]:
        lines.append(f"{len(d['architecture'])} architecture setting(s) differ: "
                     + ", ".join(f"{r['key']} {r['a']} → {r['b']}" for r in d["architecture"][:4]))  # fmt: skip
    return lines
