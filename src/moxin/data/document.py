"""`Document` (what every step takes and yields) and `Ledger` (the counts of every step and reason, and the
samples written under `samples/<reason>.jsonl`). Nothing is dropped or changed without a named reason."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SAMPLE_CHARS = 2000
REJECT_HEAD_BYTES = 200
REJECTS_FILE = "rejects.jsonl"


def reject_record(file: str, line: int, raw: bytes = b"", **extra: object) -> dict:
    """Where a rejected record was: `file` as recorded (relative to its source's root, never absolute), `line`,
    the first REJECT_HEAD_BYTES bytes of the line as text (undecodable bytes replaced), and any `extra` facts."""
    head = raw[:REJECT_HEAD_BYTES].decode("utf-8", errors="replace") if raw else ""
    return {"file": file, "line": line, "head": head, **extra}


@dataclass
class Document:
    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepCount:
    docs_in: int = 0
    bytes_in: int = 0
    docs_out: int = 0
    bytes_out: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    modified: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "docs_in": self.docs_in,
            "bytes_in": self.bytes_in,
            "docs_out": self.docs_out,
            "bytes_out": self.bytes_out,
            "dropped": dict(sorted(self.dropped.items())),
            "modified": dict(sorted(self.modified.items())),
        }


class Ledger:
    """Per step and per source: docs/bytes in and out, drops and modifications by reason; reader errors with
    file:line; the first `per_reason` examples of each reason (kept in memory, bounded)."""

    def __init__(self, steps: list[str], per_reason: int = 20, max_error_lines: int = 200) -> None:
        self.steps = steps
        self.per_reason = per_reason
        self.max_error_lines = max_error_lines
        self.counts: dict[tuple[str, str], StepCount] = {}  # (source, step)
        self.samples: dict[str, list[dict]] = {}
        self.errors: dict[str, dict[str, int]] = {}  # source → reason → count
        self.error_lines: list[str] = []
        self.languages: dict[str, dict[str, int]] = {}  # source → lang → kept docs
        self.rejects: list[dict] = []  # every rejected record's location, in reading order (rejects.jsonl)

    def _c(self, source: str, step: str) -> StepCount:
        return self.counts.setdefault((source, step), StepCount())

    def enter(self, source: str, step: str, doc: Document) -> None:
        c = self._c(source, step)
        c.docs_in += 1
        c.bytes_in += _nbytes(doc.text)

    def leave(self, source: str, step: str, doc: Document) -> None:
        c = self._c(source, step)
        c.docs_out += 1
        c.bytes_out += _nbytes(doc.text)

    def drop(self, source: str, step: str, reason: str, doc: Document, detail: str = "") -> None:
        c = self._c(source, step)
        c.dropped[reason] = c.dropped.get(reason, 0) + 1
        self._sample(f"{step}.{reason}", doc, detail)

    def modify(self, source: str, step: str, reason: str, doc: Document, detail: str = "", n: int = 1) -> None:
        c = self._c(source, step)
        c.modified[reason] = c.modified.get(reason, 0) + n
        self._sample(f"{step}.{reason}", doc, detail)

    def error(
        self, source: str, reason: str, where: str, message: str, lost: bool = True, reject: dict | None = None
    ) -> None:
        """A record that could not be read (lost: it never became a document) or was repaired (lost=False),
        counted with file:line under the `read` step. `reject` (see `reject_record`) goes to rejects.jsonl."""
        if reject is not None:
            self.rejects.append({"source": source, "reason": reason, "message": message, **reject})
        per = self.errors.setdefault(source, {})
        per[reason] = per.get(reason, 0) + 1
        c = self._c(source, "read")
        if lost:
            c.docs_in += 1
            c.dropped[reason] = c.dropped.get(reason, 0) + 1
        else:
            c.modified[reason] = c.modified.get(reason, 0) + 1
        line = f"{where}: {reason}: {message}"
        if len(self.error_lines) < self.max_error_lines:
            self.error_lines.append(line)
        bucket = self.samples.setdefault(f"read.{reason}", [])
        if len(bucket) < self.per_reason:
            bucket.append({"source": source, "where": where, "message": message})

    def _sample(self, key: str, doc: Document, detail: str) -> None:
        bucket = self.samples.setdefault(key, [])
        if len(bucket) < self.per_reason:
            rec = {
                "id": doc.id,
                "source": doc.metadata.get("source"),
                "lang": doc.metadata.get("lang"),
                "detail": detail,
                "text": doc.text[:SAMPLE_CHARS],
            }
            bucket.append(rec)

    def kept_language(self, source: str, lang: str) -> None:
        per = self.languages.setdefault(source, {})
        per[lang] = per.get(lang, 0) + 1

    # -------------------------------------------------------------------------------------------- reporting
    def step_table(self, sources: list[str]) -> list[dict]:
        """Totals per step over all sources, in pipeline order."""
        out = []
        for step in self.steps:
            total = StepCount()
            for s in sources:
                c = self.counts.get((s, step))
                if c is None:
                    continue
                total.docs_in += c.docs_in
                total.bytes_in += c.bytes_in
                total.docs_out += c.docs_out
                total.bytes_out += c.bytes_out
                for k, v in c.dropped.items():
                    total.dropped[k] = total.dropped.get(k, 0) + v
                for k, v in c.modified.items():
                    total.modified[k] = total.modified.get(k, 0) + v
            out.append({"step": step, **total.as_dict()})
        return out

    def source_steps(self, source: str) -> list[dict]:
        return [{"step": st, **self.counts.get((source, st), StepCount()).as_dict()} for st in self.steps]

    def write_rejects(self, path: Path) -> int:
        """Every rejected record's location as JSONL (same bytes for the same inputs); returns the count."""
        from moxin.provenance import atomic_write_text

        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in self.rejects))
        return len(self.rejects)

    def write_samples(self, folder: Path) -> list[str]:
        from moxin.provenance import atomic_write_text

        names = []
        for key in sorted(self.samples):
            name = key.replace("/", "_").replace(":", "_")
            text = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in self.samples[key])
            atomic_write_text(folder / f"{name}.jsonl", text)
            names.append(f"{name}.jsonl")
        return names


def _nbytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))
