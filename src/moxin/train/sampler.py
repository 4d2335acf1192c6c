"""Deterministic, resumable sample order over tokenized data.

The global batch of step t is a pure function of (data fingerprint, seed, phase, t): nothing is carried from one
step to the next, so resuming at any step, changing the world size or the number of data workers cannot change what
a step sees. Rank r of W takes the contiguous slice [r·B/W, (r+1)·B/W) of the global batch.

How a step's B samples are chosen:
1. The phase mixture gives each source a fixed quota per step (largest-remainder apportionment of B by weight;
   the effective weights are these quotas / B, recorded in run.json).
2. The j-th sample ever drawn from source s in a phase is window π_e(j mod n_s) of that source, where
   e = j div n_s is the epoch, n_s the number of windows, and π_e a keyed pseudo-random permutation (a Feistel
   network with cycle walking: O(1) memory at any corpus size). Window k is tokens [k·L, k·L + L + 1), so every
   token is seen once per epoch of its source.
3. The slots of a step are shuffled (keyed by the step) so that every rank sees the mixture.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from moxin.data.tokens import DocSpan, TokenData
from moxin.errors import ConfigError, DataError
from moxin.train.schedule import PhaseSpan

_M64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def resolve_weights(mixture: dict[str, float], available: dict[str, int], budget_tokens: int) -> dict[str, float]:
    """Normalised source weights for a phase, from the data stage's `moxin.data.mixture.resolve_mixture` (an empty
    mixture weighs every source in proportion to its size)."""
    from moxin.data.mixture import resolve_mixture

    # The data stage allots tokens per source (weights, capped epochs, water-filling); use them as weights.
    got = resolve_mixture(dict(mixture) or {s: float(n) for s, n in available.items()}, available, budget_tokens)
    weights = {str(k): float(v.tokens) for k, v in got.items()}
    total = sum(weights.values())
    return {s: w / total for s, w in sorted(weights.items()) if w > 0}


def quotas(weights: dict[str, float], batch: int) -> dict[str, int]:
    """Largest-remainder apportionment of `batch` samples; ties broken by name (deterministic)."""
    raw = {s: w * batch for s, w in weights.items()}
    q = {s: math.floor(v) for s, v in raw.items()}
    left = batch - sum(q.values())
    for s in sorted(raw, key=lambda s: (-(raw[s] - q[s]), s))[:left]:
        q[s] += 1
    return q


def _key_words(*parts: object) -> np.ndarray:
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return np.frombuffer(digest, dtype="<u8").astype(np.uint64)  # 4 round keys


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser (uint64 arithmetic wraps on purpose)."""
    with np.errstate(over="ignore"):
        x = (x + np.uint64(0x9E3779B97F4A7C15)) & _M64
        x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _M64
        x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _M64
        return x ^ (x >> np.uint64(31))


