"""Read a run folder or a release into plain facts for the page, through the existing readers
(`moxin.layout.RunLayout`, `moxin.release.runs`, `mof.json`, the data manifest). No torch here.

Every path kept is relative to the folder read (`RunLayout.rel`), so the page never names where the run lives."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import ReportError
from moxin.layout import RunLayout
from moxin.release.licences import Kind
from moxin.release.runs import (
    Checkpoint,
    all_checkpoints,
    data_sources,
    eval_results,
    final_checkpoint,
    finetune_datasets,
    read_json,
    read_jsonl,
    recorded_recipe,
)

BIAS_WORDS = ("crows", "bbq", "bias", "stereo", "toxic")
LICENCE_KINDS: dict[str, Kind] = {
    "code": "code",
    "model": "data",
    "document": "document",
    "paper": "document",
    "datasets": "data",
    "eval_data": "data",
    "libraries": "code",
}
SKIP_CONFIG = ("run.out_dir",)  # where a run was written is not part of what it is


@dataclass
class Facts:
    kind: str  # 'run' or 'release'
    name: str
    mof: dict[str, Any] | None = None
    audit: list[dict[str, Any]] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    evals: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    lineage: dict[str, Any] = field(default_factory=dict)
    verify: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, str] = field(default_factory=dict)


def kind_of(root: Path) -> str:
    """'release' (release.json + mof.json), 'run' (recipe.toml, data/ or pretrain/), else a ReportError."""
    if not root.is_dir():
        raise ReportError(
            f"report: folder not found: {root}; give a run folder (<run.out_dir>/<run.name>) or a release folder"
        )
    if (root / "release.json").is_file() and (root / "mof.json").is_file():
        return "release"
    if any((root / p).exists() for p in ("recipe.toml", "data/manifest.json", "pretrain")):
        return "run"
    raise ReportError(
        f"report: {root} is neither a run folder (recipe.toml, data/, pretrain/) nor a release "
        "(release.json, mof.json); give the folder `moxin build` or `moxin release` wrote"
    )


def release_of(root: Path, kind: str) -> Path | None:
    """The release folder holding the audit and samples: the folder itself, or a run's release/."""
    if kind == "release":
        return root
    rel = RunLayout(root).release
    return rel if (rel / "mof.json").is_file() else None


def collect(root: str | Path, embedded: bool = False) -> Facts:
    """Everything the page shows. `embedded`: the page is the release's own index.html, so it must not depend on
    SHA256SUMS (written after it) nor on anything outside the release."""
    root = Path(root)
    kind = kind_of(root)
    rel = release_of(root, kind)
    cks = all_checkpoints(root)
    f = Facts(kind, _name(root, kind))
    if rel is not None:
        f.mof = read_json(rel / "mof.json", "MOF audit")
        f.audit = licence_audit(rel)
        samples = rel / "samples" / "outputs.jsonl"
        f.samples = read_jsonl(samples) if samples.is_file() else []
    f.data = data_facts(root, kind)
    tokens = checkpoint_tokens(cks)
    f.stages = training(root, cks, tokens)
    f.evals = evaluations(root, tokens)
    f.final = _final(cks)
    f.lineage = lineage(root, cks, f.data)
    f.verify = verification(root, kind, embedded)
    f.config = config(root, cks)
    return f


def _name(root: Path, kind: str) -> str:
    if kind == "release":
        return str(read_json(root / "release.json", "release record").get("name") or "release")
    return root.name


def _final(cks: list[Checkpoint]) -> dict[str, Any]:
    if not cks:
        return {}
    c = final_checkpoint(cks)
    return {"name": c.name, "sha256": c.sha, "stage": c.stage, "step": c.step}


# ------------------------------------------------------------------------------------------------ openness
def licence_audit(release: Path) -> list[dict[str, Any]]:
    """Every recorded licence with its audit verdict and reason (moxin.release.licences.audit)."""
    from moxin.release.licences import audit
    from moxin.release.mof import licences_of

    out = []
    for key, entries in licences_of(release).items():
        for name, lic in entries:
            a = audit(lic, LICENCE_KINDS.get(key, "data"))
            out.append(
                {"key": key, "source": str(name), "licence": lic or "", "verdict": a.verdict, "reason": a.reason}
            )
    return out


