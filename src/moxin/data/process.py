"""The cleaning pass: sources → steps → `processed/<source>.jsonl` (kept documents, in order).

Steps, in this fixed order (`STEPS`): read, normalize, langid, quality, dedup_exact, dedup_fuzzy, pii,
decontaminate. The per-document work (everything except the two dedup decisions, which depend on the documents
before) runs in `workers` forked processes over bounded batches; the decisions and all counting happen in the
parent in document order, so the result does not depend on the number of workers."""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from moxin.data import langid, pii, quality
from moxin.data.config import DataConfig, SourceConfig, recorded_name
from moxin.data.decontam import EvalIndex, build_index
from moxin.data.dedup import FuzzyIndex, MinHasher
from moxin.data.document import Document, Ledger
from moxin.data.sources import Meter, read_source
from moxin.data.text import UnitHasher, ngram_hashes, normalize, units

STEPS = ["read", "normalize", "langid", "quality", "dedup_exact", "dedup_fuzzy", "pii", "decontaminate"]
BATCH_DOCS, BATCH_BYTES = 512, 8 << 20


@dataclass
class Analysis:
    text: str  # after normalisation
    normalized: bool
    lang: str
    quality: str | None
    digest: bytes  # SHA-256 of the normalised text (before PII masking): exact dedup and the val split
    sig: np.ndarray | None = None
    masked: str | None = None  # the text after PII masking, when it changed anything
    pii: dict[str, int] = field(default_factory=dict)
    decon: dict[str, list[int]] = field(default_factory=dict)


class _State:
    """What a worker needs; set in the parent before forking, so the eval indexes are shared, not pickled."""

    cfg: DataConfig
    evals: list[EvalIndex]
    hasher: UnitHasher
    minhasher: MinHasher | None


_S = _State()


def analyze(doc: Document) -> Analysis:
    """All per-document work for one document (pure: depends only on the document and the config)."""
    cfg = _S.cfg
    text = normalize(doc.text) if cfg.normalize else doc.text
    kind = doc.metadata.get("kind", "auto")
    lang = langid.identify(text, kind) if cfg.langid else ("code" if kind == "code" else "und")
    toks = units(text)
    uh = _S.hasher(toks)  # (L,) unit hashes
    ulens = np.fromiter((len(t) for t in toks), dtype=np.int64, count=len(toks))  # (L,)
    reason = quality.check(text, lang, uh, ulens, cfg.quality) if doc.metadata.get("quality", True) else None
    a = Analysis(text, text != doc.text, lang, reason, hashlib.sha256(text.encode("utf-8")).digest())
    if reason is not None:
        return a
    if _S.minhasher is not None:
        a.sig = _S.minhasher.signature(uh)
    if cfg.pii:
        masked, a.pii = pii.mask(text)
        a.masked = masked if a.pii else None
    if _S.evals:
        g = ngram_hashes(uh, cfg.decontam_ngram)
        for ev in _S.evals:
            hits = ev.matches(g)
            if len(hits):
                a.decon[ev.name] = hits.tolist()
    return a


@dataclass
class SourceResult:
    """Kept documents of one source: where each sits in processed/<source>.jsonl and its split key."""

    name: str
    offsets: list[tuple[int, int]] = field(default_factory=list)  # (byte offset, byte length) per kept doc
    split_u: list[float] = field(default_factory=list)  # uniform in [0, 1) from the document hash
    digests: list[bytes] = field(default_factory=list)


@dataclass
class ProcessResult:
    ledger: Ledger
    sources: dict[str, SourceResult]
    decontam: dict[str, dict]


def _batches(docs: Iterable[Document]) -> Iterator[list[Document]]:
    batch, size = [], 0
    for d in docs:
        batch.append(d)
        size += len(d.text)
        if len(batch) >= BATCH_DOCS or size >= BATCH_BYTES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _analyzed(pool, docs: Iterable[Document]) -> Iterator[tuple[Document, Analysis]]:
    """(doc, analysis) in input order; with a pool, batch k+1 is read while batch k is analysed."""
    if pool is None:
        for d in docs:
            yield d, analyze(d)
        return
    pending = None
    for batch in _batches(docs):
        job = pool.map_async(analyze, batch, chunksize=8)
        if pending is not None:
            yield from zip(pending[0], pending[1].get())
        pending = (batch, job)
    if pending is not None:
        yield from zip(pending[0], pending[1].get())


