"""`[adapt]` validation: each mistake is one ConfigError line naming the key and the bad value."""

from __future__ import annotations

import pytest

from moxin.errors import ConfigError
from moxin.recipe import apply_overrides, load_recipe, shipped_recipes


def _recipe(tmp_path, overrides: list[str]):
    path = tmp_path / "r.toml"
    path.write_text('[adapt]\nbase = "base"\n', "utf-8")
    return load_recipe(path, overrides)


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("adapt.license='not a licence'", ["adapt.license", "'not a licence'", "SPDX"]),
        ("adapt.steps=0", ["adapt.steps", "positive", "0"]),
        ("adapt.seq_len=-4", ["adapt.seq_len", "-4"]),
        ("adapt.micro_batch=3", ["adapt.micro_batch", "global_batch=8"]),
        ("adapt.lora.rank=-1", ["adapt.lora.rank", "-1"]),
        ("adapt.lora.targets=['qkv']", ["adapt.lora.targets", "qkv", "gate"]),
        ("adapt.min_lr_ratio=2.0", ["adapt.warmup_steps/min_lr_ratio", "2.0"]),
        ("adapt.schedule='step'", ["adapt.schedule", "step"]),
        ("adapt.mixture={docs=-1.0}", ["adapt.mixture.docs", "-1.0"]),
        ("adapt.bsae='x'", ["bsae", "base"]),
    ],
)
def test_bad_adapt_settings_name_the_key(tmp_path, override: str, words: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        _recipe(tmp_path, [override])
    msg = str(err.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, (w, msg)


def test_defaults_and_enabled(tmp_path) -> None:
    r = _recipe(tmp_path, ["adapt.lora.rank=8"])
    assert r.adapt.enabled and r.adapt.lora.rank == 8 and r.adapt.steps == 100
    plain = load_recipe("tiny")
    assert not plain.adapt.enabled  # a recipe without [adapt] pretrains from scratch


def test_shipped_adapt_recipes_load() -> None:
    assert {"adapt", "adapt-ja"} <= set(shipped_recipes())
    ja = load_recipe("adapt-ja")
    assert ja.adapt.base == "smollm2" and ja.adapt.lora.rank > 0 and ja.data.sources[0].name == "aozora-ja"


def test_missing_base_is_reported_with_the_key(tmp_path) -> None:
    from moxin.adapt.base import base_source

    r = _recipe(tmp_path, [])
    with pytest.raises(ConfigError, match=r"adapt.base = 'base': .* does not exist"):
        base_source(r.adapt, r.resolve_path)


def test_build_plan_of_an_adapt_recipe(tmp_path) -> None:
    from moxin.build.run import plan_names

    r = _recipe(tmp_path, ["finetune.sft.parent='adapt'"])
    assert plan_names(r)[:4] == ["import", "data", "selfdata", "adapt"]
    assert "pretrain" not in plan_names(r)
    assert apply_overrides({}, ["adapt.base='x'"]) == {"adapt": {"base": "x"}}
