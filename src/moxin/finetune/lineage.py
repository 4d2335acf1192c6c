"""Lineage: what a fine-tuned checkpoint came from, and the chain back to the raw data and its licences.

A fine-tuning checkpoint's train_state.json holds `lineage`: `base` (the parent: kind, path, SHA-256 of its
manifest.json or of the imported file(s)), `data` (the fine-tuning data manifest: path, SHA-256, datasets with
licence and input SHA-256), `recipe` (file, SHA-256), `code` (`moxin.provenance.code_version()`), `lora`. The
Trainer adds `parent` (the previous checkpoint of the same run). A pretraining checkpoint names its data folder,
whose manifest lists the sources and their licences."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moxin.errors import CheckpointError, ConfigError
from moxin.provenance import fingerprint, sha256_file

MODES = ("sft", "dpo", "grpo")
_HF_FILES = (".safetensors", ".json", ".bin", ".model", ".txt", ".jinja")


def latest_checkpoint(root: Path) -> Path | None:
    from moxin.train.checkpoint import list_checkpoints

    found = list_checkpoints(root)
    return found[-1][1] if found else None


def mode_result(run_dir: Path, name: str) -> Path | None:
    """A fine-tuning run's result: final/ (merged LoRA) when present, else its last checkpoint."""
    folder = run_dir / "finetune" / name
    if (folder / "final" / "manifest.json").is_file():
        return folder / "final"
    return latest_checkpoint(folder / "checkpoints")


def resolve_parent(spec: str, run_dir: Path, resolve, mode_names: dict[str, str], key: str) -> Path:
    """'pretrain' | 'sft' | 'dpo' | 'grpo' (this run's stage results) | a path (checkpoint, model dir, HF, .gguf)."""
    if spec == "pretrain":
        found = latest_checkpoint(run_dir / "pretrain" / "checkpoints")
        if found is None:
            raise ConfigError(f"{key} = 'pretrain' but {run_dir / 'pretrain' / 'checkpoints'} has no checkpoint; "
                              f"run `moxin pretrain` first, or set {key} to a checkpoint, a Hugging Face folder or "
                              f"a .gguf file")
        return found
    if spec in MODES:
        found = mode_result(run_dir, mode_names.get(spec, spec))
        if found is None:
            raise ConfigError(f"{key} = {spec!r} but {run_dir / 'finetune' / mode_names.get(spec, spec)} has no "
                              f"result; run `moxin finetune {spec}` first, or set {key} to a path")
        return found
    path = resolve(spec)
    if not path.exists():
        raise ConfigError(f"{key} = {spec!r}: {path} does not exist; give a checkpoint, a Hugging Face folder, a "
                          f".gguf file, or one of pretrain, sft, dpo, grpo")
    return path


def parent_record(path: Path, license: str = "") -> dict[str, Any]:
    """kind, absolute path and SHA-256 identity of a parent model."""
    path = Path(path).resolve()
    if path.is_file():
        return {"kind": "gguf" if path.suffix == ".gguf" else "file", "path": str(path), "sha256": sha256_file(path),
                "license": license or None}
    if (path / "train_state.json").is_file() and (path / "manifest.json").is_file():
        return {"kind": "checkpoint", "path": str(path), "sha256": sha256_file(path / "manifest.json")}
    if (path / "manifest.json").is_file():
        return {"kind": "model", "path": str(path), "sha256": sha256_file(path / "manifest.json"),
                "license": license or None}
    files = {p.name: sha256_file(p) for p in sorted(path.iterdir()) if p.is_file() and p.name.endswith(_HF_FILES)}
    return {"kind": "hf", "path": str(path), "sha256": fingerprint(files), "files": files, "license": license or None}


def current_sha(rec: dict[str, Any]) -> str | None:
    p = Path(rec["path"])
    try:
        if rec["kind"] in ("gguf", "file"):
            return sha256_file(p)
        if rec["kind"] == "hf":
            return fingerprint({n: sha256_file(p / n) for n in rec.get("files", {})})
        return sha256_file(p / "manifest.json")
    except OSError:
        return None


