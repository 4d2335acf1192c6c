"""The own-eval set an adapt build generates from its held-out documents (`moxin.adapt.heldout.cloze_items`), and
the licence an own evaluation set carries into its generated task folder."""

from __future__ import annotations

import json

from moxin.adapt.heldout import cloze_items, sentences

DOCS = [  # written for this test
    {"id": "a", "text": "朝は晴れた。駅前の小さな店で温かいパンを二つ買った。"
     "川沿いの道を歩いて会社まで行くのが毎日の楽しみだ。"},
    {"id": "b", "text": "雨が降る。窓の外を見ながら、今日の会議の準備をした。短い。"},
    {"id": "c", "text": "The sea was calm that morning. Gulls circled above the harbour wall.\n"
     "Nobody spoke on the boat."},
    {"id": "d", "text": "図書館の二階には古い地図がたくさん並んでいる。閉館は五時。"},
    {"id": "e", "text": "猫が台所の椅子の上でぐっすりと眠っていた。誰も起こさなかった。"},
]  # fmt: skip


def test_sentences_split_japanese_and_latin_text() -> None:
    long = "これは十六文字を超える十分に長い文ですね。"
    assert sentences("短い。" + long, min_chars=8) == [long]
    assert sentences("The sea was calm that morning. Gulls circled above.\nNobody spoke.", 10) == [
        "The sea was calm that morning.",
        "Gulls circled above.",
        "Nobody spoke.",
    ]


def test_each_item_has_its_own_continuation_among_other_documents_ones() -> None:
    items = cloze_items(DOCS, choices=4, per_doc=2)
    assert items == cloze_items(DOCS, choices=4, per_doc=2)  # deterministic
    firsts = {d["id"]: sentences(d["text"]) for d in DOCS}
    for it in items:
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4
        whole = it["question"] + it["choices"][it["answer"]]
        assert any(whole in ss for ss in firsts.values())  # the right half completes a real sentence
    # one long sentence each in b, d, e; a and c have a second one, too few for 4 choices
    assert len({it["question"] for it in items}) == len(items) == 5


def test_too_few_documents_give_no_items() -> None:
    assert cloze_items(DOCS[:3], choices=4) == []


def test_an_own_set_with_a_licence_writes_it_where_a_release_reads_it(tmp_path) -> None:
    from moxin.eval.own import folder_content, read_own
    from moxin.release.licences import licence_from_source_md

    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "1+1?", "choices": ["2", "3"], "answer": 0}) + "\n", "utf-8")
    content = folder_content([read_own(path, "choice", license="CC-BY-4.0")])
    (tmp_path / "qa").mkdir()
    (tmp_path / "qa" / "SOURCE.md").write_bytes(content["qa/SOURCE.md"])
    assert licence_from_source_md(tmp_path / "qa") == "CC-BY-4.0"
    assert "qa/SOURCE.md" not in folder_content([read_own(path, "choice")])  # none stated: none invented
