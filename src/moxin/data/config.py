"""The `[data]` section of a recipe: sources, the cleaning steps' options, the val split, decontamination sets,
sharding and workers. Paths are resolved against the recipe file by `DataConfig.resolved`."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from moxin.errors import ConfigError

SourceType = Literal["jsonl", "text", "parquet", "python-stdlib", "hf"]
SPDX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.+-]*( (AND|OR|WITH) [A-Za-z0-9][A-Za-z0-9.+-]*)*$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_spdx(value: str, key: str, where: str, examples: str) -> None:
    """A licence given as an SPDX id or expression (`LicenseRef-<name>` for others); `examples` end the error."""
    if not SPDX_RE.match(value.strip()):
        raise ConfigError(f"{key} in {where} is {value!r}; give an SPDX id such as {examples}")


def check_name(value: str, key: str, where: str, allow_empty: bool = False) -> None:
    """A name that becomes a folder or file name (a source, `run.name`, a fine-tuning stage): letters, digits,
    '_', '-', '.', not starting with '.' or '-' — so never absolute, never `..`, never a path. `key` is the full
    recipe key named in the ConfigError."""
    if allow_empty and value == "":
        return
    if not isinstance(value, str) or not NAME_RE.match(value) or value in (".", ".."):
        raise ConfigError(
            f"{key} in {where} is {value!r}; it names an output folder, so use letters, digits, '_', "
            f"'-', '.' only (no '/', no '..', not absolute)"
        )


@dataclass
class SourceConfig:
    """One raw source. `path` is a file, a folder or a glob (jsonl/text/parquet), a dataset name or a local
    `save_to_disk` folder (hf); python-stdlib needs none."""

    name: str
    type: SourceType
    license: str  # SPDX id, e.g. "PSF-2.0", "CC-BY-4.0", "LicenseRef-proprietary"
    path: str = ""
    text_field: str = "text"
    id_field: str = ""  # JSONL/parquet field holding a document id; empty → file:line
    weight: float = 1.0  # relative share of the token budget (see moxin.data.mixture)
    epochs: float | None = None  # cap on passes over this source; None → data.max_epochs
    kind: Literal["auto", "prose", "code"] = "auto"  # which quality rules apply; python-stdlib is code
    quality: bool = True  # false: skip the quality filters for a curated source (e.g. your own documentation)
    doc_chars: int = 0  # text files: 0 → one document per file, else pack paragraphs into docs of ≤ doc_chars
    hf_name: str = ""  # hf: dataset config name
    hf_split: str = "train"  # hf: split to read
    max_docs: int = 0  # read at most this many documents (0: all)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        check_name(self.name, f"{prefix}name", where)
        check_spdx(self.license, f"{prefix}license", where, "'CC-BY-4.0', 'PSF-2.0' or 'LicenseRef-<name>'")
        if self.type != "python-stdlib" and not self.path:
            raise ConfigError(f'{prefix}path in {where} is missing for a {self.type!r} source; add path = "..."')
        if self.weight < 0 or (self.epochs is not None and self.epochs <= 0):
            raise ConfigError(f"{prefix}weight/epochs in {where} must be positive, got {self.weight}/{self.epochs}")
        if self.doc_chars < 0 or self.max_docs < 0:
            raise ConfigError(f"{prefix}doc_chars/max_docs in {where} must be >= 0")


@dataclass
class EvalSetConfig:
    """An evaluation set to decontaminate against: JSONL (.gz/.xz/.zst) whose `fields` are joined per item."""

    name: str
    path: str
    fields: list[str] = field(default_factory=lambda: ["text"])


@dataclass
class QualityConfig:
    """Gopher/C4-style thresholds. Word rules apply to space-delimited languages, character rules to ja/zh/ko,
    a light set to source code (see moxin.data.quality)."""

    enabled: bool = True
    min_words: int = 50
    max_words: int = 1_000_000
    min_mean_word_len: float = 3.0
    max_mean_word_len: float = 10.0
    max_symbol_ratio: float = 0.1
    max_bullet_lines: float = 0.9
    max_ellipsis_lines: float = 0.3
    min_alpha_words: float = 0.8
    min_stop_words: int = 2
    max_dup_line_frac: float = 0.3
    max_dup_para_frac: float = 0.3
    max_top_ngram_frac: list[float] = field(default_factory=lambda: [0.2, 0.18, 0.16])  # n = 2, 3, 4
    max_dup_ngram_frac: list[float] = field(default_factory=lambda: [0.15, 0.14, 0.13, 0.12, 0.11, 0.10])  # 5..10
    min_cjk_chars: int = 100  # ja/zh/ko: characters instead of words
    min_code_chars: int = 20
    max_code_line_len: int = 1000  # minified / generated files
    min_code_alpha: float = 0.25


@dataclass
class SlurmConfig:
    """`data.executor = "slurm"`: the sbatch directives of the analysis job array (datatrove's
    SlurmPipelineExecutor). The merge job (one task) runs after it with the same settings."""

    partition: str = "cpu"
    time: str = "4:00:00"  # per task, HH:MM:SS
    cpus_per_task: int = 1
    mem_per_cpu_gb: int = 2
    qos: str = ""  # empty: no --qos line
    env_command: str = ""  # run before the task (e.g. "source /path/to/venv/bin/activate")
    sbatch_args: dict[str, str] = field(default_factory=dict)  # extra #SBATCH --key=value lines

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if not re.fullmatch(r"(\d+-)?\d{1,2}(:\d{2}){0,2}", self.time):
            raise ConfigError(f"{prefix}time in {where} is {self.time!r}; use Slurm's [D-]HH:MM:SS, e.g. '4:00:00'")
        if not self.partition or self.cpus_per_task < 1 or self.mem_per_cpu_gb < 1:
            raise ConfigError(
                f"{prefix}partition/cpus_per_task/mem_per_cpu_gb in {where} are "
                f"{self.partition!r}/{self.cpus_per_task}/{self.mem_per_cpu_gb}; give a partition and values >= 1"
            )


Executor = Literal["inprocess", "local", "ray", "slurm"]


RUN_ONLY = frozenset({"workers", "executor", "tasks", "slurm"})  # how the steps ran, not what they made


@dataclass
class DataConfig:
    """Sources, cleaning steps, val split, decontamination, sharding. Steps run in the order of `STEPS`."""

    sources: list[SourceConfig] = field(default_factory=list)
    normalize: bool = True
    langid: bool = True
    quality: QualityConfig = field(default_factory=QualityConfig)
    dedup_exact: bool = True
    dedup_fuzzy: bool = True
    fuzzy_threshold: float = 0.7  # MinHash-LSH Jaccard threshold (word 5-gram shingles)
    fuzzy_num_perm: int = 128
    pii: bool = True
    decontaminate: list[EvalSetConfig] = field(default_factory=list)
    decontam_ngram: int = 13
    decontam_action: Literal["drop", "report"] = "drop"
    val_fraction: float = 0.01  # per source, by document hash
    shard_tokens: int = 1 << 24
    workers: int = 2
    max_epochs: float = 4.0  # default cap on repeating a source when the budget asks for more
    samples_per_reason: int = 20
    # How the steps run (never part of the output or its fingerprint): None/"inprocess" → this process and
    # `workers` forked helpers; "local"/"ray"/"slurm" → datatrove's executors over `tasks` shards of the input files.
    executor: Executor | None = None
    tasks: int | None = None  # datatrove tasks; None → `workers`
    slurm: SlurmConfig | None = None  # sbatch settings for executor = "slurm"

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        names = [s.name for s in self.sources]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"{prefix}sources in {where}: source name {dup[0]!r} is used twice; names must be unique")
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"{prefix}val_fraction in {where} must be in [0, 1), got {self.val_fraction}")
        if not 0 < self.fuzzy_threshold < 1:
            raise ConfigError(f"{prefix}fuzzy_threshold in {where} must be in (0, 1), got {self.fuzzy_threshold}")
        if self.shard_tokens < 1024:
            raise ConfigError(f"{prefix}shard_tokens in {where} must be >= 1024, got {self.shard_tokens}")
        if self.workers < 1 or self.decontam_ngram < 3 or self.fuzzy_num_perm < 16:
            raise ConfigError(
                f"{prefix}workers/decontam_ngram/fuzzy_num_perm in {where} out of range "
                f"({self.workers}/{self.decontam_ngram}/{self.fuzzy_num_perm}); use >= 1/3/16"
            )
        if self.tasks is not None and self.tasks < 1:
            raise ConfigError(f"{prefix}tasks in {where} is {self.tasks}; use >= 1 (or leave it out: `workers`)")
        if self.executor not in (None, "inprocess") and any(s.max_docs for s in self.sources):
            raise ConfigError(
                f"{prefix}executor in {where} is {self.executor!r} but a source sets max_docs; the datatrove "
                f"executors read every file, so remove max_docs or use executor = 'inprocess'"
            )

    def record(self) -> dict[str, Any]:
        """What manifests and fingerprints keep of this section: every absolute local path named by its last part
        (`recorded_name`; sources are identified by content, their input fingerprints), and nothing about how the
        steps ran (`workers`, `executor`, `tasks`, `slurm`), which does not change the output."""
        from moxin.config import to_dict

        sources = [dataclasses.replace(s, path=recorded_name(s.path)) for s in self.sources]
        evals = [dataclasses.replace(e, path=recorded_name(e.path)) for e in self.decontaminate]
        out = to_dict(dataclasses.replace(self, sources=sources, decontaminate=evals))
        return {k: v for k, v in out.items() if k not in RUN_ONLY}

    def resolved(self, resolve: Callable[[str], Path]) -> DataConfig:
        """A copy whose local paths are absolute (hf dataset names that are not local folders stay as they are)."""

        def fix(p: str, hf: bool = False) -> str:
            if not p or (hf and not _looks_local(p)):
                return p
            return str(resolve(p))

        sources = [dataclasses.replace(s, path=fix(s.path, s.type == "hf")) for s in self.sources]
        evals = [dataclasses.replace(e, path=fix(e.path)) for e in self.decontaminate]
        return dataclasses.replace(self, sources=sources, decontaminate=evals)


def recorded_name(path: str) -> str:
    """How a record names an input path: as written when relative (or a dataset name), else by its last part
    (an absolute path would tie the record to one machine's folders and user name)."""
    if not path or not Path(path).expanduser().is_absolute():
        return path
    return Path(path).expanduser().name


def _looks_local(p: str) -> bool:
    return p.startswith((".", "/", "~")) or Path(p).expanduser().exists()