# ------------------------------------------------------------------------------------------------ data
def data_facts(root: Path, kind: str) -> dict[str, Any]:
    """Sources, drop reasons, language mix, decontamination hits, PII masked counts, the data card's path."""
    man = root / "data" / "manifest.json"
    m = read_json(man, "data manifest") if man.is_file() else {}
    sources = []
    for raw, s in zip(_raw_sources(m), data_sources(m)):
        tokens = sum(v for v in s.tokens.values() if isinstance(v, int))
        sources.append(
            {
                "name": s.name,
                "licence": s.license or "",
                "docs_in": raw.get("docs_in"),
                "docs_kept": s.documents,
                "tokens": tokens,
            }
        )
    drops: dict[str, int] = {}
    pii: dict[str, int] = {}
    for step in m.get("steps") or []:
        for reason, n in (step.get("dropped") or {}).items():
            drops[reason] = drops.get(reason, 0) + int(n)
        if step.get("step") == "pii":
            for what, n in (step.get("modified") or {}).items():
                pii[what] = pii.get(what, 0) + int(n)
    card = "DATA_CARD.md" if kind == "release" else "data/data_card.md"
    return {
        "sources": sources,
        "finetune": [
            {"name": s.name, "licence": s.license or "", "docs_kept": s.documents} for s in finetune_datasets(root)
        ],
        "drops": dict(sorted(drops.items())),
        "pii": dict(sorted(pii.items())),
        "languages": {str(k): int(v) for k, v in sorted((m.get("languages") or {}).items())},
        "decontamination": _decontam(m.get("decontamination")),
        "card": card if (root / card).is_file() else None,
        "fingerprint": _fingerprint(root),
    }


def _raw_sources(m: dict[str, Any]) -> list[dict[str, Any]]:
    raw = m.get("sources") or []
    return [{"name": k, **v} for k, v in raw.items()] if isinstance(raw, dict) else list(raw)


def _decontam(d: Any) -> dict[str, int]:
    """{benchmark or source: hits} from the manifest's decontamination record (numbers found at any depth)."""
    out: dict[str, int] = {}

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, bool):
            return
        if isinstance(obj, int):
            out[key] = out.get(key, 0) + obj
        elif isinstance(obj, dict):
            for k, v in sorted(obj.items()):
                walk(v, f"{key}.{k}" if key else str(k))

    walk(d or {}, "")
    return {k: v for k, v in out.items() if any(w in k for w in ("hit", "removed", "dropped", "match"))} or out


def _fingerprint(root: Path) -> str | None:
    from moxin.release.runs import data_fingerprint

    return data_fingerprint(root / "data")


# ------------------------------------------------------------------------------------------------ training
def checkpoint_tokens(cks: list[Checkpoint]) -> dict[str, int]:
    """checkpoint sha → tokens seen since the start of pretraining (a fine-tune adds its base's tokens)."""
    by_sha = {c.sha: c for c in cks}
    out: dict[str, int] = {}

    def total(c: Checkpoint, depth: int = 0) -> int:
        if c.sha in out:
            return out[c.sha]
        own = int(c.tokens_seen or 0)
        base = by_sha.get(c.base.get("sha256") or "")
        n = own + (total(base, depth + 1) if base is not None and depth < len(cks) else 0)
        out[c.sha] = n
        return n

    for c in cks:
        total(c)
    return out


def training(root: Path, cks: list[Checkpoint], tokens: dict[str, int]) -> list[dict[str, Any]]:
    """Per stage: its metrics rows (step, loss, lr, tokens_seen, phase, val_loss) and its checkpoints."""
    out = []
    layout = RunLayout(root)
    for stage in layout.training_stages():
        log = layout.metrics(stage)
        rows = [
            {k: r.get(k) for k in ("step", "loss", "lr", "tokens_seen", "phase", "val_loss")}
            for r in (read_jsonl(log) if log.is_file() else [])
            if isinstance(r.get("step"), int)
        ]
        marks = [
            {
                "name": c.name,
                "step": c.step,
                "sha256": c.sha,
                "tokens_seen": c.tokens_seen,
                "tokens_total": tokens.get(c.sha),
            }
            for c in cks
            if c.stage == stage
        ]
        out.append({"stage": stage, "rows": rows, "checkpoints": marks})
    return out


