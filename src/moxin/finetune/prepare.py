"""From the recipe's data files to encoded train/val examples and the fine-tuning data manifest.

read + normalise (data.py) → exact dedup → 13-gram decontamination against the eval sets → chat template and
masks (template.py; too-long examples dropped or truncated) → held-out split → `<out>/data/` with train.jsonl,
val.jsonl (normalised examples) and manifest.json (licences, input SHA-256, counts in/kept/dropped by reason with
file:line examples, decontamination report, code version)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from moxin.errors import DataError
from moxin.finetune import data as fd
from moxin.finetune.config import EvalSetConfig, FinetuneConfig, ModeConfig
from moxin.finetune.template import encode_chat, encode_prompt, fit_length, shift_labels
from moxin.provenance import sha256_file


@dataclass
class Prepared:
    train: list[Any]
    val: list[Any]
    ledger: fd.Ledger
    manifest: dict[str, Any] = field(default_factory=dict)
    manifest_path: Path | None = None
    manifest_sha256: str = ""


# ------------------------------------------------------------------------------------------------ decontamination
class _WordIndex:
    """A small own 13-gram index (lower-cased word n-grams in a set), used when moxin.data's is not installed."""

    def __init__(self, cfg: EvalSetConfig, n: int) -> None:
        self.name, self.path, self.n, self.grams, self.items = cfg.name, cfg.path, n, set(), 0
        for rec in _eval_records(Path(cfg.path)):
            self.items += 1
            self.grams |= self.ngrams(fd_text(rec, cfg.fields))

    def ngrams(self, text: str) -> set[str]:
        w = re.findall(r"\w+", text.lower())
        return {" ".join(w[i : i + self.n]) for i in range(len(w) - self.n + 1)}

    def hit(self, text: str) -> bool:
        return not self.grams.isdisjoint(self.ngrams(text))


def fd_text(rec: dict, fields: list[str]) -> str:
    parts: list[str] = []
    for f in fields:
        v = rec.get(f)
        parts.extend(str(x) for x in v) if isinstance(v, list) else parts.append("" if v is None else str(v))
    return " ".join(parts)


def _eval_records(path: Path):
    if not path.is_file():
        raise DataError(f"finetune.decontaminate: eval set {path} does not exist; fix its path")
    count = fd.DatasetCount("eval", str(path), "")
    for _, rec in fd.read_records(path, count):
        if isinstance(rec, dict):
            yield rec


class _SharedIndex:
    """moxin.data's 13-gram index (the pretraining data stage's decontamination), when it is installed."""

    def __init__(self, cfg: EvalSetConfig, n: int) -> None:
        from moxin.data.decontam import build_index
        from moxin.data.text import UnitHasher

        self.name, self.n, self.hasher = cfg.name, n, UnitHasher()
        self.index = build_index(cfg, n, self.hasher, where="finetune.decontaminate")
        self.items = self.index.items

    def hit(self, text: str) -> bool:
        from moxin.data.text import ngram_hashes, units

        return len(self.index.matches(ngram_hashes(self.hasher(units(text)), self.n))) > 0


def make_index(cfg: EvalSetConfig, n: int):
    try:
        import moxin.data.decontam  # noqa: F401
    except ImportError:
        return _WordIndex(cfg, n), "moxin.finetune (own word 13-grams)"
    return _SharedIndex(cfg, n), "moxin.data.decontam"


def decontaminate(
    examples: list[dict], sets: list[EvalSetConfig], n: int, resolve: Callable[[str], Path], ledger: fd.Ledger
) -> tuple[list[dict], dict[str, Any]]:
    if not sets:
        return examples, {"eval_sets": [], "ngram": n}
    indexes, impl = [], ""
    for s in sets:
        idx, impl = make_index(dataclasses.replace(s, path=str(resolve(s.path))), n)
        indexes.append(idx)
    # Eval sets are named as written in the recipe, with the SHA-256 of a single file (never an absolute path).
    report: dict[str, Any] = {
        "ngram": n,
        "implementation": impl,
        "eval_sets": [
            {
                "name": i.name,
                "path": s.path,
                "items": i.items,
                "matched": 0,
                "sha256": sha256_file(resolve(s.path)) if resolve(s.path).is_file() else None,
            }
            for i, s in zip(indexes, sets)
        ],
    }
    kept = []
    for ex in examples:
        text = fd.example_text(ex)
        hit = next((k for k, idx in enumerate(indexes) if idx.hit(text)), None)
        if hit is None:
            kept.append(ex)
            continue
        report["eval_sets"][hit]["matched"] += 1
        ledger.drop_example(ex, f"contaminated:{indexes[hit].name}", f"shares a {n}-gram with the eval set")
    return kept, report


