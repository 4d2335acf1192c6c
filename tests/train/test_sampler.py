"""The sample order: a pure function of (data fingerprint, seed, phase, step), independent of world size."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import one_thread, small_tokens  # noqa: F401 (fixture)

from moxin.data.tokens import TokenData
from moxin.errors import ConfigError
from moxin.train.config import PhaseConfig
from moxin.train.sampler import MixtureSampler, _key_words, permute, quotas
from moxin.train.schedule import layout, lr_at


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    return TokenData(small_tokens(tmp_path_factory.mktemp("tok") / "data"))


def _sampler(data, seed=7, batch=8, steps=50, seq=32, mixture=None):
    phases = [PhaseConfig(name="a", seq_len=seq, steps=steps, mixture=mixture or {"shakespeare": 0.75, "python": 0.25})]
    return MixtureSampler(data, layout(phases, batch, 1e-3), seed)


def test_permutation_is_a_bijection():
    for n in (1, 2, 3, 17, 1000, 4097):
        out = permute(np.arange(n), n, _key_words("k", n))
        assert sorted(out.tolist()) == list(range(n))
    a = permute(np.arange(1000), 1000, _key_words("a"))
    assert not np.array_equal(a, np.arange(1000))
    assert not np.array_equal(a, permute(np.arange(1000), 1000, _key_words("b")))


def test_quotas_largest_remainder():
    assert quotas({"a": 0.75, "b": 0.25}, 8) == {"a": 6, "b": 2}
    assert quotas({"a": 1 / 3, "b": 1 / 3, "c": 1 / 3}, 8) == {"a": 3, "b": 3, "c": 2}
    assert sum(quotas({"a": 0.5, "b": 0.3, "c": 0.2}, 7).values()) == 7


def test_pure_function_of_step(data):
    s1, s2 = _sampler(data), _sampler(data)
    assert s1.samples(17) == s2.samples(17)  # new instance, no history: same answer
    assert s1.samples(17) != s1.samples(18)
    assert _sampler(data, seed=8).samples(17) != s1.samples(17)
    b = s1.batch(17)
    assert b.shape == (8, 33) and b.dtype.is_floating_point is False


def test_world_size_slices_the_same_global_batch(data):
    s = _sampler(data)
    import torch

    whole = s.batch(5, 0, 1)
    for world in (2, 4):
        parts = [s.batch(5, r, world) for r in range(world)]
        assert torch.equal(torch.cat(parts), whole)
    with pytest.raises(ConfigError, match="multiple of the world size"):
        s.batch(5, 0, 3)


def test_every_window_once_per_epoch_and_mixture(data):
    s = _sampler(data, batch=8, steps=2000)
    n_py = s.plans[0]["windows"]["python"]
    q_py = s.plans[0]["quotas"]["python"]
    steps = n_py // q_py  # one epoch of the python source
    seen = [x.offset for t in range(steps) for x in s.samples(t) if x.source == "python"]
    assert len(seen) == len(set(seen)) == steps * q_py  # no repeats inside an epoch
    assert all(o % 32 == 0 for o in seen)
    counts = [sum(x.source == "shakespeare" for x in s.samples(t)) for t in range(20)]
    assert set(counts) == {s.plans[0]["quotas"]["shakespeare"]}  # the same quota in every step
    short = _sampler(data, batch=8, steps=50)  # a budget within every source's epoch cap: the recipe's weights
    assert short.effective_mixture(0) == {"python": 0.25, "shakespeare": 0.75}


def test_samples_match_the_documents_they_name(data):
    s = _sampler(data)
    for sample, docs in s.documents(3):
        toks = data.read(sample.source, sample.offset, sample.length, sample.split)
        covered = sum(min(d.end, sample.offset + sample.length) - max(d.start, sample.offset) for d in docs)
        assert covered == sample.length == len(toks)
        assert docs[0].start <= sample.offset < docs[0].end


def test_unknown_source_and_starved_source(data):
    with pytest.raises(ConfigError, match="'nope' is not in"):
        _sampler(data, mixture={"nope": 1.0})
    with pytest.raises(ConfigError, match="gets 0 of global_batch"):
        _sampler(data, batch=4, mixture={"shakespeare": 0.95, "python": 0.05})


def test_lr_segments():
    phases = [PhaseConfig(name="a", steps=10, warmup_steps=2, schedule="wsd", decay_fraction=0.2, min_lr_ratio=0.0),
              PhaseConfig(name="b", steps=10, schedule="cosine", lr=0.5, min_lr_ratio=0.1)]
    spans = layout(phases, 4, 1.0)
    a, b = spans
    assert [lr_at(a, t) for t in range(10)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.0]
    assert b.start == 10 and lr_at(b, 10) < 0.5 and abs(lr_at(b, 19) - 0.05) < 1e-12
    tok = layout([PhaseConfig(name="t", seq_len=16, tokens=1000)], 4, 1.0)[0]
    assert tok.steps == 16  # ceil(1000 / 64)
