"""What differs between two sides: resolved config keys, data sources, lineage, tokenizer and architecture. Pure
functions of the two `Side` records."""

from __future__ import annotations

from typing import Any

from moxin.compare.resolve import Side

SOURCE_FIELDS = ("documents", "tokens", "license", "share")


def dict_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Keys whose values differ (present on one side only: the other value is None, `only` names the side)."""
    out = []
    for key in sorted(set(a) | set(b)):
        if key in a and key in b and a[key] == b[key]:
            continue
        row: dict[str, Any] = {"key": key, "a": a.get(key), "b": b.get(key)}
        if key not in b or key not in a:
            row["only"] = "a" if key in a else "b"
        out.append(row)
    return out


def data_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """Sources added (in B only), removed (in A only) and changed (documents, tokens, licence, token share)."""
    by_a, by_b = {s["name"]: s for s in a}, {s["name"]: s for s in b}
    changed = []
    for name in sorted(set(by_a) & set(by_b)):
        fields = {
            f: [by_a[name].get(f), by_b[name].get(f)] for f in SOURCE_FIELDS if by_a[name].get(f) != by_b[name].get(f)
        }
        if fields:
            changed.append({"name": name, **fields})
    return {
        "added": [by_b[n] for n in sorted(set(by_b) - set(by_a))],
        "removed": [by_a[n] for n in sorted(set(by_a) - set(by_b))],
        "changed": changed,
        "identical": bool(a or b) and by_a == by_b,
    }


def lineage_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> dict[str, Any]:
    """The nearest common ancestor by SHA-256 and each side's path down from it (ancestor excluded, the side last)."""
    shas_b = [n["sha256"] for n in b]
    for i, node in enumerate(a):
        if node["sha256"] in shas_b:
            j = shas_b.index(node["sha256"])
            return {
                "common_ancestor": _short(node),
                "a_path": [_short(n) for n in reversed(a[:i])],
                "b_path": [_short(n) for n in reversed(b[:j])],
            }
    return {"common_ancestor": None, "a_path": [_short(n) for n in reversed(a)],
            "b_path": [_short(n) for n in reversed(b)]}  # fmt: skip


def _short(n: dict[str, Any]) -> dict[str, Any]:
    return {"name": n.get("name"), "sha256": n.get("sha256"), "step": n.get("step"), "stage": n.get("stage")}


def differences(a: Side, b: Side) -> dict[str, Any]:
    """Everything that differs, and the plain facts a reader looks for first."""
    config = dict_diff(a.config, b.config)
    data = data_diff(a.sources, b.sources)
    out: dict[str, Any] = {
        "same_model": a.sha256 == b.sha256,
        "config": config,
        "config_identical": bool(a.config or b.config) and not config,
        "data": data,
        "lineage": lineage_diff(a.lineage, b.lineage),
        "tokenizer": dict_diff(a.tokenizer, b.tokenizer),
        "tokenizer_identical": bool(a.tokenizer) and a.tokenizer.get("vocab_sha256") == b.tokenizer.get("vocab_sha256"),
        "architecture": dict_diff(a.architecture, b.architecture),
    }
    if a.root is not None and a.root == b.root and a.stage == b.stage and a.step is not None and b.step is not None:
        out["same_run"] = {"stage": a.stage, "step_a": a.step, "step_b": b.step, "steps": b.step - a.step,
                           "tokens": (b.tokens_seen or 0) - (a.tokens_seen or 0)}  # fmt: skip
    return out
