"""The `[finetune]` section of a recipe. No torch here, so loading a recipe stays fast.

One section holds the shared settings (parent model, chat template, decontamination) and one sub-table per mode;
`moxin finetune sft|dpo|grpo RECIPE` runs that mode's table. Each mode table carries the training loop's own
settings (`moxin.train.config.TrainConfig`: batch sizes, AdamW, precision, checkpoints, FSDP/DDP)::

    [finetune]
    parent = "pretrain"               # this run's last pretrain checkpoint; or a checkpoint, HF folder, .gguf file
    parent_license = ""               # SPDX id of an imported parent (HF/GGUF), for the lineage
    decontaminate = [{name = "gsm8k", path = "../shared/data/gsm8k/test.jsonl", fields = ["question"]}]

    [finetune.sft]
    data = [{path = "sft.jsonl", license = "Apache-2.0"}]   # format is detected; or format = "chat" | ...
    steps = 100
    packing = true
    lora = {rank = 8, alpha = 16}

    [finetune.dpo]
    parent = "sft"                    # the result of this recipe's [finetune.sft] run
    beta = 0.1
    data = [{path = "prefs.jsonl", license = "Apache-2.0"}]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from moxin.data.config import SPDX_RE, EvalSetConfig, check_name, check_spdx
from moxin.errors import ConfigError
from moxin.train.config import CheckpointConfig, TrainConfig

Format = Literal["auto", "chat", "instruction", "prompt-response", "preference", "math"]
LORA_TARGETS = ("q", "k", "v", "o", "gate", "up", "down")


@dataclass
class DatasetConfig:
    """One fine-tuning data file: JSONL (.gz/.xz/.zst) or a JSON array, with its licence (SPDX)."""

    path: str  # relative to the recipe file; "{run}/..." is inside the run folder (data an earlier stage wrote)
    license: str
    format: Format = "auto"
    name: str = ""  # default: the file name without extensions
    max_records: int = 0  # read at most this many records (0: all)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        check_spdx(self.license, f"{prefix}license", where, "'Apache-2.0', 'CC-BY-SA-3.0' or 'LicenseRef-<name>'")
        if self.max_records < 0:
            raise ConfigError(f"{prefix}max_records in {where} must be >= 0, got {self.max_records}")
        check_name(self.name, f"{prefix}name", where, allow_empty=True)


@dataclass
class LoRAConfig:
    """Low-rank adapters on the named linear layers; rank 0 = full fine-tuning."""

    rank: int = 0
    alpha: float = 16.0  # the update is scaled by alpha / rank
    dropout: float = 0.0
    targets: list[str] = field(default_factory=lambda: list(LORA_TARGETS))

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if self.rank < 0:
            raise ConfigError(f"{prefix}rank in {where} must be >= 0 (0 = full fine-tuning), got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{prefix}dropout in {where} must be in [0, 1), got {self.dropout}")
        bad = [t for t in self.targets if t not in LORA_TARGETS]
        if bad or not self.targets:
            raise ConfigError(
                f"{prefix}targets in {where} has {bad or self.targets!r}; choose from {', '.join(LORA_TARGETS)}"
            )


def _ft_checkpoint() -> CheckpointConfig:
    return CheckpointConfig(every=50, keep_last=2)


@dataclass
class ModeConfig(TrainConfig):
    """Settings every fine-tuning mode shares: parent, data, length, schedule, LoRA (plus the loop's own)."""

    parent: str = ""  # default: finetune.parent; "pretrain", "sft", "dpo", "grpo", or a path
    name: str = ""  # output folder <run>/finetune/<name>; default: the mode
    data: list[DatasetConfig] = field(default_factory=list)
    steps: int | None = None  # optimizer steps; or give epochs
    epochs: float | None = None
    seq_len: int = 512  # tokens per example (prompt + response); longer ones are dropped (too_long)
    too_long: Literal["drop", "truncate"] = "drop"
    on_bad_record: Literal["skip", "error"] = "skip"  # skip: count with file:line; error: stop at the first
    val_fraction: float = 0.05  # held-out share of the examples (by a hash of the example)
    val_max: int = 64  # at most this many held-out examples
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    lr: float = 2e-5
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    checkpoint: CheckpointConfig = field(default_factory=_ft_checkpoint)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        super().validate(where, prefix)
        check_name(self.name, f"{prefix}name", where, allow_empty=True)
        if (self.steps is None) == (self.epochs is None) and self.steps is None:
            pass  # neither: one epoch (resolved later)
        elif self.steps is not None and self.epochs is not None:
            raise ConfigError(
                f"{prefix}steps in {where}: give steps or epochs, not both "
                f"(got steps={self.steps}, epochs={self.epochs})"
            )
        for key in ("steps", "epochs", "seq_len"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise ConfigError(f"{prefix}{key} in {where} must be positive, got {v}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"{prefix}val_fraction in {where} must be in [0, 1), got {self.val_fraction}")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(
                f"{prefix}warmup_steps/min_lr_ratio in {where} out of range "
                f"({self.warmup_steps}/{self.min_lr_ratio}); use >= 0 and [0, 1]"
            )


@dataclass
class SFTConfig(ModeConfig):
    """Supervised fine-tuning: loss on assistant turns only."""

    packing: bool = False  # pack examples into seq_len rows; attention never crosses an example


@dataclass
class DPOConfig(ModeConfig):
    """Direct preference optimisation against the frozen parent (its log-probs are computed once and cached)."""

    beta: float = 0.1
    label_smoothing: float = 0.0  # conservative DPO (cDPO); 0 = the original loss
    lr: float = 5e-6

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        super().validate(where, prefix)
        if self.beta <= 0 or not 0.0 <= self.label_smoothing < 0.5:
            raise ConfigError(
                f"{prefix}beta/label_smoothing in {where} out of range ({self.beta}/"
                f"{self.label_smoothing}); beta > 0, label_smoothing in [0, 0.5)"
            )


@dataclass
class GRPOConfig(ModeConfig):
    """Group relative policy optimisation: G sampled completions per prompt, verifiable reward, KL to the parent.

    global_batch and micro_batch count completions; prompts per step = global_batch / group_size."""

    group_size: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    beta: float = 0.04  # KL coefficient (k3 estimator against the reference)
    clip_eps: float = 0.2
    reward: Literal["numeric", "exact"] = "numeric"  # last number equals the answer / stripped text equals it
    global_batch: int = 32
    micro_batch: int = 32
    lr: float = 1e-5

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        super().validate(where, prefix)
        if self.group_size < 2:
            raise ConfigError(
                f"{prefix}group_size in {where} must be >= 2 (advantages are relative), got {self.group_size}"
            )
        if self.global_batch % self.group_size:
            raise ConfigError(
                f"{prefix}global_batch in {where}: {self.global_batch} completions is not a multiple "
                f"of group_size={self.group_size}"
            )
        if self.max_new_tokens <= 0 or self.temperature <= 0 or self.clip_eps <= 0 or self.beta < 0:
            raise ConfigError(
                f"{prefix}max_new_tokens/temperature/clip_eps/beta in {where} out of range "
                f"({self.max_new_tokens}/{self.temperature}/{self.clip_eps}/{self.beta})"
            )


@dataclass
class FinetuneConfig:
    """`[finetune]`: the parent model and what every mode shares; `[finetune.sft|dpo|grpo]` per mode."""

    parent: str = "pretrain"
    parent_license: str = ""  # SPDX id of an imported parent model (HF folder or GGUF)
    tokenizer: str = ""  # default: the parent's tokenizer
    chat_template: str = ""  # Jinja; default: the tokenizer's, else ChatML
    system_prompt: str = ""  # prepended as a system turn when a record has none
    decontaminate: list[EvalSetConfig] = field(default_factory=list)
    decontam_ngram: int = 13
    sft: SFTConfig = field(default_factory=SFTConfig)
    dpo: DPOConfig = field(default_factory=DPOConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if self.parent_license and not SPDX_RE.match(self.parent_license):
            raise ConfigError(f"{prefix}parent_license in {where} is {self.parent_license!r}; give an SPDX id")
        if self.decontam_ngram < 3:
            raise ConfigError(f"{prefix}decontam_ngram in {where} must be >= 3, got {self.decontam_ngram}")

    def mode(self, name: str) -> ModeConfig:
        return getattr(self, name)
