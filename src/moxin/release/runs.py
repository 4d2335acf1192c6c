"""Reading a run folder (the layout in docs/CONTRACTS.md). Each stage's outputs are read by one small function
here, so that a change in a stage's files is adapted in one place.

    data/       tokens.json + tokens/, manifest.json (sources with SPDX licences), data_card.md
    tokenizer/  tokenizer.json, ...
    pretrain/   checkpoints/step-XXXXXXXX/, metrics.jsonl, run.json, *.png
    finetune/<name>/  the same layout
    eval/       results/*.json, table.csv, table.md, plots/*.png
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.config import to_dict
from moxin.errors import ReleaseError
from moxin.io import read_json as _read_json
from moxin.io import read_jsonl as _read_jsonl
from moxin.layout import RunLayout
from moxin.provenance import sha256_file
from moxin.records import STATE_NAME, TrainState, read_train_state, recorded_path


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
    state: TrainState | None = None  # train_state.json (moxin.records), None for a checkpoint without one

    @property
    def name(self) -> str:
        return f"{self.stage}/{self.path.name}"

    @property
    def sha(self) -> str:
        """A checkpoint's identity: the SHA-256 of its manifest.json (docs/CONTRACTS.md)."""
        return sha256_file(self.path / "manifest.json")

    @property
    def data_fingerprint(self) -> str | None:
        return self.state.data_fingerprint if self.state else None

    @property
    def tokens_seen(self) -> int | None:
        return self.state.tokens_seen if self.state else None

    @property
    def base(self) -> dict[str, Any]:
        """A fine-tune's starting model: {'kind', 'path', 'sha256'} (moxin.records.Lineage.base), else empty."""
        return to_dict(self.state.lineage.base) if self.state and self.state.lineage.base else {}

    @property
    def datasets(self) -> list[dict[str, Any]]:
        """A fine-tune's data sets with their licences (lineage.data.datasets), else empty."""
        data = self.state.lineage.data if self.state else None
        return list(data.datasets) if data else []

    @property
    def parent(self) -> dict[str, Any]:
        """{'path': ..., 'sha256': ...} of the checkpoint this one continued from (empty for the first one)."""
        return to_dict(self.state.lineage.parent) if self.state and self.state.lineage.parent else {}


def checkpoints(root: Path, stage: str) -> list[Checkpoint]:
    """The checkpoints (with model/) of one training stage of a run or a release (moxin.layout), by step."""
    return [
        Checkpoint(c.stage, c.step, c.path, read_train_state(c.path) if (c.path / STATE_NAME).is_file() else None)
        for c in RunLayout(root).checkpoints(stage)
        if (c.path / "model").is_dir()
    ]


def all_checkpoints(root: Path) -> list[Checkpoint]:
    return [c for stage in RunLayout(root).training_stages() for c in checkpoints(root, stage)]


def final_checkpoint(cks: list[Checkpoint]) -> Checkpoint:
    """The end of the longest lineage: the last checkpoint of the last stage that continued from another."""
    if not cks:
        raise ReleaseError(
            "no checkpoints found (expected pretrain/checkpoints/step-XXXXXXXX/ with model/); "
            "run `moxin pretrain` first"
        )
    by_sha = {c.sha: c for c in cks}

    def depth(c: Checkpoint, seen: int = 0) -> int:
        parent = by_sha.get(c.parent.get("sha256") or "")
        return seen if parent is None or seen > len(cks) else depth(parent, seen + 1)

    finetuned = [c for c in cks if c.stage.startswith("finetune/")]
    pool = finetuned or [c for c in cks if c.stage == "adapt"] or cks
    return merged(max(pool, key=lambda c: (depth(c), c.stage != "pretrain", c.step)))


def with_merged(cks: list[Checkpoint]) -> list[Checkpoint]:
    """The checkpoints plus the merged final/ model of each LoRA stage (what a release may name as final)."""
    extra = [m for c in cks if (m := merged(c)) is not c]
    return cks + extra


def merged(ck: Checkpoint) -> Checkpoint:
    """A LoRA checkpoint's merged model (its stage's final/, written from it) in its place: the release ships a
    plain model, not the adapters beside the frozen weights."""
    final = ck.path.parent.parent / "final"
    if not (ck.state and ck.state.lineage.lora and (final / STATE_NAME).is_file()):
        return ck
    state = read_train_state(final)
    if state.merged_from is None or state.merged_from.sha256 != ck.sha:
        return ck
    return Checkpoint(ck.stage, ck.step, final, state)


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
        out.append(
            Source(
                name=str(s.get("name")),
                license=s.get("license") or s.get("spdx"),
                origin=str(s.get("origin") or s.get("path") or s.get("url") or ""),
                documents=docs if isinstance(docs, int) else None,
                tokens=dict(tokens)
                if isinstance(tokens, dict)
                else ({"all": tokens} if isinstance(tokens, int) else {}),
            )
        )
    return out


