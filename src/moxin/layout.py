"""The run folder: the one owner of where every stage's files live (docs/CONTRACTS.md points here).

    <run.out_dir>/<run.name>/
      recipe.toml                   the resolved recipe the run was built with
      .build/<stage>.json           `moxin build` markers
      base/                         an adapt recipe's imported base model (weights, tokenizer/, manifest)
      data/ tokenizer/ selfdata/    the data stage, the tokenizer, generated SFT/eval data
      pretrain/                     checkpoints/step-XXXXXXXX/, metrics.jsonl, run.json, manifest.json, *.png
      adapt/                        continued pretraining of base/ (the same layout; LoRA: also final/)
      finetune/<name>/              the same layout; <name> is finetune.<mode>.name or the mode
      eval/                         results/*.json, table.csv, table.md, plots/, manifest.json
      release/                      the MOF release (also a layout: pretrain/ and finetune/<name>/ beside model/)

A release holds the training stages in the same layout, so `RunLayout(release)` lists a release's checkpoints too.
Records written into a run name files by their path relative to the run folder (`RunLayout.rel`), never by an
absolute path, so that a run's bytes do not depend on where it was built.

No torch here: the CLI, `build` and `verify` import this module at start-up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

CHECKPOINT_RE = re.compile(r"^step-(\d{8})$")
STAGE_RE = re.compile(r"^(pretrain|adapt|finetune/[^/]+)$")
FINETUNE_MODES = ("sft", "dpo", "grpo")


def checkpoint_name(step: int) -> str:
    """`step-00000100`: a checkpoint folder's name (the step zero-padded to 8 digits)."""
    return f"step-{int(step):08d}"


def parse_step(name: str) -> int | None:
    """The step of a checkpoint folder name, or None when it is not one."""
    m = CHECKPOINT_RE.match(name)
    return int(m.group(1)) if m else None


def list_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every `step-XXXXXXXX` folder directly in `folder`, by step; [] when it does not exist."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [(s, p) for p in folder.iterdir() if p.is_dir() and (s := parse_step(p.name)) is not None]
    return sorted(found)


def run_dir(out_dir: str | Path, name: str) -> Path:
    """`<out_dir>/<name>`, `~`-expanded and absolute (relative out_dir resolves against the working directory)."""
    return Path(out_dir).expanduser().resolve() / name


def finetune_name(finetune_cfg, mode: str) -> str:
    """The folder name of a fine-tuning stage: `finetune.<mode>.name`, or the mode itself."""
    return finetune_cfg.mode(mode).name or mode


def finetune_names(finetune_cfg) -> dict[str, str]:
    """mode → folder name, for every mode."""
    return {m: finetune_name(finetune_cfg, m) for m in FINETUNE_MODES}


def run_of(checkpoint: str | Path) -> Path | None:
    """The run (or release) folder a checkpoint lives in (RUN/pretrain/checkpoints/step-N → RUN,
    RUN/adapt/checkpoints/step-N → RUN, RUN/finetune/<name>/checkpoints/step-N → RUN), or None when the path
    does not follow the layout."""
    p = Path(checkpoint).resolve()
    if parse_step(p.name) is None or p.parent.name != "checkpoints":
        return None
    stage_dir = p.parent.parent
    if stage_dir.name in ("pretrain", "adapt"):
        return stage_dir.parent
    if stage_dir.parent.name == "finetune":
        return stage_dir.parent.parent
    return None


@dataclass(frozen=True)
class Checkpoint:
    stage: str  # 'pretrain' | 'adapt' | 'finetune/<name>'
    step: int
    path: Path

    @property
    def name(self) -> str:
        """'<stage>/step-XXXXXXXX'."""
        return f"{self.stage}/{self.path.name}"


