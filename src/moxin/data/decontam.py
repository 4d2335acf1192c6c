"""Decontamination: 13-gram (of units: words, or CJK characters) overlap between training documents and the
evaluation sets named in the recipe. Each eval set becomes a sorted array of n-gram hashes with the item each
came from, so a document is checked with one vectorised `searchsorted` per set (about 16 bytes per eval n-gram,
no Python sets of strings). Items shorter than n units cannot be matched and are counted as such."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from moxin.data.config import EvalSetConfig
from moxin.data.text import UnitHasher, ngram_hashes, units
from moxin.errors import DataError
from moxin.io import read_jsonl


@dataclass
class EvalIndex:
    name: str
    path: str
    items: int
    too_short: int
    hashes: np.ndarray  # (G,) uint64 sorted n-gram hashes
    item_of: np.ndarray  # (G,) int32 item index of each hash

    def matches(self, g: np.ndarray) -> np.ndarray:
        """Item indices (unique, sorted) hit by a document's n-gram hashes g: (M,) uint64."""
        if len(g) == 0 or len(self.hashes) == 0:
            return np.empty(0, dtype=np.int32)
        pos = np.searchsorted(self.hashes, g)
        pos[pos >= len(self.hashes)] = 0
        hit = self.hashes[pos] == g
        if not hit.any():
            return np.empty(0, dtype=np.int32)
        # every item sharing a hit hash: hashes are sorted, so equal ones are adjacent
        hv = np.unique(g[hit])
        lo = np.searchsorted(self.hashes, hv, side="left")
        hi = np.searchsorted(self.hashes, hv, side="right")
        return np.unique(np.concatenate([self.item_of[a:b] for a, b in zip(lo, hi)]))


def item_texts(rec: dict, fields: list[str]) -> list[str]:
    """What a model sees of one item: the scalar fields joined, followed by each choice of a list field
    (HellaSwag ctx + each ending, ARC question + each choice), one text per choice."""
    prefix: list[str] = []
    choices: list[str] = []
    for f in fields:
        v = rec.get(f)
        if isinstance(v, dict):  # ARC's choices {text: [...], label: [...]}
            v = v.get("text", [])
        if isinstance(v, list):
            choices.extend(str(x) for x in v)
        elif v is not None:
            prefix.append(str(v))
    head = " ".join(prefix)
    return [f"{head} {c}" for c in choices] if choices else [head]


def build_index(cfg: EvalSetConfig, n: int, hasher: UnitHasher, where: str = "data.decontaminate") -> EvalIndex:
    path = Path(cfg.path)
    if not path.is_file():
        raise DataError(f"{where}: eval set {cfg.name!r} path {cfg.path!r} does not exist; fix its path")
    hashes, owners = [], []
    items = too_short = 0
    for _, rec in read_jsonl(path, DataError, what=f"eval set {cfg.name!r}"):
        g = np.unique(np.concatenate([ngram_hashes(hasher(units(t)), n) for t in item_texts(rec, cfg.fields)]))
        if len(g) == 0:
            too_short += 1
        hashes.append(g)
        owners.append(np.full(len(g), items, dtype=np.int32))
        items += 1
    if not items:
        raise DataError(f"{where}: eval set {cfg.name!r} ({path}) has no items")
    h = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    o = np.concatenate(owners) if owners else np.empty(0, np.int32)
    order = np.argsort(h, kind="stable")
    return EvalIndex(cfg.name, str(path), items, too_short, h[order], o[order])
