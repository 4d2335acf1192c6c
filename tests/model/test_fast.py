"""moxin.model.fast: bf16 linears with pre-packed oneDNN weights give bit-identical results to plain bf16 linears."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moxin.model import fast

pytestmark = pytest.mark.skipif(not fast.supported(), reason="oneDNN packed linear not available in this torch build")


@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (1, 1, 64), (2, 5, 64), (4, 7, 64)])
@pytest.mark.parametrize("out_features", [32, 96])
def test_packed_bf16_linear_is_bit_identical_to_plain(shape, out_features):
    torch.manual_seed(len(shape) * 100 + shape[0] * 10 + out_features)
    plain = nn.Linear(64, out_features, bias=False).to(torch.bfloat16).eval()
    packed = fast.enable(nn.Sequential(nn.Linear(64, out_features, bias=False))).to(torch.bfloat16).eval()
    packed[0].weight.data.copy_(plain.weight.data)
    x = torch.randn(*shape).to(torch.bfloat16)
    with torch.no_grad():
        want, got = plain(x), packed(x)
    assert packed[0]._moxin_pack_key is not None  # the packed path ran
    assert got.shape == want.shape
    assert torch.equal(got, want)


def test_packed_copy_follows_a_changed_weight_and_autograd_takes_the_plain_path():
    torch.manual_seed(0)
    lin = fast.enable(nn.Sequential(nn.Linear(16, 8, bias=False))).to(torch.bfloat16).eval()[0]
    x = torch.randn(2, 16).to(torch.bfloat16)
    with torch.no_grad():
        before = lin(x)
        lin.weight.mul_(2)  # bumps the version counter: the packed copy must be rebuilt
        after = lin(x)
    assert torch.equal(after, torch.nn.functional.linear(x, lin.weight))
    assert not torch.equal(before, after)
    y = lin(x.requires_grad_())  # grad enabled: the plain path, with a graph
    assert y.grad_fn is not None


def test_fp32_takes_onednn_only_inside_the_block_and_stays_within_fp32_rounding():
    torch.manual_seed(3)
    lin = fast.enable(nn.Sequential(nn.Linear(576, 1536, bias=False))).eval()[0]
    x = torch.randn(2, 37, 576)
    with torch.no_grad():
        plain = lin(x)
        assert lin._moxin_pack_key is None  # outside the block fp32 keeps the plain (MKL) path, bit for bit
        assert torch.equal(plain, torch.nn.functional.linear(x, lin.weight))
        with fast.onednn_fp32():
            got = lin(x)
        block, packs = lin._moxin_packed
        assert block == fast.K_BLOCK and len(packs) == -(-576 // fast.K_BLOCK)  # oneDNN ran, summing K in blocks
        ref = torch.nn.functional.linear(x.double(), lin.weight.double())
    assert got.dtype == torch.float32 and got.shape == plain.shape
    assert (got.double() - ref).abs().max() < 1e-5  # IEEE fp32 sums (|y| ≤ ~3); bf16 would be off by ~1e-2
    assert not fast._fp32.on  # the block restores the thread's setting


def test_the_fp32_copy_is_taken_only_where_it_fits_in_ram():
    import os

    m = nn.Sequential(nn.Linear(64, 32, bias=False), nn.Linear(32, 64, bias=False))
    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    need = 2 * 64 * 32 * 4
    assert fast.fp32_copy_fits(m)
    assert fast.fp32_copy_fits(m, share=need / ram * 1.000001)
    assert not fast.fp32_copy_fits(m, share=need / ram * 0.999)


def test_disable_restores_plain_linears():
    m = fast.enable(nn.Sequential(nn.Linear(8, 8, bias=False)))
    fast.disable(m)
    assert not hasattr(m[0], "_moxin_pack_key") and "forward" not in m[0].__dict__


# ------------------------------------------------------------------------------------------------ fused decode step
def _bf16_model(name: str, seed: int = 7):
    import dataclasses

    from moxin.model import build, preset

    model = build(dataclasses.replace(preset(name), init_std=0.2), seed=seed).to(torch.bfloat16).eval()
    model.reset_rope()
    return model


needs_kernels = pytest.mark.skipif(fast.kernels() is None, reason=f"no fused decode kernels: {fast.kernels_error()}")


def _step_both(model, head, decoder, steps: int, batch: int = 3):
    """Prefill a random prompt into two caches, then decode greedily with the eager model and the Decoder."""
    from moxin.model.kv_cache import KVCache

    g = torch.Generator().manual_seed(0)
    prompt = torch.randint(0, model.cfg.vocab_size, (batch, 5), generator=g)
    eager, fused = KVCache.for_model(model, batch, 64), KVCache.for_model(model, batch, 64)
    diffs, same = [], []
    with torch.inference_mode():
        model(prompt, cache=eager, last_only=True)
        model(prompt, cache=fused, last_only=True)
        tok = torch.randint(0, model.cfg.vocab_size, (batch, 1), generator=g)
        for s in range(steps):
            pos = torch.full((batch, 1), 5 + s)
            if head is None:
                want = model(tok, positions=pos, cache=eager, last_only=True)[:, -1].float()
            else:
                want = head(model(tok, positions=pos, cache=eager, last_only=True, return_hidden=True))[:, -1].float()
            # The Decoder returns fp32 logits where the eager bf16 model rounds them to bf16 (and so ties more often):
            # rounded the same way, they must match it and pick the same tokens.
            got = decoder.step(tok, pos, fused).to(torch.bfloat16).float()
            diffs.append(float((got - want).abs().max() / want.abs().max()))
            same.append(torch.equal(got.argmax(-1), want.argmax(-1)))
            tok = want.argmax(-1, keepdim=True)
    return diffs, same, eager, fused


@needs_kernels
@pytest.mark.parametrize("preset_name", ["tiny", "llama-tiny"])  # a rolling window of 16 (passed here) and none
def test_fused_bf16_step_matches_the_eager_bf16_model(preset_name):
    model = _bf16_model(preset_name)
    decoder = fast.Decoder.build(model)
    assert decoder is not None
    diffs, same, eager, fused = _step_both(model, None, decoder, steps=24)
    assert all(same)  # greedy tokens identical at every step
    assert max(diffs) < 2e-3, diffs  # only the fp32 accumulation order differs: below one bf16 step of the logits
    assert torch.equal(eager.k, fused.k) and torch.equal(eager.v, fused.v)
    assert torch.equal(eager.slot_pos, fused.slot_pos) and eager.written == fused.written


@needs_kernels
def test_fused_int8_step_matches_the_eager_int8_model():
    import dataclasses

    from moxin.model import build, preset
    from moxin.serve.quant import quantize_int8

    qmodel, head = quantize_int8(build(dataclasses.replace(preset("llama-tiny"), init_std=0.2), seed=3).eval())
    decoder = fast.Decoder.build(qmodel, head)
    assert decoder is not None and decoder.scales[0].dtype == torch.bfloat16 and decoder.head_scales.numel() > 0
    diffs, same, _, _ = _step_both(qmodel, head, decoder, steps=16)
    assert all(same)
    assert max(diffs) < 1e-2, diffs  # one bf16 rounding step of the logits at most


@needs_kernels
def test_engine_uses_the_fused_step_and_keeps_greedy_output():
    from moxin.model import generate
    from moxin.serve.engine import Engine, SamplingParams

    model = _bf16_model("llama-tiny", seed=11)
    engine, plain = Engine(model, None, max_batch=4, gather_s=0.05), Engine(model, None, fast_decode=False)
    try:
        assert engine.decoder is not None and plain.decoder is None
        calls = []
        step = engine.decoder.step
        engine.decoder.step = lambda *a: calls.append(1) or step(*a)  # type: ignore[method-assign]
        prompts = [[5, 9, 2], [7, 1, 1, 4, 8, 30], [100]]
        for p in prompts:
            ref = generate(model, torch.tensor([p]), 20)[0, len(p):].tolist()
            assert engine.generate(p, SamplingParams(max_tokens=20, ignore_eos=True)).token_ids == ref
            assert plain.generate(p, SamplingParams(max_tokens=20, ignore_eos=True)).token_ids == ref
        assert len(calls) >= 3 * 19
    finally:
        engine.close()
        plain.close()


def test_decoder_declines_what_it_cannot_run(monkeypatch):
    from moxin.model import build, preset

    assert fast.Decoder.build(build(preset("tiny"), seed=0).eval()) is None  # fp32: the eager path serves
    monkeypatch.setattr(fast, "_kernels", {"error": "this CPU lacks avx512_bf16"})
    assert fast.Decoder.build(_bf16_model("tiny")) is None
    assert fast.kernels_error() == "this CPU lacks avx512_bf16"


def test_decoder_times_both_thread_counts_and_keeps_the_faster(monkeypatch):
    dec = fast.Decoder.__new__(fast.Decoder)
    dec.steps, dec.step_s = 1, {}
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert dec.threads(1) == 2  # neither timed yet: all threads first
    dec.step_s[(1, 2)] = 0.5
    assert dec.threads(1) == 1  # then one thread
    dec.step_s[(1, 1)] = 0.1
    assert dec.threads(1) == 1 and dec.threads(8) == 2  # the faster one, per batch size
    dec.steps = fast.Decoder.EXPLORE
    assert dec.threads(1) == 2  # now and then the slower one again, in case the load changed
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert dec.threads(1) == 1