def permute(idx: np.ndarray, n: int, keys: np.ndarray) -> np.ndarray:
    """A keyed bijection of [0, n) applied to `idx` (Feistel on the next even power of two, cycle walking)."""
    half = max(1, (max(n - 1, 1).bit_length() + 1) // 2)
    mask = np.uint64((1 << half) - 1)
    x = idx.astype(np.uint64)
    todo = np.ones(len(x), dtype=bool)
    while todo.any():
        v = x[todo]
        left, right = v >> np.uint64(half), v & mask
        for k in keys:
            left, right = right, left ^ (_mix(right ^ k) & mask)
        v = (left << np.uint64(half)) | right
        x[todo] = v
        todo[todo] = v >= np.uint64(n)  # outside [0, n): walk the cycle again
    return x.astype(np.int64)


@dataclass(frozen=True)
class Sample:
    source: str
    split: str
    offset: int  # first token within the source split
    length: int  # seq_len + 1 (inputs and shifted targets)


class MixtureSampler:
    """The pretraining batch source: `samples(step)` (global batch), `batch(step, rank, world)` (token tensors)."""

    def __init__(self, data: TokenData, spans: list[PhaseSpan], seed: int) -> None:
        self.data, self.spans, self.seed = data, spans, seed
        self.fingerprint = data.fingerprint
        self.plans = [self._plan(span) for span in spans]

    def _plan(self, span: PhaseSpan) -> dict:
        p, L = span.cfg, span.cfg.seq_len
        missing = [s for s in p.mixture if s not in self.data.sources]
        if missing:
            raise ConfigError(
                f"pretrain phase {p.name!r}: mixture source {missing[0]!r} is not in "
                f"{self.data.folder}/tokens.json (it has {', '.join(self.data.sources)})"
            )
        avail = {
            s: self.data.length(s, p.split)
            for s in self.data.sources
            if (not p.mixture or s in p.mixture) and p.split in self.data.splits(s)
        }
        weights = resolve_weights(
            {s: w for s, w in p.mixture.items() if s in avail}, avail, span.steps * span.tokens_per_step
        )
        q = quotas(weights, span.global_batch)
        starved = [s for s, w in weights.items() if w > 0 and q[s] == 0]
        if starved:
            raise ConfigError(
                f"pretrain phase {p.name!r}: source {starved[0]!r} gets 0 of global_batch="
                f"{span.global_batch} samples per step; raise global_batch or its mixture weight"
            )
        windows = {}
        for s in q:
            windows[s] = (avail[s] - 1) // L
            if windows[s] < 1:
                raise DataError(
                    f"source {s!r} ({p.split}) has {avail[s]} tokens, fewer than seq_len+1={L + 1} "
                    f"of phase {p.name!r}; lower seq_len or add data"
                )
        return {"quotas": {s: n for s, n in q.items() if n}, "windows": windows}

    def effective_mixture(self, phase: int) -> dict[str, float]:
        gb = self.spans[phase].global_batch
        return {s: n / gb for s, n in self.plans[phase]["quotas"].items()}

    def samples(self, step: int) -> list[Sample]:
        """The global batch of `step` (a pure function of fingerprint, seed, phase and step)."""
        span = next((s for s in self.spans if s.start <= step < s.end), None)
        if span is None:
            raise DataError(f"step {step} is outside the run's phases (0..{self.spans[-1].end - 1})")
        plan, t, L = self.plans[span.index], step - span.start, span.cfg.seq_len
        out: list[Sample] = []
        for s, q in plan["quotas"].items():
            n = plan["windows"][s]
            j = t * q + np.arange(q, dtype=np.int64)
            for epoch in np.unique(j // n):
                sel = j[j // n == epoch]
                keys = _key_words(self.fingerprint, self.seed, span.index, span.cfg.name, s, int(epoch))
                for k in permute(sel % n, n, keys):
                    out.append(Sample(s, span.cfg.split, int(k) * L, L + 1))
        order = permute(np.arange(len(out)), len(out), _key_words(self.fingerprint, self.seed, span.index, "slots", t))
        return [out[i] for i in order]

    def batch(self, step: int, rank: int = 0, world: int = 1):
        """int64 tensor (B/world, seq_len+1): this rank's slice of the global batch of `step`."""
        import torch

        samples = self.samples(step)
        if len(samples) % world:
            raise ConfigError(
                f"global_batch={len(samples)} is not divisible by the {world} processes; "
                f"set pretrain.global_batch to a multiple of the world size"
            )
        per = len(samples) // world
        mine = samples[rank * per : (rank + 1) * per]
        rows = [self.data.read(s.source, s.offset, s.length, s.split) for s in mine]
        return torch.from_numpy(np.stack(rows))

    def documents(self, step: int) -> list[tuple[Sample, list[DocSpan]]]:
        """For `show-batch`: each sample of the step with the documents its tokens come from."""
        return [(s, self.data.documents_in(s.source, s.offset, s.length, s.split)) for s in self.samples(step)]
