"""Tokenizer training (byte-level BPE) and its config. See `train_tokenizer`."""

from moxin.tokenizer.config import CHATML_TEMPLATE, TokenizerConfig
from moxin.tokenizer.train import train_tokenizer

__all__ = ["CHATML_TEMPLATE", "TokenizerConfig", "train_tokenizer"]
