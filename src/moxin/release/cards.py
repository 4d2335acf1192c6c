"""Model card, data card and technical report, rendered from a release folder's own files (release.json,
model/model_config.json, data/manifest.json, checkpoints' train_state.json, logs/*/metrics.jsonl, eval/results,
mof.json), so every number a card states can be found in the release. Plots are PNG files next to the cards.

Numbers are printed with `num()`; identifiers that contain digits (paths, hashes, dates, licence ids) are put in
backticks, so a reader (and the cross-check test) can tell a stated figure from a name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moxin.layout import RunLayout
from moxin.release.runs import (
    Checkpoint,
    all_checkpoints,
    data_sources,
    eval_results,
    finetune_datasets,
    read_json,
    read_jsonl,
)

BIAS_WORDS = ("crows", "bbq", "bias", "toxic", "stereo")


def num(x: Any) -> str:
    """The one way cards print a number: integers plainly, floats to 4 decimals (scientific below 0.01)."""
    if isinstance(x, bool) or x is None:
        return str(x)
    if isinstance(x, int):
        return str(x)
    if x != 0 and abs(x) < 0.01:
        return f"{x:.2e}"
    return f"{x:.4f}"


def _code(s: Any) -> str:
    return f"`{s}`"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *["| " + " | ".join(r) + " |" for r in rows]]


# ------------------------------------------------------------------------------------------------ facts
def facts(root: Path) -> dict[str, Any]:
    """Everything the cards state, read from the release folder."""
    rel = read_json(root / "release.json", "release record")
    mcfg = read_json(root / "model" / "model_config.json", "model config")
    manifest = read_json(root / "data" / "manifest.json") if (root / "data" / "manifest.json").is_file() else {}
    mof = read_json(root / "mof.json") if (root / "mof.json").is_file() else {}
    stages: dict[str, list[Checkpoint]] = {}
    for c in all_checkpoints(root):
        stages.setdefault(c.stage, []).append(c)
    layout = RunLayout(root)
    logs = {
        stage: read_jsonl(layout.metrics(stage))
        for stage in layout.training_stages()
        if layout.metrics(stage).is_file()
    }
    samples = read_jsonl(root / "samples" / "outputs.jsonl") if (root / "samples" / "outputs.jsonl").is_file() else []
    return {
        "release": rel,
        "model": mcfg,
        "sources": data_sources(manifest),
        "finetune": finetune_datasets(root),
        "mof": mof,
        "stages": stages,
        "logs": logs,
        "eval": eval_results(root / "eval"),
        "samples": samples,
        "plots": sorted(p.relative_to(root).as_posix() for p in root.glob("plots/*.png"))
        + sorted(p.relative_to(root).as_posix() for p in root.glob("eval/plots/*.png")),
    }


def _last_loss(rows: list[dict[str, Any]]) -> tuple[Any, Any]:
    for r in reversed(rows):
        if isinstance(r.get("loss"), (int, float)):
            return r.get("step"), r["loss"]
    return None, None


# ------------------------------------------------------------------------------------------------ sections
def _architecture(f: dict[str, Any]) -> list[str]:
    m, rel = f["model"], f["release"]
    rows = [
        [k, num(m[k]) if isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) else _code(m.get(k))]
        for k in (
            "arch",
            "vocab_size",
            "dim",
            "n_layers",
            "n_heads",
            "n_kv_heads",
            "ffn_dim",
            "max_seq_len",
            "sliding_window",
            "tie_embeddings",
        )
        if k in m
    ]
    out = [
        "## Architecture",
        "",
        f"A decoder-only transformer with {num(rel['parameters'])} parameters "
        f"({num(rel['parameters_without_embeddings'])} without embeddings); configuration in "
        "`model/model_config.json`.",
        "",
    ]
    return out + _table(["setting", "value"], rows) + [""]


def _opt(x: Any) -> str:
    return num(x) if isinstance(x, (int, float)) else ""


def _data(f: dict[str, Any]) -> list[str]:
    rows = [
        [
            s.name,
            _code(s.license),
            _opt(s.documents),
            _opt(s.tokens.get("train", s.tokens.get("all"))),
            _opt(s.tokens.get("val")),
        ]
        for s in f["sources"]
    ]
    ft = [[s.name, _code(s.license), _opt(s.documents)] for s in f["finetune"]]
    out = (
        [
            "## Training data",
            "",
            "Sources and their licences, from `data/manifest.json` (details in `DATA_CARD.md`).",
            "",
        ]
        + _table(["source", "licence", "documents kept", "train tokens", "val tokens"], rows)
        + [""]
    )
    if ft:
        out += ["Fine-tuning data, from each fine-tune's lineage (`train_state.json`):", ""]
        out += _table(["data set", "licence", "examples kept"], ft) + [""]
    return out


def _training(f: dict[str, Any]) -> list[str]:
    rows = []
    for stage, cks in f["stages"].items():
        last = cks[-1]
        _step, loss = _last_loss(f["logs"].get(stage, []))
        tokens = last.tokens_seen
        rows.append(
            [
                _code(stage),
                num(len(cks)),
                num(last.step),
                num(tokens) if tokens is not None else "",
                num(loss) if loss is not None else "",
            ]
        )
    out = [
        "## Training",
        "",
        "Stages, the checkpoints shipped for each, the last step, the tokens seen by then "
        "(`train_state.json`) and the last logged loss (`<stage>/metrics.jsonl`).",
        "",
    ]
    out += _table(["stage", "checkpoints", "last step", "tokens seen", "last loss"], rows) + [""]
    out += [f"![{Path(p).stem}]({p})" for p in f["plots"] if p.startswith("plots/loss")] + [""]
    return out


def _eval_rows(f: dict[str, Any], bias: bool) -> list[list[str]]:
    rows = []
    for r in f["eval"]:
        for task, metrics in sorted(r.metrics.items()):
            if any(w in task.lower() for w in BIAS_WORDS) != bias:
                continue
            for metric, value in sorted(metrics.items()):
                rows.append([_code(r.checkpoint), _opt(r.step), task, metric, num(value), _opt(r.items)])
    return rows


def _evaluation(f: dict[str, Any]) -> list[str]:
    out = [
        "## Evaluation",
        "",
        "Scores from `eval/results/*.json`, per checkpoint, with the number of items scored "
        "(a run evaluated with a limit scores fewer items than the task has).",
        "",
    ]
    out += _table(["checkpoint", "step", "task", "metric", "value", "items"], _eval_rows(f, bias=False)) + [""]
    out += [f"![{Path(p).stem}]({p})" for p in f["plots"] if not p.startswith("plots/loss")] + [""]
    out += [
        "## Bias",
        "",
        "Bias benchmarks among the results (CrowS-Pairs, BBQ and similar)."
        " A model this small scores near chance; treat these as a measurement of the method, not of fitness.",
        "",
    ]
    return out + _table(["checkpoint", "step", "task", "metric", "value", "items"], _eval_rows(f, bias=True)) + [""]


def _licences(f: dict[str, Any]) -> list[str]:
    mof = f["mof"]
    rows = [
        [c["name"], c["mof_class"], "yes" if c["present"] else "no", _code(c["licence"] or "none"), c["verdict"]]
        for c in mof.get("components", [])
    ]
    cls = mof.get("class", "none")
    out = [
        "## Openness and licences",
        "",
        f"Model Openness Framework class computed from this release's files: **Class {cls}** "
        f"({mof.get('class_name', 'none')}). Details in `mof.json`; the Model Openness Tool's file is "
        "`mof.yml`.",
        "",
    ]
    for k, reasons in (mof.get("reasons") or {}).items():
        out += [f"Class {k} is not met: " + "; ".join(reasons), ""]
    return out + _table(["component", "class", "present", "licence", "verdict"], rows) + [""] + _bases(mof)


def _bases(mof: dict[str, Any]) -> list[str]:
    """The imported base(s) this model derives from: identity, licence, openness facts with sources, the cap."""
    bases = mof.get("bases") or []
    if not bases:
        return []
    out = [
        "### Base model",
        "",
        "This model was trained from an imported base; a release cannot be more open than its base "
        "(the rule is in `moxin/release/basecap.py`).",
        "",
    ]
    for b in bases:
        src = b.get("source") or {}
        facts = b.get("facts") or {}
        rows = [
            [k, "released" if f.get("open") else "not released", _code(f.get("source")), _code(f.get("url") or "-")]
            for k, f in facts.items()
        ]
        cap = f"at most **Class {b['cap']}**" if b.get("cap") else "no cap"
        out += [
            f"`{b.get('name')}` from `{src.get('file')}` (sha256 `{src.get('sha256')}`), licence "
            f"`{b.get('license')}` (from `{b.get('license_source')}`): {cap}.",
            "",
            *_table(["training part", "state", "source", "where"], rows),
            "",
            *[f"- To lift the cap: {lift}." for lift in b.get("lift") or []],
            "",
        ]
    return out


def _samples(f: dict[str, Any]) -> list[str]:
    out = ["## Sample outputs", "", "Greedy continuations by the final model (`samples/outputs.jsonl`).", ""]
    for s in f["samples"][:4]:
        out += ["```text", f"{s['prompt']}{s['output']}", "```", ""]
    return out if f["samples"] else out + ["(none)", ""]


def _reproduce(f: dict[str, Any]) -> list[str]:
    pre = f["stages"].get("pretrain", [])
    cmd = [
        "sha256sum SHA256SUMS                 # the release digest: compare it with the published one",
        "moxin verify . --digest <published>   # checksums, MOF class, manifests, every derived file",
        "moxin verify . --key <producer.pub>   # when SHA256SUMS.sig is present: the producer's signature",
    ]
    if len(pre) >= 2:
        cmd.append(f"moxin verify . --reproduce {pre[-2].step}..{pre[-1].step}   # re-train and compare bitwise")
    code = f["release"].get("code", {})
    dirty = " The source tree had uncommitted changes when this release was made." if code.get("git_dirty") else ""
    return [
        "## How to reproduce",
        "",
        "Everything needed is in this folder: the recipe or resolved configuration "
        "(`config/`), the "
        "tokenized data (`data/`), the code (`code/`, with its version in `code/VERSION.json`) and every "
        f"checkpoint with its optimizer and random state (`checkpoints/`).{dirty}",
        "",
        "This card cannot state the release digest (the SHA-256 of `SHA256SUMS`): it is itself listed in "
        "`SHA256SUMS`. Take the digest from where the producer published it, outside this folder; only that "
        "value, or a signature (`SHA256SUMS.sig`, the one file `SHA256SUMS` does not list), proves that no "
        "one rewrote the release and its checksums together.",
        "",
        "```sh",
        *cmd,
        "```",
        "",
    ]


LIMITATIONS = [
    "## Limitations",
    "",
    "- A toy-scale model built to show the method: it is not fit for any use beyond testing the toolchain.",
    "- It inherits the biases of its sources; see the bias results above and the data card.",
    "- Licence verdicts audit the licences the sources declare; they are not legal advice.",
    "",
]


def model_card(root: Path) -> str:
    f = facts(root)
    rel = f["release"]
    head = [
        "---",
        f"license: {rel['licenses'].get('model', '').lower()}",
        "library_name: moxin",
        "tags: [moxin, mof]",
        "---",
        "",
        f"# {rel['name']}",
        "",
        f"Version `{rel['version']}`, released `{rel['date']}` by {rel.get('producer') or 'its producer'}; "
        f"{rel.get('treatment', 'pre-trained')}. Built with moxin `{rel['code'].get('version')}` at commit "
        f"`{rel['code'].get('git_commit')}`. Final checkpoint: `{rel['final_checkpoint']['name']}`.",
        "",
        'Use: `moxin generate model "..."` or load `hf/` with transformers.',
        "",
    ]
    body = (
        _architecture(f)
        + _data(f)
        + _training(f)
        + _evaluation(f)
        + _samples(f)
        + _licences(f)
        + LIMITATIONS
        + _reproduce(f)
    )
    return "\n".join(head + body)


def data_card(root: Path) -> str:
    f = facts(root)
    from moxin.release.licences import audit

    rows = [
        [
            s.name,
            _code(s.license),
            audit(s.license, "data").verdict,
            _opt(s.documents),
            _opt(s.tokens.get("train", s.tokens.get("all"))),
            _opt(s.tokens.get("val")),
            _code(s.origin) if s.origin else "",
        ]
        for s in f["sources"] + f["finetune"]
    ]
    src_json = root / "eval" / "data" / "sources.json"
    ev = read_json(src_json) if src_json.is_file() else []
    erows = [
        [
            e["name"],
            ", ".join(e.get("tasks") or []),
            _code(e.get("license")),
            audit(e.get("license"), "data").verdict,
            _code(e.get("origin", "")),
        ]
        for e in ev
    ]
    out = [
        f"# Data card: {f['release']['name']}",
        "",
        "Training data sources, their licences (audited for data: an OSI licence is open but written for code, "
        "so it passes with a warning; non-commercial licences fail), counts and origins, from `data/manifest.json`.",
        "",
        *_table(["source", "licence", "verdict", "documents", "train tokens", "val tokens", "origin"], rows),
        "",
        "## Evaluation data",
        "",
        *_table(["data", "tasks", "licence", "verdict", "origin"], erows),
        "",
        "## Processing",
        "",
        "Cleaning, deduplication, decontamination and tokenization are recorded in "
        "`data/manifest.json`; the code is `code/src/moxin/data/`. The tokenized data (`data/tokens.json` and "
        "`data/tokens/`) is what training read; its SHA-256 is the data fingerprint every checkpoint records.",
        "",
    ]
    stage_card = root / "data" / "data_card.md"
    if stage_card.is_file():
        out += ["## Data stage report", "", "The data stage's own card is `data/data_card.md`.", ""]
    return "\n".join(out)


def technical_report(root: Path) -> str:
    f = facts(root)
    rel = f["release"]
    recipe = (root / "config" / "recipe.toml").read_text("utf-8") if (root / "config" / "recipe.toml").is_file() else ""
    env = json.dumps(rel.get("environment", {}), indent=2, sort_keys=True)
    out = [
        f"# Technical report: {rel['name']}",
        "",
        "How this model was built, evaluated and released, and how to check it. The method is described in "
        "`paper/`; this report gives this build's configuration and results.",
        "",
        "## Recipe",
        "",
        "```toml",
        recipe.strip(),
        "```",
        "",
    ]
    out += _architecture(f) + _data(f) + _training(f) + _evaluation(f) + _licences(f) + _reproduce(f)
    out += ["## Environment", "", "```json", env, "```", ""]
    return "\n".join(out)
