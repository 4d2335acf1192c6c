"""Scale-out with datatrove (the optional `scale` extra): the local pipeline's steps run as datatrove pipeline
steps, so `LocalPipelineExecutor` (one machine, many processes) or `SlurmPipelineExecutor` (a cluster) spreads them
over shards of the input files, and the result is byte-identical to the single-process run.

Two stages:
1. `AnalyzeShard` (N parallel tasks): task r reads the files whose index ≡ r (mod N) of every source and runs the
   per-document steps (normalize, langid, quality, MinHash signature, PII, decontamination), writing every event
   (document + analysis, or read error) with its global key (source, file, sequence) to `analyzed/<r>.jsonl`.
2. `merge_analyzed` (one task): a k-way merge of the shards by key replays the events in the local pipeline's order
   through the same `Processor` accounting, so the order-dependent decisions (exact and fuzzy dedup: the first copy
   wins) and every count are exactly those of `moxin data`; it writes `processed/` like the local run.

On a cluster (shared filesystem at WORK; the same recipe on every node)::

    from datatrove.executor import SlurmPipelineExecutor
    from moxin.data.scale import AnalyzeShard, merge_analyzed
    SlurmPipelineExecutor(pipeline=[AnalyzeShard(cfg, WORK)], tasks=512, time="4:00:00", partition="cpu",
                          logging_dir=f"{WORK}/logs", job_name="moxin-analyze").run()
    merge_analyzed(cfg, WORK, OUT)   # once all tasks are done (e.g. a 1-task job with depends=...)

Stage 2 holds one hash per document and the LSH index, as the local run does; stage 1 holds nothing across
documents. `max_docs` is not supported here (it depends on reading a source in one pass)."""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from moxin.data.config import DataConfig
from moxin.data.document import Document, Ledger
from moxin.data.process import _S, STEPS, Analysis, Processor, ProcessResult, analyze, tag
from moxin.data.sources import read_source, source_files
from moxin.errors import ConfigError

try:
    from datatrove.pipeline.base import PipelineStep
except ImportError:  # pragma: no cover - the `scale` extra is optional
    PipelineStep = object


class _Recorder(Ledger):
    """Collects read errors in order instead of counting them (they are counted when replayed in stage 2)."""

    def __init__(self) -> None:
        super().__init__(STEPS)
        self.pending: list[list] = []

    def error(self, source, reason, where, message, lost=True, reject=None) -> None:
        self.pending.append([source, reason, where, message, lost, reject])


def _encode(a: Analysis, doc: Document, raw: str) -> dict:
    return {
        "id": doc.id,
        "meta": doc.metadata,
        "raw": raw if raw != a.text else None,
        "text": a.text,
        "lang": a.lang,
        "quality": a.quality,
        "digest": a.digest.hex(),
        "masked": a.masked,
        "pii": a.pii,
        "decon": a.decon,
        "sig": None if a.sig is None else [int(x) for x in a.sig],
    }


def _decode(r: dict) -> tuple[Document, Analysis]:
    raw = r["raw"] if r["raw"] is not None else r["text"]
    a = Analysis(
        r["text"],
        raw != r["text"],
        r["lang"],
        r["quality"],
        bytes.fromhex(r["digest"]),
        None if r["sig"] is None else np.asarray(r["sig"], dtype=np.uint64),
        r["masked"],
        r["pii"],
        r["decon"],
    )
    return Document(r["id"], raw, r["meta"]), a


class AnalyzeShard(PipelineStep):
    """Stage 1 as a datatrove step: reads and analyses this rank's shard of the input files."""

    name = "moxin analyze"
    type = "🔬 - ANALYZE"

    def __init__(self, cfg: DataConfig, work: str | Path) -> None:
        super().__init__()
        if any(s.max_docs for s in cfg.sources):
            raise ConfigError("data.sources[*].max_docs is not supported by the datatrove scale-out; remove it")
        self.cfg, self.work = cfg, str(work)

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        proc = Processor(self.cfg, Path(self.work))
        proc.prepare()
        out = Path(self.work) / "analyzed"
        out.mkdir(parents=True, exist_ok=True)
        tmp = out / f".{rank:05d}.jsonl.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            for event in self._events(rank, world_size):
                fh.write(json.dumps(event, ensure_ascii=False) + "\n")
                self.stat_update("events")
        tmp.replace(out / f"{rank:05d}.jsonl")
        yield from data or ()

    def _events(self, rank: int, world_size: int) -> Iterator[dict]:
        for si, src in enumerate(self.cfg.sources):
            n_files = 1 if src.type == "hf" else len(source_files(src, f"data.sources[{si}] ({src.name})"))
            for fi in range(rank, n_files, world_size):
                rec = _Recorder()
                seq = 0
                for doc in tag(read_source(src, rec, f"data.sources[{si}] ({src.name})", only={fi}), src):
                    for err in rec.pending:
                        yield {"key": [si, fi, seq], "error": err}
                        seq += 1
                    rec.pending.clear()
                    raw = doc.text
                    yield {"key": [si, fi, seq], "doc": _encode(analyze(doc), doc, raw)}
                    seq += 1
                for err in rec.pending:
                    yield {"key": [si, fi, seq], "error": err}
                    seq += 1


def _read(path: Path) -> Iterator[tuple[list, dict]]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            ev = json.loads(line)
            yield ev["key"], ev


def merge_analyzed(cfg: DataConfig, work: str | Path, out: str | Path) -> ProcessResult:
    """Stage 2: replay every shard's events in key order through the local accounting; writes out/<source>.jsonl."""
    work, out = Path(work), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    proc = Processor(cfg, out)
    proc.prepare()
    merged = heapq.merge(*(_read(p) for p in sorted((work / "analyzed").glob("*.jsonl"))), key=lambda kv: kv[0])
    events = iter(merged)
    results = {}
    pending: tuple[list, dict] | None = next(events, None)
    for si, src in enumerate(cfg.sources):

        def pairs(si: int = si) -> Iterator[tuple[Document, Analysis]]:
            nonlocal pending
            while pending is not None and pending[0][0] == si:
                ev = pending[1]
                if "error" in ev:
                    proc.ledger.error(*ev["error"])
                else:
                    yield _decode(ev["doc"])
                pending = next(events, None)

        results[src.name] = proc.consume(src.name, pairs())
    _S.evals = []
    return proc.result(results)