@dataclass(frozen=True)
class RunLayout:
    """Paths of one run folder (or of a release, which keeps the training stages in the same layout)."""

    root: Path

    @classmethod
    def of(cls, out_dir: str | Path, name: str) -> RunLayout:
        return cls(run_dir(out_dir, name))

    @classmethod
    def from_recipe(cls, recipe, out: str | Path | None = None) -> RunLayout:
        """The run folder of a recipe: `<out or run.out_dir>/<run.name>`."""
        return cls.of(out if out is not None else recipe.run.out_dir, recipe.run.name)

    # ---------------------------------------------------------------- stage folders
    @property
    def recipe_file(self) -> Path:
        return self.root / "recipe.toml"

    @property
    def build_state(self) -> Path:
        return self.root / ".build"

    @property
    def base(self) -> Path:
        """An adapt recipe's imported base model (`moxin import` layout)."""
        return self.root / "base"

    @property
    def adapt(self) -> Path:
        return self.root / "adapt"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    @property
    def selfdata(self) -> Path:
        return self.root / "selfdata"

    @property
    def pretrain(self) -> Path:
        return self.root / "pretrain"

    def finetune(self, name: str) -> Path:
        """`finetune/<name>` (name: the stage's folder name, see `finetune_name`)."""
        return self.root / "finetune" / name

    @property
    def eval(self) -> Path:
        return self.root / "eval"

    @property
    def compare(self) -> Path:
        """An adapt build's `moxin compare` of the base against the adapted model (compare.json, compare.md)."""
        return self.root / "compare"

    @property
    def eval_results(self) -> Path:
        return self.eval / "results"

    @property
    def release(self) -> Path:
        return self.root / "release"

    def stage_dir(self, stage: str) -> Path:
        """The folder of a training stage: 'pretrain', 'adapt' or 'finetune/<name>'."""
        if not STAGE_RE.match(stage):
            raise ValueError(f"not a training stage: {stage!r} (expected 'pretrain', 'adapt' or 'finetune/<name>')")
        return self.root / stage

    def checkpoints_dir(self, stage: str = "pretrain") -> Path:
        return self.stage_dir(stage) / "checkpoints"

    def run_json(self, stage: str = "pretrain") -> Path:
        return self.stage_dir(stage) / "run.json"

    def metrics(self, stage: str = "pretrain") -> Path:
        return self.stage_dir(stage) / "metrics.jsonl"

    def checkpoint(self, stage: str, step: int) -> Path:
        return self.checkpoints_dir(stage) / checkpoint_name(step)

    # ---------------------------------------------------------------- listing
    def training_stages(self) -> list[str]:
        """'pretrain', 'adapt' (each when present) then 'finetune/<name>' for each fine-tuning folder, by name."""
        out = [s for s in ("pretrain", "adapt") if (self.root / s).is_dir()]
        ft = self.root / "finetune"
        if ft.is_dir():
            out += [f"finetune/{d.name}" for d in sorted(ft.iterdir()) if d.is_dir() and not d.name.startswith(".")]
        return out

    def checkpoints(self, stage: str = "pretrain") -> list[Checkpoint]:
        """The checkpoints of one stage, by step."""
        return [Checkpoint(stage, s, p) for s, p in list_checkpoints(self.checkpoints_dir(stage))]

    def all_checkpoints(self) -> list[Checkpoint]:
        """Every checkpoint of the run: pretrain, adapt, then each fine-tuning stage, each by step."""
        return [c for stage in self.training_stages() for c in self.checkpoints(stage)]

    def latest_checkpoint(self, stage: str = "pretrain") -> Path | None:
        found = list_checkpoints(self.checkpoints_dir(stage))
        return found[-1][1] if found else None

    # ---------------------------------------------------------------- relative paths in records
    def rel(self, path: str | Path) -> str:
        """`path` relative to the run folder, as POSIX text (what records store). A path outside the run is
        returned as its file name: records name outside inputs by name and SHA-256, never by absolute path."""
        p = Path(path).expanduser().resolve()
        try:
            return p.relative_to(self.root.resolve()).as_posix() or "."
        except ValueError:
            return p.name
