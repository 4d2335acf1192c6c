"""The engine: batched decoding equals single-sequence decoding, stop sequences, penalties, seeds, streaming text."""

import threading
import time

import pytest
import torch
from serve_toy import toy, toy_ckpt  # noqa: F401  (fixtures)

from moxin.model import generate
from moxin.serve.engine import Completion, Engine, SamplingParams, ServeError
from moxin.serve.text import TextTracker


@pytest.fixture(scope="module")
def engine(toy):
    model, tok = toy
    eng = Engine(model, tok, max_batch=8, gather_s=0.05)
    yield eng
    eng.close()


def _prompts(tok, n):
    texts = ["hello world", "open data モデル", "train", "serve token chat 12", "東京", "moxin model open data train",
             "chat", "world hello world hello"]
    return [tok.encode(t) for t in texts[:n]]


def test_concurrent_requests_are_batched_and_equal_single_greedy(toy, engine):
    model, tok = toy
    prompts = _prompts(tok, 8)
    lens = [5 + 3 * i for i in range(8)]  # rows finish at different steps and leave the batch
    results: list[Completion | None] = [None] * 8
    params = [SamplingParams(max_tokens=n, ignore_eos=True) for n in lens]

    def worker(i):
        results[i] = engine.generate(prompts[i], params[i])

    before = len(engine.batches)
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert max(engine.batches[before:]) > 1  # they really shared a batch
    for i, r in enumerate(results):
        ref = generate(model, torch.tensor([prompts[i]]), lens[i])[0, len(prompts[i]):].tolist()
        assert r.token_ids == ref, i
        assert r.finish_reason == "length" and r.prompt_tokens == len(prompts[i])
        assert r.text == tok.decode(ref, skip_special_tokens=True, clean_up_tokenization_spaces=False)


@pytest.mark.parametrize("preset_name", ["tiny", "llama-tiny"])  # rolling buffer (window 16) and full attention
def test_requests_join_a_running_batch(preset_name):
    import dataclasses

    from moxin.model import build, preset

    model = build(dataclasses.replace(preset(preset_name), init_std=0.2), seed=7).eval()
    engine = Engine(model, None, max_batch=4, gather_s=0.0, join_headroom=64)
    try:
        g = torch.Generator().manual_seed(3)
        first = torch.randint(0, 512, (12,), generator=g).tolist()
        later = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (3, 9, 30, 5)]  # 30: too long to join
        q = __import__("queue").Queue()
        engine.submit(first, SamplingParams(max_tokens=200, ignore_eos=True), q.put)  # decodes while others come
        while not engine.batches:
            time.sleep(0.001)
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, engine.generate(later[i], SamplingParams(max_tokens=10 + i, ignore_eos=True)))) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        assert engine.joined >= 1 and max(engine.batches) > 1
        assert isinstance(q.get(timeout=60), Completion)
        for i, p in enumerate(later):
            ref = generate(model, torch.tensor([p]), 10 + i)[0, len(p):].tolist()
            assert results[i].token_ids == ref, i
    finally:
        engine.close()


def test_stop_sequence_and_streaming_text(toy, engine):
    model, tok = toy
    prompt = tok.encode("hello world")
    free = engine.generate(prompt, SamplingParams(max_tokens=24, ignore_eos=True))
    assert len(free.text) > 6
    stop = free.text[3:6]
    first = free.text.find(stop)
    pieces = list(engine.stream(prompt, SamplingParams(max_tokens=24, ignore_eos=True, stop=[stop])))
    done = pieces[-1]
    assert isinstance(done, Completion) and done.finish_reason == "stop"
    assert done.text == free.text[:first]
    assert "".join(pieces[:-1]) == done.text  # the stop sequence itself is never streamed


def test_eos_ends_a_row(toy, engine):
    model, tok = toy
    prompt = tok.encode("open data")
    free = engine.generate(prompt, SamplingParams(max_tokens=12, ignore_eos=True))
    third = free.token_ids[2]
    out = engine.generate(prompt, SamplingParams(max_tokens=12, stop_token_ids=[third]))
    k = free.token_ids.index(third)
    assert out.finish_reason == "stop" and out.token_ids == free.token_ids[:k]


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's byte → printable character table (the alphabet of byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def test_multibyte_character_is_never_split(toy):
    _, tok = toy
    table, vocab = _byte_to_unicode(), tok.get_vocab()
    text = "a東京b"
    ids = [vocab[table[b]] for b in text.encode("utf-8")]  # one token per byte: 東 and 京 take 3 tokens each
    tracker = TextTracker(tok, stop=["b"])
    deltas = [tracker.push(i)[0] for i in ids[:-1]]
    assert deltas == ["a", "", "", "東", "", "", "京"]
    assert tracker.push(ids[-1]) == ("", True) and tracker.text == "a東京"
    held = TextTracker(tok, stop=["京都"])  # a possible stop sequence is held back until it is ruled out
    out = [held.push(i)[0] for i in ids]
    assert out == ["a", "", "", "東", "", "", "", "京b"]


