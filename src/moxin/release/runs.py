"""Reading a run folder (the layout in docs/CONTRACTS.md). Each stage's outputs are read by one small function
here, so that a change in a stage's files is adapted in one place.

    data/       tokens.json + tokens/, manifest.json (sources with SPDX licences), data_card.md
    tokenizer/  tokenizer.json, ...
    pretrain/   checkpoints/step-XXXXXXXX/, metrics.jsonl, run.json, *.png
    finetune/<name>/  the same layout
    eval/       results/*.json, table.csv, table.md, plots/*.png
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import ReleaseError
from moxin.io import read_json as _read_json, read_jsonl as _read_jsonl
from moxin.provenance import sha256_file

STEP_RE = re.compile(r"^step-(\d+)$")


def read_json(path: Path, what: str = "file") -> Any:
    return _read_json(path, ReleaseError, what)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in _read_jsonl(path, ReleaseError)]


# ------------------------------------------------------------------------------------------------ checkpoints
@dataclass
class Checkpoint:
    stage: str  # 'pretrain' or 'finetune/<name>'
    step: int
    path: Path
    state: dict[str, Any] = field(default_factory=dict)  # train_state.json

    @property
    def name(self) -> str:
        return f"{self.stage}/{self.path.name}"

    @property
    def sha(self) -> str:
        """A checkpoint's identity: the SHA-256 of its manifest.json (docs/CONTRACTS.md)."""
        return sha256_file(self.path / "manifest.json")

    @property
    def data_fingerprint(self) -> str | None:
        s = self.state
        return s.get("data_fingerprint") or (s.get("data") or {}).get("fingerprint")

    @property
    def base(self) -> dict[str, Any]:
        """A fine-tune's starting model: {'kind', 'path', 'sha256'} (moxin.finetune.lineage), else empty."""
        base = (self.state.get("lineage") or {}).get("base")
        return base if isinstance(base, dict) else {}

    @property
    def datasets(self) -> list[dict[str, Any]]:
        """A fine-tune's data sets with their licences (lineage.data.datasets), else empty."""
        data = (self.state.get("lineage") or {}).get("data")
        return list(data.get("datasets") or []) if isinstance(data, dict) else []

    @property
    def parent(self) -> dict[str, Any]:
        """{'path': ..., 'sha256': ...} of the checkpoint this one continued from (empty for the first one)."""
        lineage = self.state.get("lineage") or {}
        parent = lineage.get("parent") if isinstance(lineage, dict) else None
        if isinstance(parent, dict):
            return parent
        if parent:
            return {"path": parent, "sha256": lineage.get("parent_sha256")}
        return {}


def stage_dirs(root: Path) -> list[tuple[str, Path]]:
    """(stage name, folder) of every training stage under a run or a release's checkpoints/, pretrain first."""
    out = []
    if (root / "pretrain").is_dir():
        out.append(("pretrain", root / "pretrain"))
    ft = root / "finetune"
    if ft.is_dir():
        out.extend((f"finetune/{d.name}", d) for d in sorted(ft.iterdir()) if d.is_dir())
    return out


def checkpoints_in(folder: Path, stage: str) -> list[Checkpoint]:
    """The step-* checkpoints of one stage folder (which holds them directly or under checkpoints/)."""
    base = folder / "checkpoints" if (folder / "checkpoints").is_dir() else folder
    cks = []
    for d in base.iterdir() if base.is_dir() else []:
        m = STEP_RE.match(d.name)
        if m and d.is_dir() and (d / "model").is_dir():
            state = read_json(d / "train_state.json", "train state") if (d / "train_state.json").is_file() else {}
            cks.append(Checkpoint(stage, int(m.group(1)), d, state))
    return sorted(cks, key=lambda c: c.step)


def all_checkpoints(root: Path) -> list[Checkpoint]:
    return [c for stage, folder in stage_dirs(root) for c in checkpoints_in(folder, stage)]


def final_checkpoint(cks: list[Checkpoint]) -> Checkpoint:
    """The end of the longest lineage: the last checkpoint of the last stage that continued from another."""
    if not cks:
        raise ReleaseError("no checkpoints found (expected pretrain/checkpoints/step-XXXXXXXX/ with model/); "
                           "run `moxin pretrain` first")
    by_sha = {c.sha: c for c in cks}

    def depth(c: Checkpoint, seen: int = 0) -> int:
        parent = by_sha.get(c.parent.get("sha256") or "")
        return seen if parent is None or seen > len(cks) else depth(parent, seen + 1)

    finetuned = [c for c in cks if c.stage != "pretrain"]
    pool = finetuned or cks
    return max(pool, key=lambda c: (depth(c), c.stage != "pretrain", c.step))


# ------------------------------------------------------------------------------------------------ data
@dataclass
class Source:
    name: str
    license: str | None
    origin: str = ""
    documents: int | None = None  # documents kept
    tokens: dict[str, int] = field(default_factory=dict)  # split → tokens


def data_sources(manifest: dict[str, Any]) -> list[Source]:
    """The sources of a data manifest (moxin.data.card.build_manifest: a list of {name, license, path, docs_kept,
    tokens: {split: n}}; a {name: {...}} table is read too), with their SPDX licences."""
    raw = manifest.get("sources") or []
    items = [{"name": k, **v} for k, v in raw.items()] if isinstance(raw, dict) else list(raw)
    out = []
    for s in items:
        tokens = s.get("tokens")
        docs = s.get("docs_kept", s.get("documents"))
        out.append(Source(
            name=str(s.get("name")), license=s.get("license") or s.get("spdx"),
            origin=str(s.get("origin") or s.get("path") or s.get("url") or ""),
            documents=docs if isinstance(docs, int) else None,
            tokens=dict(tokens) if isinstance(tokens, dict) else ({"all": tokens} if isinstance(tokens, int) else {})))
    return out


