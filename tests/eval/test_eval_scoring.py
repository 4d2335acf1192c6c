"""Prefix-tree scoring (moxin.eval.scoring through MoxinLM) equals scoring each request alone in its own sequence:
shared contexts, continuations of different lengths, requests whose context ends inside another's continuation
(the tokenisation boundary), row splits, long requests in rows of their own, and a sliding window."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest
import torch
from evalfix import tiny_cfg


def _lm(window: int | None, **kw):
    from moxin.eval.adapter import MoxinLM
    from moxin.model.transformer import build

    model = build(tiny_cfg(window), seed=3)
    tok = SimpleNamespace(eos_token_id=0, bos_token_id=1, name_or_path="none")
    return MoxinLM(model=model, tokenizer=tok, show_progress=False, **kw)


def _alone(model, ctx: list[int], cont: list[int], L: int) -> tuple[float, bool]:
    full = (ctx + cont)[-(L + 1) :]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([full[:-1]])).float(), -1)[0, -len(cont) :]
    t = torch.tensor(cont)
    return float(logp.gather(1, t[:, None]).double().sum()), bool((logp.argmax(-1) == t).all())


def _requests(seed: int) -> list[tuple[None, list[int], list[int]]]:
    rng = random.Random(seed)
    word = lambda n: [rng.randrange(2, 2048) for _ in range(n)]
    reqs = []
    for _ in range(6):  # HellaSwag-like: one context, four endings of different lengths
        ctx = [1] + word(rng.randrange(3, 30))
        reqs += [(None, ctx, word(rng.randrange(1, 15))) for _ in range(4)]
    ctx = [1] + word(10)
    cont = word(6)
    reqs += [(None, ctx, cont), (None, ctx + cont[:2], cont[2:]), (None, ctx + cont[:5], cont[5:])]  # boundary
    reqs += [(None, ctx, cont[:3] + word(2)), (None, ctx, cont)]  # shared continuation prefix; a duplicate
    reqs += [(None, [1], word(40)), (None, [1] + word(600), word(3))]  # longer than a row; left truncation
    rng.shuffle(reqs)
    return reqs


@pytest.mark.parametrize("window", [None, 16])
@pytest.mark.parametrize(("row_tokens", "batch_size"), [(256, 32), (24, 3)])
def test_tree_scoring_equals_each_request_alone(window, row_tokens, batch_size):
    lm = _lm(window, row_tokens=row_tokens, batch_size=batch_size)
    reqs = _requests(seed=row_tokens + (window or 0))
    got = lm._loglikelihood_tokens(reqs)
    ref = [_alone(lm.model, ctx, cont, lm.max_length) for _, ctx, cont in reqs]
    worst = max(abs(g[0] - r[0]) for g, r in zip(got, ref, strict=True))
    assert worst < 1e-5, worst
    assert [g[1] for g in got] == [r[1] for r in ref]
    assert all(g[0] < 0 for g in got)


def test_greedy_flag_true_when_continuation_is_the_argmax():
    lm = _lm(None)
    ctx = [1, 5, 9, 13]
    cont = []
    with torch.no_grad():
        for _ in range(4):  # the model's own greedy continuation
            cont.append(int(lm.model(torch.tensor([ctx + cont]))[0, -1].argmax()))
    wrong = cont[:3] + [(cont[3] + 1) % 2048]
    (_, greedy), (_, other) = lm._loglikelihood_tokens([(None, ctx, cont), (None, ctx, wrong)])
    assert greedy and not other


def test_rows_share_prefixes_and_respect_width():
    from moxin.eval.scoring import batch_arrays, plan_rows

    seqs = [(1, 2, 3, 4), (1, 2, 3, 5, 6), (1, 2, 7), (9, 9, 9, 9, 9, 9, 9, 9, 9, 9)]
    rows = plan_rows(seqs, width=8)
    assert [r.tokens for r in rows] == [[1, 2, 3, 4, 5, 6, 7], [9] * 10]  # the long one alone, over the width
    row = rows[0]
    assert row.depth == [0, 1, 2, 3, 3, 4, 2]
    assert dict(row.requests) == {0: [0, 1, 2, 3], 1: [0, 1, 2, 4, 5], 2: [0, 1, 6]}
    _, pos, mask = batch_arrays(rows, window=None)
    m = mask[0, 0]
    assert m[5].nonzero()[0].tolist() == [0, 1, 2, 4, 5]  # node 6 (depth 4) sees its ancestors, not sibling 4
    assert m[6].nonzero()[0].tolist() == [0, 1, 6]
    assert m[8].nonzero()[0].tolist() == [8]  # padding sees only itself
    assert pos[1].tolist() == list(range(10))
    _, _, windowed = batch_arrays(rows, window=2)
    assert windowed[0, 0, 5].nonzero()[0].tolist() == [4, 5]


def test_empty_context_is_a_one_line_error():
    from moxin.errors import EvalError

    with pytest.raises(EvalError, match="empty context"):
        _lm(None)._loglikelihood_tokens([(None, [], [5, 6])])


def test_forward_in_pieces_gives_the_same_scores(monkeypatch):
    """A batch whose activations exceed PIECE_BYTES runs in pieces of rows (page faults of huge fresh blocks cost
    ~20% on the CPU); the scores are those of the one-piece forward."""
    from moxin.eval import scoring

    lm = _lm(16, row_tokens=24, batch_size=8)
    reqs = _requests(seed=5)
    whole = lm._loglikelihood_tokens(reqs)
    cfg, real, pieces = lm.model.cfg, scoring._tree_hidden, []
    monkeypatch.setattr(scoring, "PIECE_BYTES", 2 * 24 * max(cfg.ffn_dim, cfg.dim) * 4)  # 2 rows of 24 nodes
    monkeypatch.setattr(scoring, "_tree_hidden", lambda m, t, *a: pieces.append(t.shape[0]) or real(m, t, *a))
    split = lm._loglikelihood_tokens(reqs)
    assert pieces and max(pieces) <= 2 and sum(pieces) > 8, pieces  # several batches of up to 8 rows, 2 at a time
    assert max(abs(a[0] - b[0]) for a, b in zip(split, whole, strict=True)) < 1e-6
    assert [a[1] for a in split] == [b[1] for b in whole]
