"""Paired bootstrap over items: both models answered the same items, so each resample draws item indices once and
scores both models on the same draw. The interval is on the difference of the aggregate metric (B − A), which is
far tighter than two independent intervals when the models agree on most items.

An aggregate is either the mean of per-item values (accuracy, exact match) or, for corpus metrics whose items are
(loglikelihood, bytes or words) pairs, the ratio of the sums (bits per byte, perplexity)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

RESAMPLES = 2000
SEED = 1234
LEVEL = 0.95


@dataclass(frozen=True)
class Delta:
    a: float
    b: float
    delta: float  # b − a
    low: float  # the interval on the delta
    high: float
    n: int  # paired items

    @property
    def significant(self) -> bool:
        """The interval excludes 0 (never with fewer than 2 items: resampling one item gives no interval)."""
        return self.n >= 2 and (self.low > 0 or self.high < 0)

    def record(self) -> dict[str, Any]:
        ci = [_r(self.low), _r(self.high)] if self.n >= 2 else None
        return {"a": _r(self.a), "b": _r(self.b), "delta": _r(self.delta), "ci95": ci, "n": self.n,
                "significant": self.significant}  # fmt: skip


def _r(x: float) -> float:
    return round(float(x), 6)


def aggregate(name: str, values: np.ndarray) -> np.ndarray:
    """The metric over the items of each row: values (R, N) of scalars, or (R, N, 2) of (loglik, count) pairs.
    Returns (R,)."""
    if values.ndim == 2:
        return values.mean(axis=-1)
    ll, n = values[..., 0].sum(axis=-1), values[..., 1].sum(axis=-1)
    per = -ll / np.maximum(n, 1e-12)
    base = name.split(",")[0]
    if base == "bits_per_byte":
        return per / math.log(2)
    if base.endswith("perplexity"):
        return np.exp(per)
    return ll / np.maximum(n, 1e-12)  # an unknown weighted metric: the weighted mean


def paired_bootstrap(name: str, a: list[Any], b: list[Any], resamples: int = RESAMPLES, seed: int = SEED) -> Delta:
    """B − A on one metric over paired items (a[i] and b[i] score the same item), with a percentile interval."""
    va, vb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if va.shape != vb.shape or len(va) == 0:
        raise ValueError(f"paired items must have one shape and at least one item, got {va.shape} and {vb.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(va), size=(resamples, len(va)))  # (R, N): one draw of items, used for both models
    diffs = aggregate(name, vb[idx]) - aggregate(name, va[idx])
    tail = (1 - LEVEL) / 2
    low, high = np.quantile(diffs, [tail, 1 - tail])
    full_a, full_b = float(aggregate(name, va[None])[0]), float(aggregate(name, vb[None])[0])
    return Delta(full_a, full_b, full_b - full_a, float(low), float(high), len(va))


def pair_items(items_a: list[dict[str, Any]], items_b: list[dict[str, Any]], metric: str) -> tuple[list, list, list]:
    """(doc_ids, a values, b values) of the items both sides scored on `metric`, by doc_id."""
    by_b = {i["doc_id"]: i for i in items_b if metric in i}
    ids = [i["doc_id"] for i in items_a if metric in i and i["doc_id"] in by_b]
    a = {i["doc_id"]: i[metric] for i in items_a if metric in i}
    return ids, [a[d] for d in ids], [by_b[d][metric] for d in ids]
