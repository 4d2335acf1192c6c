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
        # local_files_only explicitly: transformers records it in a re-saved tokenizer_config.json, and its
        # default follows HF_HUB_OFFLINE as read at import time, which would make the saved bytes depend on
        # what the process imported first.
        if p.is_file() and p.suffix == ".gguf":
            return AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name, local_files_only=True)
        for folder in (p / "tokenizer", p, p.parent / "tokenizer"):
            if (folder / "tokenizer.json").is_file() or (folder / "tokenizer_config.json").is_file():
                verify_tokenizer(folder)
                return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError) as e:
        raise InteropError(f"cannot load the tokenizer of {p}: {e}") from None
    raise InteropError(f"no tokenizer found for {p} (looked for tokenizer.json in {p}/tokenizer, {p} and beside it)")


def verify_tokenizer(folder: Path) -> None:
    """Check a tokenizer folder's files against the manifest that seals it (its own, or its checkpoint's); an
    unsealed folder (a Hugging Face download) passes. CheckpointError names the file that fails."""
    from moxin.interop.native import check_sealed, sealed_by

    sealed = sealed_by(folder)
    if sealed is not None:
        check_sealed(sealed, under=sealed.prefix)
