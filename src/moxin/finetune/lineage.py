"""Lineage: what a fine-tuned checkpoint came from, and the chain back to the raw data and its licences.

A fine-tuning checkpoint's train_state.json holds `lineage` (`moxin.records.Lineage`): `base` (the parent: kind,
path, `moxin.records.model_identity`), `data` (the fine-tuning data manifest: path, SHA-256, datasets with licence
and input SHA-256), `recipe` (name as written, SHA-256), `code` (`moxin.provenance.code_version()`), `lora`. The
Trainer adds `parent` (the previous checkpoint of the same run). A pretraining checkpoint names its data folder,
whose manifest lists the sources and their licences. Paths are relative to the run folder (moxin.layout)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moxin.config import to_dict
from moxin.errors import CheckpointError, ConfigError, MoxinError
from moxin.layout import FINETUNE_MODES, RunLayout
from moxin.provenance import sha256_file
from moxin.records import STATE_NAME, TrainState, hf_files, model_identity, read_train_state, recorded_path, run_root

MODES = FINETUNE_MODES


def mode_result(run_dir: Path, name: str) -> Path | None:
    """A fine-tuning run's result: final/ (merged LoRA) when present, else its last checkpoint."""
    run = RunLayout(Path(run_dir))
    if (run.finetune(name) / "final" / "manifest.json").is_file():
        return run.finetune(name) / "final"
    return run.latest_checkpoint(f"finetune/{name}")


def resolve_parent(spec: str, run_dir: Path, resolve, mode_names: dict[str, str], key: str) -> Path:
    """'pretrain' | 'adapt' | 'sft' | 'dpo' | 'grpo' (this run's stage results) | a path (checkpoint, model dir, HF,
    .gguf)."""
    run = RunLayout(Path(run_dir))
    if spec == "pretrain":
        found = run.latest_checkpoint("pretrain")
        if found is None:
            raise ConfigError(
                f"{key} = 'pretrain' but {run.checkpoints_dir('pretrain')} has no checkpoint; "
                f"run `moxin pretrain` first, or set {key} to a checkpoint, a Hugging Face folder or "
                f"a .gguf file"
            )
        return found
    if spec == "adapt":
        from moxin.adapt.run import result

        found = result(run)
        if found is None:
            raise ConfigError(
                f"{key} = 'adapt' but {run.adapt} has no result; run the adapt stage first (`moxin build` or "
                f"`moxin adapt`), or set {key} to a checkpoint, a Hugging Face folder or a .gguf file"
            )
        return found
    if spec in MODES:
        found = mode_result(run.root, mode_names.get(spec, spec))
        if found is None:
            raise ConfigError(
                f"{key} = {spec!r} but {run.finetune(mode_names.get(spec, spec))} has no "
                f"result; run `moxin finetune {spec}` first, or set {key} to a path"
            )
        return found
    path = resolve(spec)
    if not path.exists():
        raise ConfigError(
            f"{key} = {spec!r}: {path} does not exist; give a checkpoint, a Hugging Face folder, a "
            f".gguf file, or one of pretrain, sft, dpo, grpo"
        )
    return path


def parent_record(path: Path, run_dir: Path, license: str = "", written: str | None = None) -> dict[str, Any]:
    """kind, path and identity (`moxin.records.model_identity`, after checking the parent's manifest) of a parent
    model. The path is relative to the run `run_dir` when the parent is inside it, else as written in the recipe
    (`written`), else the file or folder name: never an absolute path the recipe did not state."""
    from moxin.interop.origin import read_origin  # moxin.interop loads torch: only fine-tuning calls this

    path = Path(path).expanduser().resolve()
    kind, sha = model_identity(path)
    run = RunLayout(Path(run_dir))
    inside = (run.root / run.rel(path)).resolve() == path
    rec: dict[str, Any] = {"kind": kind, "path": run.rel(path) if inside or not written else written, "sha256": sha}
    origin = read_origin(path)
    if kind != "checkpoint":
        rec["license"] = license or (origin or {}).get("license")
    if kind == "hf":
        rec["files"] = hf_files(path)
    if origin is not None:
        rec["origin"] = origin  # the root: a release of any descendant finds the base's licence and openness here
    return rec


def current_sha(rec: dict[str, Any], home: Path | None) -> str | None:
    """The identity of a recorded model now (None when it is gone or no longer matches its own manifest)."""
    try:
        return model_identity(recorded_path(rec["path"], home))[1]
    except (OSError, MoxinError):
        return None


def read_state(ckpt: Path) -> TrainState:
    if not (Path(ckpt) / STATE_NAME).is_file():
        raise CheckpointError(
            f"{Path(ckpt) / STATE_NAME} not found; `moxin lineage` needs a moxin checkpoint (a "
            f"step-XXXXXXXX folder or a fine-tuning final/ folder)"
        )
    return read_train_state(ckpt)