def finetune_datasets(root: Path) -> list[Source]:
    """The fine-tuning data sets of every fine-tune stage (from its last checkpoint's lineage), with licences."""
    out = []
    for stage in RunLayout(root).training_stages():
        cks = checkpoints(root, stage) if stage != "pretrain" else []
        for d in cks[-1].datasets if cks else []:
            out.append(
                Source(
                    f"{stage}:{d.get('name')}",
                    d.get("license"),
                    str(d.get("path") or ""),
                    d.get("kept") if isinstance(d.get("kept"), int) else None,
                )
            )
    return out


def data_dir_of(run: Path) -> Path:
    """The tokenized data the run trained on: <run>/data, or the data_dir its pretrain run.json records (relative
    to the run folder)."""
    layout = RunLayout(run)
    if (layout.data / "tokens.json").is_file():
        return layout.data
    info = layout.run_json("pretrain")
    value = str(read_json(info, "run record").get("data_dir") or "") if info.is_file() else ""
    recorded = recorded_path(value, run) if value else None
    if recorded and (recorded / "tokens.json").is_file():
        return recorded
    raise ReleaseError(
        f"no tokenized data for {run}: neither {run / 'data' / 'tokens.json'} nor the data_dir in "
        f"{info} exists; a release ships the data it was trained on (run `moxin data` first)"
    )


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
            nums = {
                k.split(",")[0]: float(v)
                for k, v in vals.items()
                if isinstance(v, (int, float)) and not isinstance(v, bool) and "stderr" not in k
            }
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
        return "/".join(parts[max(i - 1, 0) : i]) + "/" + parts[-1]
    return path or str(model.get("sha256") or "")


def read_eval_result(path: Path) -> EvalResult:
    """One eval results JSON. moxin.eval writes one task per file: `task`, `metrics` {name: value}, `model`
    {path, sha256, step, stage}, `task_config.data_files` {path relative to the data folder: sha256}. The lm-eval
    style (`results`: task → {'metric,filter': value}, `checkpoint`, `data`: [{task, path, license}]) is read too."""
    doc = read_json(path, "evaluation result")
    model = doc.get("model") or doc.get("checkpoint") or {}
    model = model if isinstance(model, dict) else {"path": str(model)}
    if isinstance(doc.get("metrics"), dict) and doc.get("task"):
        metrics = {
            str(doc["task"]): {
                k: float(v)
                for k, v in doc["metrics"].items()
                if isinstance(v, (int, float)) and not isinstance(v, bool)
            }
        }
        files = (doc.get("task_config") or {}).get("data_files") or {}
        data = [{"task": doc["task"], "path": rel, "sha256": sha} for rel, sha in sorted(files.items())]
    else:
        metrics = _task_metrics(doc.get("results") or {})
        data = list(doc.get("data") or [])
    items = doc.get("n_items", doc.get("items"))  # result_version 2 holds the per-item scores under "items"
    return EvalResult(
        path,
        _checkpoint_label(model),
        model.get("step"),
        metrics,
        data,
        items if isinstance(items, int) else None,
        str(model.get("stage") or ""),
    )


def eval_results(eval_dir: Path) -> list[EvalResult]:
    """Every result, ordered by stage (pretrain first), step and task."""
    folder = eval_dir / "results"
    res = [read_eval_result(p) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    return sorted(
        res, key=lambda r: (r.stage != "pretrain", r.stage, r.step if r.step is not None else -1, sorted(r.metrics))
    )


# ------------------------------------------------------------------------------------------------ recipe
def recorded_recipe(run: Path, final: Checkpoint | None = None) -> tuple[dict[str, Any], str]:
    """The recipe the run was built with: `recipe.toml` in the run (or under config/), else the resolved config in
    the final checkpoint's train state. Returns (recipe dict, where it came from)."""
    import tomllib

    for p in (run / "recipe.toml", run / "config" / "recipe.toml", run / "pretrain" / "recipe.toml"):
        if p.is_file():
            return tomllib.loads(p.read_text("utf-8")), str(p)
    p = run / "pretrain" / "run.json"
    if p.is_file():
        doc = read_json(p, "run record")
        if isinstance(doc.get("recipe"), dict):
            return doc["recipe"], str(p)
    if final is not None and final.state is not None and final.state.config:
        return final.state.config, str(final.path / STATE_NAME)
    return {}, ""
