"""Model configuration, the named presets, parameter count and FLOPs per token."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from moxin.config import from_dict
from moxin.errors import ConfigError, ModelError


@dataclass
class ModelConfig:
    """A decoder-only transformer: RMSNorm, RoPE, SwiGLU, grouped-query attention, optional sliding window."""

    vocab_size: int = 32000
    dim: int = 4096
    n_layers: int = 32
    n_heads: int = 32
    n_kv_heads: int = 8
    ffn_dim: int = 14336
    head_dim: int | None = None  # default dim // n_heads
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    max_seq_len: int = 32768
    sliding_window: int | None = None  # W: each query sees itself and the W-1 tokens before it
    tie_embeddings: bool = False
    arch: Literal["mistral", "llama"] = "mistral"  # the Hugging Face class it exports as
    init_std: float = 0.02
    preset: str | None = None  # the preset this config started from, kept for the record

    @property
    def hd(self) -> int:
        return self.head_dim or self.dim // self.n_heads

    @classmethod
    def _resolve(cls, data: dict[str, Any], where: str = "<config>", prefix: str = "") -> dict[str, Any]:
        name = data.get("preset")
        if name is None:
            return data
        base = dataclasses.asdict(preset(str(name), where=where, key=f"{prefix}preset"))
        base.update(data)
        return base

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{prefix}{key} in {where}: {msg}")

        for key in ("vocab_size", "dim", "n_layers", "n_heads", "n_kv_heads", "ffn_dim", "max_seq_len"):
            if getattr(self, key) <= 0:
                raise bad(key, f"must be positive, got {getattr(self, key)}")
        if self.n_heads % self.n_kv_heads:
            raise bad("n_kv_heads", f"n_heads={self.n_heads} must be a multiple of n_kv_heads={self.n_kv_heads}")
        if self.head_dim is None and self.dim % self.n_heads:
            raise bad("n_heads", f"dim={self.dim} is not divisible by n_heads={self.n_heads}; set head_dim")
        if self.hd % 2:
            raise bad("head_dim", f"head dimension {self.hd} must be even for RoPE")
        if self.sliding_window is not None and self.sliding_window <= 0:
            raise bad("sliding_window", f"must be positive or absent, got {self.sliding_window}")

    @property
    def window_active(self) -> bool:
        return self.sliding_window is not None and self.sliding_window < self.max_seq_len


def num_params(cfg: ModelConfig, include_embeddings: bool = True) -> int:
    """Exact parameter count, by formula (equals counting a model built on the meta device)."""
    hd = cfg.hd
    attn = cfg.dim * (cfg.n_heads * hd) * 2 + cfg.dim * (cfg.n_kv_heads * hd) * 2
    mlp = 3 * cfg.dim * cfg.ffn_dim
    norms = 2 * cfg.dim
    body = cfg.n_layers * (attn + mlp + norms) + cfg.dim
    emb = cfg.vocab_size * cfg.dim * (1 if cfg.tie_embeddings else 2)
    return body + (emb if include_embeddings else (0 if cfg.tie_embeddings else cfg.vocab_size * cfg.dim))


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> int:
    """Training FLOPs per token: 6 × (non-embedding matmul params incl. the output head) + attention scores.

    The attention term is 6 · n_layers · n_heads · head_dim · (effective context), with the causal context
    averaged over positions (seq/2), capped by the sliding window (PaLM's accounting, halved for causality).
    """
    seq = seq_len or cfg.max_seq_len
    matmul_params = num_params(cfg, include_embeddings=False) - cfg.n_layers * 2 * cfg.dim - cfg.dim
    if cfg.tie_embeddings:
        matmul_params += cfg.vocab_size * cfg.dim  # the tied head is still a matmul
    ctx = seq / 2 if cfg.sliding_window is None else min(seq / 2, cfg.sliding_window)
    attn = 6 * cfg.n_layers * cfg.n_heads * cfg.hd * 2 * ctx
    return int(6 * matmul_params + attn)


# ---------------------------------------------------------------------------------------------- presets
def tiny() -> ModelConfig:
    """CPU tests: 2 layers, GQA 4/2, sliding window 16."""
    return ModelConfig(
        vocab_size=512,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=176,
        max_seq_len=256,
        sliding_window=16,
        tie_embeddings=True,
        preset="tiny",
    )


def small() -> ModelConfig:
    """~40 M parameters: CPU training in minutes, the benchmark model."""
    return ModelConfig(
        vocab_size=16384,
        dim=512,
        n_layers=8,
        n_heads=8,
        n_kv_heads=4,
        ffn_dim=1376,
        max_seq_len=2048,
        sliding_window=1024,
        tie_embeddings=False,
        preset="small",
    )


def moxin_7b() -> ModelConfig:
    """Moxin-7B (arXiv 2412.06845): Mistral-7B deepened from 32 to 36 layers."""
    return ModelConfig(
        vocab_size=32000,
        dim=4096,
        n_layers=36,
        n_heads=32,
        n_kv_heads=8,
        ffn_dim=14336,
        norm_eps=1e-5,
        rope_theta=10000.0,
        max_seq_len=32768,
        sliding_window=4096,
        tie_embeddings=False,
        arch="mistral",
        preset="moxin-7b",
    )


def mistral_7b() -> ModelConfig:
    """Mistral-7B-v0.1: 32 layers, sliding window 4096."""
    return dataclasses.replace(moxin_7b(), n_layers=32, preset="mistral-7b")


def llama_7b() -> ModelConfig:
    """Llama-2-7B-style: full attention, MHA, FFN 11008, 4K context."""
    return ModelConfig(
        vocab_size=32000,
        dim=4096,
        n_layers=32,
        n_heads=32,
        n_kv_heads=32,
        ffn_dim=11008,
        norm_eps=1e-5,
        rope_theta=10000.0,
        max_seq_len=4096,
        sliding_window=None,
        tie_embeddings=False,
        arch="llama",
        preset="llama-7b",
    )


def llama_tiny() -> ModelConfig:
    """Llama-style tiny: full attention, tied embeddings (SmolLM-like), for tests."""
    return ModelConfig(
        vocab_size=512,
        dim=64,
        n_layers=2,
        n_heads=4,
        n_kv_heads=2,
        ffn_dim=176,
        max_seq_len=256,
        rope_theta=100000.0,
        sliding_window=None,
        tie_embeddings=True,
        arch="llama",
        preset="llama-tiny",
    )


PRESETS: dict[str, Callable[[], ModelConfig]] = {
    "tiny": tiny,
    "small": small,
    "moxin-7b": moxin_7b,
    "mistral-7b": mistral_7b,
    "llama-7b": llama_7b,
    "llama-tiny": llama_tiny,
}


def preset(name: str, where: str = "moxin model", key: str = "preset") -> ModelConfig:
    if name not in PRESETS:
        close = difflib.get_close_matches(name, PRESETS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"choose one of {', '.join(PRESETS)}"
        raise ConfigError(f"unknown model preset {name!r} ({key} in {where}); {hint}")
    return PRESETS[name]()


def from_json_dict(data: dict[str, Any], where: str) -> ModelConfig:
    """Read a ModelConfig saved by `to_json_dict` (in a checkpoint's config), with the same validation as recipes."""
    try:
        return from_dict(ModelConfig, data, where)
    except ConfigError as e:
        raise ModelError(str(e)) from None


def to_json_dict(cfg: ModelConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
