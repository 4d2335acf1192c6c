"""The `[pretrain]` section of a recipe: phases, optimizer, precision, checkpoints, parallelism. No torch here,
so loading a recipe stays fast.

A recipe example::

    [pretrain]
    global_batch = 16        # samples (sequences) per optimizer step, across all ranks
    micro_batch = 8          # samples per forward/backward on one rank; accumulation = global / (micro × ranks)
    lr = 3e-3

    [[pretrain.phases]]
    name = "base"
    seq_len = 128
    tokens = 2_000_000       # or steps = ...
    schedule = "wsd"
    mixture = {python = 0.7, docs = 0.3}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from moxin.errors import ConfigError


@dataclass
class PhaseConfig:
    """One training phase: its data mixture, sequence length, length and its segment of the LR schedule."""

    name: str = "base"
    seq_len: int = 128
    steps: int | None = None  # optimizer steps; or give `tokens`
    tokens: int | None = None  # token budget: steps = ceil(tokens / (global_batch × seq_len))
    mixture: dict[str, float] = field(default_factory=dict)  # source → weight; empty: sources by size
    split: str = "train"
    lr: float | None = None  # peak LR of this phase (default: pretrain.lr)
    schedule: Literal["cosine", "wsd", "constant", "linear"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1  # end of the decay, as a fraction of the peak
    decay_fraction: float = 0.2  # WSD: the final fraction of the phase that decays
    global_batch: int | None = None  # default: pretrain.global_batch

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{prefix}{key} in {where}: {msg}")

        if (self.steps is None) == (self.tokens is None):
            raise bad(
                "steps",
                f"give exactly one of steps or tokens for phase {self.name!r} "
                f"(got steps={self.steps}, tokens={self.tokens})",
            )
        for key in ("seq_len", "steps", "tokens", "global_batch"):
            v = getattr(self, key)
            if v is not None and v <= 0:
                raise bad(key, f"must be positive, got {v}")
        if self.warmup_steps < 0:
            raise bad("warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise bad("min_lr_ratio", f"must be within [0, 1], got {self.min_lr_ratio}")
        if not 0.0 < self.decay_fraction <= 1.0:
            raise bad("decay_fraction", f"must be within (0, 1], got {self.decay_fraction}")
        for src, w in self.mixture.items():
            if w < 0:
                raise bad(f"mixture.{src}", f"weight must be >= 0, got {w}")
        if self.mixture and sum(self.mixture.values()) <= 0:
            raise bad("mixture", "weights sum to zero; give at least one positive weight")


@dataclass
class CheckpointConfig:
    every: int = 100  # steps between checkpoints (phase ends are always saved)
    keep_every: int = 0  # keep every k-th step forever (intermediate checkpoints); 0: none beyond keep_last
    keep_last: int = 2  # and the last m checkpoints
    sharded: bool = False  # with FSDP: torch.distributed.checkpoint shards instead of one gathered file

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if self.every <= 0:
            raise ConfigError(f"{prefix}every in {where}: must be positive, got {self.every}")
        if self.keep_last < 1:
            raise ConfigError(f"{prefix}keep_last in {where}: must be >= 1 (resume needs one), got {self.keep_last}")
        if self.keep_every < 0:
            raise ConfigError(f"{prefix}keep_every in {where}: must be >= 0, got {self.keep_every}")


@dataclass
class TrainConfig:
    """The loop's own settings (shared by pretraining and fine-tuning)."""

    global_batch: int = 8  # samples per optimizer step, all ranks together
    micro_batch: int = 8  # samples per forward/backward per rank
    lr: float = 1e-3
    weight_decay: float = 0.1  # decoupled (AdamW); never on norms and embeddings
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    eps: float = 1e-8
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    z_loss: float = 0.0  # coefficient of the log(Z)^2 penalty (PaLM); 0 disables
    precision: Literal["fp32", "bf16"] = "bf16"  # bf16 = autocast with fp32 master weights
    activation_checkpointing: bool = False
    compile: bool = False
    parallel: Literal["fsdp", "ddp"] = "fsdp"  # used when launched with torchrun and more than one process
    fsdp_bf16_params: bool = False  # FSDP2 MixedPrecisionPolicy(param_dtype=bf16); else autocast only
    on_nan: Literal["stop", "skip"] = "stop"
    peak_flops: float | None = None  # per device, for MFU; default: a torch.mm peak measured at start
    log_every: int = 1
    tensorboard: bool = False
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        def bad(key: str, msg: str) -> ConfigError:
            return ConfigError(f"{prefix}{key} in {where}: {msg}")

        for key in ("global_batch", "micro_batch", "lr", "log_every"):
            if getattr(self, key) <= 0:
                raise bad(key, f"must be positive, got {getattr(self, key)}")
        if self.global_batch % self.micro_batch:
            raise bad(
                "micro_batch", f"global_batch={self.global_batch} must be a multiple of micro_batch={self.micro_batch}"
            )
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise bad("betas", f"must be two numbers in [0, 1), got {self.betas}")
        if self.grad_clip < 0 or self.weight_decay < 0 or self.z_loss < 0:
            raise bad("grad_clip", "grad_clip, weight_decay and z_loss must be >= 0")


@dataclass
class PretrainConfig(TrainConfig):
    """`[pretrain]`: the loop settings plus the data and the phases."""

    data_dir: str | None = None  # tokenized data folder (tokens.json); default <run>/data
    tokenizer_dir: str | None = None  # copied into every checkpoint; default <run>/tokenizer when present
    phases: list[PhaseConfig] = field(default_factory=lambda: [PhaseConfig(steps=100)])
    eval_batches: int = 4  # batches of the val split scored at each checkpoint (0: none)

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        super().validate(where, prefix)
        if not self.phases:
            raise ConfigError(f"{prefix}phases in {where}: give at least one [[pretrain.phases]] table")
        names = [p.name for p in self.phases]
        if len(set(names)) != len(names):
            raise ConfigError(f"{prefix}phases in {where}: phase names must be unique, got {names}")
        for i, p in enumerate(self.phases):
            gb = p.global_batch or self.global_batch
            if gb % self.micro_batch:
                raise ConfigError(
                    f"{prefix}phases[{i}].global_batch in {where}: {gb} must be a multiple of "
                    f"micro_batch={self.micro_batch}"
                )
