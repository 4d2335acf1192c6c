"""`moxin report A B`: the main facts of two runs or releases side by side (config differences, metric deltas)."""

from __future__ import annotations

from html import escape
from typing import Any

from moxin.report.collect import Facts
from moxin.report.labels import labels
from moxin.report.page import document, num, section, table


def main_facts(f: Facts) -> dict[str, Any]:
    """'what' → value: MOF class, per stage tokens seen / final loss / final val loss, checkpoints, final metrics."""
    out: dict[str, Any] = {"MOF class": (f.mof or {}).get("class", "")}
    for st in f.stages:
        rows = st["rows"]
        for key, label in (("tokens_seen", "tokens seen"), ("loss", "final loss"), ("val_loss", "final val loss")):
            vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
            if vals:
                out[f"{st['stage']}: {label}"] = vals[-1]
        out[f"{st['stage']}: checkpoints"] = len(st["checkpoints"])
    final = f.final.get("sha256")
    for p in f.evals:
        if p["sha256"] == final:
            out[f"{p['task']} {p['metric']}"] = p["value"]
    return out


def _delta(a: Any, b: Any) -> str:
    nums = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (a, b))
    if not nums:
        return "" if a == b else "≠"
    d = b - a
    return ("+" if d > 0 else "") + num(d)


def render_comparison(a: Facts, b: Facts, lang: str = "en") -> str:
    L = labels(lang)
    fa, fb = main_facts(a), main_facts(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    rows = [
        [k, fa.get(k, ""), fb.get(k, ""), _delta(fa.get(k), fb.get(k)) if k in fa and k in fb else ""] for k in keys
    ]
    head = ["", f"A: {a.name}", f"B: {b.name}", L["delta"]]
    diff = [
        [k, a.config.get(k, "–"), b.config.get(k, "–")]
        for k in sorted(set(a.config) | set(b.config))
        if a.config.get(k) != b.config.get(k)
    ]
    cfg = (
        table([L["key"], f"A: {a.name}", f"B: {b.name}"], diff, "config-diff")
        if diff
        else f"<p>{escape(L['no_config_diff'])}</p>"
    )
    body = (
        f'<p>A: <span id="name-a">{escape(a.name)}</span> ({escape(L[a.kind])}) · '
        f'B: <span id="name-b">{escape(b.name)}</span> ({escape(L[b.kind])})</p>'
        + section("facts", L["facts"], table(head, rows, "facts"))
        + section("config", L["config_diff"], cfg)
    )
    return document(
        f"{L['compare_title']}: {a.name} / {b.name}", body, lang, [("facts", L["facts"]), ("config", L["config_diff"])]
    )