def finetune_datasets(root: Path) -> list[Source]:
    """The fine-tuning data sets of every fine-tune stage (from its last checkpoint's lineage), with licences."""
    out = []
    for stage, folder in stage_dirs(root):
        cks = checkpoints_in(folder, stage) if stage != "pretrain" else []
        for d in cks[-1].datasets if cks else []:
            out.append(Source(f"{stage}:{d.get('name')}", d.get("license"), str(d.get("path") or ""),
                              d.get("kept") if isinstance(d.get("kept"), int) else None))
    return out


def data_dir_of(run: Path) -> Path:
    """The tokenized data the run trained on: <run>/data, or the data_dir its pretrain run.json records."""
    if (run / "data" / "tokens.json").is_file():
        return run / "data"
    info = run / "pretrain" / "run.json"
    recorded = Path(str(read_json(info, "run record").get("data_dir") or "")) if info.is_file() else None
    if recorded and (recorded / "tokens.json").is_file():
        return recorded
    raise ReleaseError(f"no tokenized data for {run}: neither {run / 'data' / 'tokens.json'} nor the data_dir in "
                       f"{info} exists; a release ships the data it was trained on (run `moxin data` first)")


def data_fingerprint(data_dir: Path) -> str | None:
    """The data fingerprint: SHA-256 of tokens.json (moxin.data.tokens.TokenData.fingerprint)."""
    p = data_dir / "tokens.json"
    return sha256_file(p) if p.is_file() else None


# ------------------------------------------------------------------------------------------------ eval
@dataclass
class EvalResult:
    file: Path
    checkpoint: str  # '<stage>/<step-dir>' (or what the result records)
    step: int | None
    metrics: dict[str, dict[str, float]]  # task → metric → value
    data: list[dict[str, Any]]  # [{'task', 'path', 'sha256'?, 'license'?}] evaluation data used, when recorded
    items: int | None = None  # items scored (fewer than the task has when a --limit was used)
    stage: str = ""


def _task_metrics(results: dict[str, Any]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for task, vals in results.items():
        if isinstance(vals, dict):
            nums = {k.split(",")[0]: float(v) for k, v in vals.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool) and "stderr" not in k}
            if nums:
                out[task] = nums
    return out


def _checkpoint_label(model: dict[str, Any]) -> str:
    path, stage = str(model.get("path") or model.get("name") or ""), model.get("stage")
    if stage and path:
        return f"{stage}/{Path(path).name}"
    parts = Path(path).parts
    if "checkpoints" in parts:  # …/<stage>/checkpoints/step-X → <stage>/step-X
        i = parts.index("checkpoints")
        return "/".join(parts[max(i - 1, 0):i]) + "/" + parts[-1]
    return path or str(model.get("sha256") or "")


def read_eval_result(path: Path) -> EvalResult:
    """One eval results JSON. moxin.eval writes one task per file: `task`, `metrics` {name: value}, `model`
    {path, sha256, step, stage}, `task_config.data_files` {path relative to the data folder: sha256}. The lm-eval
    style (`results`: task → {'metric,filter': value}, `checkpoint`, `data`: [{task, path, license}]) is read too."""
    doc = read_json(path, "evaluation result")
    model = doc.get("model") or doc.get("checkpoint") or {}
    model = model if isinstance(model, dict) else {"path": str(model)}
    if isinstance(doc.get("metrics"), dict) and doc.get("task"):
        metrics = {str(doc["task"]): {k: float(v) for k, v in doc["metrics"].items()
                                      if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        files = (doc.get("task_config") or {}).get("data_files") or {}
        data = [{"task": doc["task"], "path": rel, "sha256": sha} for rel, sha in sorted(files.items())]
    else:
        metrics = _task_metrics(doc.get("results") or {})
        data = list(doc.get("data") or [])
    items = doc.get("items")
    return EvalResult(path, _checkpoint_label(model), model.get("step"), metrics, data,
                      items if isinstance(items, int) else None, str(model.get("stage") or ""))


def eval_results(eval_dir: Path) -> list[EvalResult]:
    """Every result, ordered by stage (pretrain first), step and task."""
    folder = eval_dir / "results"
    res = [read_eval_result(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(res, key=lambda r: (r.stage != "pretrain", r.stage, r.step if r.step is not None else -1,
                                      sorted(r.metrics)))


# ------------------------------------------------------------------------------------------------ recipe
def recorded_recipe(run: Path, final: Checkpoint | None = None) -> tuple[dict[str, Any], str]:
    """The recipe the run was built with: `recipe.toml` in the run (or under config/), else the resolved config in
    the final checkpoint's train state. Returns (recipe dict, where it came from)."""
    import tomllib

    for p in (run / "recipe.toml", run / "config" / "recipe.toml", run / "pretrain" / "recipe.toml"):
        if p.is_file():
            return tomllib.loads(p.read_text("utf-8")), str(p)
    rec = ((final.state.get("lineage") or {}).get("recipe") or {}) if final is not None else {}
    path = Path(str(rec.get("path") or "")) if isinstance(rec, dict) else Path()
    if rec and path.is_file() and (not rec.get("sha256") or sha256_file(path) == rec["sha256"]):
        return tomllib.loads(path.read_text("utf-8")), str(path)  # the recipe a fine-tune recorded, unchanged since
    p = run / "pretrain" / "run.json"
    if p.is_file():
        doc = read_json(p, "run record")
        if isinstance(doc.get("recipe"), dict):
            return doc["recipe"], str(p)
    if final is not None and isinstance(final.state.get("config"), dict):
        return final.state["config"], str(final.path / "train_state.json")
    return {}, ""
