"""The data stage: sources → cleaned documents → tokenizer (trained on a sample, or reused) → token shards, with
`manifest.json` and `data_card.md`. One call for the build: `run_data_stage(data_cfg, tok_cfg, seed, run_dir)`.

Writes (atomically; an interrupted run leaves the previous folder untouched):
    <run>/data/processed/<source>.jsonl      kept documents {id, lang, text} after every step
    <run>/data/processed/<source>.offsets.npy (n, 2) int64 byte offset/length; .split.npy uint8 (0 train, 1 val)
    <run>/data/tokens.json, tokens/           the shard contract (moxin.data.tokens)
    <run>/data/samples/<step>.<reason>.jsonl  examples of every drop/change reason and read error
    <run>/data/rejects.jsonl                 every record that could not be read: file, line, reason, first bytes
    <run>/data/manifest.json, data_card.md
    <run>/tokenizer/                          trained here unless an up-to-date one is there already
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import xxhash

from moxin.data.config import DataConfig
from moxin.data.document import REJECTS_FILE
from moxin.data.process import Processor, ProcessResult
from moxin.errors import DataError
from moxin.provenance import (
    atomic_dir,
    atomic_write_bytes,
    atomic_write_text,
    code_version,
    fingerprint,
    write_manifest,
)
from moxin.tokenizer.config import TokenizerConfig


def _progress(enabled: bool):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
        transient=False,
    )


def inputs_fingerprint(data_cfg: DataConfig, tok_cfg: TokenizerConfig, seed: int) -> tuple[str, str, dict]:
    """What the stage's output depends on: (fingerprint of everything, fingerprint of what the cleaned text
    depends on (configs without the tokenizer, seed, every input file's content), per-source fingerprints)."""
    from moxin.data.sources import source_fingerprint

    per = {s.name: source_fingerprint(s, f"data.sources[{i}] ({s.name})") for i, s in enumerate(data_cfg.sources)}
    evals = {e.name: source_fingerprint_file(e.path) for e in data_cfg.decontaminate}
    process_fp = fingerprint(
        {
            "data": data_cfg.record(),
            "seed": seed,
            "evals": evals,
            "sources": {k: v["fingerprint"] for k, v in per.items()},
        }
    )
    tok_files = _reused_tokenizer_fp(tok_cfg.path) if tok_cfg.path else None
    # A reused tokenizer counts by its files' content, not by where it lies (an adapt run's base/ is inside the run).
    return (
        fingerprint({"process": process_fp, "tokenizer": tok_cfg.record(), "tokenizer_files": tok_files}),
        process_fp,
        per,
    )


def _reused_tokenizer_fp(path: str) -> dict[str, str]:
    """SHA-256 of the files of a reused tokenizer (`tokenizer.path`), so editing it invalidates the stage."""
    from moxin.provenance import sha256_file

    p = Path(path)
    files = sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p] if p.is_file() else []
    return {f.name: sha256_file(f) for f in files}


def source_fingerprint_file(path: str) -> str:
    from moxin.provenance import sha256_file

    return sha256_file(path) if Path(path).is_file() else "missing"


def assign_splits(res: ProcessResult, val_fraction: float) -> dict[str, np.ndarray]:
    """uint8 per kept document: 1 (val) when its hash-derived u < val_fraction. A source with ≥ 2 documents and
    none drawn gets its smallest-u document as val, so every source has a held-out split when asked for one."""
    out = {}
    for name, sr in res.sources.items():
        u = np.asarray(sr.split_u, dtype=np.float64)
        split = (u < val_fraction).astype(np.uint8)
        if val_fraction > 0 and len(u) >= 2 and not split.any():
            split[int(np.argmin(u))] = 1
        if len(u) and split.all():
            split[int(np.argmax(u))] = 0
        out[name] = split
    return out


