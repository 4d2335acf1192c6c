"""Exact dedup (SHA-256 of the normalised text) and fuzzy dedup (MinHash over unit 5-gram shingles, MinHash-LSH
from `datasketch` to find candidates, kept only if the estimated Jaccard reaches the threshold).

Order matters and is fixed: a document is a duplicate of an *earlier* kept document (sources in recipe order,
records in file order), so the first copy survives and runs are deterministic. Memory: one hash per document for
exact dedup, one signature (num_perm × 8 bytes) plus LSH buckets per kept document for fuzzy dedup."""

from __future__ import annotations

import numpy as np

from moxin.data.text import ngram_hashes

SHINGLE = 5
_MERSENNE = np.uint64((1 << 61) - 1)
_MAX_HASH = np.uint64((1 << 32) - 1)
_BLOCK = 4096  # shingles per block: bounds the (block, num_perm) temporary


class MinHasher:
    """MinHash signatures computed with numpy, with datasketch's "legacy" (universal hashing mod 2^61-1)
    permutations."""

    def __init__(self, num_perm: int = 128, seed: int = 1) -> None:
        a, b = _minhash(num_perm=num_perm, seed=seed).permutations
        self.a, self.b, self.num_perm, self.seed = a.astype(np.uint64), b.astype(np.uint64), num_perm, seed

    def signature(self, uh: np.ndarray) -> np.ndarray | None:
        """uh: (L,) unit hashes → (num_perm,) uint64, or None for an empty document."""
        if len(uh) == 0:
            return None
        shingles = np.unique(ngram_hashes(uh, min(SHINGLE, len(uh))) & _MAX_HASH)  # (S,) 32-bit
        sig = np.full(self.num_perm, _MAX_HASH, dtype=np.uint64)
        with np.errstate(over="ignore"):
            for i in range(0, len(shingles), _BLOCK):
                hv = shingles[i : i + _BLOCK, None]  # (B, 1)
                phv = ((hv * self.a[None, :] + self.b[None, :]) % _MERSENNE) & _MAX_HASH  # (B, num_perm)
                np.minimum(sig, phv.min(axis=0), out=sig)
        return sig


class FuzzyIndex:
    """Insert-or-report: `seen(key, sig)` returns the key of an earlier near-duplicate, or inserts and returns None."""

    def __init__(self, threshold: float, num_perm: int, seed: int = 1) -> None:
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.threshold, self.num_perm, self.seed = threshold, num_perm, seed
        self.sigs: dict[str, np.ndarray] = {}

    def seen(self, key: str, sig: np.ndarray) -> tuple[str, float] | None:
        m = _minhash(num_perm=self.num_perm, seed=self.seed, hashvalues=sig)
        best = None
        for other in sorted(self.lsh.query(m)):  # sorted: the reported match is deterministic
            j = float(np.mean(self.sigs[other] == sig))
            if j >= self.threshold and (best is None or j > best[1]):
                best = (other, j)
        if best is None:
            self.lsh.insert(key, m)
            self.sigs[key] = sig
        return best


def _minhash(**kw):
    """datasketch >= 2 needs the permutation scheme named; 1.x only has this one ("legacy")."""
    from datasketch import MinHash

    try:
        return MinHash(scheme="legacy", **kw)
    except TypeError:
        return MinHash(**kw)


def jaccard(a: set, b: set) -> float:
    return len(a & b) / max(len(a | b), 1)
