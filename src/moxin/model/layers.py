"""Transformer building blocks: RMSNorm, rotary embeddings, SwiGLU feed-forward, GQA attention with an optional
sliding window. Shapes: B batch, T new tokens, S keys, H query heads, K key/value heads, D head dim."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from moxin.model.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and self.weight.dtype == torch.float32:
            # One kernel for normalise-and-scale; bitwise the same as the two-step order below for fp32.
            y = F.rms_norm(x, (x.shape[-1],), self.weight, self.eps)
            # Under autocast every consumer is a matmul that would cast its own copy: cast once here instead.
            dev = x.device.type
            return y.to(torch.get_autocast_dtype(dev)) if torch.is_autocast_enabled(dev) else y
        # Normalise in fp32, cast back, then scale: the same order as Hugging Face's Mistral/Llama.
        y = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).to(x.dtype)
        return self.weight * y


def rope_tables(head_dim: int, max_len: int, theta: float, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (max_len, D) in fp32, for the rotate-half layout used by Hugging Face."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64, device=device).float() / head_dim))
    t = torch.arange(max_len, dtype=torch.int64, device=device).float()
    freqs = torch.outer(t, inv_freq)  # (max_len, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x (B, H, T, D); cos/sin (B, 1, T, D) already gathered at the tokens' positions."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return x * cos + rotated * sin


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.n_heads, self.n_kv, self.hd = cfg.n_heads, cfg.n_kv_heads, cfg.hd
        self.q = nn.Linear(cfg.dim, cfg.n_heads * cfg.hd, bias=False)
        self.k = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.hd, bias=False)
        self.v = nn.Linear(cfg.dim, cfg.n_kv_heads * cfg.hd, bias=False)
        self.o = nn.Linear(cfg.n_heads * cfg.hd, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.n_heads, self.hd).transpose(1, 2)  # (B, H, T, D)
        k = self.k(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)  # (B, K, T, D)
        v = self.v(x).view(B, T, self.n_kv, self.hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if ctx.cache is not None:
            k, v = ctx.cache.update(self.layer_idx, k, v)  # (B, K, S, D) incl. earlier tokens
        if ctx.cache is not None and T == 1:
            out = decode_attention(q, k, v, ctx.mask)
            return self.o(out.transpose(1, 2).reshape(B, T, self.n_heads * self.hd))
        gqa = self.n_heads != self.n_kv
        if gqa and ctx.repeat_kv:
            k = k.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            v = v.repeat_interleave(self.n_heads // self.n_kv, dim=1)
            gqa = False
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=ctx.mask, is_causal=ctx.is_causal, enable_gqa=gqa)
        return self.o(out.transpose(1, 2).reshape(B, T, self.n_heads * self.hd))


def decode_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """One query per row against the cache: q (B, H, 1, D), k/v (B, K, S, D), mask (B, 1, 1, S) → (B, H, 1, D).

    Grouped heads are folded into a batched matmul instead of repeating K/V; for a single query this beats SDPA's
    CPU kernel, whose set-up cost dominates at T=1. Softmax runs in fp32, as in SDPA."""
    B, H, _, D = q.shape
    K, S = k.shape[1], k.shape[2]
    # fp32 throughout: CPU bmm in bf16 is ~30x slower at these shapes, and the casts cost only O(S·D) per layer.
    qg = q.reshape(B, K, H // K, D).float()
    scores = torch.matmul(qg, k.float().transpose(-1, -2)) * (D**-0.5)  # (B, K, G, S)
    if mask is not None:
        scores = scores.masked_fill(~mask.reshape(B, 1, 1, S), float("-inf"))
    out = torch.matmul(scores.softmax(-1), v.float())  # (B, K, G, D)
    return out.to(q.dtype).reshape(B, H, 1, D)


class FeedForward(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(dim, hidden, bias=False)
        self.up = nn.Linear(dim, hidden, bias=False)
        self.down = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg, layer_idx)
        self.mlp_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.mlp = FeedForward(cfg.dim, cfg.ffn_dim)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, ctx: AttnContext) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, ctx)
        return x + self.mlp(self.mlp_norm(x))


class AttnContext:
    """What every layer's attention needs for one forward: the mask (shared by all layers) and the cache."""

    __slots__ = ("cache", "is_causal", "mask", "repeat_kv")

    def __init__(self, mask: torch.Tensor | None, is_causal: bool, cache=None, repeat_kv: bool = False) -> None:
        self.mask, self.is_causal, self.cache, self.repeat_kv = mask, is_causal, cache, repeat_kv


def attention_mask(
    q_pos: torch.Tensor,
    k_pos: torch.Tensor,
    window: int | None,
    q_seg: torch.Tensor | None = None,
    k_seg: torch.Tensor | None = None,
) -> torch.Tensor:
    """Boolean mask (B, 1, Tq, Tk): key j is visible to query i when 0 <= pos_j <= pos_i, pos_i - pos_j < W,
    and both belong to the same segment (packed documents). Padding has position -1.

    A query that sees nothing (a padding query) is allowed everything, so SDPA never produces NaN; its output is
    ignored by the caller."""
    qp, kp = q_pos[:, :, None], k_pos[:, None, :]  # (B, Tq, 1), (B, 1, Tk)
    mask = (kp >= 0) & (kp <= qp)
    if window is not None:
        mask &= (qp - kp) < window
    if q_seg is not None and k_seg is not None:
        mask &= q_seg[:, :, None] == k_seg[:, None, :]
    mask |= ~mask.any(dim=-1, keepdim=True)
    return mask[:, None]
