"""The recipe's [eval] section: what `moxin build` (and `moxin eval` with a recipe's settings) evaluates."""

from __future__ import annotations

from dataclasses import dataclass, field

from moxin.errors import ConfigError

DTYPES = ("float32", "bfloat16", "float16")


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

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        from moxin.eval.catalog import parse_tasks

        if not self.tasks:
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