def test_repetition_penalty_matches_transformers_processor(toy, engine):
    from transformers.generation.logits_process import RepetitionPenaltyLogitsProcessor

    model, tok = toy
    prompt = tok.encode("hello world hello")
    n = 30
    params = SamplingParams(max_tokens=n, repetition_penalty=5.0, ignore_eos=True)
    out = engine.generate(prompt, params)
    proc = RepetitionPenaltyLogitsProcessor(5.0)
    ids = torch.tensor([prompt])
    with torch.no_grad():
        for _ in range(n):
            scores = proc(ids, model(ids)[:, -1].float())
            ids = torch.cat([ids, scores.argmax(-1, keepdim=True)], 1)
    assert out.token_ids == ids[0, len(prompt):].tolist()
    plain = engine.generate(prompt, SamplingParams(max_tokens=n, ignore_eos=True))
    assert plain.token_ids != out.token_ids
    assert len(set(out.token_ids)) > len(set(plain.token_ids))  # fewer repeats


def test_seeded_sampling_is_reproducible_alone_or_batched(toy, engine):
    model, tok = toy
    prompts = _prompts(tok, 4)
    p = SamplingParams(max_tokens=15, temperature=0.9, top_k=50, top_p=0.95, seed=11, ignore_eos=True)
    alone = engine.generate(prompts[0], p)
    out: dict[int, Completion] = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, engine.generate(prompts[i], p)))
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert out[0].token_ids == alone.token_ids
    other = engine.generate(prompts[0], SamplingParams(max_tokens=15, temperature=0.9, seed=12, ignore_eos=True))
    assert other.token_ids != alone.token_ids


def test_cancelled_stream_frees_the_engine(toy, engine):
    model, tok = toy
    it = engine.stream(tok.encode("chat"), SamplingParams(max_tokens=200, ignore_eos=True))
    next(it)
    it.close()  # cancels the request
    r = engine.generate(tok.encode("chat"), SamplingParams(max_tokens=3, ignore_eos=True))
    assert r.completion_tokens == 3


def test_invalid_requests_raise(toy, engine):
    model, tok = toy
    with pytest.raises(ServeError, match="maximum context length is 256"):
        engine.submit(list(range(250)), SamplingParams(max_tokens=10), lambda e: None)
    with pytest.raises(ServeError, match="empty"):
        engine.submit([], SamplingParams(), lambda e: None)
    with pytest.raises(ServeError, match="outside the vocabulary"):
        engine.submit([600], SamplingParams(), lambda e: None)


@pytest.mark.parametrize("preset_name", ["tiny", "llama-tiny"])  # rolling buffer (window 16) and full attention
def test_bf16_engine_with_fused_decode_batches_joins_and_equals_single_greedy(preset_name):
    import dataclasses

    from moxin.model import build, fast, preset

    if fast.kernels() is None:
        pytest.skip(f"no fused decode kernels: {fast.kernels_error()}")
    model = build(dataclasses.replace(preset(preset_name), init_std=0.2), seed=5).to(torch.bfloat16).eval()
    model.reset_rope()
    engine = Engine(model, None, max_batch=4, gather_s=0.0, join_headroom=64)
    try:
        assert engine.decoder is not None
        g = torch.Generator().manual_seed(4)
        first = torch.randint(0, 512, (12,), generator=g).tolist()
        later = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (3, 9, 5)]
        q = __import__("queue").Queue()
        engine.submit(first, SamplingParams(max_tokens=120, ignore_eos=True), q.put)
        while not engine.batches:
            time.sleep(0.001)
        results = {}
        threads = [threading.Thread(target=lambda i=i: results.__setitem__(
            i, engine.generate(later[i], SamplingParams(max_tokens=8 + 3 * i, ignore_eos=True)))) for i in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert max(engine.batches) > 1
        done = q.get(timeout=120)
        # Each request alone through the same engine (batch 1): the fused step gives every row the same result
        # whatever else is in the batch. (Against the eager model, whose bf16 logits tie where the fused step's
        # fp32 logits do not, see tests/model/test_fast.py.)
        alone = engine.generate(first, SamplingParams(max_tokens=120, ignore_eos=True))
        assert engine.batches[-1] == 1
        assert done.token_ids == alone.token_ids
        assert done.token_ids[:40] == generate(model, torch.tensor([first]), 40)[0, 12:].tolist()
        for i, p in enumerate(later):
            assert results[i].token_ids == engine.generate(p, SamplingParams(max_tokens=8 + 3 * i,
                                                                             ignore_eos=True)).token_ids, i
    finally:
        engine.close()
