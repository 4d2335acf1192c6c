"""Tokenizer training: deterministic bytes, byte-exact round trips (Japanese, code), offline AutoTokenizer load,
special tokens and chat template from the config, reuse of an existing tokenizer."""

from __future__ import annotations

import dataclasses

import pytest

from moxin.config import from_dict
from moxin.errors import ConfigError
from moxin.tokenizer import CHATML_TEMPLATE, TokenizerConfig, train_tokenizer

JA = ["吾輩は猫である。名前はまだ無い。", "東京都の天気は晴れのち曇り、最高気温は二十五度の予想です。",
      "彼女は図書館で日本の歴史についての本を三冊借りました。", "ｶﾀｶﾅ　と　全角スペース、そして絵文字🍣も。"]
EN = ["The quick brown fox jumps over the lazy dog.", "Numbers like 3.14159 and 2,718 stay as they are."]
CODE = ["def add(a, b):\n    return a + b\n", "\tif x:\n\t\tpass  # tabs\n", "class A:\n    '''doc'''\n"]


def _texts(n=200):
    return [t + f" {i}" for i in range(n) for t in JA + EN + CODE]


def test_deterministic_bytes_and_round_trip(tmp_path):
    cfg = TokenizerConfig(vocab_size=700)
    m1 = train_tokenizer(cfg, _texts(), tmp_path / "a")
    m2 = train_tokenizer(cfg, _texts(), tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()
    assert m1["tokenizer_sha256"] == m2["tokenizer_sha256"] and m1["vocab_size"] == 700
    assert m1["sample"]["docs"] == len(_texts()) and m1["eos_id"] == 0
    from transformers import AutoTokenizer

    tk = AutoTokenizer.from_pretrained(str(tmp_path / "a"))
    for t in JA + EN + CODE + ["  leading spaces", "trailing\n\n", "\u00e9\u0301 combining", "\x00nul"]:
        assert tk.decode(tk.encode(t, add_special_tokens=False)) == t
    assert [tk.convert_tokens_to_ids(t) for t in cfg.special_tokens] == [0, 1, 2, 3]
    assert tk.eos_token == "<|endoftext|>" and tk.pad_token == "<|pad|>" and tk.bos_token is None
    assert tk.chat_template == CHATML_TEMPLATE
    assert (tmp_path / "a" / "chat_template.jinja").is_file()


def test_reuse_existing_tokenizer(tmp_path):
    train_tokenizer(TokenizerConfig(vocab_size=500), _texts(50), tmp_path / "base")
    m = train_tokenizer(TokenizerConfig(path=str(tmp_path / "base")), [], tmp_path / "copy")
    assert m["kind"] == "reused" and m["eos_id"] == 0 and m["vocab_size"] == 500
    assert (tmp_path / "copy" / "tokenizer.json").is_file()


def test_config_validation_names_the_key():
    with pytest.raises(ConfigError, match=r"tokenizer.eos_token .* not in tokenizer.special_tokens"):
        from_dict(TokenizerConfig, {"eos_token": "</s>"}, "r.toml", "tokenizer.")
    with pytest.raises(ConfigError, match=r"tokenizer.vocab_size in r.toml is 100"):
        from_dict(TokenizerConfig, {"vocab_size": 100}, "r.toml", "tokenizer.")
    assert dataclasses.asdict(from_dict(TokenizerConfig, {"vocab_size": 4096}, "r.toml"))["vocab_size"] == 4096


def test_data_stage_with_a_reused_tokenizer_records_the_same_bytes_in_any_folder(tmp_path):
    """An adapt run reuses its base's tokenizer from inside the run folder: the data stage's manifest and the
    tokenizer's must not depend on where that folder lies (two adapt-ja builds once differed in
    `tokenizer_config_hash` only, because the resolved absolute path was hashed)."""
    import shutil

    from moxin.data.config import DataConfig, SourceConfig
    from moxin.data.pipeline import inputs_fingerprint, run_data_stage

    train_tokenizer(TokenizerConfig(vocab_size=500), _texts(50), tmp_path / "tok")
    manifests = []
    for where in ("one/place", "another/folder/deeper"):
        root = tmp_path / where
        (root / "in").mkdir(parents=True)
        (root / "in" / "docs.txt").write_text("\n\n".join(JA + EN) + "\n", "utf-8")
        shutil.copytree(tmp_path / "tok", root / "run" / "base" / "tokenizer")
        cfg = DataConfig(sources=[SourceConfig(name="d", type="text", license="MIT", path=str(root / "in"))],
                         workers=1, dedup_fuzzy=False, val_fraction=0.2)
        tok = TokenizerConfig(path=str(root / "run" / "base" / "tokenizer"))
        assert tok.record()["path"] == "tokenizer"
        run_data_stage(cfg, tok, 0, root / "run", progress=False)
        manifests.append(((root / "run" / "data" / "manifest.json").read_bytes(),
                          (root / "run" / "tokenizer" / "manifest.json").read_bytes(),
                          inputs_fingerprint(cfg, tok, 0)[0]))
    assert manifests[0] == manifests[1]
    assert str(tmp_path) not in manifests[0][0].decode() + manifests[0][1].decode()
