"""The model: config and presets, layers, transformer, KV cache, generation. No training code here."""

from moxin.model.config import PRESETS, ModelConfig, flops_per_token, num_params, preset
from moxin.model.generate import Sampling, generate
from moxin.model.kv_cache import KVCache
from moxin.model.transformer import Transformer, build

__all__ = ["PRESETS", "KVCache", "ModelConfig", "Sampling", "Transformer", "build", "flops_per_token", "generate",
           "num_params", "preset"]
