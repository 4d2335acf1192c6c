"""Reading and writing safetensors with clear errors; sharding with a Hugging Face-style index."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from moxin.errors import CheckpointError
from moxin.io import read_json
from moxin.provenance import atomic_write_bytes, atomic_write_json

INDEX_NAME = "model.safetensors.index.json"


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path} is not a valid safetensors file ({e}); re-export or re-download it") from None


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Atomic write. At most one metadata key: safetensors serialises metadata from a hash map whose order changes
    between processes, so two keys would make the bytes (and every checkpoint hash) non-deterministic."""
    if metadata is not None and len(metadata) > 1:
        raise ValueError(f"write_safetensors takes at most one metadata key (byte determinism), got {sorted(metadata)}")
    data = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    atomic_write_bytes(path, save(data, metadata=metadata))


def read_weights_dir(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of `model.safetensors` or of the shards listed in `model.safetensors.index.json`."""
    single, index = folder / "model.safetensors", folder / INDEX_NAME
    if single.is_file():
        return read_safetensors(single)
    if index.is_file():
        data = read_json(index, CheckpointError, "safetensors index")
        weight_map = data.get("weight_map") if isinstance(data, dict) else None
        if not isinstance(weight_map, dict):
            raise CheckpointError(f"{index} is not a valid safetensors index (no 'weight_map' object); re-export it")
        tensors: dict[str, torch.Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(read_safetensors(folder / shard))
        missing = set(weight_map) - set(tensors)
        if missing:
            raise CheckpointError(f"{index} lists tensors missing from its shards: {sorted(missing)[:3]}")
        return tensors
    raise CheckpointError(f"no model.safetensors or {INDEX_NAME} in {folder}; is this a model directory?")


def write_weights_dir(
    folder: Path,
    tensors: dict[str, torch.Tensor],
    max_shard_bytes: int = 5 * 2**30,
    metadata: dict[str, str] | None = None,
) -> list[str]:
    """Write one `model.safetensors`, or shards plus an index when the total exceeds `max_shard_bytes`."""
    sizes = {k: v.numel() * v.element_size() for k, v in tensors.items()}
    total = sum(sizes.values())
    if total <= max_shard_bytes:
        write_safetensors(folder / "model.safetensors", tensors, metadata)
        return ["model.safetensors"]
    shards: list[dict[str, torch.Tensor]] = [{}]
    used = 0
    for name, t in tensors.items():
        if shards[-1] and used + sizes[name] > max_shard_bytes:
            shards.append({})
            used = 0
        shards[-1][name] = t
        used += sizes[name]
    names = [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    weight_map = {}
    for fname, shard in zip(names, shards):
        write_safetensors(folder / fname, shard, metadata)
        weight_map.update(dict.fromkeys(shard, fname))
    atomic_write_json(folder / INDEX_NAME, {"metadata": {"total_size": total}, "weight_map": weight_map})
    return [*names, INDEX_NAME]
