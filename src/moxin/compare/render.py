"""compare.md and the terminal view: the same sections from the same dict (compare.json), one as Markdown tables,
one as rich tables."""

from __future__ import annotations

from typing import Any

from moxin.compare.run import fmt, signed


def _ci(row: dict[str, Any]) -> str:
    ci = row.get("ci95")
    return "—" if ci is None else f"{signed(ci[0])}..{signed(ci[1])}"


def _cell(v: Any, width: int = 80, md: bool = True) -> str:
    text = "—" if v is None else fmt(v) if isinstance(v, float) else str(v)  # None: absent on that side
    text = " ".join(text.split())
    text = text.replace("|", "\\|") if md else text
    return text if len(text) <= width else text[: width - 1] + "…"


def sections(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    """(title, header, rows) of every table, in reading order; empty tables are left out."""
    a, b, d = doc["a"], doc["b"], doc["differs"]
    out = [("Sides", ["", "A", "B"], [
        ["given", a["given"], b["given"]], ["name", a["label"], b["label"]],
        ["sha256", a["sha256"][:16], b["sha256"][:16]], ["stage", a["stage"], b["stage"]],
        ["step", a["step"], b["step"]], ["tokens seen", a["tokens_seen"], b["tokens_seen"]],
    ])]  # fmt: skip
    out.append(("Config keys that differ", ["key", "A", "B"], [[r["key"], r["a"], r["b"]] for r in d["config"]]))
    data = d["data"]
    fields = ("license", "documents", "tokens", "share")
    rows = [[what, s["name"], *(s.get(f) for f in fields)] for what in ("added", "removed") for s in data[what]]
    rows += [["changed", s["name"], *(" → ".join(map(str, s[f])) if f in s else "" for f in fields)]
             for s in data["changed"]]  # fmt: skip
    out.append(("Data sources that differ", ["", "source", "licence", "documents", "tokens", "share"], rows))
    lin = d["lineage"]
    anc = lin["common_ancestor"]
    rows = [["common ancestor", f"{anc['name']} [{anc['sha256'][:12]}]" if anc else "none found"]]
    rows += [["A from it", " → ".join(n["name"] for n in lin["a_path"]) or "(the ancestor itself)"],
             ["B from it", " → ".join(n["name"] for n in lin["b_path"]) or "(the ancestor itself)"]]  # fmt: skip
    out.append(("Lineage", ["", ""], rows))
    out.append(("Tokenizer and architecture that differ", ["key", "A", "B"],
                [[f"tokenizer.{r['key']}", r["a"], r["b"]] for r in d["tokenizer"]]
                + [[r["key"], r["a"], r["b"]] for r in d["architecture"]]))  # fmt: skip
    out.append(
        (
            "Held-out bits per byte (lower is better)",
            ["source", "documents", "A", "B", "Δ", "95% CI"],
            [[h["source"], h["documents"], h["a"], h["b"], signed(h["delta"]), _ci(h)] for h in doc["heldout"]],
        )
    )
    out += _eval_sections(doc)
    out.append(("What it says (greedy)", ["prompt", "A", "B"], [[p["prompt"], p["a"], p["b"]] for p in doc["prompts"]]))
    return [s for s in out if s[2]]


def _eval_sections(doc: dict[str, Any]) -> list[tuple[str, list[str], list[list[Any]]]]:
    head = ["task", "metric", "A", "B", "Δ", "95% CI"]
    out = []
    for title, entries in (("Evaluations", doc["evals"]), ("Bias", doc["bias"])):
        rows = [[e["task"], m["metric"], m["a"], m["b"], signed(m["delta"]), _ci(m)] for e in entries
                for m in e["metrics"]]  # fmt: skip
        out.append((title, head, rows))
    for e in doc["evals"]:
        wl = e.get("won_lost")
        if not wl:
            continue
        rows = [["won", x["doc_id"], x["a"], x["b"], x["example"]] for x in wl["won_examples"]]
        rows += [["lost", x["doc_id"], x["a"], x["b"], x["example"]] for x in wl["lost_examples"]]
        title = f"{e['task']}: items won {wl['won']}, lost {wl['lost']} of {wl['items']} ({wl['metric']})"
        out.append((title, ["", "doc", "A", "B", "item"], rows))
    return out


def markdown(doc: dict[str, Any]) -> str:
    a, b = doc["a"], doc["b"]
    lines = [f"# Compare: {a['label']} (A) → {b['label']} (B)", "", "## What changed", ""]
    lines += [f"- {s}" for s in doc["summary"]] or ["- nothing measured differs"]
    for title, header, rows in sections(doc):
        lines += ["", f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def terminal(doc: dict[str, Any], console=None) -> None:
    """The comparison as rich tables, the summary first."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    console.print(f"[bold]{doc['a']['label']}[/bold] (A) → [bold]{doc['b']['label']}[/bold] (B)")
    for s in doc["summary"]:
        console.print(f"  • {s}", markup=False)
    for title, header, rows in sections(doc):
        table = Table(title=title, title_justify="left", show_lines=False)
        for h in header:
            table.add_column(h, overflow="fold")
        for row in rows:
            table.add_row(*(_cell(c, 120, md=False) for c in row))
        console.print(table)
