"""Offline language identification, no model files: Unicode-script ratios decide non-Latin languages (kana → ja,
Hangul → ko, Han without kana → zh, Cyrillic → ru, ...), small stop-word profiles decide among Latin-script
languages, and a line-shape score labels source code `code`. Honest limits: it cannot tell ru from uk/bg or
es from gl, and mixed documents get the majority label; the manifest records the label of every document."""

from __future__ import annotations

import re

import regex

SAMPLE = 20_000  # characters looked at: enough for a stable ratio, cheap on 1 MB books

SCRIPTS = [
    ("kana", r"[\p{Hiragana}\p{Katakana}]"),
    ("han", r"\p{Han}"),
    ("hangul", r"\p{Hangul}"),
    ("cyrillic", r"\p{Cyrillic}"),
    ("arabic", r"\p{Arabic}"),
    ("greek", r"\p{Greek}"),
    ("hebrew", r"\p{Hebrew}"),
    ("thai", r"\p{Thai}"),
    ("devanagari", r"\p{Devanagari}"),
    ("latin", r"\p{Latin}"),
]
_SCRIPT_RE = {name: regex.compile(p) for name, p in SCRIPTS}
SCRIPT_LANG = {
    "hangul": "ko",
    "cyrillic": "ru",
    "arabic": "ar",
    "greek": "el",
    "hebrew": "he",
    "thai": "th",
    "devanagari": "hi",
}

STOP_WORDS = {
    "en": "the of and to in is that it was for on as with he be by at his this not are from or have had but an "
    "they which you were her she all we been their has one there would will what so if when can no said who",
    "fr": "le la les de des du et est un une que qui dans pour pas sur au il elle ne se ce avec sont en par plus "
    "mais nous vous leur aux ont été cette comme",
    "de": "der die das und ist nicht ein eine zu den von mit sich des auf für im dem als auch es an wird aus er "
    "hat dass sie nach bei um noch wie über",
    "es": "el la los las de del y que en un una es por con para no se su al lo como más pero sus le ha me si "
    "sin sobre este ya entre cuando todo esta",
    "it": "il la le di che e un una per non in del della sono è si con da al ma come anche gli dei nel alla più "
    "questo ha ci",
    "pt": "o a os as de do da dos das e que em um uma para com não por se na no mais ao como mas foi ele ela "
    "são seu sua",
    "nl": "de het een en van is dat op te in niet zijn voor met die aan er ook als maar bij om dan zo nog wel "
    "naar deze",
}
STOP_SETS = {lang: frozenset(words.split()) for lang, words in STOP_WORDS.items()}
CJK_STOP = {"ja": "のにはをがでとたてしい", "zh": "的是了在不和有我这个", "ko": "이는을의에가로고다한"}

_WORD_RE = regex.compile(r"\p{L}+")
_CODE_LINE = re.compile(
    r"^\s*(def |class |import |from \S+ import|return\b|if .*:$|for .*:$|elif |else:|try:|"
    r"except|with .*:$|@\w|#include|function\b|var |let |const |public |private |\}|\{)"
    r"|[;{}]\s*$|\)\s*:\s*$|^\s*#|^\s*//|^\s*\w+(\.\w+)*\s*=[^=]"
)


def script_counts(text: str) -> dict[str, int]:
    sample = text[:SAMPLE]
    return {name: len(r.findall(sample)) for name, r in _SCRIPT_RE.items()}


def code_score(text: str) -> float:
    """Fraction of non-blank lines that look like program text (keywords, braces, assignments, comments)."""
    lines = [ln for ln in text[:SAMPLE].split("\n") if ln.strip()]
    if not lines:
        return 0.0
    return sum(1 for ln in lines if _CODE_LINE.search(ln)) / len(lines)


def latin_language(text: str) -> tuple[str, float]:
    words = [w.lower() for w in _WORD_RE.findall(text[:SAMPLE])]
    if not words:
        return "und", 0.0
    best, score = "und", 0.0
    for lang, stops in STOP_SETS.items():
        s = sum(1 for w in words if w in stops) / len(words)
        if s > score:
            best, score = lang, s
    return (best, score) if score >= 0.08 else ("und", score)


def identify(text: str, kind: str = "auto") -> str:
    """A language label: ISO 639-1 code, `code`, or `und` (undetermined)."""
    if kind == "code":
        return "code"
    counts = script_counts(text)
    letters = sum(counts.values())  # the script classes are disjoint
    if letters == 0:
        return "code" if kind == "auto" and code_score(text) >= 0.5 else "und"
    if kind == "auto" and code_score(text) >= 0.5:
        return "code"
    cjk = counts["kana"] + counts["han"]
    if counts["kana"] >= 0.05 * max(cjk, 1) and cjk >= 0.3 * letters:
        return "ja"
    if counts["hangul"] >= 0.3 * letters:
        return "ko"
    if counts["han"] >= 0.3 * letters:
        return "zh"
    top = max(SCRIPT_LANG, key=lambda s: counts[s])
    if counts[top] >= 0.5 * letters:
        return SCRIPT_LANG[top]
    return latin_language(text)[0]
