"""moxin's own model directory: `model.safetensors` (moxin tensor names) + `model_config.json`."""

from __future__ import annotations

from pathlib import Path

import torch

from moxin.errors import CheckpointError
from moxin.io import read_json
from moxin.interop.safetensors_io import read_safetensors, write_safetensors
from moxin.model.config import ModelConfig, from_json_dict, to_json_dict
from moxin.model.transformer import Transformer
from moxin.provenance import atomic_write_json

CONFIG_NAME = "model_config.json"
WEIGHTS_NAME = "model.safetensors"


def is_native(path: Path) -> bool:
    return path.is_dir() and (path / CONFIG_NAME).is_file()


def save_model(model: Transformer, folder: str | Path, dtype: torch.dtype | None = None) -> None:
    """Write the weights and the model config (not atomic on its own: call inside `provenance.atomic_dir`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = model.state_dict()
    if dtype is not None:
        sd = {k: v.to(dtype) for k, v in sd.items()}
    write_safetensors(folder / WEIGHTS_NAME, sd, metadata={"format": "pt"})
    atomic_write_json(folder / CONFIG_NAME, to_json_dict(model.cfg))


def read_model_config(folder: Path) -> ModelConfig:
    path = folder / CONFIG_NAME
    data = read_json(path, CheckpointError, "model config", hint=f"is {folder} a moxin model directory?")
    return from_json_dict(data, str(path))


def load_model(folder: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu") -> Transformer:
    folder = Path(folder)
    cfg = read_model_config(folder)
    sd = read_safetensors(folder / WEIGHTS_NAME)
    with torch.device("meta"):
        model = Transformer(cfg)
    expected = set(model.state_dict())
    if set(sd) != expected:
        missing, extra = sorted(expected - set(sd)), sorted(set(sd) - expected)
        raise CheckpointError(f"{folder / WEIGHTS_NAME} does not match {CONFIG_NAME}: missing {missing[:3]}, "
                              f"unexpected {extra[:3]}")
    model.load_state_dict({k: v.to(device=device, dtype=dtype) for k, v in sd.items()}, assign=True)
    model.reset_rope()
    return model
