"""Quality filters, Gopher (Rae et al. 2021, appendix A) and C4 style, applied per language group:

- space-delimited languages: word count, mean word length, symbol/word ratio, bullet and ellipsis lines, words
  with letters, stop-word presence (where a profile exists), repeated lines/paragraphs, top and duplicated n-grams;
- ja / zh / ko: the same repetition rules on characters, a character minimum instead of a word minimum, and
  particle presence instead of stop words (word-length rules would reject every Japanese page);
- source code: only non-empty, no minified/generated lines, enough letters (prose rules would reject all code).

`check(...)` returns the name of the first failed rule (the drop reason) or None."""

from __future__ import annotations

import re

import numpy as np

from moxin.data.config import QualityConfig
from moxin.data.langid import CJK_STOP, STOP_SETS
from moxin.data.text import count_letters, dup_ngram_char_frac, ngram_hashes, top_ngram_char_frac

CJK_LANGS = ("ja", "zh", "ko")
_BULLET = re.compile(r"^\s*[•●‣◦▪\-*–]\s")
_LOREM = re.compile(r"lorem ipsum", re.I)
_JS = re.compile(r"javascript (must|needs to) be enabled|enable javascript", re.I)


def check(text: str, lang: str, uh: np.ndarray, ulens: np.ndarray, cfg: QualityConfig) -> str | None:
    """uh: (L,) unit hashes, ulens: (L,) unit lengths in characters (see moxin.data.text)."""
    if not cfg.enabled:
        return None
    if lang == "code":
        return _code(text, cfg)
    reason = _c4(text) or _lines(text, cfg)
    if reason:
        return reason
    if lang in CJK_LANGS:
        return _cjk(text, lang, cfg) or _repetition(uh, ulens, cfg, cjk=True)
    return _words(text, lang, cfg) or _repetition(uh, ulens, cfg, cjk=False)


def _code(text: str, cfg: QualityConfig) -> str | None:
    if len(text) < cfg.min_code_chars:
        return "code_too_short"
    if max((len(ln) for ln in text.split("\n")), default=0) > cfg.max_code_line_len:
        return "code_long_lines"
    if count_letters(text) < cfg.min_code_alpha * len(text):
        return "code_low_alpha"
    return None


def _c4(text: str) -> str | None:
    if _LOREM.search(text):
        return "c4_lorem_ipsum"
    if _JS.search(text):
        return "c4_javascript_notice"
    return None


def _lines(text: str, cfg: QualityConfig) -> str | None:
    lines = [ln.strip() for ln in text.split("\n") if ln.strip()]
    if not lines:
        return "empty"
    if sum(1 for ln in lines if _BULLET.match(ln)) > cfg.max_bullet_lines * len(lines):
        return "gopher_bullet_lines"
    if sum(1 for ln in lines if ln.endswith(("...", "…"))) > cfg.max_ellipsis_lines * len(lines):
        return "gopher_ellipsis_lines"
    # Section marks ("一", "＊", "* * *", "II.") repeat by design: they are not duplicated content.
    body = [ln for ln in lines if not _separator(ln)]
    if len(body) >= 4 and len(body) - len(set(body)) > cfg.max_dup_line_frac * len(body):
        return "gopher_dup_lines"
    paras = [p.strip() for p in text.split("\n\n") if p.strip() and not _separator(p.strip())]
    if len(paras) >= 4 and len(paras) - len(set(paras)) > cfg.max_dup_para_frac * len(paras):
        return "gopher_dup_paragraphs"
    return None


def _separator(line: str) -> bool:
    return len(line) <= 4 or not any(ch.isalnum() for ch in line)


def _words(text: str, lang: str, cfg: QualityConfig) -> str | None:
    words = text.split()
    n = len(words)
    if n < cfg.min_words:
        return "gopher_too_few_words"
    if n > cfg.max_words:
        return "gopher_too_many_words"
    mean = sum(len(w) for w in words) / n
    if not cfg.min_mean_word_len <= mean <= cfg.max_mean_word_len:
        return "gopher_mean_word_length"
    if (text.count("#") + text.count("...") + text.count("…")) > cfg.max_symbol_ratio * n:
        return "gopher_symbol_ratio"
    if sum(1 for w in words if any(c.isalpha() for c in w)) < cfg.min_alpha_words * n:
        return "gopher_alpha_words"
    stops = STOP_SETS.get(lang)
    if stops is not None:
        found = 0
        for w in words:
            if w.lower().strip(".,;:!?\"'()") in stops:
                found += 1
                if found >= cfg.min_stop_words:
                    break
        if found < cfg.min_stop_words:
            return "gopher_stop_words"
    return None


def _cjk(text: str, lang: str, cfg: QualityConfig) -> str | None:
    chars = sum(1 for ch in text if not ch.isspace())
    if chars < cfg.min_cjk_chars:
        return "cjk_too_few_chars"
    symbols = sum(1 for ch in text if ch in "#…")
    if symbols > cfg.max_symbol_ratio * chars / 2:  # ~2 characters per word in these scripts
        return "cjk_symbol_ratio"
    if sum(1 for p in CJK_STOP[lang] if p in text) < cfg.min_stop_words:
        return "cjk_no_particles"
    return None


def _repetition(uh: np.ndarray, ulens: np.ndarray, cfg: QualityConfig, cjk: bool) -> str | None:
    """Top 2/3/4-grams and duplicated 5..10-grams of units. For CJK a unit is one character, so the n-gram
    sizes are doubled (about two characters per word) to keep the rules' meaning."""
    scale = 2 if cjk else 1
    for n, limit in zip((2, 3, 4), cfg.max_top_ngram_frac):
        if top_ngram_char_frac(ngram_hashes(uh, n * scale), ulens, n * scale) > limit:
            return f"gopher_top_{n}gram"
    for n, limit in zip(range(5, 11), cfg.max_dup_ngram_frac):
        if dup_ngram_char_frac(ngram_hashes(uh, n * scale), ulens, n * scale) > limit:
            return f"gopher_dup_{n}gram"
    return None