# ------------------------------------------------------------------------------------------------ encoding
def encode(ex: dict, mode: str, tok: Any, cfg: ModeConfig) -> Any:
    if mode == "sft":
        ids, mask = fit_length(*encode_chat(tok, ex["messages"]), cfg.seq_len, cfg.too_long)
        if not mask[1:].any():
            raise fd.BadRecord("no_assistant_token", "the template left no assistant token to learn")
        return ids, shift_labels(ids, mask)
    if mode == "dpo":
        out = {}
        for side in ("chosen", "rejected"):
            ids, mask = encode_chat(tok, ex["prompt"] + ex[side], from_turn=len(ex["prompt"]))
            ids, mask = fit_length(ids, mask, cfg.seq_len, cfg.too_long)
            out[f"{side}_ids"], out[f"{side}_labels"] = ids, shift_labels(ids, mask)
        return out
    ids = encode_prompt(tok, ex["prompt"])
    if len(ids) >= cfg.seq_len:
        raise fd.BadRecord("too_long", f"prompt of {len(ids)} tokens >= seq_len={cfg.seq_len}")
    return ids, ex["answer"]


def encode_all(examples: list[dict], mode: str, tok: Any, cfg: ModeConfig, ledger: fd.Ledger) -> list[tuple]:
    out = []
    for ex in examples:
        try:
            out.append((ex, encode(ex, mode, tok, cfg)))
        except fd.BadRecord as e:
            if cfg.on_bad_record == "error":
                raise DataError(
                    f"{ex['dataset']} {ex['src']}: {e.reason} ({e.detail}); raise seq_len, set "
                    f'too_long = "truncate", or on_bad_record = "skip" to count and skip it'
                ) from None
            ledger.drop_example(ex, e.reason, e.detail)
    return out


# ------------------------------------------------------------------------------------------------ all of it
def prepare(
    fcfg: FinetuneConfig,
    mode: str,
    tok: Any,
    resolve: Callable[[str], Path],
    out_dir: Path | None,
    seed: int,
    write: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> Prepared:
    cfg = fcfg.mode(mode)
    if not cfg.data:
        raise DataError(f"finetune.{mode}.data is empty; add [[finetune.{mode}.data]] tables with path and license")
    ledger = fd.Ledger()
    examples: list[dict] = []
    for d in cfg.data:
        examples += fd.load_dataset(d, mode, resolve, fcfg.system_prompt, cfg.on_bad_record == "error", ledger)
    examples = fd.dedup(examples, ledger)
    examples, decon = decontaminate(examples, fcfg.decontaminate, fcfg.decontam_ngram, resolve, ledger)
    encoded = encode_all(examples, mode, tok, cfg, ledger)
    if not encoded:
        raise DataError(f"finetune {mode}: no usable example left ({ledger.summary()}); see the drop reasons")
    train, val = fd.split([e for e, _ in encoded], cfg.val_fraction, cfg.val_max)
    val_ids = {id(e) for e in val}
    prep = Prepared(
        [enc for e, enc in encoded if id(e) not in val_ids], [enc for e, enc in encoded if id(e) in val_ids], ledger
    )
    log(f"data: {ledger.summary()}; {len(prep.train)} train / {len(prep.val)} held-out examples")
    if write and out_dir is not None:
        _write(prep, out_dir / "data", mode, seed, decon, train, val, cfg)
    return prep


def _write(
    prep: Prepared, folder: Path, mode: str, seed: int, decon: dict, train: list, val: list, cfg: ModeConfig
) -> None:
    from moxin.config import to_dict
    from moxin.provenance import atomic_dir, code_version, write_manifest

    def jsonl(rows: list[dict]) -> str:
        return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows)

    with atomic_dir(folder, overwrite=True) as tmp:
        (tmp / "train.jsonl").write_text(jsonl(train), "utf-8")
        (tmp / "val.jsonl").write_text(jsonl(val), "utf-8")
        info = {
            "stage": "finetune-data",
            "mode": mode,
            "seed": seed,
            "datasets": [c.as_dict() for c in prep.ledger.sets.values()],
            "decontamination": decon,
            "splits": {"train": len(train), "val": len(val)},
            "config": {
                "data": to_dict(cfg.data),
                "seq_len": cfg.seq_len,
                "too_long": cfg.too_long,
                "val_fraction": cfg.val_fraction,
                "val_max": cfg.val_max,
            },
            "code": code_version(),
        }
        prep.manifest = write_manifest(tmp, info)
    prep.manifest_path = folder / "manifest.json"
    prep.manifest_sha256 = sha256_file(prep.manifest_path)


def token_stats(items: list[Any]) -> dict[str, int]:
    lens = [len(a[0]) if isinstance(a, tuple) else len(a["chosen_ids"]) for a in items]
    return {"examples": len(lens), "tokens": int(np.sum(lens)) if lens else 0, "max_len": max(lens, default=0)}