class Processor:
    """Runs the steps over every source and writes processed/<source>.jsonl under `out`."""

    def __init__(self, cfg: DataConfig, out: Path, progress=None, totals: dict[str, int] | None = None) -> None:
        self.cfg, self.out, self.progress = cfg, out, progress
        self.totals = totals or {}  # input bytes on disk per source: the progress bar's total (rate and ETA)
        self.ledger = Ledger(STEPS, per_reason=cfg.samples_per_reason)
        self.exact: dict[bytes, str] = {}
        self.fuzzy = FuzzyIndex(cfg.fuzzy_threshold, cfg.fuzzy_num_perm) if cfg.dedup_fuzzy else None
        self.decontam: dict[str, dict] = {}
        self.found: dict[str, set[int]] = {}

    def run(self) -> ProcessResult:
        self.prepare()
        pool = mp.get_context("fork").Pool(self.cfg.workers) if self.cfg.workers > 1 else None
        try:
            results = {s.name: self._source(s, pool, i) for i, s in enumerate(self.cfg.sources)}
        finally:
            if pool is not None:
                pool.terminate()
        return self.result(results)

    def _source(self, src: SourceConfig, pool, index: int) -> SourceResult:
        meter = Meter()
        task = (
            self.progress.add_task(f"data {src.name}", total=self.totals.get(src.name) or None)
            if self.progress
            else None
        )
        docs = read_source(src, self.ledger, f"data.sources[{index}] ({src.name})", meter)
        pairs = _analyzed(pool, tag(docs, src))
        res = self.consume(
            src.name, pairs, lambda: task is not None and self.progress.update(task, completed=meter.position)
        )
        if task is not None:
            self.progress.update(task, total=meter.position, completed=meter.position)
        return res

    def consume(self, name: str, pairs: Iterable[tuple[Document, Analysis]], tick=None) -> SourceResult:
        """Account (doc, analysis) pairs in order and write the kept ones to processed/<name>.jsonl."""
        res = SourceResult(name)
        with open(self.out / f"{name}.jsonl", "wb") as fh:
            for doc, a in pairs:
                if self._account(name, doc, a):
                    line = (
                        json.dumps(
                            {"id": doc.id, "lang": a.lang, "where": doc.metadata.get("where", ""), "text": doc.text},
                            ensure_ascii=False,
                        )
                        + "\n"
                    ).encode("utf-8")
                    res.offsets.append((fh.tell(), len(line)))
                    fh.write(line)
                    res.split_u.append(int.from_bytes(a.digest[:8], "big") / 2**64)
                    res.digests.append(a.digest)
                if tick is not None:
                    tick()
        return res

    def prepare(self) -> None:
        """Build the shared state (hashers, eval indexes) and the decontamination report skeleton."""
        hasher = UnitHasher()
        _S.cfg, _S.hasher = self.cfg, hasher
        _S.minhasher = MinHasher(self.cfg.fuzzy_num_perm) if self.cfg.dedup_fuzzy else None
        _S.evals = [
            build_index(e, self.cfg.decontam_ngram, hasher, f"data.decontaminate[{i}]")
            for i, e in enumerate(self.cfg.decontaminate)
        ]
        for ev in _S.evals:
            self.decontam[ev.name] = {
                "path": recorded_name(ev.path),
                "items": ev.items,
                "items_too_short": ev.too_short,
                "items_found": 0,
                "docs_by_source": {},
                "example_items": [],
            }
            self.found[ev.name] = set()

    def result(self, results: dict[str, SourceResult]) -> ProcessResult:
        for name, found in self.found.items():
            self.decontam[name]["items_found"] = len(found)
            self.decontam[name]["example_items"] = sorted(found)[:20]
        return ProcessResult(self.ledger, results, self.decontam)

    def _account(self, s: str, doc: Document, a: Analysis) -> bool:
        """Apply the step decisions in order, counting every drop and change. True if the document is kept."""
        L = self.ledger
        doc.metadata["lang"] = a.lang
        L.enter(s, "read", doc)
        L.leave(s, "read", doc)
        L.enter(s, "normalize", doc)
        if a.normalized:
            L.modify(s, "normalize", "normalized", doc)
        doc.text = a.text
        L.leave(s, "normalize", doc)
        L.enter(s, "langid", doc)
        L.leave(s, "langid", doc)
        L.enter(s, "quality", doc)
        if a.quality is not None:
            L.drop(s, "quality", a.quality, doc, f"lang={a.lang}")
            return False
        L.leave(s, "quality", doc)
        return self._dedup(s, doc, a) and self._finish(s, doc, a)

    def _dedup(self, s: str, doc: Document, a: Analysis) -> bool:
        L = self.ledger
        L.enter(s, "dedup_exact", doc)
        if self.cfg.dedup_exact:
            first = self.exact.get(a.digest)
            if first is not None:
                L.drop(s, "dedup_exact", "duplicate", doc, f"same text as {first}")
                return False
            self.exact[a.digest] = doc.id
        L.leave(s, "dedup_exact", doc)
        L.enter(s, "dedup_fuzzy", doc)
        if self.fuzzy is not None and a.sig is not None:
            hit = self.fuzzy.seen(doc.id, a.sig)
            if hit is not None:
                L.drop(s, "dedup_fuzzy", "near_duplicate", doc, f"near-duplicate of {hit[0]} (Jaccard ≈ {hit[1]:.2f})")
                return False
        L.leave(s, "dedup_fuzzy", doc)
        return True

    def _finish(self, s: str, doc: Document, a: Analysis) -> bool:
        L = self.ledger
        L.enter(s, "pii", doc)
        if a.masked is not None:
            doc.text = a.masked
        for kind, n in sorted(a.pii.items()):
            L.modify(s, "pii", kind, doc, f"{n} {kind} masked", n=n)
        L.leave(s, "pii", doc)
        L.enter(s, "decontaminate", doc)
        for name, items in a.decon.items():
            rep = self.decontam[name]
            rep["docs_by_source"][s] = rep["docs_by_source"].get(s, 0) + 1
            self.found[name].update(items)
        if a.decon and self.cfg.decontam_action == "drop":
            first = next(e.name for e in self.cfg.decontaminate if e.name in a.decon)
            L.drop(s, "decontaminate", first, doc, f"13-gram overlap with {first} items {a.decon[first][:5]}")
            return False
        L.leave(s, "decontaminate", doc)
        L.kept_language(s, a.lang)
        return True


def tag(docs: Iterable[Document], src: SourceConfig) -> Iterator[Document]:
    """Per-source facts the steps need: the source kind (python-stdlib is code) and whether quality rules apply."""
    kind = "code" if src.type == "python-stdlib" else src.kind
    for d in docs:
        d.metadata.setdefault("kind", kind)
        if not src.quality:
            d.metadata["quality"] = False
        yield d
