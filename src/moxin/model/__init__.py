"""The model: config and presets, layers, transformer, KV cache, generation. No training code here.

Importing this package is light: the config and presets are plain Python, and the torch-backed names
(`Transformer`, `build`, `KVCache`, `Sampling`, `generate`) load on first use (PEP 562), so recipes and
`moxin --help` never import torch."""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from moxin.model.config import PRESETS, ModelConfig, flops_per_token, num_params, preset

if TYPE_CHECKING:  # pragma: no cover
    from moxin.model.generate import Sampling, generate
    from moxin.model.kv_cache import KVCache
    from moxin.model.transformer import Transformer, build

# public name → the submodule that defines it (imported on first access)
_LAZY = {
    "Sampling": "moxin.model.generate",
    "generate": "moxin.model.generate",
    "KVCache": "moxin.model.kv_cache",
    "Transformer": "moxin.model.transformer",
    "build": "moxin.model.transformer",
}

__all__ = [
    "PRESETS",
    "KVCache",
    "ModelConfig",
    "Sampling",
    "Transformer",
    "build",
    "flops_per_token",
    "generate",
    "num_params",
    "preset",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(types.ModuleType):
    """Importing the submodule `moxin.model.generate` binds it as this package's attribute `generate`; the
    package's `generate` is the function of that name, so keep the function."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "generate" and isinstance(value, types.ModuleType):
            value = value.generate
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
