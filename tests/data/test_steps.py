"""The individual steps: language ID, per-language quality rules, PII masking, mixture arithmetic."""

from __future__ import annotations

import numpy as np
import pytest

from moxin.data import langid, pii
from moxin.data.config import QualityConfig
from moxin.data.mixture import resolve_mixture
from moxin.data.quality import check
from moxin.data.text import UnitHasher, normalize, units
from moxin.errors import DataError

EN = ("The committee met on Tuesday morning to review the budget for the coming year. Several members argued that "
      "the library should receive more money, because the number of visitors had doubled since the new reading room "
      "opened. Others pointed out that the roads in the northern district were in poor condition and needed repair "
      "before winter. After a long discussion, they agreed to split the remaining funds between both projects.")
FR = "Le petit prince est assis sur une pierre et il regarde le ciel pendant que les étoiles brillent dans la nuit."
DE = "Der alte Mann ging mit seinem Hund durch den Wald, und die Sonne schien auf die Bäume, als es Abend wurde."
JA = ("吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で"
      "ニャーニャー泣いていた事だけは記憶している。吾輩はここで始めて人間というものを見た。しかもあとで聞くと"
      "それは書生という人間中で一番獰悪な種族であったそうだ。この書生というのは時々我々を捕えて煮て食うという話である。")
ZH = "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？这是我们的老师在课堂上说的话。"
KO = "대한민국은 동아시아의 한반도 남부에 위치한 나라이다. 수도는 서울이며 인구는 약 오천만 명이다."
RU = "Все счастливые семьи похожи друг на друга, каждая несчастливая семья несчастлива по-своему."
CODE = "import os\n\n\ndef main(path):\n    for name in os.listdir(path):\n        print(name)\n    return 0\n"


def _check(text, lang, cfg=None):
    toks = units(text)
    return check(text, lang, UnitHasher()(toks), np.array([len(t) for t in toks]), cfg or QualityConfig())


@pytest.mark.parametrize("text,lang", [(EN, "en"), (FR, "fr"), (DE, "de"), (JA, "ja"), (ZH, "zh"), (KO, "ko"),
                                       (RU, "ru"), (CODE, "code")])
def test_language_identification(text, lang):
    assert langid.identify(text) == lang


def test_source_kind_code_wins_and_units_split_cjk():
    assert langid.identify("This docstring is English prose.", kind="code") == "code"
    assert units("Hello, 世界です") == ["hello", "世", "界", "で", "す"]


def test_quality_rules_are_per_language():
    assert _check(EN, "en") is None
    assert _check(JA, "ja") is None  # English word rules would reject it (one "word", no stop words)
    assert _check(JA, "en") == "gopher_too_few_words"
    assert _check(CODE * 3, "code") is None
    assert _check(CODE * 3, "en") is not None  # prose rules would drop code
    assert _check(" ".join(f"word{i}" for i in range(80)), "en") == "gopher_stop_words"
    assert _check(EN * 2, "en") == "gopher_dup_5gram"
    assert _check("the cat sat on the mat and it was fine. " * 3, "en") == "gopher_too_few_words"
    assert _check(EN + " lorem ipsum dolor sit amet", "en") == "c4_lorem_ipsum"
    assert _check("\n".join(["- " + EN[:60]] * 1 + ["- item %d of the list here" % i for i in range(40)]), "en") \
        == "gopher_bullet_lines"
    spam = " ".join(["buy cheap watches now"] * 40) + " " + EN
    assert _check(spam, "en").startswith("gopher_")
    assert _check("x = 1\n" + "a" * 2000 + "\n", "code") == "code_long_lines"
    assert _check("日本語" * 10, "ja") == "cjk_too_few_chars"


def test_normalize_is_conservative():
    assert normalize("a  \r\nb\u200b\n\n\n\n\nc\n") == "a\nb\n\n\nc\n"
    assert normalize("ｶﾀｶﾅ　全角") == "ｶﾀｶﾅ　全角"  # NFC, not NFKC: full-width forms stay
    assert normalize(CODE) == CODE


