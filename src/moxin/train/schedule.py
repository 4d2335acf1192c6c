"""Phases laid out on one global step counter, and the learning rate at any step.

Each phase owns a contiguous range of optimizer steps and its own LR segment (warmup, then cosine / WSD /
linear / constant). Phase transitions keep the optimizer and the step counter: only the LR segment, the sequence
length and the data mixture change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from moxin.train.config import PhaseConfig


@dataclass(frozen=True)
class PhaseSpan:
    index: int
    cfg: PhaseConfig
    start: int  # first global step of the phase
    steps: int
    global_batch: int
    peak_lr: float

    @property
    def end(self) -> int:  # one past the last step
        return self.start + self.steps

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch * self.cfg.seq_len


def layout(phases: list[PhaseConfig], global_batch: int, lr: float) -> list[PhaseSpan]:
    spans, start = [], 0
    for i, p in enumerate(phases):
        gb = p.global_batch or global_batch
        steps = p.steps if p.steps is not None else max(1, math.ceil((p.tokens or 0) / (gb * p.seq_len)))
        spans.append(PhaseSpan(i, p, start, steps, gb, p.lr if p.lr is not None else lr))
        start += steps
    return spans


def phase_at(spans: list[PhaseSpan], step: int) -> PhaseSpan:
    for s in spans:
        if s.start <= step < s.end:
            return s
    return spans[-1]


def lr_at(span: PhaseSpan, step: int) -> float:
    """LR of global `step` inside `span`: linear warmup to the peak, then the phase's decay shape."""
    p, t, n = span.cfg, step - span.start, span.steps
    peak, floor = span.peak_lr, span.peak_lr * p.min_lr_ratio
    if t < p.warmup_steps:
        return peak * (t + 1) / p.warmup_steps
    if p.schedule == "constant":
        return peak
    if p.schedule == "wsd":
        decay_steps = max(1, round(n * p.decay_fraction))
        d0 = n - decay_steps
        if t < d0:
            return peak
        frac = (t - d0 + 1) / decay_steps
        return peak + (floor - peak) * frac
    rest = max(1, n - p.warmup_steps)
    frac = min(1.0, (t - p.warmup_steps + 1) / rest)
    if p.schedule == "linear":
        return peak + (floor - peak) * frac
    return floor + (peak - floor) * 0.5 * (1.0 + math.cos(math.pi * frac))