def evaluations(root: Path, tokens: dict[str, int]) -> list[dict[str, Any]]:
    """One point per (result, task, metric): the checkpoint, its step, its tokens seen, the value."""
    out = []
    for r in eval_results(root / "eval"):
        doc = read_json(r.file, "evaluation result")
        model = doc.get("model") if isinstance(doc.get("model"), dict) else {}
        sha = str(model.get("sha256") or "")
        for task, metrics in sorted(r.metrics.items()):
            for metric, v in sorted(metrics.items()):
                out.append(
                    {
                        "task": task,
                        "metric": metric,
                        "value": v,
                        "checkpoint": r.checkpoint,
                        "stage": r.stage,
                        "step": r.step,
                        "tokens": tokens.get(sha, model.get("tokens_seen")),
                        "sha256": sha,
                        "bias": any(w in task.lower() for w in BIAS_WORDS),
                    }
                )
    return out


# ------------------------------------------------------------------------------------------------ lineage
def lineage(root: Path, cks: list[Checkpoint], data: dict[str, Any]) -> dict[str, Any]:
    """Nodes by column (sources → tokenized data → pretrain → each fine-tune → released model) and edges."""
    nodes: list[dict[str, Any]] = []
    edges: list[tuple[str, str]] = []
    fp = data.get("fingerprint")
    for s in data.get("sources") or []:
        nodes.append({"id": f"src:{s['name']}", "col": 0, "label": s["name"], "sub": s["licence"]})
        edges.append((f"src:{s['name']}", "data"))
    nodes.append({"id": "data", "col": 1, "label": "tokenized", "sub": (fp or "")[:12]})
    last: dict[str, Checkpoint] = {}
    for c in cks:
        last[c.stage] = c
    stage_of = {c.sha: c.stage for c in cks}
    fts = [s for s in last if s != "pretrain"]
    for stage, c in last.items():
        col = 2 if stage == "pretrain" else 4 + 2 * fts.index(stage)
        nodes.append({"id": stage, "col": col, "label": stage, "sub": c.sha[:12]})
        parent = stage_of.get(c.base.get("sha256") or "")
        base_sha = c.base.get("sha256")
        if stage == "pretrain" or (parent is None and not base_sha):
            edges.append(("data", stage))
        elif parent is not None:
            edges.append((parent, stage))
        else:
            nodes.append({"id": f"base:{stage}", "col": col - 1, "label": "base model", "sub": str(base_sha)[:12]})
            edges.append((f"base:{stage}", stage))
        for d in c.datasets if stage != "pretrain" else []:
            nid = f"ft:{stage}:{d.get('name')}"
            nodes.append({"id": nid, "col": col - 1, "label": str(d.get("name")), "sub": str(d.get("license") or "")})
            edges.append((nid, stage))
    if cks:
        final = final_checkpoint(cks)
        col = max(n["col"] for n in nodes) + 1
        nodes.append({"id": "final", "col": col, "label": "released", "sub": final.sha[:12]})
        edges.append((final.stage, "final"))
    return {"nodes": nodes, "edges": edges}


# ------------------------------------------------------------------------------------------------ verification
def verification(root: Path, kind: str, embedded: bool) -> dict[str, Any]:
    """The digest (not for a release's own page), how to verify, and a run's last `moxin verify` output."""
    from moxin.provenance import sha256_file

    rel = root if kind == "release" else RunLayout(root).release
    sums = rel / "SHA256SUMS"
    digest = sha256_file(sums) if sums.is_file() and not embedded else None
    target = "." if kind == "release" else RunLayout(root).rel(rel)
    last = None
    if not embedded:
        run = root if kind == "run" else root.parent
        vt = RunLayout(run).build_state / "verify.txt"
        if vt.is_file() and (kind == "run" or RunLayout(run).release.resolve() == root.resolve()):
            last = vt.read_text("utf-8")
    return {
        "digest": digest,
        "has_sums": sums.is_file(),
        "embedded": embedded,
        "last": last,
        "command": f"moxin verify {target} --digest {digest or '<DIGEST>'}",
    }


# ------------------------------------------------------------------------------------------------ config
def config(root: Path, cks: list[Checkpoint]) -> dict[str, str]:
    """The recorded recipe flattened to 'section.key' → value text (for comparisons)."""
    recipe, _ = recorded_recipe(root, final_checkpoint(cks) if cks else None)
    out: dict[str, str] = {}

    def walk(obj: Any, key: str) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(v, f"{key}.{k}" if key else str(k))
        elif key not in SKIP_CONFIG:
            out[key] = str(obj)

    walk(recipe, "")
    return dict(sorted(out.items()))
