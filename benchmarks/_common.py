"""Helpers shared by the benchmarks: timing that survives a shared machine, and the outside CPU load."""

from __future__ import annotations

import os
import time
from typing import Callable


def cpu_load() -> dict:
    """1-minute load average and cores: on a shared 2-core machine every figure is read against it."""
    try:
        load1 = os.getloadavg()[0]
    except OSError:
        load1 = None
    return {"loadavg_1m": load1, "cores": os.cpu_count()}


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo): GEMM libraries differ by vendor, so every figure is read against it."""
    try:
        lines = open("/proc/cpuinfo", encoding="utf-8").read().splitlines()
    except OSError:
        return "unknown"
    names = [ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")]
    return names[0] if names else "unknown"


def best_of(fns: dict[str, Callable[[], object]], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Run each function `warmup` times, then alternate them `repeats` times; return each one's best seconds.

    Alternating exposes both to the same outside load; the minimum is the least disturbed run."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    best = {k: float("inf") for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t)
    return best
