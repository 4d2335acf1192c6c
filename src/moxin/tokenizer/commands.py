"""`moxin tokenizer RECIPE` (lives with the data commands, which share the processing)."""

from moxin.data.commands import tokenizer

__all__ = ["tokenizer"]
