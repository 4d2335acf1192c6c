"""The report page: one self-contained HTML document (inline CSS, inline SVG, no script, no external asset).

Its bytes are a pure function of the facts: no timestamps, no absolute paths, no random ids. Every string taken
from a file is escaped. Each section has a stable id, and the numbers a reader checks are text in the DOM."""

from __future__ import annotations

from html import escape
from typing import Any

from moxin.report.charts import LineChart, Marker, Series, bar_chart, graph, line_chart
from moxin.report.collect import Facts
from moxin.report.labels import labels

SECTIONS = ("openness", "data", "training", "evaluation", "lineage", "verification", "samples")

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI","Noto Sans","Noto Sans CJK JP","Hiragino Sans","Yu Gothic",
"Meiryo",sans-serif;margin:0;color:#1b1b1b;background:#fafafa;line-height:1.45}
header{background:#16324f;color:#fff;padding:18px 28px}header h1{margin:0;font-size:1.5em}
nav{padding:6px 28px;background:#e8eef4}nav a{margin-right:14px;color:#16324f}
main{padding:0 28px 40px;max-width:1100px}section{margin-top:26px}h2{border-bottom:2px solid #16324f}
table{border-collapse:collapse;margin:8px 0;font-size:.9em}td,th{border:1px solid #ccd;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#eef}td.n{text-align:right;font-variant-numeric:tabular-nums}
.open{color:#17692c}.warning{color:#9a6200}.fail,.missing{color:#b00020;font-weight:bold}
.big{font-size:1.6em;font-weight:bold}.chart{width:100%;max-width:720px;height:auto;background:#fff;
border:1px solid #dde}.ax{stroke:#333}.grid{stroke:#eee}.tk{font-size:10px;fill:#333}.al{font-size:11px;fill:#333}
.mk-ph{stroke:#888;stroke-width:1}.mk-ck{stroke:#2ca02c;stroke-dasharray:2 3}.edge{fill:none;stroke:#789}
.node rect{fill:#eef4fa;stroke:#16324f}.nl{font-size:11px;font-weight:bold}.ns{font-size:10px;
font-family:ui-monospace,monospace}.legend{font-size:.85em}.lg{margin-right:12px}.lg i{display:inline-block;
width:12px;height:3px;margin-right:4px;vertical-align:middle}pre,code{font-family:ui-monospace,"Noto Sans Mono CJK JP",
monospace}pre{background:#f0f0f0;padding:8px;white-space:pre-wrap}.cols{display:flex;gap:24px;flex-wrap:wrap}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:8px}h4{margin:6px 0 2px}
"""


def num(x: Any) -> str:
    """The one way the page prints a number (moxin.release.cards.num: 4 decimals, integers plainly)."""
    from moxin.release.cards import num as card_num

    return card_num(x) if x is not None else "–"


def table(head: list[str], rows: list[list[Any]], cls: str = "", row_cls: list[str] | None = None) -> str:
    """Cells are escaped text; numbers are printed with `num` and right-aligned."""

    def cell(v: Any) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return f'<td class="n">{num(v)}</td>'
        return f"<td>{escape(str(v))}</td>"

    attrs = f' class="{cls}"' if cls else ""
    body = "".join(
        f"<tr{f' class={chr(34)}{row_cls[i]}{chr(34)}' if row_cls else ''}>" + "".join(cell(v) for v in r) + "</tr>\n"
        for i, r in enumerate(rows)
    )
    return f"<table{attrs}><tr>{''.join(f'<th>{escape(h)}</th>' for h in head)}</tr>{body}</table>"


def section(sid: str, title: str, body: str) -> str:
    return f'<section id="{sid}"><h2>{escape(title)}</h2>\n{body}\n</section>\n'


# ------------------------------------------------------------------------------------------------ sections
def openness(f: Facts, L: dict[str, str]) -> str:
    if not f.mof:
        return section("openness", L["openness"], f"<p>{escape(L['mof_none'])}</p>")
    m = f.mof
    head = (
        f'<p>{escape(L["mof_class"])}: <span id="mof-class" class="big">{escape(str(m.get("class")))}</span> '
        f'<span id="mof-class-name">{escape(str(m.get("class_name") or ""))}</span></p>'
    )
    comps = m.get("components") or []
    rows = [[c["name"], c["mof_class"], c["files"], c.get("licence") or "", c["verdict"], c["reason"]] for c in comps]
    bases = m.get("bases") or []
    caps = [f"{b['summary']}: {'at most Class ' + b['cap'] if b.get('cap') else 'no cap'}" for b in bases]
    parts = [
        head,
        *[f'<p class="base-cap">{escape(c)}</p>' for c in caps],  # the imported base that limits the class
        table(
            [L["component"], L["class"], L["files"], L["licence"], L["verdict"], L["reason"]],
            rows,
            "components",
            [c["verdict"] for c in comps],
        ),
    ]
    failing = [a for a in f.audit if a["verdict"] == "fail"]
    parts.append(f"<h3>{escape(L['licence_audit'])}</h3>")
    if failing:
        items = "".join(
            f'<li class="fail">{escape(a["source"])} ({escape(a["licence"] or "?")}): {escape(a["reason"])}</li>'
            for a in failing
        )
        parts.append(f'<p>{escape(L["failing"])}:</p><ul id="failing-sources">{items}</ul>')
    else:
        parts.append(f'<p id="failing-sources">{escape(L["no_failing"])}</p>')
    rows = [[a["key"], a["source"], a["licence"], a["verdict"], a["reason"]] for a in f.audit]
    parts.append(
        f"<details><summary>{escape(L['licence_audit'])}: {len(rows)}</summary>"
        + table(
            [L["kind"], L["source"], L["licence"], L["verdict"], L["reason"]],
            rows,
            "audit",
            [a["verdict"] for a in f.audit],
        )
        + "</details>"
    )
    return section("openness", L["openness"], "".join(parts))


def data(f: Facts, L: dict[str, str], link_prefix: str) -> str:
    d = f.data
    rows = [
        [
            s["name"],
            s["licence"],
            s["docs_in"] if s["docs_in"] is not None else "",
            s["docs_kept"] if s["docs_kept"] is not None else "",
            s["tokens"],
        ]
        for s in d.get("sources") or []
    ]
    rows += [
        [s["name"], s["licence"], "", s["docs_kept"] if s["docs_kept"] is not None else "", ""]
        for s in d.get("finetune") or []
    ]
    parts = [table([L["source"], L["licence"], L["docs_in"], L["docs_kept"], L["tokens"]], rows, "sources")]
    drops = d.get("drops") or {}
    parts.append(f"<h3>{escape(L['drop_reasons'])}</h3>")
    parts.append(bar_chart(L["drop_reasons"], list(drops.items())) if drops else f"<p>{escape(L['no_drops'])}</p>")
    langs = d.get("languages") or {}
    parts.append('<div class="cols">')
    parts.append(
        f"<div><h3>{escape(L['languages'])}</h3>"
        f"{table([L['language'], L['documents']], [[k, v] for k, v in langs.items()], 'languages')}</div>"
    )
    dec = d.get("decontamination") or {}
    parts.append(
        f'<div><h3>{escape(L["decontam"])}</h3><p>total <span id="decontam-total">'
        f"{sum(dec.values())}</span></p>{table([L['source'], 'n'], [[k, v] for k, v in dec.items()])}</div>"
    )
    pii = d.get("pii") or {}
    parts.append(
        f'<div><h3>{escape(L["pii"])}</h3><p>total <span id="pii-total">{sum(pii.values())}</span></p>'
        f"{table([L['kind'], 'n'], [[k, v] for k, v in pii.items()], 'pii')}</div></div>"
    )
    if d.get("card"):
        href = escape(link_prefix + d["card"], quote=True)
        parts.append(f'<p><a id="data-card-link" href="{href}">{escape(L["data_card"])}</a></p>')
    return section("data", L["data"], "".join(parts))


def _stage_charts(st: dict[str, Any], L: dict[str, str]) -> str:
    rows = st["rows"]
    markers, prev = [], None
    for r in rows:
        if r.get("phase") is not None and r["phase"] != prev:
            markers.append(Marker(r["step"], str(r["phase"]), "phase"))
            prev = r["phase"]
    markers += [Marker(c["step"], c["name"], "checkpoint") for c in st["checkpoints"]]
    loss = [Series(L["loss"], [(r["step"], r["loss"]) for r in rows if isinstance(r.get("loss"), (int, float))])]
    val = [(r["step"], r["val_loss"]) for r in rows if isinstance(r.get("val_loss"), (int, float))]
    if val:
        loss.append(Series(L["val_loss"], val, dashed=True, markers=True))
    lr = [(r["step"], r["lr"]) for r in rows if isinstance(r.get("lr"), (int, float))]
    out = line_chart(LineChart(f"{st['stage']}: {L['loss']}", L["step"], L["loss"], loss, markers))
    if lr:
        out += line_chart(
            LineChart(
                f"{st['stage']}: {L['lr']}",
                L["step"],
                L["lr"],
                [Series(L["lr"], lr)],
                [m for m in markers if m.kind == "phase"],
            )
        )
    return out


def training(f: Facts, L: dict[str, str]) -> str:
    rows, charts = [], []
    for st in f.stages:
        r = st["rows"]
        losses = [x["loss"] for x in r if isinstance(x.get("loss"), (int, float))]
        vals = [x["val_loss"] for x in r if isinstance(x.get("val_loss"), (int, float))]
        seen = [x["tokens_seen"] for x in r if isinstance(x.get("tokens_seen"), int)]
        rows.append(
            [
                st["stage"],
                len(r),
                seen[-1] if seen else "",
                losses[-1] if losses else "",
                vals[-1] if vals else "",
                len(st["checkpoints"]),
            ]
        )
        charts.append(f"<h3>{escape(st['stage'])}</h3>{_stage_charts(st, L)}")
        cks = [
            [c["name"], c["step"], c["tokens_seen"] if c["tokens_seen"] is not None else "", c["sha256"][:12]]
            for c in st["checkpoints"]
        ]
        charts.append(table([L["checkpoints"], L["step"], L["tokens_seen"], "sha256"], cks, "checkpoints"))
    total = sum(len(st["checkpoints"]) for st in f.stages)
    head = [L["stage"], L["steps"], L["tokens_seen"], L["final_loss"], L["final_val_loss"], L["checkpoints"]]
    summary = f'<p>{escape(L["checkpoints"])}: <span id="checkpoint-count">{total}</span></p>' + table(
        head, rows, "stages"
    )
    return section("training", L["training"], summary + "".join(charts))


def _eval_charts(points: list[dict[str, Any]], L: dict[str, str]) -> str:
    """One chart per task (its metrics against tokens seen), so that scales of different tasks never mix."""
    tasks: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for p in points:
        x = p["tokens"] if p["tokens"] is not None else p["step"]
        if x is not None:
            tasks.setdefault(p["task"], {}).setdefault(p["metric"], []).append((x, p["value"]))
    out = []
    for task, metrics in sorted(tasks.items()):
        ss = [Series(k, sorted(v), markers=True) for k, v in sorted(metrics.items())]
        out.append(
            f'<div class="ev" data-task="{escape(task, quote=True)}"><h4>{escape(task)}</h4>'
            f"{line_chart(LineChart(task, L['tokens_seen'], L['metric'], ss))}</div>"
        )
    return f'<div class="grid2">{"".join(out)}</div>'


def evaluation(f: Facts, L: dict[str, str]) -> str:
    if not f.evals:
        return section("evaluation", L["evaluation"], f"<p>{escape(L['no_eval'])}</p>")
    quality = [p for p in f.evals if not p["bias"]]
    bias = [p for p in f.evals if p["bias"]]
    parts = [_eval_charts(quality, L)]
    if bias:
        parts.append(f"<h3>{escape(L['bias'])}</h3>{_eval_charts(bias, L)}")
    final = f.final.get("sha256")
    rows = [[p["task"], p["metric"], p["value"]] for p in f.evals if p["sha256"] == final] if final else []
    if not rows:  # no result for the final checkpoint: the latest checkpoint evaluated
        last = f.evals[-1]["checkpoint"]
        rows = [[p["task"], p["metric"], p["value"]] for p in f.evals if p["checkpoint"] == last]
    parts.append(f"<h3>{escape(L['final_table'])} ({escape(str(f.final.get('name') or ''))})</h3>")
    parts.append(table([L["task"], L["metric"], "value"], rows, "final-table"))
    all_rows = [
        [p["checkpoint"], p["tokens"] if p["tokens"] is not None else "", p["task"], p["metric"], p["value"]]
        for p in f.evals
    ]
    parts.append(
        f"<details><summary>{escape(L['checkpoints'])}</summary>"
        f"{table([L['checkpoints'], L['tokens_seen'], L['task'], L['metric'], 'value'], all_rows)}</details>"
    )
    return section("evaluation", L["evaluation"], "".join(parts))


def lineage(f: Facts, L: dict[str, str]) -> str:
    g = f.lineage
    nodes = [
        dict(n, label=L["tokenized"] if n["id"] == "data" else L["released"] if n["id"] == "final" else n["label"])
        for n in g.get("nodes") or []
    ]
    return section("lineage", L["lineage"], graph(nodes, g.get("edges") or [], L["lineage"]))


def verification(f: Facts, L: dict[str, str]) -> str:
    v = f.verify
    if v.get("digest"):
        parts = [f'<p>{escape(L["digest"])}: <code id="digest">{escape(v["digest"])}</code></p>']
    elif v.get("embedded"):
        parts = [f'<p id="digest-note">{escape(L["digest_inside"])}</p>']
    else:
        parts = [f'<p id="digest-note">{escape(L["no_digest"])}</p>']
    parts.append(f'<h3>{escape(L["how_verify"])}</h3><pre id="verify-command">{escape(v["command"])}</pre>')
    parts.append(f"<h3>{escape(L['last_verify'])}</h3>")
    parts.append(
        f'<pre id="last-verify">{escape(v["last"])}</pre>'
        if v.get("last")
        else f'<p id="last-verify">{escape(L["no_verify"])}</p>'
    )
    return section("verification", L["verification"], "".join(parts))


def samples(f: Facts, L: dict[str, str]) -> str:
    if not f.samples:
        return section("samples", L["samples"], f"<p>{escape(L['no_samples'])}</p>")
    rows = [[s.get("prompt", ""), s.get("output", "")] for s in f.samples]
    return section("samples", L["samples"], table([L["prompt"], L["output"]], rows, "samples"))


# ------------------------------------------------------------------------------------------------ the page
def document(title: str, body: str, lang: str, nav: list[tuple[str, str]]) -> str:
    links = "".join(f'<a href="#{sid}">{escape(text)}</a>' for sid, text in nav)
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="{lang}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        'img-src data:">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>"
        f"<body><header><h1>{escape(title)}</h1></header><nav>{links}</nav><main>{body}</main></body></html>\n"
    )


def render(f: Facts, lang: str = "en", link_prefix: str = "") -> str:
    """The page of one run or release. `link_prefix`: the folder read, relative to where the page is written."""
    L = labels(lang)
    body = "".join(
        [
            f'<p>{escape(L[f.kind])}: <span id="report-name">{escape(f.name)}</span></p>',
            openness(f, L),
            data(f, L, link_prefix),
            training(f, L),
            evaluation(f, L),
            lineage(f, L),
            verification(f, L),
            samples(f, L),
        ]
    )
    return document(f"{L['title']}: {f.name}", body, lang, [(s, L[s]) for s in SECTIONS])
