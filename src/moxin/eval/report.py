"""The checkpoint table (CSV and Markdown) and one PNG per metric against tokens seen."""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from moxin.provenance import atomic_write_text

BASE_COLS = ["stage", "step", "tokens_seen", "checkpoint_sha256"]


def column(res: dict[str, Any], metric: str) -> str:
    return f"{res['task']}[{res['num_fewshot'] or 0}-shot]/{metric}"


def rows_and_columns(results: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per model (ordered by stage, then step), one column per task × n-shot × metric."""
    from moxin.eval.catalog import CATALOG

    rows: dict[str, dict[str, Any]] = {}
    cols: list[str] = []
    for res in results:
        m = res["model"]
        row = rows.setdefault(
            m["sha256"],
            {
                "stage": m.get("stage") or m.get("kind"),
                "step": m.get("step"),
                "tokens_seen": m.get("tokens_seen"),
                "checkpoint_sha256": m["sha256"],
                "_path": m["path"],
            },
        )
        spec = CATALOG.get(res["task"])
        wanted = spec.metrics if spec else tuple(res["metrics"])
        for metric in wanted:
            if metric in res["metrics"]:
                col = column(res, metric)
                row[col] = res["metrics"][metric]
                if col not in cols:
                    cols.append(col)
    ordered = sorted(
        rows.values(), key=lambda r: (r["stage"] != "pretrain", str(r["stage"]), r["step"] or 0, r["_path"])
    )
    return ordered, cols


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def write_tables(out: Path, results: list[dict[str, Any]]) -> tuple[Path, Path]:
    rows, cols = rows_and_columns(results)
    header = BASE_COLS + cols
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    for r in rows:
        w.writerow([r.get(c, "") if r.get(c) is not None else "" for c in header])
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [_fmt(r.get(c)) if c != "checkpoint_sha256" else str(r[c])[:12] for c in header]
        md.append("| " + " | ".join(cells) + " |")
    atomic_write_text(out / "table.csv", buf.getvalue())
    atomic_write_text(out / "table.md", "\n".join(md) + "\n")
    return out / "table.csv", out / "table.md"


def write_manifest(out: Path) -> Path:
    """`eval/manifest.json` (moxin.records.StageManifest): the SHA-256 of every result file and of the tables."""
    from moxin.records import write_stage_manifest

    results = sorted(p.relative_to(out).as_posix() for p in (out / "results").glob("*.json"))
    write_stage_manifest(out, "eval", {"results": len(results)}, include=(*results, "table.csv", "table.md"))
    return out / "manifest.json"


def _x_value(row: dict[str, Any]) -> float:
    """A plot's x value: tokens seen, else the step, else 0."""
    tokens = row.get("tokens_seen")
    return tokens if tokens is not None else row.get("step") or 0


def write_plots(out: Path, results: list[dict[str, Any]]) -> list[Path]:
    """One PNG per table column: the metric against tokens seen (step when tokens_seen is unknown)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = rows_and_columns(results)
    paths = []
    for col in cols:
        pts = sorted(
            (_x_value(r), r[col]) for r in rows if r.get(col) is not None and r.get("stage") == rows[0]["stage"]
        )
        if not pts:
            continue
        fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o")
        ax.set_xlabel("tokens seen")
        ax.set_ylabel(col.split("/")[-1])
        ax.set_title(col)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out / "plots" / (re.sub(r"[^A-Za-z0-9_.-]+", "_", col).strip("_") + ".png")
        _save(fig, path)
        plt.close(fig)
        paths.append(path)
    return paths


def _save(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", metadata={"Software": None})  # no timestamp: same data → same bytes
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
