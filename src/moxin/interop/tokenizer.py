"""Tokenizer loading for any model path moxin accepts, offline."""

from __future__ import annotations

from pathlib import Path

from moxin.errors import InteropError


def load_tokenizer(path: str | Path):
    """A transformers tokenizer from a moxin checkpoint (its tokenizer/ folder), an HF directory or a GGUF file."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    p = Path(path)
    try:
        if p.is_file() and p.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
        for folder in (p / "tokenizer", p, p.parent / "tokenizer"):
            if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
                return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as e:
        raise InteropError(f"cannot load the tokenizer of {p}: {e}") from None
    raise InteropError(f"no tokenizer found for {p} (looked for tokenizer.json in {p}/tokenizer, {p} and beside it)")