def tokenizer_sample(processed: Path, splits: dict[str, np.ndarray], sample_bytes: int, seed: int) -> list[str]:
    """Train documents in a seeded hash order (xxh64 of the processed record), until `sample_bytes` of UTF-8:
    every source contributes about in proportion to its size, and the same data and seed give the same sample."""
    keys = []
    for name, split in splits.items():
        offsets = np.load(processed / f"{name}.offsets.npy", allow_pickle=False)
        with open(processed / f"{name}.jsonl", "rb") as fh:
            for i, line in enumerate(fh):
                if not split[i]:
                    keys.append(
                        (xxhash.xxh64_intdigest(line, seed=seed & 0xFFFFFFFFFFFFFFFF), name, i, int(offsets[i][1]))
                    )
    keys.sort()
    chosen, total = [], 0
    for key in keys:
        if total >= sample_bytes:
            break
        chosen.append(key)
        total += key[3]
    texts = []
    for name in splits:  # read back in file order (sequential I/O), then restore the hash order
        rows = sorted((i, k) for k, (_, n, i, _) in enumerate(chosen) if n == name)
        offsets = np.load(processed / f"{name}.offsets.npy", allow_pickle=False)
        with open(processed / f"{name}.jsonl", "rb") as fh:
            for i, k in rows:
                fh.seek(int(offsets[i][0]))
                texts.append((k, json.loads(fh.read(int(offsets[i][1])))["text"]))
    return [t for _, t in sorted(texts)]


