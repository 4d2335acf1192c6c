"""Greedy and sampled generation with the KV cache (or by full recomputation, the reference it is tested against)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from moxin.model.kv_cache import KVCache


@dataclass
class Sampling:
    temperature: float = 0.0  # 0 → greedy
    top_k: int | None = None
    top_p: float | None = None
    seed: int | None = None


def left_pad(seqs: list[list[int]], T: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids and RoPE positions (B, T) of sequences left-padded to T (default: the longest); padding is token 0
    at position -1, which attention never sees."""
    T = max(len(q) for q in seqs) if T is None else T
    tokens = torch.zeros(len(seqs), T, dtype=torch.long)
    positions = torch.full((len(seqs), T), -1, dtype=torch.long)
    for i, q in enumerate(seqs):
        tokens[i, T - len(q) :] = torch.tensor(q, dtype=torch.long)
        positions[i, T - len(q) :] = torch.arange(len(q))
    return tokens, positions


def filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """logits (B, V) → logits with everything outside top-k / the top-p nucleus set to -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def next_token(logits: torch.Tensor, s: Sampling, gen: torch.Generator | None) -> torch.Tensor:
    """logits (B, V) → token ids (B,)."""
    if s.temperature <= 0:
        return logits.argmax(-1)
    logits = filter_logits(logits.float() / s.temperature, s.top_k, s.top_p)
    return torch.multinomial(logits.softmax(-1), 1, generator=gen).squeeze(-1)


@torch.inference_mode()
def generate(
    model,
    prompt: torch.Tensor,
    max_new_tokens: int,
    sampling: Sampling | None = None,
    eos_id: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """prompt (B, T) of token ids → (B, T + n) with n ≤ max_new_tokens (stops early when every row hit eos_id)."""
    s = sampling or Sampling()
    gen = torch.Generator(device=prompt.device).manual_seed(s.seed) if s.seed is not None else None
    B, T = prompt.shape
    out = prompt
    done = torch.zeros(B, dtype=torch.bool, device=prompt.device)
    cache = KVCache.for_model(model, B, max_len=min(model.cfg.max_seq_len, T + max_new_tokens)) if use_cache else None
    step_input = prompt
    for _ in range(max_new_tokens):
        if use_cache:
            logits = model(step_input, cache=cache, last_only=True)[:, -1]
        else:
            logits = model(out, last_only=True)[:, -1]
        tok = next_token(logits, s, gen)
        if eos_id is not None:
            tok = torch.where(done, torch.full_like(tok, eos_id), tok)
            done |= tok == eos_id
        out = torch.cat([out, tok[:, None]], dim=1)
        step_input = tok[:, None]
        if eos_id is not None and bool(done.all()):
            break
    return out
