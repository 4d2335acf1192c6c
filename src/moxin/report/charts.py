"""Charts as inline SVG, drawn by hand: line charts (with vertical markers) and horizontal bar charts.

The markup is a pure function of the numbers (fixed decimals, no ids drawn at random), and every label is escaped."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

W, H = 640, 260  # view box of a line chart
PAD_L, PAD_R, PAD_T, PAD_B = 62, 34, 14, 40
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def fmt(x: float) -> str:
    """An axis or tooltip number: compact and stable."""
    if x == 0:
        return "0"
    if abs(x) >= 1e4 or abs(x) < 1e-2:
        return f"{x:.2e}"
    return f"{x:.4g}"


def _c(v: float) -> str:
    return f"{v:.1f}"


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]
    dashed: bool = False
    markers: bool = False


@dataclass
class Marker:
    x: float
    label: str
    kind: str = "phase"  # 'phase' (solid grey) or 'checkpoint' (dotted)


@dataclass
class LineChart:
    title: str
    xlabel: str
    ylabel: str
    series: list[Series]
    markers: list[Marker] = field(default_factory=list)


def _range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - (abs(lo) or 1) * 0.05, hi + (abs(hi) or 1) * 0.05
    return lo, hi


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    return [lo + (hi - lo) * i / (n - 1) for i in range(n)]


def _axes(x0: float, x1: float, y0: float, y1: float, c: LineChart, sx, sy) -> list[str]:
    out = [
        f'<line x1="{PAD_L}" y1="{H - PAD_B}" x2="{W - PAD_R}" y2="{H - PAD_B}" class="ax"/>',
        f'<line x1="{PAD_L}" y1="{PAD_T}" x2="{PAD_L}" y2="{H - PAD_B}" class="ax"/>',
    ]
    for t in _ticks(y0, y1):
        out.append(f'<text x="{PAD_L - 4}" y="{_c(sy(t) + 3)}" class="tk" text-anchor="end">{fmt(t)}</text>')
        out.append(f'<line x1="{PAD_L}" y1="{_c(sy(t))}" x2="{W - PAD_R}" y2="{_c(sy(t))}" class="grid"/>')
    for t in _ticks(x0, x1):
        out.append(f'<text x="{_c(sx(t))}" y="{H - PAD_B + 14}" class="tk" text-anchor="middle">{fmt(t)}</text>')
    out.append(
        f'<text x="{(PAD_L + W - PAD_R) / 2}" y="{H - 6}" class="al" text-anchor="middle">{escape(c.xlabel)}</text>'
    )
    out.append(
        f'<text x="12" y="{(PAD_T + H - PAD_B) / 2}" class="al" text-anchor="middle" '
        f'transform="rotate(-90 12 {(PAD_T + H - PAD_B) / 2})">{escape(c.ylabel)}</text>'
    )
    return out


def line_chart(c: LineChart) -> str:
    """An SVG line chart; empty string when there is nothing to draw."""
    pts = [p for s in c.series for p in s.points]
    if not pts:
        return ""
    x0, x1 = _range([p[0] for p in pts] + [m.x for m in c.markers])
    y0, y1 = _range([p[1] for p in pts])

    def sx(x: float) -> float:
        return PAD_L + (x - x0) / (x1 - x0) * (W - PAD_L - PAD_R)

    def sy(y: float) -> float:
        return H - PAD_B - (y - y0) / (y1 - y0) * (H - PAD_T - PAD_B)

    out = [
        f'<svg viewBox="0 0 {W} {H}" class="chart" role="img" aria-label="{escape(c.title)}">',
        f"<title>{escape(c.title)}</title>",
        *_axes(x0, x1, y0, y1, c, sx, sy),
    ]
    for m in c.markers:
        cls = "mk-ck" if m.kind == "checkpoint" else "mk-ph"
        out.append(
            f'<line x1="{_c(sx(m.x))}" y1="{PAD_T}" x2="{_c(sx(m.x))}" y2="{H - PAD_B}" class="{cls}">'
            f"<title>{escape(m.label)}</title></line>"
        )
        if m.kind == "phase":
            out.append(f'<text x="{_c(sx(m.x) + 3)}" y="{PAD_T + 10}" class="tk">{escape(m.label)}</text>')
    for i, s in enumerate(c.series):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{_c(sx(x))},{_c(sy(y))}" for x, y in s.points)
        dash = ' stroke-dasharray="5 3"' if s.dashed else ""
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="1.6"{dash}>'
            f"<title>{escape(s.label)}</title></polyline>"
        )
        if s.markers or len(s.points) == 1:
            out += [
                f'<circle cx="{_c(sx(x))}" cy="{_c(sy(y))}" r="3" fill="{colour}">'
                f"<title>{escape(s.label)}: {fmt(x)}, {fmt(y)}</title></circle>"
                for x, y in s.points
            ]
    out.append("</svg>")
    return "".join(out) + _legend(c.series)


def _legend(series: list[Series]) -> str:
    items = [
        f'<span class="lg"><i style="background:{COLOURS[i % len(COLOURS)]}"></i>{escape(s.label)}</span>'
        for i, s in enumerate(series)
    ]
    return f'<div class="legend">{"".join(items)}</div>'


def bar_chart(title: str, bars: list[tuple[str, float]]) -> str:
    """Horizontal bars with their labels and values; empty string when there are no bars."""
    if not bars:
        return ""
    row, label_w, width = 22, 170, 640
    top = max(v for _, v in bars) or 1
    h = row * len(bars) + 8
    out = [
        f'<svg viewBox="0 0 {width} {h}" class="chart bars" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, v) in enumerate(bars):
        y = 4 + i * row
        bw = (width - label_w - 80) * v / top
        out.append(f'<text x="{label_w - 6}" y="{y + 14}" class="tk" text-anchor="end">{escape(label)}</text>')
        out.append(f'<rect x="{label_w}" y="{y + 3}" width="{_c(bw)}" height="{row - 6}" fill="{COLOURS[0]}"/>')
        out.append(f'<text x="{_c(label_w + bw + 4)}" y="{y + 14}" class="tk">{fmt(v)}</text>')
    out.append("</svg>")
    return "".join(out)


def graph(nodes: list[dict], edges: list[tuple[str, str]], title: str) -> str:
    """A left-to-right graph: nodes ({'id', 'col', 'label', 'sub'}) stacked in their column, edges as curves."""
    if not nodes:
        return ""
    cols = sorted({n["col"] for n in nodes})
    xcol = {c: i for i, c in enumerate(cols)}
    bw, bh, gx, gy = 150, 40, 40, 14
    pos: dict[str, tuple[float, float]] = {}
    per: dict[int, int] = {}
    for n in nodes:
        row = per.get(n["col"], 0)
        per[n["col"]] = row + 1
        pos[n["id"]] = (8 + xcol[n["col"]] * (bw + gx), 8 + row * (bh + gy))
    width = 16 + len(cols) * (bw + gx) - gx
    height = 16 + max(per.values()) * (bh + gy) - gy
    out = [
        f'<svg viewBox="0 0 {width} {height}" class="chart graph" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
    ]
    for a, b in edges:
        if a in pos and b in pos:
            (x1, y1), (x2, y2) = pos[a], pos[b]
            x1, y1, y2 = x1 + bw, y1 + bh / 2, y2 + bh / 2
            mid = (x1 + x2) / 2
            out.append(
                f'<path d="M{_c(x1)},{_c(y1)} C{_c(mid)},{_c(y1)} {_c(mid)},{_c(y2)} {_c(x2)},{_c(y2)}" class="edge"/>'
            )
    for n in nodes:
        x, y = pos[n["id"]]
        out.append(
            f'<g class="node" data-id="{escape(str(n["id"]))}"><rect x="{x}" y="{y}" width="{bw}" '
            f'height="{bh}" rx="6"/><text x="{x + 8}" y="{y + 16}" class="nl">{escape(str(n["label"])[:22])}'
            f'</text><text x="{x + 8}" y="{y + 32}" class="ns">{escape(str(n["sub"] or "")[:22])}</text></g>'
        )
    out.append("</svg>")
    return "".join(out)