def train_tokenizer_stage(
    data_cfg: DataConfig, tok_cfg: TokenizerConfig, seed: int, run_dir: str | Path, progress: bool = True
) -> dict:
    """Only the tokenizer: from <run>/data/processed when that matches the current data config and inputs,
    else after processing the sources into a temporary folder. Returns the tokenizer manifest."""
    import tempfile

    from moxin.tokenizer.train import reuse_tokenizer

    run_dir = Path(run_dir)
    if tok_cfg.path:
        return reuse_tokenizer(tok_cfg, run_dir / "tokenizer", seed)
    _, process_fp, _ = inputs_fingerprint(data_cfg, tok_cfg, seed)
    old = _old_manifest(run_dir / "data")
    if old and old.get("process_fingerprint") == process_fp:
        processed = run_dir / "data" / "processed"
        splits = {
            s["name"]: np.load(processed / f"{s['name']}.split.npy")
            for s in old["sources"]
            if (processed / f"{s['name']}.split.npy").is_file()
        }
        return ensure_tokenizer(
            tok_cfg, tokenizer_sample(processed, splits, tok_cfg.sample_bytes, seed), run_dir / "tokenizer", seed
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    with _progress(progress) as bar, tempfile.TemporaryDirectory(prefix=".tmp-tokenizer-", dir=run_dir) as t:
        processed = Path(t)
        res = Processor(data_cfg, processed, bar).run()
        splits = _save_index(processed, res, data_cfg.val_fraction)
        texts = tokenizer_sample(processed, splits, tok_cfg.sample_bytes, seed)
    return ensure_tokenizer(tok_cfg, texts, run_dir / "tokenizer", seed)


def _save_index(processed: Path, res: ProcessResult, val_fraction: float) -> dict[str, np.ndarray]:
    if sum(len(s.offsets) for s in res.sources.values()) == 0:
        table = res.ledger.step_table(list(res.sources))
        reasons = ", ".join(f"{st['step']}.{k} {v}" for st in table for k, v in st["dropped"].items())
        raise DataError(
            f"data: no documents left after the steps ({table[0]['docs_in']} records read; dropped: "
            f"{reasons}); first read errors: {res.ledger.error_lines[:3]}; fix the inputs or relax "
            f"data.quality.* / data.decontam_action"
        )
    splits = assign_splits(res, val_fraction)
    for name, sr in res.sources.items():
        _save_npy(processed / f"{name}.offsets.npy", np.asarray(sr.offsets, dtype=np.int64).reshape(-1, 2))
        _save_npy(processed / f"{name}.split.npy", splits[name])
    return splits


def ensure_tokenizer(tok_cfg: TokenizerConfig, texts: list[str], tok_dir: Path, seed: int) -> dict:
    """Train (or reuse `tokenizer.path`) unless `tok_dir` already holds one made from the same sample and config."""
    import hashlib

    from moxin.tokenizer.train import load_manifest, train_tokenizer

    h = hashlib.sha256()
    for t in texts:
        b = t.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    old = load_manifest(tok_dir)
    cfg_hash = fingerprint(tok_cfg.record())
    # A reused tokenizer (tokenizer.path) is copied again every time: it is cheap, and its files may have changed.
    if (
        old
        and old.get("config_hash") == cfg_hash
        and not tok_cfg.path
        and old.get("sample", {}).get("sha256") == h.hexdigest()
    ):
        from moxin.provenance import verify_manifest

        if not verify_manifest(tok_dir):
            return old
    return train_tokenizer(tok_cfg, texts, tok_dir, seed)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    bio = io.BytesIO()
    np.save(bio, arr)
    atomic_write_bytes(path, bio.getvalue())


def run_data_stage(
    data_cfg: DataConfig,
    tok_cfg: TokenizerConfig,
    seed: int,
    run_dir: str | Path,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Process every source, train (or reuse) the tokenizer on a sample of the processed train text, tokenize
    into shards, and write `<run>/data/manifest.json` + `data_card.md`. `data_cfg` must have resolved paths
    (`DataConfig.resolved`). Skips the work (returns the old manifest) when the inputs' fingerprint is unchanged."""
    run_dir = Path(run_dir)
    if not data_cfg.sources:
        raise DataError("data.sources is empty; add at least one [[data.sources]] table to the recipe")
    fp, process_fp, per_source = inputs_fingerprint(data_cfg, tok_cfg, seed)
    old = _old_manifest(run_dir / "data")
    if not force and old and old.get("inputs_fingerprint") == fp and (run_dir / "data" / "tokens.json").is_file():
        return old
    with _progress(progress) as bar, atomic_dir(run_dir / "data", overwrite=True) as tmp:
        processed = tmp / "processed"
        processed.mkdir()
        res = _process(data_cfg, processed, bar, per_source, run_dir, process_fp)
        splits = _save_index(processed, res, data_cfg.val_fraction)
        texts = [] if tok_cfg.path else tokenizer_sample(processed, splits, tok_cfg.sample_bytes, seed)
        tok_manifest = ensure_tokenizer(tok_cfg, texts, run_dir / "tokenizer", seed)
        del texts
        meta = _tokenize(tmp, processed, res, splits, run_dir / "tokenizer", tok_manifest, data_cfg, bar)
        res.ledger.write_samples(tmp / "samples")
        res.ledger.write_rejects(tmp / REJECTS_FILE)
        from moxin.data.card import build_manifest, render_card

        info = build_manifest(
            data_cfg, tok_cfg, seed, fp, per_source, res, splits, meta, tok_manifest, code_version(), environment()
        )
        info["process_fingerprint"] = process_fp
        atomic_write_text(tmp / "data_card.md", render_card(info))
        manifest = write_manifest(tmp, info)
    if data_cfg.executor not in (None, "inprocess"):
        from moxin.data.executors import clean_work

        clean_work(run_dir, data_cfg, process_fp)
    return manifest


def _process(
    data_cfg: DataConfig, processed: Path, bar, per_source: dict, run_dir: Path, process_fp: str
) -> ProcessResult:
    """The cleaning pass: in this process (`workers` forked helpers), or under a datatrove executor."""
    if data_cfg.executor in (None, "inprocess"):
        return Processor(data_cfg, processed, bar, {k: v["bytes"] for k, v in per_source.items()}).run()
    from moxin.data.executors import process_scaled

    return process_scaled(data_cfg, run_dir, process_fp, processed)


def _tokenize(
    tmp: Path, processed: Path, res: ProcessResult, splits, tok_dir: Path, tok_manifest: dict, data_cfg: DataConfig, bar
) -> dict:
    from moxin.data.shard import load_bpe, tokenize_processed

    tok = load_bpe(tok_dir)
    eos_id = tok_manifest["eos_id"]
    names = [s for s in res.sources if len(res.sources[s].offsets)]
    return tokenize_processed(processed, tmp, names, splits, tok, eos_id, data_cfg.shard_tokens, bar)


def environment() -> dict:
    """Interpreter, platform and the versions of the libraries whose behaviour shapes the output. Read from package
    metadata: importing torch just to record its version would cost seconds."""
    import platform
    import sys
    from importlib.metadata import PackageNotFoundError, version

    env: dict[str, str | None] = {"python": sys.version.split()[0], "platform": platform.platform()}
    for pkg in ("numpy", "tokenizers", "transformers", "datasketch", "regex", "xxhash"):
        try:
            env[pkg] = version(pkg)
        except PackageNotFoundError:
            env[pkg] = None
    return env


def _old_manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / "manifest.json").read_text("utf-8"))
    except (FileNotFoundError, ValueError):
        return None
