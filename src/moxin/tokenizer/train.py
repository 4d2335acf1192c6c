"""Byte-level BPE training with `tokenizers`, saved as a Hugging Face tokenizer folder (tokenizer.json,
tokenizer_config.json, chat_template.jinja) that `transformers.AutoTokenizer.from_pretrained` loads offline.

Byte-level means every string round-trips byte-exactly (Japanese and code included): there is no normaliser and
no prefix space, and the decoder maps the 256 byte symbols back. Training is deterministic: the same sample and
config give the same tokenizer.json bytes (checked by a test)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from moxin.errors import DataError
from moxin.provenance import atomic_dir, code_version, fingerprint, sha256_file, write_manifest
from moxin.tokenizer.config import TokenizerConfig


class _Hashing:
    """Wraps the sample iterator to fingerprint exactly what the trainer saw."""

    def __init__(self, texts: Iterable[str]) -> None:
        self.texts, self.h, self.docs, self.bytes = texts, hashlib.sha256(), 0, 0

    def __iter__(self) -> Iterator[str]:
        for t in self.texts:
            b = t.encode("utf-8")
            self.h.update(len(b).to_bytes(8, "little"))
            self.h.update(b)
            self.docs += 1
            self.bytes += len(b)
            yield t


def build_bpe(cfg: TokenizerConfig, texts: Iterable[str]):
    """A trained `tokenizers.Tokenizer` (special tokens take ids 0..k-1 in config order)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=cfg.min_frequency,
        special_tokens=list(cfg.special_tokens),
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def wrap(tok, cfg: TokenizerConfig):
    """The transformers fast-tokenizer around a `tokenizers.Tokenizer`, with special tokens and chat template."""
    from transformers import PreTrainedTokenizerFast

    kw = {"eos_token": cfg.eos_token, "pad_token": cfg.pad_token or None, "bos_token": cfg.bos_token or None}
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        chat_template=cfg.chat_template,
        model_max_length=cfg.model_max_length,
        clean_up_tokenization_spaces=False,
        additional_special_tokens=[t for t in cfg.special_tokens if t not in kw.values()],
        **{k: v for k, v in kw.items() if v},
    )


def train_tokenizer(
    cfg: TokenizerConfig, texts: Iterable[str], out_dir: str | Path, seed: int = 0, inputs: dict | None = None
) -> dict:
    """Train byte-level BPE on `texts` and write `out_dir` atomically (with manifest.json). Returns the manifest.

    `inputs` (e.g. the data fingerprint the sample came from) is recorded in the manifest."""
    if cfg.path:
        return reuse_tokenizer(cfg, out_dir, seed)
    sample = _Hashing(texts)
    tok = build_bpe(cfg, sample)
    if sample.docs == 0:
        raise DataError(
            "tokenizer: the training sample is empty; the data stage kept no train documents "
            "(see the data manifest's drop reasons)"
        )
    hf = wrap(tok, cfg)
    out_dir = Path(out_dir)
    with atomic_dir(out_dir, overwrite=True) as tmp:
        hf.save_pretrained(tmp)
        rec = cfg.record()
        info = {
            "stage": "tokenizer",
            "kind": "byte-level BPE (tokenizers)",
            "config": rec,
            "config_hash": fingerprint(rec),
            "seed": seed,
            "inputs": inputs or {},
            "sample": {"docs": sample.docs, "bytes": sample.bytes, "sha256": sample.h.hexdigest()},
            "vocab_size": tok.get_vocab_size(),
            "eos_id": tok.token_to_id(cfg.eos_token),
            "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
            "code": code_version(),
        }
        manifest = write_manifest(tmp, info)
    return manifest


def reuse_tokenizer(cfg: TokenizerConfig, out_dir: str | Path, seed: int = 0) -> dict:
    """Copy an existing tokenizer (tokenizer.path) into the run, so every run folder stands alone."""
    from moxin.interop.tokenizer import load_tokenizer

    hf = load_tokenizer(cfg.path)
    eos = cfg.eos_token if cfg.eos_token in hf.get_vocab() else hf.eos_token
    if eos is None:
        raise DataError(
            f"tokenizer.path {cfg.path!r} has no EOS token and tokenizer.eos_token {cfg.eos_token!r} "
            f"is not in its vocabulary; set tokenizer.eos_token to one of its special tokens"
        )
    with atomic_dir(Path(out_dir), overwrite=True) as tmp:
        hf.save_pretrained(tmp)
        if not (tmp / "tokenizer.json").is_file():
            raise DataError(f"tokenizer.path {cfg.path!r} is not a fast (tokenizer.json) tokenizer; moxin needs one")
        rec = cfg.record()
        info = {
            "stage": "tokenizer",
            "kind": "reused",
            "reused_from": rec["path"],
            "config": rec,
            "config_hash": fingerprint(rec),
            "seed": seed,
            "vocab_size": len(hf),
            "eos_id": hf.convert_tokens_to_ids(eos),
            "eos_token": eos,
            "tokenizer_sha256": sha256_file(tmp / "tokenizer.json"),
            "code": code_version(),
        }
        manifest = write_manifest(tmp, info)
    return manifest


def load_manifest(folder: str | Path) -> dict | None:
    import json

    p = Path(folder) / "manifest.json"
    try:
        return json.loads(p.read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
