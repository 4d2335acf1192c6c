"""Batched generation for lm-eval's `generate_until`: left-padded prompts in one KV cache, greedy or sampled,
stopping at the EOS token or at any of the task's stop strings (which are then cut, as HFLM does)."""

from __future__ import annotations

from typing import Any

import torch


def _settings(lm, gen_kwargs: dict[str, Any]) -> tuple[list[str], int, float, int | None]:
    from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs

    kwargs = normalize_gen_kwargs(dict(gen_kwargs), lm.max_gen_toks)
    eos = lm.tok_decode([lm.eot_token_id], skip_special_tokens=False)
    until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
    temperature = float(kwargs.get("temperature") or 0.0) if kwargs.get("do_sample") else 0.0
    return until, int(kwargs.pop("max_gen_toks")), temperature, kwargs.get("seed")


@torch.inference_mode()
def generate_batch(lm, contexts: list[str], gen_kwargs: dict[str, Any]) -> list[str]:
    """contexts → generated texts, each cut before the first stop string."""
    from lm_eval.models.utils import postprocess_generated_text

    from moxin.model.generate import Sampling, left_pad, next_token
    from moxin.model.kv_cache import KVCache

    until, max_new, temperature, seed = _settings(lm, gen_kwargs)
    max_ctx = lm.max_length - max_new
    if max_ctx <= 0:
        from moxin.errors import EvalError

        raise EvalError(f"max_gen_toks={max_new} leaves no room for the prompt within max_length={lm.max_length}")
    enc = [lm.tok_encode(c, left_truncate_len=max_ctx) for c in contexts]
    toks, pos = left_pad(enc)  # (B, T); -1 marks left padding
    B, T = toks.shape
    dev = lm.device
    cache = KVCache.for_model(lm.model, B, max_len=T + max_new)
    sampling = Sampling(temperature=temperature)
    gen = torch.Generator(device=dev).manual_seed(int(seed)) if seed is not None else None
    next_pos = torch.tensor([len(e) for e in enc], device=dev)  # (B,)
    out: list[list[int]] = [[] for _ in range(B)]
    done = [False] * B
    logits = lm.model(toks.to(dev), positions=pos.to(dev), cache=cache, last_only=True)[:, -1]  # (B, V)
    for _ in range(max_new):
        tok = next_token(logits, sampling, gen)  # (B,)
        for b in range(B):
            if not done[b]:
                out[b].append(int(tok[b]))
                done[b] = int(tok[b]) == lm.eot_token_id or _hit_stop(lm, out[b], until)
        if all(done):
            break
        logits = lm.model(tok[:, None], positions=next_pos[:, None], cache=cache, last_only=True)[:, -1]
        next_pos = next_pos + 1
    return [postprocess_generated_text(lm.tok_decode(o), until, None) for o in out]


def _hit_stop(lm, tokens: list[int], until: list[str]) -> bool:
    # Decode only the tail: a stop string is short, and the tail keeps this O(1) per step.
    tail = lm.tok_decode(tokens[-16:], skip_special_tokens=False)
    return any(s and s in tail for s in until)