def test_pii_masks_and_keeps():
    text = ("Mail jane.doe@corp-mail.com or ops@example.com; call +44 20 7946 0958, (212) 555-0199, "
            "03-1234-5678; hosts 93.184.216.34, 10.0.0.1, 127.0.0.1, version 1.5.1.1, date 2024-07-16, "
            "2001:0db8:85a3:0000:0000:8a2e:0370:7334 and 2a00:1450:4001:0829:0000:0000:0000:200e.")
    out, counts = pii.mask(text)
    assert counts == {"email": 1, "phone": 3, "ip": 2}
    for kept in ("ops@example.com", "10.0.0.1", "127.0.0.1", "1.5.1.1", "2024-07-16", "2001:0db8"):
        assert kept in out
    for gone in ("jane.doe", "7946", "555-0199", "1234-5678", "93.184", "2a00:1450"):
        assert gone not in out


def test_mixture_weights_caps_and_rounding():
    got = resolve_mixture({"a": 3, "b": 1}, {"a": 1000, "b": 1000}, 800)
    assert (got["a"].tokens, got["b"].tokens) == (600, 200) and got["a"].epochs == 0.6
    # b may be repeated at most twice: what it cannot supply goes to a
    got = resolve_mixture({"a": 1, "b": 1}, {"a": 10_000, "b": 100}, 1000, max_epochs={"a": 4, "b": 2})
    assert (got["a"].tokens, got["b"].tokens) == (800, 200) and got["b"].epochs == 2.0
    # everything capped: the budget cannot be met, counts stop at the caps
    got = resolve_mixture({"a": 1, "b": 1}, {"a": 10, "b": 10}, 1000, max_epochs=1.5)
    assert (got["a"].tokens, got["b"].tokens) == (15, 15)
    # remainders go to the largest fractional parts, ties by name: the total is exact
    got = resolve_mixture({"a": 1, "b": 1, "c": 1}, {"a": 100, "b": 100, "c": 100}, 100)
    assert [got[k].tokens for k in "abc"] == [34, 33, 33]
    assert resolve_mixture({"a": 1, "b": 1, "c": 1}, {"a": 100, "b": 100, "c": 100}, 100) == got
    with pytest.raises(DataError, match="source 'z' has a weight but no tokenized data"):
        resolve_mixture({"z": 1}, {"a": 5}, 10)


def test_curated_source_skips_quality_rules_only(tmp_path):
    import json

    from moxin.data.config import DataConfig, SourceConfig
    from moxin.data.process import Processor

    f = tmp_path / "a.jsonl"
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in ["short note one", "short note two",
                                                                  "short note one", "mail: x.y@corp-mail.com"]))
    for flag, kept in ((True, 0), (False, 3)):
        cfg = DataConfig(sources=[SourceConfig(name="a", type="jsonl", license="MIT", path=str(f), quality=flag)],
                         workers=1)
        out = tmp_path / str(flag)
        out.mkdir()
        res = Processor(cfg, out).run()
        steps = {s["step"]: s for s in res.ledger.source_steps("a")}
        assert steps["decontaminate"]["docs_out"] == kept
        if not flag:  # dedup and PII still apply
            assert steps["dedup_exact"]["dropped"] == {"duplicate": 1} and steps["pii"]["modified"] == {"email": 1}


def test_section_marks_are_not_duplicate_paragraphs():
    from moxin.data.quality import _lines

    body = [f"第{i}章。" + "彼は町の外れにある古い家に住んでいた。"[i:] + str(i) * 3 for i in range(8)]
    text = "\n\n".join(x for i, b in enumerate(body) for x in ("＊", "一二三四五六七八"[i % 2], b))
    assert _lines(text, QualityConfig()) is None  # 14 repeated marks among 24 paragraphs: headings, not copies
    assert _lines("\n\n".join(body[:2] * 4), QualityConfig()) == "gopher_dup_lines"
