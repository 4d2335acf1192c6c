"""One side of a comparison: whatever the user named (a run, a checkpoint, a model folder, a GGUF file, a release),
resolved to the model it means and the records that say how it was made.

A run or a release means its final model (the end of its longest lineage, as the release picks it). Everything here
is read from records (`moxin.records`, `moxin.layout`, the data manifest): nothing is loaded into torch."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import CompareError, MoxinError
from moxin.layout import RunLayout
from moxin.provenance import sha256_file
from moxin.records import MANIFEST_NAME, STATE_NAME, model_identity, read_train_state, recorded_path, run_root

KINDS = "a run folder, a checkpoint folder, a model folder (moxin or Hugging Face), a .gguf file or a release"


@dataclass
class Side:
    """What one side of `moxin compare` is: the model, its identity and how it was made."""

    label: str  # as the user named it (last path part)
    given: str  # run | release | checkpoint | model | hf | gguf
    model: Path  # the model evaluated and generated from
    kind: str  # moxin.records.model_identity kind
    sha256: str
    root: Path | None = None  # the run or release holding the model (eval results, token data)
    step: int | None = None
    stage: str | None = None
    tokens_seen: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # flattened: recipe.<key>, train.<key>
    sources: list[dict[str, Any]] = field(default_factory=list)
    lineage: list[dict[str, Any]] = field(default_factory=list)  # the model first, then what it came from
    tokenizer: dict[str, Any] = field(default_factory=dict)
    architecture: dict[str, Any] = field(default_factory=dict)

    @property
    def data_dir(self) -> Path | None:
        """The tokenized data the model was trained on, when it is at hand (held-out perplexity reads its val split)."""
        for node in self.lineage:
            d = node.get("data_dir")
            if d and (Path(d) / "tokens.json").is_file():
                return Path(d)
        return None

    def record(self) -> dict[str, Any]:
        """What compare.json holds about the side (no absolute path: the model by name and SHA-256)."""
        lineage = [{k: v for k, v in n.items() if k != "data_dir"} for n in self.lineage]
        return {
            "label": self.label, "given": self.given, "kind": self.kind, "sha256": self.sha256, "step": self.step,
            "stage": self.stage, "tokens_seen": self.tokens_seen, "sources": self.sources, "lineage": lineage,
            "tokenizer": self.tokenizer, "architecture": self.architecture, "config": self.config,
        }  # fmt: skip


def resolve(path: str | Path) -> Side:
    """The side named by `path`; a path that is none of the accepted kinds is one CompareError line."""
    p = Path(path).expanduser().resolve()
    if not p.exists():
        raise CompareError(f"{path}: no such file or folder; give {KINDS}")
    if p.is_file():
        if p.suffix != ".gguf":
            raise CompareError(f"{path} is a file but not a .gguf model; give {KINDS}")
        return _plain_side(p, "gguf")
    if (p / STATE_NAME).is_file() and (p / MANIFEST_NAME).is_file():
        return _checkpoint_side(p, "checkpoint", run_root(p))
    if (p / "SHA256SUMS").is_file() and (p / "model").is_dir():
        return _run_side(p, "release")
    if RunLayout(p).all_checkpoints():
        return _run_side(p, "run")
    if (p / "model_config.json").is_file() or (p / "config.json").is_file():
        return _plain_side(p, "model" if (p / "model_config.json").is_file() else "hf")
    raise CompareError(
        f"{path} is none of {KINDS} (no train_state.json, pretrain/ or finetune/ checkpoints, model_config.json, "
        f"config.json or SHA256SUMS in it); point to one of those"
    )


def _run_side(root: Path, given: str) -> Side:
    from moxin.release.runs import all_checkpoints, final_checkpoint

    cks = all_checkpoints(root)
    if not cks:
        raise CompareError(f"{root} holds no checkpoint with model/ weights; give {KINDS}")
    side = _checkpoint_side(final_checkpoint(cks).path, given, root)
    side.label = root.name
    return side


def _checkpoint_side(ckpt: Path, given: str, root: Path | None) -> Side:
    try:
        kind, sha = model_identity(ckpt)
        state = read_train_state(ckpt)
    except MoxinError as e:
        raise CompareError(f"{ckpt}: {e}") from None
    home = root or run_root(ckpt)
    lineage = lineage_of(ckpt)
    side = Side(ckpt.name, given, ckpt, kind, sha, home, state.step, lineage[0].get("stage"), state.tokens_seen)
    side.config = flatten({"recipe": _recipe(home), "train": state.config})
    side.lineage = lineage
    side.sources = sources_of(lineage)
    side.tokenizer = tokenizer_of(ckpt)
    side.architecture = architecture_of(ckpt)
    return side


def _plain_side(p: Path, given: str) -> Side:
    try:
        kind, sha = model_identity(p)
    except MoxinError as e:
        raise CompareError(f"{p}: {e}") from None
    home = p.parent if RunLayout(p.parent).base == p else None  # an adapt run's imported base: its eval results
    side = Side(p.name, given, p, kind, sha, home)
    side.lineage = [{"sha256": sha, "name": p.name, "kind": kind, "step": None, "stage": None}]
    side.tokenizer = tokenizer_of(p)
    side.architecture = architecture_of(p)
    return side


def _recipe(root: Path | None) -> dict[str, Any]:
    if root is None:
        return {}
    from moxin.release.runs import recorded_recipe

    return recorded_recipe(root)[0]


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted keys ('recipe.pretrain.lr'); lists stay values."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ------------------------------------------------------------------------------------------------ lineage
def lineage_of(ckpt: Path, limit: int = 256) -> list[dict[str, Any]]:
    """The checkpoint, then the checkpoint it continued from (`lineage.parent`, same stage) or started from
    (`lineage.base`), and so on while those exist; one that is gone (pruned, elsewhere, an imported file) ends the
    chain as its recorded name and SHA-256, which is still enough to find a common ancestor."""
    nodes: list[dict[str, Any]] = []
    path: Path | None = ckpt
    while path is not None and len(nodes) < limit:
        state, home = read_train_state(path), run_root(path)
        nodes.append(_node(path, state, home))
        record = state.lineage.parent or state.lineage.base
        if record is None:
            break
        nxt = _next_in_chain(path, record.path, bool(state.lineage.parent), home)
        if (nxt / STATE_NAME).is_file() and (nxt / MANIFEST_NAME).is_file():
            path = nxt
            continue
        nodes.append({"sha256": record.sha256, "name": record.path, "kind": record.kind, "step": None, "stage": None})
        path = None
        base = state.lineage.base
        if record is state.lineage.parent and base is not None:  # a pruned parent: the stage's base is still known
            nxt = recorded_path(base.path, home)
            if (nxt / STATE_NAME).is_file() and (nxt / MANIFEST_NAME).is_file():
                path = nxt
            else:
                nodes.append({"sha256": base.sha256, "name": base.path, "kind": base.kind, "step": None, "stage": None})
    return nodes


def _next_in_chain(path: Path, recorded: str, same_stage: bool, home: Path | None) -> Path:
    """The folder a lineage record names: a parent checkpoint beside this one (or, from a LoRA stage's merged
    final/, in the stage's checkpoints/), else a run-relative path."""
    for sibling in (path.parent / recorded, path.parent / "checkpoints" / recorded) if same_stage else ():
        if sibling.is_dir():
            return sibling
    return recorded_path(recorded, home)


def _node(path: Path, state, home: Path | None) -> dict[str, Any]:
    name = RunLayout(home).rel(path) if home is not None else path.name
    stage = name.rsplit("/checkpoints/", 1)[0] if "/checkpoints/" in name else state.kind
    node: dict[str, Any] = {"sha256": sha256_file(path / MANIFEST_NAME), "name": name, "kind": "checkpoint",
                            "step": state.step, "stage": stage}  # fmt: skip
    data = state.lineage.data
    if data is not None:
        node["datasets"] = [dict(d) for d in data.datasets]
        if not data.datasets and data.manifest:  # continued pretraining (adapt) on the run's token data
            node["data_dir"] = str(recorded_path(data.manifest, home).parent)
    elif state.config.get("data_dir"):
        node["data_dir"] = str(recorded_path(str(state.config["data_dir"]), home))
    return node


# ------------------------------------------------------------------------------------------------ data
def sources_of(lineage: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every data source the model saw along its lineage (pretraining sources from the data manifest, fine-tuning
    data sets from the lineage), with documents, tokens, licence and share of the tokens that are known."""
    from moxin.release.runs import data_sources

    rows: dict[str, dict[str, Any]] = {}
    for node in reversed(lineage):  # the root first: a later stage's data set of the same name gets its stage prefix
        stage = node.get("stage") or ""
        found: list[dict[str, Any]] = []
        if node.get("data_dir") and (Path(node["data_dir"]) / MANIFEST_NAME).is_file():
            manifest = json.loads((Path(node["data_dir"]) / MANIFEST_NAME).read_text("utf-8"))
            for s in data_sources(manifest):
                found.append({"name": s.name, "license": s.license, "documents": s.documents,
                              "tokens": sum(s.tokens.values()) if s.tokens else None, "origin": s.origin})  # fmt: skip
        for d in node.get("datasets") or []:
            kept = d.get("kept")
            found.append({"name": str(d.get("name")), "license": d.get("license"), "tokens": None,
                          "documents": kept if isinstance(kept, int) else None,
                          "origin": str(d.get("path") or "")})  # fmt: skip
        for row in found:
            key = (
                row["name"]
                if row["name"] not in rows or rows[row["name"]]["stage"] == stage
                else f"{stage}:{row['name']}"
            )
            rows[key] = {**row, "name": key, "stage": stage}
    total = sum(r["tokens"] or 0 for r in rows.values())
    for r in rows.values():
        r["share"] = round(r["tokens"] / total, 6) if total and r["tokens"] is not None else None
    return [rows[k] for k in sorted(rows)]


# ------------------------------------------------------------------------------------------------ model facts
def _tokenizer_folder(p: Path) -> Path | None:
    for folder in (p / "tokenizer", p, p.parent / "tokenizer"):
        if (folder / "tokenizer.json").is_file():
            return folder
    return None


def tokenizer_of(p: Path) -> dict[str, Any]:
    """SHA-256 of tokenizer.json, the vocabulary size, and a hash of the vocabulary in id order (comparable between
    a GGUF file and a folder)."""
    if p.is_file():
        from moxin.interop.gguf import _field, open_gguf

        tokens = [str(t) for t in (_field(open_gguf(p), "tokenizer.ggml.tokens") or [])]
        return {"file": p.name, "sha256": None, "vocab_size": len(tokens), "vocab_sha256": _vocab_sha(tokens)}
    folder = _tokenizer_folder(p)
    if folder is None:
        return {}
    doc = json.loads((folder / "tokenizer.json").read_text("utf-8"))
    by_id = {int(i): str(t) for t, i in ((doc.get("model") or {}).get("vocab") or {}).items()}
    by_id.update({int(a["id"]): str(a["content"]) for a in doc.get("added_tokens") or []})
    tokens = [by_id.get(i, "") for i in range(max(by_id) + 1)] if by_id else []
    return {"file": "tokenizer.json", "sha256": sha256_file(folder / "tokenizer.json"), "vocab_size": len(by_id),
            "vocab_sha256": _vocab_sha(tokens)}  # fmt: skip


def _vocab_sha(tokens: list[str]) -> str:
    return hashlib.sha256(json.dumps(tokens, ensure_ascii=False).encode("utf-8")).hexdigest()


def architecture_of(p: Path) -> dict[str, Any]:
    """The model config: moxin's model_config.json, a Hugging Face config.json, or what a GGUF file declares."""
    if p.is_file():
        import dataclasses

        from moxin.interop.gguf import config_from_gguf, open_gguf

        return dataclasses.asdict(config_from_gguf(open_gguf(p), str(p)))
    for f in (p / "model" / "model_config.json", p / "model_config.json", p / "config.json"):
        if f.is_file():
            doc = json.loads(f.read_text("utf-8"))
            return flatten(doc) if isinstance(doc, dict) else {}
    return {}
