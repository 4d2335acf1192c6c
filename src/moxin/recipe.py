"""The recipe: one TOML file describing a whole build. Each section is its component's own typed config."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from moxin.build.config import BuildConfig
from moxin.data.config import DataConfig
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


@dataclass
class Recipe:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=tiny)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
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
