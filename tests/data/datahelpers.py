"""Helpers and fixtures for the data tests: the shared corpora with injected near-duplicates, PII and planted
benchmark items, processed once per session. A plain module, not a conftest.py: a second conftest would shadow
`tests/conftest.py` for the `from conftest import ...` of other tests."""

from __future__ import annotations

import gzip
import json
import lzma
import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from moxin.data.config import DataConfig, EvalSetConfig, SourceConfig
from moxin.tokenizer.config import TokenizerConfig

PII = {"email": "yamada.taro@acme-corp.co.jp", "phone": "+1 415-555-0132", "ip": "93.184.216.34",
       "email2": "jane.doe@mailhost.com", "phone2": "(212) 555-0199"}


def read_jsonl(path: Path, limit: int | None = None) -> list[dict]:
    opener = lzma.open if path.name.endswith(".xz") else gzip.open if path.name.endswith(".gz") else open
    out = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                out.append(json.loads(line))
                if limit and len(out) >= limit:
                    break
    return out


def shingles(text: str) -> set:
    """The same shingles the pipeline uses: unit 5-grams (exact sets here, not MinHash estimates)."""
    from moxin.data.text import normalize, units

    u = units(normalize(text))
    return {tuple(u[i:i + 5]) for i in range(max(len(u) - 4, 1))}


def near_copy(text: str, rng: random.Random, frac: float) -> str:
    """Replace about `frac` of the words (never the first few) with other words."""
    words = text.split(" ")
    for i in rng.sample(range(5, len(words)), max(1, int(frac * len(words)))):
        words[i] = rng.choice(["lantern", "orchard", "velvet", "harbour", "quietly", "copper"])
    return " ".join(words)


from moxintest import run_cli  # noqa: F401 - one shared helper for every test folder


@dataclass
class Corpus:
    root: Path
    cfg: DataConfig
    tok: TokenizerConfig
    near_dups: list[tuple[str, str, float]]  # (injected id, original id, exact Jaccard)
    planted: dict[str, list[int]]  # eval set → item indices planted


@pytest.fixture(scope="session")
def corpus(shared_data, tmp_path_factory) -> Corpus:
    root = tmp_path_factory.mktemp("corpus")
    rng = random.Random(7)
    shakes = (shared_data / "tinyshakespeare" / "input.txt").read_text("utf-8")
    docs = [d for d in read_jsonl(shared_data / "python_docs" / "python311_docs_rst.jsonl.xz", 120)
            if 4000 < len(d["text"]) < 20000][:12]
    (root / "pydocs.jsonl").write_text("".join(json.dumps({"id": d["path"], "text": d["text"]}) + "\n" for d in docs))
    # Injected near-duplicates of Shakespeare chunks and Python docs, each with a measured Jaccard.
    from moxin.data.sources import _chunks

    chunks = [c for _, c in _chunks(shakes, 4000)]
    originals = [(f"shakespeare/input.txt#{k}", chunks[k]) for k in range(0, 120, 6)]
    originals += [(f"pydocs/{d['path']}", d["text"]) for d in docs[:10]]
    injected, near = [], []
    for i, (oid, text) in enumerate(originals):
        copy = near_copy(text, rng, rng.choice([0.005, 0.01, 0.015, 0.02]))
        j = len(shingles(copy) & shingles(text)) / len(shingles(copy) | shingles(text))
        injected.append({"id": f"dup{i}", "text": copy})
        near.append((f"injected/dup{i}", oid, j))
    # PII and planted items go into prose found nowhere else in the corpus (a Gutenberg train book), or dedup
    # would remove them first as near-duplicates of their carrier text.
    book = read_jsonl(shared_data / "gutenberg" / "gutenberg_train.jsonl.xz", 1)[0]["text"]
    fresh = [c for _, c in _chunks(book, 3000)][5:]
    for i, k in enumerate(range(0, 5)):
        extra = (f"\n\nFor questions write to {PII['email']} or {PII['email2']}, call {PII['phone']} or "
                 f"{PII['phone2']}; the server is at {PII['ip']}.\n")
        injected.append({"id": f"pii{i}", "text": fresh[k] + extra})
    # Planted benchmark items: whole HellaSwag contexts+endings and ARC questions+choices inside prose.
    hs = read_jsonl(shared_data / "hellaswag" / "hellaswag_val.jsonl.gz", 400)
    arc = read_jsonl(shared_data / "arc" / "ARC-Challenge-Test.jsonl", 400)
    planted = {"hellaswag": [3, 57, 211], "arc_challenge": [10, 150]}
    for i in planted["hellaswag"]:
        item = hs[i]["ctx"] + " " + hs[i]["endings"][int(hs[i]["label"])]
        injected.append({"id": f"hs{i}", "text": fresh[10 + planted["hellaswag"].index(i)] + "\n\n" + item + "\n"})
    for i in planted["arc_challenge"]:
        item = arc[i]["question"] + " " + " ".join(arc[i]["choices"]["text"])
        injected.append({"id": f"arc{i}", "text": fresh[20 + planted["arc_challenge"].index(i)] + "\n\n" + item + "\n"})
    (root / "injected.jsonl").write_text("".join(json.dumps(r) + "\n" for r in injected))
    (root / "hellaswag.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hs))
    cfg = DataConfig(
        sources=[
            SourceConfig(name="shakespeare", type="text", license="LicenseRef-PublicDomain",
                         path=str(shared_data / "tinyshakespeare" / "input.txt"), doc_chars=4000),
            SourceConfig(name="pydocs", type="jsonl", license="PSF-2.0", path=str(root / "pydocs.jsonl"),
                         id_field="id"),
            SourceConfig(name="gutenberg", type="jsonl", license="LicenseRef-PublicDomain", max_docs=3,
                         path=str(shared_data / "gutenberg" / "gutenberg_val.jsonl.xz")),
            SourceConfig(name="aozora", type="jsonl", license="LicenseRef-PublicDomain",
                         path=str(shared_data / "aozora_ja" / "aozora_ja_val.jsonl.xz")),
            SourceConfig(name="stdlib", type="python-stdlib", license="PSF-2.0", max_docs=40),
            SourceConfig(name="injected", type="jsonl", license="CC0-1.0", path=str(root / "injected.jsonl"),
                         id_field="id"),
        ],
        decontaminate=[EvalSetConfig("hellaswag", str(root / "hellaswag.jsonl"), ["ctx", "endings"]),
                       EvalSetConfig("arc_challenge", str(shared_data / "arc" / "ARC-Challenge-Test.jsonl"),
                                     ["question", "choices"])],
        val_fraction=0.05, shard_tokens=1 << 16, workers=2)
    tok = TokenizerConfig(vocab_size=2048, sample_bytes=1_500_000)
    return Corpus(root, cfg, tok, near, planted)


@pytest.fixture(scope="session")
def corpus_run(corpus, tmp_path_factory):
    """(run dir, manifest) of the data stage over `corpus`."""
    from moxin.data.pipeline import run_data_stage

    run = tmp_path_factory.mktemp("run")
    return run, run_data_stage(corpus.cfg, corpus.tok, 1234, run, progress=False)
