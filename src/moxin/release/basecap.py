"""The MOF class cap a base model sets on a release derived from it.

A model fine-tuned or adapted from an imported base contains the base's weights, so each MOF component covers the
base's part too: "Datasets" are the data the released weights were trained on, which includes the base's
pre-training data, and "Training code" is the code that produced them, which includes the base's. When the base's
producer did not release one of those, this release cannot supply it, whatever it adds itself:

    base training data not released  → "Datasets" (Class I) is capped: the release is at most Class II
    base training code not released  → "Training code" (Class II) is capped: at most Class III
    weights only (neither released)  → at most Class III

Openness facts come from the base's `origin.json` (`moxin.interop.origin`), copied into `lineage.base.origin` of
every checkpoint trained from it, so the release reads them from its own checkpoints. A base whose facts were "not
declared" counts as closed. Every cap names the base (name, source file, SHA-256, licence), the fact with its source,
and what would lift the cap. No torch here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moxin.release.runs import all_checkpoints

CAPPED = "capped"
# fact → (the component whose base part is missing, the class the release can reach at most)
CAPS: dict[str, tuple[str, str]] = {"data": ("Datasets", "II"), "code": ("Training code", "III")}
LIFT = {
    "data": "publish the base's training data under an open data licence (or, if its producer already has, "
    "re-import it with `moxin import --data-open --url data=URL`) and release again",
    "code": "publish the base's training code under an OSI licence (or, if its producer already has, re-import it "
    "with `moxin import --code-open --url code=URL`) and release again",
}


def base_origins(root: Path) -> list[dict[str, Any]]:
    """The origins recorded in the release's checkpoints (`lineage.base.origin`), one per source SHA-256."""
    seen: dict[str, dict[str, Any]] = {}
    for ck in all_checkpoints(root):
        origin = ck.base.get("origin")
        if isinstance(origin, dict) and isinstance(origin.get("source"), dict):
            seen.setdefault(str(origin["source"].get("sha256")), origin)
    return [seen[k] for k in sorted(seen)]


def describe(origin: dict[str, Any]) -> str:
    """The base as a release names it: name, source file, SHA-256 and licence (identifiers in backticks)."""
    src = origin.get("source") or {}
    return (
        f"base model `{origin.get('name')}` (`{src.get('file')}`, sha256 `{src.get('sha256')}`, licence "
        f"`{origin.get('license')}` from {origin.get('license_source')})"
    )


def fact(origin: dict[str, Any], name: str) -> dict[str, Any]:
    """One openness fact with where it came from: {open, source, url, note}."""
    op = origin.get("openness") or {}
    return {
        "open": bool(op.get(name)),
        "source": (op.get("sources") or {}).get(name) or op.get("source") or "not declared",
        "url": (op.get("urls") or {}).get(name),
        "note": (op.get("notes") or {}).get(name),
    }


def _fact_text(origin: dict[str, Any], name: str) -> str:
    f = fact(origin, name)
    where = f"source: {f['source']}" + (f", `{f['url']}`" if f["url"] else "")
    return f"training {name} {'released' if f['open'] else 'not released'} ({where})"


def cap_of(origin: dict[str, Any]) -> str | None:
    """The highest class a release built on this base can reach, or None when the base sets no limit."""
    closed = [CAPS[name][1] for name in CAPS if not fact(origin, name)["open"]]
    return ("III" if "III" in closed else "II") if closed else None


def apply_caps(results: list[Any], origins: list[dict[str, Any]]) -> None:
    """Mark the component each closed fact of each base leaves incomplete (`mof.Result`, in place): verdict
    'capped' (blocking its class), the reason naming the base, the fact's source and the way to lift it."""
    by_name = {r.name: r for r in results}
    for origin in origins:
        for name, (component, _cls) in CAPS.items():
            if fact(origin, name)["open"]:
                continue
            r = by_name[component]
            why = f"{describe(origin)}: {_fact_text(origin, name)}; to lift this cap, {LIFT[name]}"
            if r.verdict in ("missing", "fail"):
                r.reason = f"{r.reason}; also {why}"
            else:
                r.verdict, r.reason = CAPPED, why


def base_report(origins: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What mof.json states about each base: identity, licence, the facts with their sources, the cap and its lift."""
    out = []
    for origin in origins:
        cap = cap_of(origin)
        out.append(
            {
                "name": origin.get("name"),
                "source": origin.get("source"),
                "license": origin.get("license"),
                "license_source": origin.get("license_source"),
                "facts": {"weights": {"open": True, "source": "imported"}} | {n: fact(origin, n) for n in CAPS},
                "cap": cap,
                "lift": [LIFT[n] for n in CAPS if not fact(origin, n)["open"]],
                "summary": f"{describe(origin)}; " + "; ".join(_fact_text(origin, n) for n in CAPS),
            }
        )
    return out
