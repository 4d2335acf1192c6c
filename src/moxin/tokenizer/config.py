"""The `[tokenizer]` section of a recipe."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from moxin.errors import ConfigError

# ChatML: the format most open chat models and the OpenAI-compatible servers expect. `add_generation_prompt`
# opens the assistant turn; the model is trained to end a turn with <|im_end|>.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass
class TokenizerConfig:
    """Byte-level BPE trained on a sample of the processed data, or an existing tokenizer reused (`path`)."""

    vocab_size: int = 32000
    special_tokens: list[str] = field(
        default_factory=lambda: ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
    )
    eos_token: str = "<|endoftext|>"  # separates documents in the token shards
    pad_token: str = "<|pad|>"
    bos_token: str = ""  # empty: none
    chat_template: str = CHATML_TEMPLATE
    sample_bytes: int = 8_000_000  # UTF-8 bytes of processed train text to learn merges from
    min_frequency: int = 2
    model_max_length: int = 4096
    path: str = ""  # reuse this tokenizer (a folder with tokenizer.json, or a model folder) instead of training

    def validate(self, where: str = "<config>", prefix: str = "") -> None:
        if not self.path and self.vocab_size < 256 + len(self.special_tokens):
            raise ConfigError(
                f"{prefix}vocab_size in {where} is {self.vocab_size}; byte-level BPE needs at least "
                f"256 + {len(self.special_tokens)} special tokens"
            )
        for key in ("eos_token", "pad_token", "bos_token"):
            tok = getattr(self, key)
            if tok and tok not in self.special_tokens:
                raise ConfigError(
                    f"{prefix}{key} in {where} is {tok!r} but it is not in {prefix}special_tokens "
                    f"{self.special_tokens}; add it there"
                )
        if self.sample_bytes < 1000 or self.min_frequency < 1:
            raise ConfigError(
                f"{prefix}sample_bytes/min_frequency in {where} too small ({self.sample_bytes}/{self.min_frequency})"
            )

    def record(self) -> dict[str, Any]:
        """What manifests and fingerprints keep of this section: a reused tokenizer's `path` named as
        `moxin.data.config.recorded_name` names paths (its last part when absolute), so that no record depends on
        the folder a run lies in. The reused tokenizer itself counts by its files' content (see the data stage)."""
        from moxin.config import to_dict
        from moxin.data.config import recorded_name

        return {**to_dict(self), "path": recorded_name(self.path)}
