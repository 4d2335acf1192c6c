"""The decoder-only transformer. Holds no training or distributed code: parallelism, compilation and
checkpointing are applied from outside (see `moxin.parallel`, `moxin.train`)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from moxin.model.config import ModelConfig
from moxin.model.kv_cache import KVCache
from moxin.model.layers import AttnContext, Block, RMSNorm, attention_mask, rope_tables


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.head = None if cfg.tie_embeddings else nn.Linear(cfg.dim, cfg.vocab_size, bias=False)
        cos, sin = rope_tables(cfg.hd, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)

    # ------------------------------------------------------------------ set-up
    def init_weights(self, seed: int | None = None) -> None:
        """Normal(0, init_std) for matrices, output projections scaled by 1/sqrt(2·layers), norms at one."""
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        std = self.cfg.init_std
        for name, p in self.named_parameters():
            with torch.no_grad():
                if p.ndim == 1:
                    p.fill_(1.0)
                    continue
                s = (
                    std / math.sqrt(2 * self.cfg.n_layers)
                    if name.endswith(("attn.o.weight", "mlp.down.weight"))
                    else std
                )
                p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32).mul_(s).to(p.dtype))

    def reset_rope(self) -> None:
        """Recompute the RoPE tables (after building on the meta device and moving to a real one)."""
        cos, sin = rope_tables(self.cfg.hd, self.cfg.max_seq_len, self.cfg.rope_theta, device=self.embed.weight.device)
        self.rope_cos, self.rope_sin = cos, sin

    @property
    def output_weight(self) -> torch.Tensor:
        return self.embed.weight if self.head is None else self.head.weight

    # ------------------------------------------------------------------ forward
    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        segment_ids: torch.Tensor | None = None,
        last_only: bool = False,
        return_hidden: bool = False,
        targets: torch.Tensor | None = None,
        z_loss: float = 0.0,
    ) -> Any:
        """tokens (B, T) → logits (B, T, V), or (B, 1, V) with `last_only`, or final hidden states (B, T, dim).

        positions (B, T): RoPE positions (default: continue after the cache, or 0..T-1); -1 marks left padding.
        segment_ids (B, T): packed documents; attention never crosses a segment boundary.
        targets (B, T): next tokens, -100 where no loss is taken. Returns (loss, ce, z) instead of the logits:
        summed cross-entropy plus z-loss from `moxin.model.loss.linear_cross_entropy`, which never holds the
        fp32 logits. Training goes through forward (not a separate method) so that FSDP2/DDP hooks run.
        """
        B, T = tokens.shape
        if positions is None:
            start = cache.next_position if cache is not None else 0
            positions = torch.arange(start, start + T, device=tokens.device).expand(B, T)
        ctx = self._context(positions, cache, segment_ids)
        pos = positions.clamp(min=0)
        cos = self.rope_cos[pos].unsqueeze(1)  # (B, 1, T, D)
        sin = self.rope_sin[pos].unsqueeze(1)
        x = self.embed(tokens)
        cos, sin = cos.to(x.dtype), sin.to(x.dtype)
        for layer in self.layers:
            x = layer(x, cos, sin, ctx)
        if cache is not None:
            cache.commit(positions)
        if last_only:
            x = x[:, -1:]
        x = self.norm(x)
        if return_hidden:
            return x
        if targets is not None:
            from moxin.model.loss import linear_cross_entropy

            return linear_cross_entropy(x.reshape(-1, x.shape[-1]), self.output_weight, targets, z_loss=z_loss)
        return self.logits(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Final hidden states (B, T, dim) → logits (B, T, V)."""
        if self.head is not None:
            return self.head(x)
        tied = self.__dict__.get("_tied_head")  # set by moxin.model.fast for packed inference
        return tied(x) if tied is not None else nn.functional.linear(x, self.embed.weight)

    def _context(self, positions: torch.Tensor, cache: KVCache | None, segment_ids: torch.Tensor | None) -> AttnContext:
        W = self.cfg.sliding_window
        T = positions.shape[1]
        if cache is not None:
            return AttnContext(cache.prepare(positions, W), False, cache)
        simple = segment_ids is None and (W is None or T <= W) and bool((positions >= 0).all())
        if simple:
            return AttnContext(None, T > 1)
        return AttnContext(attention_mask(positions, positions, W, segment_ids, segment_ids), False)


def build(
    cfg: ModelConfig, seed: int | None = 0, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Transformer:
    """A model with deterministic initial weights (same seed → same bytes)."""
    model = Transformer(cfg)
    model.init_weights(seed)
    return model.to(device=device, dtype=dtype)
