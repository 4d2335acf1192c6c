"""moxin's own model directory: `model.safetensors` (moxin tensor names) + `model_config.json`.

A model folder sealed by a `manifest.json` (its own, or its parent's: a checkpoint's `model/`) loads only after
every file the manifest lists matches its SHA-256. The weights and config are read once, hashed from the bytes in
memory and deserialised from the same bytes, so the hash that is checked (and recorded in lineage) is the hash of
what was loaded. A folder without a manifest (an imported Hugging Face folder) loads unchecked."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from moxin.errors import CheckpointError
from moxin.interop.safetensors_io import write_safetensors
from moxin.io import read_json
from moxin.model.config import ModelConfig, from_json_dict, to_json_dict
from moxin.model.transformer import Transformer
from moxin.provenance import atomic_write_json, sha256_bytes, sha256_file

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"
MANIFEST_NAME = "manifest.json"


def is_native(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_NAME).is_file()


class SavableModel(Protocol):
    """What `save_model` reads: a model config and a state dict (a Transformer, or gathered weights)."""

    @property
    def cfg(self) -> ModelConfig: ...

    def state_dict(self) -> dict[str, Any]: ...


def save_model(model: SavableModel, folder: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write the weights and the model config (not atomic on its own: call inside `provenance.atomic_dir`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    write_safetensors(folder / WEIGHTS_NAME, sd, metadata={"format": "pt"})
    atomic_write_json(folder / CONFIG_NAME, to_json_dict(model.cfg))


@dataclass(frozen=True)
class Sealed:
    """The manifest that covers a folder: where it is, the folder's prefix inside it, its files and the SHA-256
    of the manifest bytes that were read (a checkpoint's identity)."""

    root: Path
    prefix: str  # '' when the manifest sits in the folder itself, else '<folder name>/'
    files: dict[str, str]
    sha256: str

    @property
    def path(self) -> Path:
        return self.root / MANIFEST_NAME


def sealed_by(folder: str | Path) -> Sealed | None:
    """The manifest covering `folder`: `folder/manifest.json`, or its parent's when that lists files under
    `folder/` (a checkpoint's model/ or tokenizer/); None when neither exists."""
    folder = Path(folder)
    for root, prefix in ((folder, ""), (folder.parent, folder.name + "/")):
        mpath = root / MANIFEST_NAME
        if not mpath.is_file():
            continue
        raw = mpath.read_bytes()
        try:
            files = json.loads(raw.decode("utf-8"))["files"]
            if not isinstance(files, dict):
                raise TypeError("'files' is not a table")
        except (ValueError, KeyError, TypeError) as e:
            raise CheckpointError(
                f"{mpath} is not a valid manifest ({e}); restore it from a good copy of the checkpoint"
            ) from None
        if prefix == "" or any(rel.startswith(prefix) for rel in files):
            return Sealed(root, prefix, files, sha256_bytes(raw))
    return None


def check_sealed(sealed: Sealed, blobs: dict[str, bytes] | None = None, under: str = "") -> None:
    """Raise CheckpointError naming the first file listed in the manifest (under `under`, '' for all) that is
    missing or whose SHA-256 differs. `blobs` maps manifest-relative names to bytes already read: those bytes are
    hashed instead of the files, and each must be listed."""
    blobs = blobs or {}
    for rel in blobs:
        if rel not in sealed.files:
            raise CheckpointError(
                f"{sealed.root / rel} is not listed in {sealed.path}, so it cannot be checked; "
                f"restore the manifest from a good copy of the checkpoint"
            )
    for rel, digest in sorted(sealed.files.items()):
        if not rel.startswith(under):
            continue
        p = sealed.root / rel
        if rel in blobs:
            actual = sha256_bytes(blobs[rel])
        elif p.is_file():
            actual = sha256_file(p)
        else:
            raise CheckpointError(
                f"{p} is missing but {sealed.path} lists it; restore it from a good copy of the "
                f"checkpoint, or re-create the checkpoint"
            )
        if actual != digest:
            raise CheckpointError(
                f"{p} fails its SHA-256 check against {sealed.path} (changed or corrupted: "
                f"{actual[:12]}… is not {digest[:12]}…); restore it from a good copy, or "
                f"re-create the checkpoint"
            )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"{path} not found; is {path.parent} a moxin model directory?") from None


def read_model_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_NAME
    data = read_json(path, CheckpointError, "model config", hint=f"is {folder} a moxin model directory?")
    return from_json_dict(data, str(path))


def _config_from(raw: bytes, path: Path) -> ModelConfig:
    try:
        data = json.loads(raw.decode("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is not valid JSON ({e})") from None
    return from_json_dict(data, str(path))


def read_verified(folder: str | Path) -> tuple[ModelConfig, dict[str, torch.Tensor], Sealed | None]:
    """The config and weights of a model folder, verified against the manifest that seals it (when one does):
    (config, state dict, the manifest, or None for an unsealed folder)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes

    folder = Path(folder)
    if not (folder / WEIGHTS_NAME).is_file() and (folder / "dcp").is_dir():
        raise CheckpointError(
            f"{folder} is a sharded (DCP) checkpoint without {WEIGHTS_NAME}; run `moxin checkpoint "
            f"consolidate {folder}` first"
        )
    sealed = sealed_by(folder)
    cfg_raw, weights_raw = _read(folder / CONFIG_NAME), _read(folder / WEIGHTS_NAME)
    if sealed is not None:
        check_sealed(sealed, {sealed.prefix + CONFIG_NAME: cfg_raw, sealed.prefix + WEIGHTS_NAME: weights_raw})
    cfg = _config_from(cfg_raw, folder / CONFIG_NAME)
    try:
        sd = load_bytes(weights_raw)
    except (SafetensorError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"{folder / WEIGHTS_NAME} is not a valid safetensors file ({e}); re-export or re-download it"
        ) from None
    return cfg, sd, sealed


def load_verified(
    folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> tuple[Transformer, Sealed | None]:
    """`load_model` that also returns the manifest the bytes were checked against (None: unsealed folder)."""
    folder = Path(folder)
    cfg, sd, sealed = read_verified(folder)
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = set(model.state_dict())
    if set(sd) != expected:
        missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
        raise CheckpointError(
            f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, assign=True)
    model.reset_rope()
    return model, sealed


def load_model(folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Transformer:
    """A moxin model folder, verified against its manifest when one seals it (see `load_verified`)."""
    return load_verified(folder, dtype, device)[0]
