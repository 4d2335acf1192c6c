"""The recipe: one TOML file describing a whole build. Each section is its component's own typed config.

Loading: `load_recipe(name_or_path, overrides)` finds the file (a path, or the name of a recipe shipped in
`moxin/recipes/`), reads the TOML, applies `--set section.key=value` overrides and validates every section with
`moxin.config.from_dict`. Importing this module loads no torch."""

from __future__ import annotations

import difflib
import importlib.resources
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.adapt.config import AdaptConfig
from moxin.build.config import BuildConfig
from moxin.config import from_dict
from moxin.data.config import DataConfig
from moxin.errors import ConfigError
from moxin.eval.config import EvalConfig
from moxin.finetune.config import FinetuneConfig
from moxin.model.config import ModelConfig, tiny
from moxin.release.config import ReleaseConfig
from moxin.tokenizer.config import TokenizerConfig
from moxin.train.config import PretrainConfig


@dataclass
class RunConfig:
    """Where and how a build runs."""

    name: str = "moxin-run"
    seed: int = 0
    out_dir: str = "runs"  # relative paths resolve against the current directory

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        from moxin.data.config import check_name

        check_name(self.name, f"{prefix}name", where)


@dataclass
class Recipe:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=tiny)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    adapt: AdaptConfig = field(default_factory=AdaptConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    release: ReleaseConfig = field(default_factory=ReleaseConfig)
    build: BuildConfig = field(default_factory=BuildConfig)

    # Set by `load_recipe`, not read from TOML: the file it came from (paths in the recipe resolve against it).
    source_path: Path | None = field(default=None, init=False, repr=False, compare=False, metadata={"toml": False})

    def resolve_path(self, value: str | Path) -> Path:
        """A path from the recipe: absolute, `~`-expanded, or relative to the recipe file's folder."""
        p = Path(value).expanduser()
        if p.is_absolute() or self.source_path is None:
            return p
        return (self.source_path.parent / p).resolve()


# ------------------------------------------------------------------------------------------------ loading
def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b=c` → (['a', 'b'], value). The value is read as a TOML literal, else taken as a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r} is not of the form section.key=value (e.g. --set model.n_layers=4)")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--set {text!r} has an empty key; write it as section.key=value")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key.split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--set` overrides (`section.key=value`) to the raw recipe dict, in order; returns `data`."""
    for text in overrides:
        parts, value = parse_override(text)
        node = data
        for p in parts[:-1]:
            nxt = node.setdefault(p, {})
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {text!r}: '{p}' is a value, not a section")
            node = nxt
        node[parts[-1]] = value
    return data


def read_toml(path: Path) -> dict[str, Any]:
    """A recipe file's TOML as a dict; a missing, non-UTF-8 or invalid file is a one-line ConfigError."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        shipped = ", ".join(shipped_recipes())
        raise ConfigError(f"recipe file not found: {path}; check the path (shipped recipes: {shipped})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML: {e}") from None


def shipped_recipes() -> list[str]:
    """Names of the recipes shipped in `moxin/recipes/` (`tiny`, ...)."""
    folder = importlib.resources.files("moxin") / "recipes"
    return sorted(p.name.removesuffix(".toml") for p in folder.iterdir() if p.name.endswith(".toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a shipped recipe (`tiny` → the embedded default)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists() or "/" in str(name_or_path):
        return p
    if str(name_or_path) in shipped_recipes():
        return Path(str(importlib.resources.files("moxin") / "recipes" / f"{name_or_path}.toml"))
    close = difflib.get_close_matches(str(name_or_path), shipped_recipes(), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    shipped = ", ".join(shipped_recipes())
    raise ConfigError(f"no recipe file or shipped recipe named {str(name_or_path)!r}{hint} (shipped: {shipped})")


def load_recipe(name_or_path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe file, apply `--set` overrides, validate every section. Paths inside resolve against the file."""
    path = recipe_path(name_or_path)
    data = apply_overrides(read_toml(path), list(overrides or []))
    where = str(path) if not overrides else f"{path} (with --set overrides)"
    recipe = from_dict(Recipe, data, where)
    recipe.source_path = path.resolve()
    return recipe
