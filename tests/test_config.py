"""The typed config loader, overrides and the shipped recipes."""

import pytest

from moxin.config import from_dict, to_dict, to_toml
from moxin.errors import ConfigError
from moxin.model import ModelConfig, preset
from moxin.recipe import Recipe, apply_overrides, load_recipe, parse_override, shipped_recipes


def test_preset_with_overrides():
    cfg = from_dict(ModelConfig, {"preset": "moxin-7b", "n_layers": 4})
    assert cfg.n_layers == 4 and cfg.dim == 4096 and cfg.sliding_window == 4096


def test_override_values_parse_as_toml():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a.b=0.5") == (["a", "b"], 0.5)
    assert parse_override("a.b=true") == (["a", "b"], True)
    assert parse_override("a.b=hello") == (["a", "b"], "hello")
    assert parse_override("a.b=[1, 2]") == (["a", "b"], [1, 2])
    with pytest.raises(ConfigError, match=r"section\.key=value"):
        parse_override("nonsense")
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"a": 1}, ["a.b=2"])


def test_validation_rules():
    with pytest.raises(ConfigError, match="multiple of n_kv_heads"):
        from_dict(ModelConfig, {"preset": "tiny", "n_kv_heads": 3}, "r.toml", "model.")
    with pytest.raises(ConfigError, match="must be float"):
        from_dict(ModelConfig, {"rope_theta": "high"})
    with pytest.raises(ConfigError, match=r"missing|must be"):
        from_dict(ModelConfig, {"n_layers": True})


@pytest.mark.parametrize("name", shipped_recipes())
def test_every_shipped_recipe_loads_and_round_trips(name, tmp_path):
    recipe = load_recipe(name)
    assert isinstance(recipe, Recipe)
    text = to_toml(to_dict(recipe))
    (tmp_path / "again.toml").write_text(text)
    again = load_recipe(tmp_path / "again.toml")
    assert to_dict(again) == to_dict(recipe)


def test_resolved_recipe_includes_preset_values():
    recipe = load_recipe("tiny", ["model.n_layers=3"])
    assert recipe.model.n_layers == 3 and recipe.model.dim == preset("tiny").dim


def test_recipe_paths_resolve_against_the_file(tmp_path):
    (tmp_path / "r.toml").write_text("[run]\nname = 'x'\n")
    recipe = load_recipe(tmp_path / "r.toml")
    assert recipe.resolve_path("data/a.jsonl") == tmp_path / "data" / "a.jsonl"
