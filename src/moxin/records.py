"""Typed records: the train state of a checkpoint, a stage's manifest and a fine-tune's lineage, each with a
`format_version`, one reader and one writer (docs/CONTRACTS.md). No torch here: release and verify read these.

Paths inside records are relative to the run folder (`moxin.layout.RunLayout.rel`); inputs outside the run (a
recipe file, a user's data file, an imported model) are named by file name (or as written in the recipe) plus
SHA-256, so that a run's bytes do not depend on the folder, the machine or the user that built it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from moxin.config import from_dict, to_dict
from moxin.errors import CheckpointError, ConfigError
from moxin.layout import parse_step, run_of
from moxin.provenance import atomic_write_json, code_version, fingerprint, sha256_file, verify_manifest, write_manifest

FORMAT_VERSION = 1
STATE_NAME = "train_state.json"
MANIFEST_NAME = "manifest.json"


def _check_version(v: int, where: str, prefix: str) -> None:
    if not 1 <= v <= FORMAT_VERSION:
        raise ConfigError(
            f"{prefix}format_version in {where} is {v}; this moxin reads format 1..{FORMAT_VERSION}: "
            f"upgrade moxin to read it"
        )


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; is {Path(path).parent} a moxin {what}?") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(
            f"{path} is not valid JSON ({e}); the {what} is damaged: restore or re-create it"
        ) from None
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path} must hold a JSON object, got {type(doc).__name__}; the {what} is damaged")
    return doc


def _load(cls: type, data: dict[str, Any], where: str) -> Any:
    """`from_dict`, with a bad field reported as a CheckpointError naming the file and the key."""
    try:
        return from_dict(cls, data, where)
    except ConfigError as e:
        raise CheckpointError(f"{e}; the file is damaged or was not written by moxin") from None


# ------------------------------------------------------------------------------------------------ lineage
@dataclass
class ModelRecord:
    """A model by identity: `kind` (checkpoint | model | hf | gguf | file), `path` (run-relative inside the run,
    else the file or folder name), `sha256` (see `model_identity`) and, for an imported model, its licence."""

    kind: str
    path: str
    sha256: str
    license: str | None = None
    files: dict[str, str] | None = None  # a Hugging Face folder: SHA-256 per file (`hf_files`)
    origin: dict[str, Any] | None = None  # the imported root's origin.json (moxin.interop.origin)


@dataclass
class FileRecord:
    """An input file by name (as written in the recipe, or its file name) and SHA-256."""

    name: str
    sha256: str | None = None


@dataclass
class DataRecord:
    """A fine-tune's data: its manifest (run-relative), that manifest's SHA-256 and the data sets it lists."""

    manifest: str
    sha256: str | None = None
    datasets: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Lineage:
    """What a checkpoint came from: `parent` (the previous checkpoint of the same stage, by folder name),
    `base` (a fine-tune's starting model), `data`, `recipe`, `code` and the LoRA settings."""

    format_version: int = FORMAT_VERSION
    parent: ModelRecord | None = None
    base: ModelRecord | None = None
    data: DataRecord | None = None
    recipe: FileRecord | None = None
    code: dict[str, Any] | None = None
    lora: dict[str, Any] | None = None
    merged_lora: dict[str, Any] | None = None

    @classmethod
    def _resolve(cls, data: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
        parent = data.get("parent")
        if isinstance(parent, dict) and "kind" not in parent:  # the Trainer names the previous checkpoint only
            data["parent"] = {"kind": "checkpoint", **parent}
        return data

    def validate(self, where: str, prefix: str) -> None:
        _check_version(self.format_version, where, prefix)


# ------------------------------------------------------------------------------------------------ train state
@dataclass
class DataPosition:
    fingerprint: str
    position: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainState:
    """`train_state.json`: where training stands at a checkpoint (written by `moxin.train.checkpoint`)."""

    step: int
    tokens_seen: int = 0
    format_version: int = FORMAT_VERSION
    kind: Literal["pretrain", "adapt", "finetune"] = "pretrain"
    mode: str | None = None
    phase: str | None = None
    seed: int | None = None
    world_size: int = 1
    data: DataPosition | None = None
    rng: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    lineage: Lineage = field(default_factory=Lineage)
    optimizer_groups: list[dict[str, Any]] | None = None
    sharded: bool = False
    optimizer_param_groups: list[dict[str, Any]] | None = None
    consolidated_from_world_size: int | None = None
    merged_from: ModelRecord | None = None

    def validate(self, where: str, prefix: str) -> None:
        _check_version(self.format_version, where, prefix)
        if self.step < 0 or self.tokens_seen < 0:
            raise ConfigError(f"{prefix}step/tokens_seen in {where} must be >= 0, got {self.step}/{self.tokens_seen}")

    @property
    def data_fingerprint(self) -> str | None:
        return self.data.fingerprint if self.data else None

    def to_dict(self) -> dict[str, Any]:
        return to_dict(self)


def train_state(data: dict[str, Any] | TrainState, where: str = "<train state>") -> TrainState:
    """A TrainState from the dict a trainer builds (checked like a file), or the TrainState itself."""
    return data if isinstance(data, TrainState) else _load(TrainState, dict(data), where)


def read_train_state(ckpt_dir: str | Path) -> TrainState:
    """The one reader of `train_state.json`. Refuses a step that disagrees with the folder name (step-XXXXXXXX)."""
    path = Path(ckpt_dir) / STATE_NAME
    state = _load(TrainState, _read_json(path, "training checkpoint"), str(path))
    named = parse_step(Path(ckpt_dir).name)
    if named is not None and named != state.step:
        raise CheckpointError(
            f"step in {path} is {state.step} but the folder is {Path(ckpt_dir).name}; the "
            f"checkpoint was renamed or damaged: restore it, or name the folder step-"
            f"{state.step:08d}"
        )
    return state


def write_train_state(folder: str | Path, state: dict[str, Any] | TrainState) -> TrainState:
    """Check and write `folder/train_state.json`; returns the record written."""
    record = train_state(state, str(Path(folder) / STATE_NAME))
    atomic_write_json(Path(folder) / STATE_NAME, record.to_dict())
    return record


# ------------------------------------------------------------------------------------------------ manifests
@dataclass
class StageManifest:
    """`manifest.json` of a stage folder or checkpoint: `stage`, `code`, the SHA-256 of every file (`files`), and
    the stage's own keys (`info`, stored flat beside them)."""

    stage: str
    files: dict[str, str] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    code: dict[str, Any] | None = None
    info: dict[str, Any] = field(default_factory=dict, metadata={"toml": False})

    @classmethod
    def _resolve(cls, data: dict[str, Any], where: str, prefix: str) -> dict[str, Any]:
        return {k: v for k, v in data.items() if k in _MANIFEST_KEYS}

    def validate(self, where: str, prefix: str) -> None:
        _check_version(self.format_version, where, prefix)


_MANIFEST_KEYS = ("stage", "files", "format_version", "code")


def _manifest(doc: dict[str, Any], where: str) -> StageManifest:
    manifest = _load(StageManifest, doc, where)
    manifest.info = {k: v for k, v in doc.items() if k not in _MANIFEST_KEYS}
    return manifest


def read_manifest(folder: str | Path, name: str = MANIFEST_NAME) -> StageManifest:
    """The one reader of a stage's (or checkpoint's) manifest.json."""
    path = Path(folder) / name
    return _manifest(_read_json(path, "stage folder"), str(path))


def write_stage_manifest(
    folder: str | Path,
    stage: str,
    info: dict[str, Any] | None = None,
    name: str = MANIFEST_NAME,
    include: tuple[str, ...] | None = None,
) -> StageManifest:
    """Write `folder/manifest.json` with the keys every stage shares (format_version, stage, code) and the SHA-256
    of every other file (`moxin.provenance.write_manifest`), or only of the files named in `include` (a stage
    folder whose checkpoints carry their own manifests)."""
    folder = Path(folder)
    head = {**(info or {}), "format_version": FORMAT_VERSION, "stage": stage, "code": code_version()}
    if include is None:
        doc = write_manifest(folder, head, name)
    else:
        files = {rel: sha256_file(folder / rel) for rel in sorted(include) if (folder / rel).is_file()}
        doc = {**head, "files": files}
        atomic_write_json(folder / name, doc)
    return _manifest(doc, str(folder / name))


# ------------------------------------------------------------------------------------------------ identity
def _verified_manifest_sha(folder: Path) -> str:
    problems = verify_manifest(folder)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise CheckpointError(
            f"{folder} fails its manifest.json: {problems[0]}{more}; it fails its SHA-256 check "
            f"because it changed after it was written: restore it or re-create it"
        )
    return sha256_file(folder / MANIFEST_NAME)


def hf_files(folder: Path) -> dict[str, str]:
    """(relative path → SHA-256) of every non-hidden file of a folder without a manifest (a Hugging Face folder)."""
    return {
        f.relative_to(folder).as_posix(): sha256_file(f)
        for f in sorted(folder.rglob("*"))
        if f.is_file() and not any(part.startswith(".") for part in f.relative_to(folder).parts)
    }


def hf_fingerprint(folder: Path) -> str:
    """The identity of a folder without a manifest: the fingerprint of its `hf_files`."""
    return fingerprint(hf_files(folder))


def model_identity(path: str | Path, verify: bool = True) -> tuple[str, str]:
    """(kind, SHA-256) of a model: a checkpoint or moxin model folder → the SHA-256 of its manifest.json, after
    checking every file it lists (`verify`); a .gguf (or other) file → its SHA-256; a Hugging Face folder → the
    fingerprint of its files. kind: checkpoint | model | gguf | file | hf."""
    p = Path(path).expanduser()
    if p.is_file():
        return ("gguf" if p.suffix == ".gguf" else "file"), sha256_file(p)
    if not p.is_dir():
        raise CheckpointError(f"{p} does not exist; give a checkpoint, a model folder or a .gguf file")
    if (p / MANIFEST_NAME).is_file():
        kind = "checkpoint" if (p / STATE_NAME).is_file() else "model"
        return kind, (_verified_manifest_sha(p) if verify else sha256_file(p / MANIFEST_NAME))
    return "hf", hf_fingerprint(p)


# ------------------------------------------------------------------------------------------------ run-relative
def run_root(path: str | Path) -> Path | None:
    """The run (or release) folder holding a checkpoint or a fine-tune's final/ folder, else None."""
    p = Path(path).expanduser().resolve()
    if p.name == "final" and p.parent.parent.name == "finetune":
        return p.parent.parent.parent
    if p.name == "final" and p.parent.name == "adapt":
        return p.parent.parent
    return run_of(p)


def recorded_path(value: str, home: Path | None) -> Path:
    """A path a record holds, back as a path: run-relative ones against the run folder `home`; absolute ones
    (records written before paths were relative) as they are."""
    p = Path(value)
    return p if p.is_absolute() or home is None else home / p
