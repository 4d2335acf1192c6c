"""Data pipeline throughput on ~50 MB of ../shared/data text (Gutenberg, Python docs, Tiny Shakespeare).

Measures, in one run:
- the whole data stage (`run_data_stage`: read, clean, dedup, PII, tokenizer training, tokenize, shards): MB/s of
  input text, with the time of each part;
- tokenization alone (moxin's `tokenize_processed`: read processed JSONL, encode, write shards) against raw
  `tokenizers` batch encoding of the same texts held in memory, ids included (`encode_batch`, and
  `encode_batch_fast`, which moxin uses), alternating the two and keeping each one's best of `--repeat` runs, since the machine is shared;
- peak RSS of the stage (this process and the largest worker process), and the machine's load average.

Prints one JSON object. Usage: python benchmarks/data_pipeline.py [--mb 50] [--repeat 3] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"


def corpus_config(mb: float, workers: int):
    from moxin.data.config import DataConfig, SourceConfig

    # Gutenberg books average ~265 KB: take as many as make up the rest of the budget after docs + Shakespeare.
    books = max(1, int((mb - 11.6) * 1e6 / 265e3))
    return DataConfig(sources=[
        SourceConfig(name="gutenberg", type="jsonl", license="LicenseRef-PublicDomain", max_docs=books,
                     path=str(DATA / "gutenberg" / "gutenberg_train.jsonl.xz")),
        SourceConfig(name="pydocs", type="jsonl", license="PSF-2.0",
                     path=str(DATA / "python_docs" / "python311_docs_rst.jsonl.xz")),
        SourceConfig(name="shakespeare", type="text", license="LicenseRef-PublicDomain", doc_chars=8000,
                     path=str(DATA / "tinyshakespeare" / "input.txt")),
    ], shard_tokens=1 << 22, workers=workers)


def timed_stage(cfg, tok_cfg, run: Path) -> dict:
    """The whole stage, with the time spent in each part (by wrapping the stage's own functions)."""
    import moxin.data.pipeline as pl

    parts: dict[str, float] = {}

    def wrap(name, fn):
        def inner(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                parts[name] = parts.get(name, 0.0) + time.perf_counter() - t
        return inner

    saved = (pl.Processor.run, pl.ensure_tokenizer, pl._tokenize)
    pl.Processor.run = wrap("process", pl.Processor.run)
    pl.ensure_tokenizer, pl._tokenize = wrap("tokenizer_training", pl.ensure_tokenizer), wrap("tokenize", pl._tokenize)
    try:
        t0 = time.perf_counter()
        manifest = pl.run_data_stage(cfg, tok_cfg, 0, run, force=True, progress=False)
        total = time.perf_counter() - t0
    finally:
        pl.Processor.run, pl.ensure_tokenizer, pl._tokenize = saved
    return {"seconds": total, "parts": parts, "manifest": manifest}


def tokenization_only(run: Path, repeat: int) -> dict:
    import numpy as np

    from moxin.data.shard import load_bpe, tokenize_processed

    processed = run / "data" / "processed"
    names = sorted(p.name[:-6] for p in processed.glob("*.jsonl"))
    splits = {n: np.load(processed / f"{n}.split.npy") for n in names}
    texts = [json.loads(line)["text"] for n in names for line in open(processed / f"{n}.jsonl", "rb")]
    nbytes = sum(len(t.encode("utf-8")) for t in texts)
    tok = load_bpe(run / "tokenizer")
    best = {"moxin": 1e9, "raw_encode_batch": 1e9, "raw_encode_batch_fast": 1e9}
    tokens = 0
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            meta = tokenize_processed(processed, Path(out), names, splits, tok, 0, 1 << 22)
            best["moxin"] = min(best["moxin"], time.perf_counter() - t)
        tokens = sum(v[s]["tokens"] for v in meta["sources"].values() for s in v)
        # Raw: all texts already in memory, one batch call, and the ids taken out (what any shard writer needs).
        t = time.perf_counter()
        ids = [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]
        best["raw_encode_batch"] = min(best["raw_encode_batch"], time.perf_counter() - t)
        t = time.perf_counter()
        ids = [e.ids for e in tok.encode_batch_fast(texts, add_special_tokens=False)]
        best["raw_encode_batch_fast"] = min(best["raw_encode_batch_fast"], time.perf_counter() - t)
        del ids
    mbps = {k: nbytes / 1e6 / v for k, v in best.items()}
    return {"mb": nbytes / 1e6, "tokens": tokens, "seconds": best, "mb_per_s": mbps,
            "ratio_vs_encode_batch": mbps["moxin"] / mbps["raw_encode_batch"],
            "ratio_vs_encode_batch_fast": mbps["moxin"] / mbps["raw_encode_batch_fast"],
            "moxin_tokens_per_s": tokens / best["moxin"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=50.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=8192)
    args = ap.parse_args()
    if not DATA.is_dir():
        sys.exit(f"../shared/data not found at {DATA}")
    from moxin.tokenizer.config import TokenizerConfig

    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp)
        stage = timed_stage(corpus_config(args.mb, args.workers), TokenizerConfig(vocab_size=args.vocab), run)
        m = stage.pop("manifest")
        mb_in = sum(s["bytes_in"] for s in m["sources"]) / 1e6
        # High-water marks now, before the raw baseline holds every Encoding of the corpus in memory at once.
        self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        tok_only = tokenization_only(run, args.repeat)
    raw_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "benchmark": "data_pipeline", "input_mb": round(mb_in, 2),
        "docs_in": sum(s["docs_in"] for s in m["sources"]), "docs_kept": sum(s["docs_kept"] for s in m["sources"]),
        "train_tokens": m["tokens"]["train_tokens"], "workers": args.workers,
        "whole_stage": {"seconds": round(stage["seconds"], 2), "mb_per_s": round(mb_in / stage["seconds"], 3),
                        "parts_seconds": {k: round(v, 2) for k, v in stage["parts"].items()}},
        "tokenization": {k: (round(v, 3) if isinstance(v, float) else
                             {kk: round(vv, 3) for kk, vv in v.items()} if isinstance(v, dict) else v)
                         for k, v in tok_only.items()},
        "peak_rss_mb": {"stage_main": round(self_rss, 1), "stage_largest_worker": round(child_rss, 1),
                        "after_raw_baseline": round(raw_rss, 1)},
        "loadavg_before": [round(x, 2) for x in load0], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }, indent=2))


if __name__ == "__main__":
    main()
