"""KVCache's batch-row edits (select_rows, append_row, blank) and the shared left_pad / next_token helpers: a cache
edited between steps gives the logits of recomputing each row from scratch (rolling buffer wrapped included)."""

import torch

from moxin.model import KVCache, Sampling, build, preset
from moxin.model.generate import filter_logits, left_pad, next_token


def _model():
    return build(preset("tiny"), seed=11).eval()  # sliding window 16: a cache of more slots rolls


def _recompute(model, seq: list[int]) -> torch.Tensor:
    """Logits (V,) of the last token of `seq`, by one full forward without a cache."""
    return model(torch.tensor([seq]))[0, -1]


def _step(model, cache, seqs: list[list[int]], toks: list[int]) -> torch.Tensor:
    """Append one token to every row (each at its own next position) → logits (B, V)."""
    pos = torch.tensor([[len(s)] for s in seqs])
    for s, t in zip(seqs, toks):
        s.append(t)
    return model(torch.tensor(toks)[:, None], positions=pos, cache=cache)[:, -1]


def _check(model, logits: torch.Tensor, seqs: list[list[int]]) -> None:
    for row, seq in enumerate(seqs):
        torch.testing.assert_close(logits[row], _recompute(model, seq), atol=2e-5, rtol=0)


@torch.no_grad()
def test_select_rows_drops_and_repeats_rows_like_recomputation():
    model = _model()
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 512, (n,), generator=g).tolist() for n in (20, 9, 13)]
    tokens, positions = left_pad(seqs)
    cache = KVCache.for_model(model, 3, 64)
    assert cache.rolling
    model(tokens, positions=positions, cache=cache)
    for k in range(5):  # past the window: the buffer wraps
        _step(model, cache, seqs, [k + 1, k + 2, k + 3])
    cache.select_rows(torch.tensor([2, 0]))  # row 1 finished; order changes
    seqs = [seqs[2], seqs[0]]
    assert cache.k.shape[1] == cache.v.shape[1] == cache.slot_pos.shape[0] == 2
    _check(model, _step(model, cache, seqs, [7, 8]), seqs)
    cache.select_rows(torch.tensor([1, 1, 0]))  # a repeated row: two continuations of one context
    seqs = [list(seqs[1]), list(seqs[1]), seqs[0]]
    logits = _step(model, cache, seqs, [30, 31, 32])
    _check(model, logits, seqs)
    assert not torch.equal(logits[0], logits[1])


@torch.no_grad()
def test_append_row_joins_a_newcomer_like_recomputation():
    model = _model()
    seqs = [list(range(40, 58)), list(range(100, 107))]  # 18 and 7 tokens
    tokens, positions = left_pad(seqs)
    cache = KVCache.for_model(model, 2, 64)
    model(tokens, positions=positions, cache=cache)
    _step(model, cache, seqs, [5, 6])  # 19 written: more than the 16 slots
    new = [list(range(200, 210)), list(range(300, 304))]  # newcomers, prefilled together without rolling buffer
    fresh = cache.blank(2, 10)
    assert not fresh.rolling and fresh.size == 10 and fresh.k.dtype == cache.k.dtype
    assert [fresh.k.shape[d] for d in (0, 2, 4)] == [cache.k.shape[d] for d in (0, 2, 4)]  # layers, heads, dim
    ntok, npos = left_pad(new)
    first = model(ntok, positions=npos, cache=fresh)[:, -1]
    _check(model, first, new)
    for i, seq in enumerate(new):
        cache.append_row(fresh, i, len(seq))
    seqs += new
    assert cache.slot_pos.shape[0] == 4
    for k in range(4):
        _check(model, _step(model, cache, seqs, [k + 60, k + 61, k + 62, k + 63]), seqs)


def test_append_row_refuses_a_row_longer_than_the_batch_so_far():
    cache = KVCache(1, 1, 1, 2, 8)
    cache.written = 3
    fresh = cache.blank(1, 8)
    fresh.written = 5
    try:
        cache.append_row(fresh, 0, 5)
    except Exception as e:
        assert type(e).__name__ == "ModelError" and "5 tokens" in str(e)
    else:
        raise AssertionError("append_row accepted 5 tokens into a cache with 3 written")


def test_update_and_commit_without_prepare_name_the_missing_call():
    import pytest

    from moxin.errors import ModelError

    cache = KVCache(1, 1, 1, 2, 8)
    with pytest.raises(ModelError, match=r"KVCache\.update\(\) called without a prepare\(\)"):
        cache.update(0, torch.zeros(1, 1, 1, 2), torch.zeros(1, 1, 1, 2))
    with pytest.raises(ModelError, match=r"KVCache\.commit\(\) called without a prepare\(\)"):
        cache.commit(torch.zeros(1, 1, dtype=torch.long))
    assert cache.written == 0


def test_left_pad_pads_left_with_position_minus_one():
    tokens, positions = left_pad([[5, 6, 7], [9]])
    assert tokens.tolist() == [[5, 6, 7], [0, 0, 9]]
    assert positions.tolist() == [[0, 1, 2], [-1, -1, 0]]
    tokens, positions = left_pad([[4]], 3)
    assert tokens.tolist() == [[0, 0, 4]] and positions.tolist() == [[-1, -1, 0]]


def test_next_token_greedy_and_sampled_match_their_definition():
    logits = torch.tensor([[0.1, 2.0, 1.0, -1.0], [3.0, 0.0, 2.9, 0.5]])
    assert next_token(logits, Sampling(), None).tolist() == [1, 0]
    s = Sampling(temperature=0.7, top_k=3, top_p=0.95)
    got = next_token(logits, s, torch.Generator().manual_seed(3))
    probs = filter_logits(logits / 0.7, 3, 0.95).softmax(-1)
    want = torch.multinomial(probs, 1, generator=torch.Generator().manual_seed(3)).squeeze(-1)
    assert got.tolist() == want.tolist()
    assert all(probs[r, t] > 0 for r, t in enumerate(got.tolist()))
