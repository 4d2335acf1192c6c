"""The recipe's [eval] section: what `moxin build` (and `moxin eval` with a recipe's settings) evaluates."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from moxin.errors import ConfigError

DTYPES = ("float32", "bfloat16", "float16")
OWN_NAME_RE = re.compile(r"^\w[\w-]*$")  # becomes the task name own_<name> and a folder name: no '.', '/', spaces


@dataclass
class OwnEvalConfig:
    """One `[[eval.own]]` file: the user's own items, scored without a hand-written lm-eval YAML (moxin.eval.own)."""

    path: str  # JSONL file, relative to the recipe
    kind: Literal["choice", "exact", "perplexity"]
    name: str | None = None  # task own_<name>; default: the file's stem
    limit: int | None = None  # score only the first N records of the file
    license: str = ""  # SPDX id of the file's contents: a release audits it (evaluation data, MOF Class II)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if not self.path.strip():
            raise ConfigError(f'{prefix}path in {where} is empty; give the JSONL file, e.g. path = "qa.jsonl"')
        if self.name is not None and not OWN_NAME_RE.match(self.name):
            raise ConfigError(
                f"{prefix}name in {where} is {self.name!r}; it becomes the task own_<name>, so use letters, "
                f"digits, '_' and '-' only"
            )
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{prefix}limit in {where} must be at least 1, got {self.limit}")
        from moxin.data.config import check_spdx

        if self.license:
            check_spdx(self.license, f"{prefix}license", where, "'CC-BY-4.0'")


@dataclass
class EvalConfig:
    """Tasks/suites over every checkpoint; data_dir (relative to the recipe) selects the local data sets."""

    tasks: list[str] = field(default_factory=lambda: ["moxin-zeroshot"])
    data_dir: str | None = None  # evaluation data laid out like ../shared/data; none → Hugging Face datasets
    limit: int | None = None  # items per task (None: all)
    num_fewshot: int | None = None  # override every task's n-shot
    batch_size: int = 32
    dtype: str = "float32"
    apply_chat_template: bool = False
    all_checkpoints: bool = True
    own: list[OwnEvalConfig] = field(default_factory=list)  # [[eval.own]]: the user's own JSONL items

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        from moxin.eval.catalog import parse_tasks

        if not self.tasks and not self.own:
            raise ConfigError(f"{prefix}tasks in {where} is empty; name tasks or suites, e.g. ['moxin-zeroshot']")
        try:
            parse_tasks(self.tasks)
        except Exception as e:
            raise ConfigError(f"{prefix}tasks in {where}: {e}") from None
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{prefix}limit in {where} must be at least 1, got {self.limit}")
        if self.batch_size < 1:
            raise ConfigError(f"{prefix}batch_size in {where} must be at least 1, got {self.batch_size}")
        if self.dtype not in DTYPES:
            raise ConfigError(f"{prefix}dtype in {where} is {self.dtype!r}; choose one of {', '.join(DTYPES)}")
        self._validate_own(where, prefix)

    def _validate_own(self, where: str, prefix: str) -> None:
        from moxin.eval.own import default_name

        seen: dict[str, int] = {}
        for i, o in enumerate(self.own):
            name = o.name or default_name(o.path)
            if name in seen:
                raise ConfigError(
                    f"{prefix}own[{i}] in {where} is named {name!r} like {prefix}own[{seen[name]}]; task names must "
                    f'differ: set name = "..." on one of them'
                )
            seen[name] = i