def read_state(ckpt: Path) -> dict[str, Any]:
    p = Path(ckpt) / "train_state.json"
    try:
        return json.loads(p.read_text("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{p} not found; `moxin lineage` needs a moxin checkpoint (a step-XXXXXXXX folder or "
                              f"a fine-tuning final/ folder)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{p} is not valid JSON ({e})") from None


def _data_sources(manifest_path: Path) -> list[dict[str, Any]]:
    try:
        m = json.loads(Path(manifest_path).read_text("utf-8"))
    except (OSError, json.JSONDecodeError):
        return []
    rows = m.get("datasets") or m.get("sources") or []
    return [{"name": r.get("name"), "license": r.get("license"), "path": r.get("path"), "sha256": _input_sha(r),
             "kept": r.get("kept", r.get("docs_kept"))} for r in rows]


def _input_sha(row: dict[str, Any]) -> str | None:
    """A fine-tuning dataset records `sha256`; a pretraining source its input `fingerprint`."""
    if row.get("sha256"):
        return row["sha256"]
    inp = row.get("input")
    return inp.get("fingerprint") if isinstance(inp, dict) else None


def chain(ckpt: Path, limit: int = 32) -> list[dict[str, Any]]:
    """The checkpoint, its parent, the parent's parent, ... down to a pretraining run or an imported model."""
    read_state(ckpt)  # a clear error when ckpt is not a checkpoint
    out: list[dict[str, Any]] = []
    path: Path | None = Path(ckpt)
    while path is not None and len(out) < limit:
        if not (path / "train_state.json").is_file():
            break
        state = read_state(path)
        lin = state.get("lineage") or {}
        node: dict[str, Any] = {"path": str(path.resolve()), "kind": state.get("kind", "pretrain"),
                                "mode": state.get("mode"), "step": state.get("step"),
                                "sha256": sha256_file(path / "manifest.json") if (path / "manifest.json").is_file()
                                else None, "code": lin.get("code") or {}, "recipe": lin.get("recipe")}
        if lin.get("data"):
            node["data"] = {"manifest": lin["data"].get("manifest"), "sha256": lin["data"].get("sha256"),
                            "sources": lin["data"].get("datasets") or _data_sources(Path(lin["data"]["manifest"]))}
        else:
            data_dir = (state.get("config") or {}).get("data_dir")
            if data_dir:
                mpath = Path(data_dir) / "manifest.json"
                node["data"] = {"manifest": str(mpath), "sha256": sha256_file(mpath) if mpath.is_file() else None,
                                "sources": _data_sources(mpath)}
        out.append(node)
        base = lin.get("base")
        if not base:
            break
        now = current_sha(base)
        node["base"] = {**{k: base.get(k) for k in ("kind", "path", "sha256", "license")},
                        "verified": now == base.get("sha256"), "current_sha256": now}
        path = Path(base["path"]) if base.get("kind") in ("checkpoint", "model") else None
        if path is None:
            out.append({"path": base["path"], "kind": f"imported ({base['kind']})", "sha256": base.get("sha256"),
                        "license": base.get("license")})
    return out


def format_chain(nodes: list[dict[str, Any]]) -> list[str]:
    lines = []
    for depth, n in enumerate(nodes):
        pad = "  " * depth
        what = n["kind"] + (f" {n['mode']}" if n.get("mode") else "") + (f", step {n['step']}" if n.get("step") is not None else "")
        sha = (n.get("sha256") or "?")[:12]
        lines.append(f"{pad}{'└─ ' if depth else ''}{n['path']}  [{what}; sha256 {sha}…]")
        if n["kind"].startswith("imported"):
            lines.append(f"{pad}   licence: {n.get('license') or 'unknown (set finetune.parent_license)'}")
        code = n.get("code") or {}
        if code:
            dirty = " (dirty tree)" if code.get("git_dirty") else ""
            lines.append(f"{pad}   code: moxin {code.get('version')} git {str(code.get('git_commit'))[:12]}{dirty}")
        if n.get("recipe"):
            lines.append(f"{pad}   recipe: {n['recipe'].get('path')} (sha256 {str(n['recipe'].get('sha256'))[:12]}…)")
        data = n.get("data")
        if data:
            lines.append(f"{pad}   data manifest: {data['manifest']} (sha256 {str(data.get('sha256'))[:12]}…)")
            for s in data.get("sources") or []:
                kept = f", {s['kept']} kept" if s.get("kept") is not None else ""
                lines.append(f"{pad}     - {s.get('name')}: licence {s.get('license') or 'unknown'}; "
                             f"{s.get('path')}{kept}")
        base = n.get("base")
        if base:
            ok = "verified" if base["verified"] else (f"CHANGED since (now {str(base['current_sha256'])[:12]}…)"
                                                      if base["current_sha256"] else "MISSING")
            lines.append(f"{pad}   parent: {base['kind']} {base['path']} (sha256 {str(base['sha256'])[:12]}…, {ok})")
    return lines
