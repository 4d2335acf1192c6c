"""Shared text primitives: normalisation, "units" (words for space-delimited text, single characters for
Chinese/Japanese/Korean), stable 64-bit unit hashes and vectorised n-gram hashes. Fuzzy dedup, decontamination and
the repetition filters all work on the same units, so Japanese is handled by the same code as English."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import regex
import xxhash

CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
UNIT_RE = regex.compile(rf"[{CJK}]|[^\W{CJK}]+")
_CTRL_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u200b\u200e\u200f\u2028\u2029\ufeff]")
_TRAIL_RE = re.compile(r"[ \t]+\n")
_BLANKS_RE = re.compile(r"\n{4,}")
_PRIME = np.uint64(1099511628211)  # FNV prime: a multiplier for the rolling n-gram hash


def normalize(text: str) -> str:
    """NFC (not NFKC: that would rewrite full-width Japanese forms and code), LF line ends, no control or
    zero-width characters, no trailing spaces, at most three consecutive newlines, no leading or trailing blank
    lines (one final newline is kept)."""
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.isascii() and not unicodedata.is_normalized("NFC", text):
        text = unicodedata.normalize("NFC", text)
    text = _CTRL_RE.sub("", text)
    if " \n" in text or "\t\n" in text:  # the regex is slow on indented code: run it only when needed
        text = _TRAIL_RE.sub("\n", text)
    text = _BLANKS_RE.sub("\n\n\n", text)
    end = "\n" if text.endswith("\n") else ""  # keep one final newline: files end with one
    return text.strip("\n").rstrip() + end


_ASCII_LETTERS = bytes(range(65, 91)) + bytes(range(97, 123))
_LETTER_RE = regex.compile(r"\p{L}")


def count_letters(text: str) -> int:
    """Letters in `text` (fast path for ASCII: bytes.translate deletes them in C)."""
    if text.isascii():
        b = text.encode("ascii")
        return len(b) - len(b.translate(None, _ASCII_LETTERS))
    return len(_LETTER_RE.findall(text))


def units(text: str) -> list[str]:
    """Lower-cased words, and each CJK character on its own."""
    return UNIT_RE.findall(text.lower())


class UnitHasher:
    """Stable xxhash64 per unit (same value in every process and run), memoised: words repeat a lot."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.cache: dict[str, int] = {}
        self.limit = limit

    def __call__(self, toks: list[str]) -> np.ndarray:
        cache, h = self.cache, xxhash.xxh64_intdigest
        if len(cache) > self.limit:
            cache.clear()
        out = np.empty(len(toks), dtype=np.uint64)  # (n_units,)
        for i, t in enumerate(toks):
            v = cache.get(t)
            if v is None:
                v = cache[t] = h(t.encode("utf-8"))
            out[i] = v
        return out


def ngram_hashes(h: np.ndarray, n: int) -> np.ndarray:
    """Rolling hash of every n consecutive units: (L,) uint64 → (L-n+1,) uint64 (empty when L < n)."""
    m = len(h) - n + 1
    if m <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = h[:m].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            acc = acc * _PRIME + h[k : k + m]  # wraps mod 2^64 by design
    return acc


def dup_ngram_char_frac(g: np.ndarray, lens: np.ndarray, n: int) -> float:
    """Gopher: fraction of unit characters inside n-grams that occur more than once. g: (L-n+1,), lens: (L,)."""
    if len(g) < 2:
        return 0.0
    _, inv, counts = np.unique(g, return_inverse=True, return_counts=True)
    dup = counts[inv] > 1  # (L-n+1,)
    if not dup.any():
        return 0.0
    covered = np.zeros(len(lens), dtype=bool)
    for k in range(n):
        covered[k : k + len(dup)] |= dup
    return float(lens[covered].sum() / max(lens.sum(), 1))


def top_ngram_char_frac(g: np.ndarray, lens: np.ndarray, n: int) -> float:
    """Gopher: characters in the most frequent n-gram (times its count) over all unit characters."""
    if len(g) < 2:
        return 0.0
    _, first, counts = np.unique(g, return_index=True, return_counts=True)
    i = int(np.argmax(counts))  # ties → smallest hash: deterministic
    if counts[i] < 2:
        return 0.0
    p = int(first[i])
    return float(lens[p : p + n].sum() * counts[i] / max(lens.sum(), 1))