def _data_sources(manifest_path: Path) -> list[dict[str, Any]]:
    try:
        m = json.loads(Path(manifest_path).read_text("utf-8"))
    except OSError as e:
        raise CheckpointError(
            f"data manifest {manifest_path} cannot be read ({e.strerror or e}); the lineage "
            f"needs it: restore the data folder, or re-run the stage that wrote it"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"data manifest {manifest_path} is not valid JSON ({e}); restore it or re-run the stage that wrote it"
        ) from None
    rows = (m.get("datasets") or m.get("sources") or []) if isinstance(m, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise CheckpointError(
            f"data manifest {manifest_path} has no list of datasets or sources; restore it or "
            f"re-run the stage that wrote it"
        )
    return [
        {
            "name": r.get("name"),
            "license": r.get("license"),
            "path": r.get("path"),
            "sha256": _input_sha(r),
            "kept": r.get("kept", r.get("docs_kept")),
        }
        for r in rows
    ]


def _input_sha(row: dict[str, Any]) -> str | None:
    """A fine-tuning dataset records `sha256`; a pretraining source its input `fingerprint`."""
    if row.get("sha256"):
        return row["sha256"]
    inp = row.get("input")
    return inp.get("fingerprint") if isinstance(inp, dict) else None


def _data_node(state: TrainState, home: Path | None) -> dict[str, Any] | None:
    data = state.lineage.data
    if data is not None:
        mpath = recorded_path(data.manifest, home)
        return {"manifest": str(mpath), "sha256": data.sha256, "sources": data.datasets or _data_sources(mpath)}
    data_dir = state.config.get("data_dir")
    if not data_dir:
        return None
    mpath = recorded_path(str(data_dir), home) / "manifest.json"
    return {
        "manifest": str(mpath),
        "sha256": sha256_file(mpath) if mpath.is_file() else None,
        "sources": _data_sources(mpath) if mpath.is_file() else [],
    }


def _node(path: Path, state: TrainState, home: Path | None) -> dict[str, Any]:
    lin = state.lineage
    node: dict[str, Any] = {
        "path": str(path.resolve()),
        "kind": state.kind,
        "mode": state.mode,
        "step": state.step,
        "sha256": sha256_file(path / "manifest.json") if (path / "manifest.json").is_file() else None,
        "code": lin.code or {},
        "recipe": to_dict(lin.recipe) if lin.recipe else None,
    }
    data = _data_node(state, home)
    if data:
        node["data"] = data
    return node


def chain(ckpt: Path, limit: int = 32) -> list[dict[str, Any]]:
    """The checkpoint, its parent, the parent's parent, ... down to a pretraining run or an imported model.
    Records hold run-relative paths (resolved here against the checkpoint's run folder) or, for a parent outside
    the run, the path as the recipe wrote it; the chain stops at a parent it cannot find."""
    read_state(ckpt)  # a clear error when ckpt is not a checkpoint
    out: list[dict[str, Any]] = []
    path: Path | None = Path(ckpt)
    while path is not None and len(out) < limit:
        if not (path / STATE_NAME).is_file():
            break
        state, home = read_state(path), run_root(path)
        node = _node(path, state, home)
        out.append(node)
        base = state.lineage.base
        if base is None:
            break
        now = current_sha(to_dict(base), home)
        node["base"] = {
            "kind": base.kind,
            "path": base.path,
            "sha256": base.sha256,
            "license": base.license,
            "verified": now == base.sha256,
            "current_sha256": now,
        }
        nxt = recorded_path(base.path, home)
        path = nxt if base.kind in ("checkpoint", "model") and (nxt / STATE_NAME).is_file() else None
        if path is None:
            out.append(
                {
                    "path": base.path,
                    "kind": f"imported ({base.kind})",
                    "sha256": base.sha256,
                    "license": base.license,
                    **({"origin": base.origin} if base.origin else {}),
                }
            )
    return out


def format_origin(origin: dict[str, Any], pad: str) -> list[str]:
    """The imported root's origin.json in `moxin lineage`: source, licence and each openness fact with its source."""
    src = origin.get("source") or {}
    op = origin.get("openness") or {}
    lines = [
        f"{pad}   origin: {origin.get('name')} from {src.get('file')} ({src.get('format')}, sha256 "
        f"{str(src.get('sha256'))[:12]}…), licence {origin.get('license')} (from {origin.get('license_source')})"
    ]
    for fact in ("data", "code"):
        state = "released" if op.get(fact) else "not released"
        source = (op.get("sources") or {}).get(fact, op.get("source"))
        lines.append(f"{pad}   training {fact}: {state} (source: {source})")
    return lines


def format_chain(nodes: list[dict[str, Any]]) -> list[str]:
    lines = []
    for depth, n in enumerate(nodes):
        pad = "  " * depth
        what = (
            n["kind"]
            + (f" {n['mode']}" if n.get("mode") else "")
            + (f", step {n['step']}" if n.get("step") is not None else "")
        )
        sha = (n.get("sha256") or "?")[:12]
        lines.append(f"{pad}{'└─ ' if depth else ''}{n['path']}  [{what}; sha256 {sha}…]")
        if n["kind"].startswith("imported"):
            lines.append(f"{pad}   licence: {n.get('license') or 'unknown (set finetune.parent_license)'}")
            lines += format_origin(n["origin"], pad) if n.get("origin") else []
        code = n.get("code") or {}
        if code:
            dirty = " (dirty tree)" if code.get("git_dirty") else ""
            lines.append(f"{pad}   code: moxin {code.get('version')} git {str(code.get('git_commit'))[:12]}{dirty}")
        if n.get("recipe"):
            lines.append(f"{pad}   recipe: {n['recipe'].get('name')} (sha256 {str(n['recipe'].get('sha256'))[:12]}…)")
        data = n.get("data")
        if data:
            lines.append(f"{pad}   data manifest: {data['manifest']} (sha256 {str(data.get('sha256'))[:12]}…)")
            for s in data.get("sources") or []:
                kept = f", {s['kept']} kept" if s.get("kept") is not None else ""
                lines.append(
                    f"{pad}     - {s.get('name')}: licence {s.get('license') or 'unknown'}; {s.get('path')}{kept}"
                )
        base = n.get("base")
        if base:
            ok = (
                "verified"
                if base["verified"]
                else (
                    f"CHANGED since (now {str(base['current_sha256'])[:12]}…)" if base["current_sha256"] else "MISSING"
                )
            )
            lines.append(f"{pad}   parent: {base['kind']} {base['path']} (sha256 {str(base['sha256'])[:12]}…, {ok})")
    return lines
