"""Mixture: turn per-source weights into a per-source token count for one training phase's budget.

`resolve_mixture(weights, available_tokens, budget_tokens, max_epochs)`:
1. each source's target share is weight / sum(weights) of the budget;
2. a source may be repeated at most `max_epochs[source]` times (default 4: repeated data loses value past ~4
   epochs, Muennighoff et al. 2023); what a capped source cannot supply is redistributed to the others in
   proportion to their weights (water-filling), repeated until nothing is left to move or every source is capped;
3. token counts are rounded down, and the rounding remainder goes to sources by largest fractional part (ties by
   name), so the counts add up to exactly min(budget, total capacity).
Pure arithmetic, no randomness: the same inputs give the same result in every process."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from moxin.errors import DataError


@dataclass(frozen=True)
class MixtureEntry:
    source: str
    weight: float
    available: int  # tokens in the source's train split
    tokens: int  # tokens to draw for this phase
    epochs: float  # tokens / available

    def as_dict(self) -> dict:
        return {
            "source": self.source,
            "weight": self.weight,
            "available": self.available,
            "tokens": self.tokens,
            "epochs": round(self.epochs, 6),
        }


def resolve_mixture(
    weights: dict[str, float],
    available_tokens: dict[str, int],
    budget_tokens: int,
    max_epochs: dict[str, float] | float = 4.0,
) -> dict[str, MixtureEntry]:
    """Per-source tokens and epochs for a phase (see the module docstring)."""
    names = sorted(weights)
    missing = [n for n in names if n not in available_tokens]
    if missing:
        raise DataError(
            f"mixture: source {missing[0]!r} has a weight but no tokenized data; "
            f"available: {', '.join(sorted(available_tokens))}"
        )
    if budget_tokens < 0 or any(weights[n] < 0 for n in names) or not any(weights[n] > 0 for n in names):
        raise DataError(
            f"mixture: need budget >= 0 and at least one positive weight, got budget {budget_tokens}, weights {weights}"
        )
    cap = {
        n: available_tokens[n] * (max_epochs.get(n, 4.0) if isinstance(max_epochs, dict) else max_epochs) for n in names
    }
    alloc = _water_fill(names, weights, cap, float(budget_tokens))
    tokens = _round(alloc, names, min(budget_tokens, int(sum(math.floor(cap[n]) for n in names))), cap)
    return {
        n: MixtureEntry(
            n,
            weights[n],
            available_tokens[n],
            tokens[n],
            tokens[n] / available_tokens[n] if available_tokens[n] else 0.0,
        )
        for n in names
    }


def _water_fill(names: list[str], weights: dict[str, float], cap: dict[str, float], budget: float) -> dict[str, float]:
    alloc = dict.fromkeys(names, 0.0)
    open_ = [n for n in names if weights[n] > 0 and cap[n] > 0]
    left = budget
    while left > 1e-9 and open_:
        wsum = sum(weights[n] for n in open_)
        want = {n: left * weights[n] / wsum for n in open_}
        capped = [n for n in open_ if alloc[n] + want[n] >= cap[n]]
        if not capped:
            for n in open_:
                alloc[n] += want[n]
            break
        for n in capped:
            left -= cap[n] - alloc[n]
            alloc[n] = cap[n]
        open_ = [n for n in open_ if n not in capped]
    return alloc


def _round(alloc: dict[str, float], names: list[str], total: int, cap: dict[str, float]) -> dict[str, int]:
    out = {n: math.floor(alloc[n]) for n in names}
    rest = total - sum(out.values())
    order = sorted(names, key=lambda n: (-(alloc[n] - out[n]), n))
    for n in order:
        if rest <= 0:
            break
        if out[n] + 1 <= cap[n] and alloc[n] > 0:
            out[n] += 1
            rest -= 1
    return out


def mixture_for(data_dir: str | Path, budget_tokens: int) -> dict[str, MixtureEntry]:
    """The recipe's per-source weights and epoch caps, as recorded in `<data>/manifest.json`, resolved against
    the train tokens on disk: what a training phase of `budget_tokens` should draw from each source."""
    from moxin.data.tokens import TokenData

    data_dir = Path(data_dir)
    try:
        manifest = json.loads((data_dir / "manifest.json").read_text("utf-8"))
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"{data_dir / 'manifest.json'} is missing or unreadable ({e}); run `moxin data`") from None
    td = TokenData(data_dir)
    default = manifest["config"].get("max_epochs", 4.0)
    sources = [s for s in manifest["sources"] if s["name"] in td.sources]
    return resolve_mixture(
        {s["name"]: float(s["weight"]) for s in sources},
        {s["name"]: td.length(s["name"], "train") for s in sources},
        budget_tokens,
        {s["name"]: float(s["epochs"] or default) for s in sources},
    )
