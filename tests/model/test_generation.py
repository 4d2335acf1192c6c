"""Acceptance 3 of [1/8]: the KV cache (rolling buffer active) equals full recomputation and transformers."""

import torch
from transformers import AutoModelForCausalLM

from moxin.interop.hf import from_hf
from moxin.model import KVCache, Sampling, build, generate, preset
from moxin.model.generate import filter_logits


def test_greedy_cache_equals_recompute_and_transformers(hf_mistral_dir):
    ours = from_hf(hf_mistral_dir).eval()
    hf = AutoModelForCausalLM.from_pretrained(hf_mistral_dir).eval()
    prompt = torch.randint(0, 300, (1, 6))
    n = 30  # 6 + 30 > window 8: the rolling buffer wraps several times
    cached = generate(ours, prompt, n)
    assert KVCache.for_model(ours, 1, 36).size == 8  # rolling buffer of W slots, not 36
    recomputed = generate(ours, prompt, n, use_cache=False)
    reference = hf.generate(prompt, max_new_tokens=n, do_sample=False, pad_token_id=0)
    assert cached.tolist() == recomputed.tolist() == reference.tolist()


def test_prompt_longer_than_window(hf_mistral_dir):
    ours = from_hf(hf_mistral_dir).eval()
    hf = AutoModelForCausalLM.from_pretrained(hf_mistral_dir).eval()
    prompt = torch.randint(0, 300, (2, 20))  # prefill itself exceeds the window
    ours_out = generate(ours, prompt, 12)
    assert ours_out.tolist() == generate(ours, prompt, 12, use_cache=False).tolist()
    assert ours_out.tolist() == hf.generate(prompt, max_new_tokens=12, do_sample=False, pad_token_id=0).tolist()


def test_chunked_prefill_matches_full_forward():
    """Feeding a sequence in chunks through the rolling cache gives the logits of one full forward."""
    model = build(preset("tiny"), seed=3).eval()  # window 16
    x = torch.randint(0, 512, (2, 50))
    with torch.no_grad():
        full = model(x)
        cache = KVCache.for_model(model, 2, 50)
        parts = [model(x[:, a:b], cache=cache) for a, b in [(0, 7), (7, 8), (8, 30), (30, 31), (31, 50)]]
    torch.testing.assert_close(torch.cat(parts, dim=1), full, atol=1e-5, rtol=0)


def test_left_padded_batch_matches_single_sequences():
    model = build(preset("tiny"), seed=4).eval()
    a, b = torch.randint(0, 512, (1, 9)), torch.randint(0, 512, (1, 4))
    pad = 9 - 4
    batch = torch.cat([a, torch.cat([torch.zeros(1, pad, dtype=torch.long), b], 1)])
    positions = torch.stack([torch.arange(9), torch.cat([torch.full((pad,), -1), torch.arange(4)])])
    with torch.no_grad():
        cache = KVCache.for_model(model, 2, 40)
        first = model(batch, positions=positions, cache=cache, last_only=True)
        toks = first[:, -1].argmax(-1, keepdim=True)
        step = model(toks, positions=positions[:, -1:] + 1, cache=cache)
    ref_a, ref_b = generate(model, a, 2), generate(model, b, 2)
    assert toks[:, 0].tolist() == [ref_a[0, 9].item(), ref_b[0, 4].item()]
    assert step[:, -1].argmax(-1).tolist() == [ref_a[0, 10].item(), ref_b[0, 5].item()]


def test_sampling_is_seeded_and_filters():
    model = build(preset("tiny"), seed=5).eval()
    prompt = torch.randint(0, 512, (1, 5))
    s = Sampling(temperature=1.0, top_k=20, top_p=0.9, seed=7)
    assert generate(model, prompt, 20, s).tolist() == generate(model, prompt, 20, s).tolist()
    other = generate(model, prompt, 20, Sampling(temperature=1.0, seed=8))
    assert other.tolist() != generate(model, prompt, 20, Sampling(temperature=1.0, seed=7)).tolist()
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert torch.isfinite(filter_logits(logits, 2, None)).tolist() == [[True, True, False, False, False]]
    probs = logits.softmax(-1)[0]  # [0.636, 0.234, 0.086, ...]: top-p 0.8 keeps the first two
    assert probs[0] < 0.8 < probs[0] + probs[1]
    assert torch.isfinite(filter_logits(logits, None, 0.8)).tolist() == [[True, True, False, False, False]]


def test_eos_stops_generation():
    model = build(preset("tiny"), seed=6).eval()
    prompt = torch.randint(0, 512, (1, 5))
    free = generate(model, prompt, 10)
    eos = free[0, 7].item()  # the third generated token
    stopped = generate(model, prompt, 10, eos_id=eos)
    first = (free[0, 5:] == eos).nonzero()[0].item()
    assert stopped.shape[1] == 5 + first + 1 and stopped[0, -1].item() == eos
