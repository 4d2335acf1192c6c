"""Issue 15 items 6-7: 1,000 hostile JSONL lines (the three parser crashers, invalid UTF-8, a truncated gzip, ...)
go through the real data stage: no crash, docs in = kept + every drop reason, and every rejected line is listed in
`rejects.jsonl` (file relative, line, reason, first bytes), with the same bytes on every run."""

from __future__ import annotations

import gzip
import json
import random

import pytest

from moxin.data.config import DataConfig, SourceConfig
from moxin.data.document import Ledger
from moxin.data.process import STEPS
from moxin.data.sources import read_source
from moxin.io import parse_json_line

WORDS = ("the of and to in that it was for on with as his they at be this from have not but by are one had what "  # noqa: SIM905 - a word list reads best as text
         "harbour lantern orchard velvet copper river window garden morning evening winter summer letter market "
         "village bridge mountain journey station kitchen teacher doctor captain soldier farmer painter sailor "
         "quietly slowly bright silent golden narrow ancient gentle careful simple heavy distant").split()

# (reason the line is rejected with, how to make it); None: a good line.
HOSTILE = [
    ("too-deep", lambda i: b"[" * 200_000),
    ("number-too-long", lambda i: b'{"text": ' + b"7" * 5000 + b"}"),
    ("lone-surrogate", lambda i: b'{"text": "cut \\ud800 here %d"}' % i),
    ("invalid-utf8", lambda i: b'{"text": "raw surrogate \xed\xa0\x80 %d"}' % i),
    ("invalid-utf8", lambda i: b'{"text": "latin-1 caf\xe9 %d"}' % i),
    ("too-deep", lambda i: b'{"text": "x", "deep": ' + b"[" * 100 + b"]" * 100 + b"}"),
    ("malformed-json", lambda i: b'{"text": "unterminated'),
    ("malformed-json", lambda i: b"\xef\xbb\xbf" + b'{"text": "bom"}'),
    ("not-an-object", lambda i: b"[1, 2, 3]"),
    ("not-an-object", lambda i: b"null"),
    ("missing-field", lambda i: b'{"body": "no text field"}'),
    ("not-text", lambda i: b'{"text": 1e400}'),
    ("empty-text", lambda i: b'{"text": "   "}'),
]


def _prose(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(120)) + "."


def _write_inputs(root, rng: random.Random) -> tuple[dict[int, str], int]:
    """hostile.jsonl (940 lines: every 4th good, the rest hostile in turn) and a truncated gzip of 60 good lines.
    Returns {line: expected reason} for hostile.jsonl and the number of gzip lines."""
    lines, expected = [], {}
    for n in range(1, 941):
        if n % 4 == 0:
            lines.append(json.dumps({"text": _prose(rng)}).encode())
        else:
            reason, make = HOSTILE[n % len(HOSTILE)]
            lines.append(make(n))
            expected[n] = reason
    (root / "hostile.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    body = b"".join(json.dumps({"text": _prose(rng)}).encode() + b"\n" for _ in range(60))
    whole = gzip.compress(body, mtime=0)
    (root / "zz-truncated.jsonl.gz").write_bytes(whole[: len(whole) // 2])
    return expected, 60


def test_parse_json_line_never_raises():
    for reason, make in HOSTILE:
        if reason in ("missing-field", "not-text", "empty-text"):
            continue  # valid objects: the reader's field checks reject them
        assert parse_json_line(make(7)).reason == reason, make(7)[:40]
    assert parse_json_line('{"a": "\\ud83d\\ude00"}').value == {"a": "\U0001F600"}  # a surrogate pair is fine
    assert parse_json_line("[1]", want_object=False).value == [1]


def test_reader_rejects_every_hostile_line_with_file_and_line(tmp_path):
    expected, _ = _write_inputs(tmp_path, random.Random(0))
    ledger = Ledger(STEPS)
    cfg = SourceConfig(name="h", type="jsonl", license="MIT", path=str(tmp_path / "hostile.jsonl"))
    docs = list(read_source(cfg, ledger))
    assert len(docs) == 940 - len(expected)
    got = {r["line"]: r["reason"] for r in ledger.rejects}
    assert got == expected
    assert all(r["file"] == "hostile.jsonl" for r in ledger.rejects)
    deep = next(r for r in ledger.rejects if r["line"] == len(HOSTILE))  # HOSTILE[0]
    assert deep["head"] == "[" * 200 and deep["reason"] == "too-deep"


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory):
    from moxin.data.pipeline import run_data_stage
    from moxin.tokenizer.config import TokenizerConfig

    root = tmp_path_factory.mktemp("hostile")
    (root / "in").mkdir()
    expected, n_gz = _write_inputs(root / "in", random.Random(1))
    cfg = DataConfig(sources=[SourceConfig(name="h", type="jsonl", license="MIT", path=str(root / "in"))],
                     workers=1, dedup_fuzzy=False, val_fraction=0.05)
    tok = TokenizerConfig(vocab_size=300, sample_bytes=50_000)
    m = run_data_stage(cfg, tok, 0, root / "run", progress=False)
    first = (root / "run" / "data" / "rejects.jsonl").read_bytes()
    run_data_stage(cfg, tok, 0, root / "run", force=True, progress=False)
    return root / "run" / "data", m, expected, n_gz, first


def test_data_stage_survives_and_accounts_for_every_line(hostile_run):
    folder, m, expected, n_gz, _ = hostile_run
    src = m["sources"][0]
    dropped = sum(v for st in src["steps"] for v in st["dropped"].values())
    assert src["docs_kept"] > 0 and src["docs_in"] == src["docs_kept"] + dropped
    rejects = [json.loads(x) for x in (folder / "rejects.jsonl").read_text("utf-8").splitlines()]
    read = src["steps"][0]
    assert len(rejects) == sum(read["dropped"].values()) == m["errors"]["rejected"] == len(expected) + 1
    assert {r["line"]: r["reason"] for r in rejects if r["file"] == "hostile.jsonl"} == expected
    assert all(not r["file"].startswith("/") and set(r) >= {"file", "line", "reason", "head"} for r in rejects)
    # the truncated gzip: the lines before the break are documents, the break is one read error with its offset
    trunc = [r for r in rejects if r["file"] == "zz-truncated.jsonl.gz"]
    assert len(trunc) == 1 and trunc[0]["reason"] == "truncated-stream" and trunc[0]["byte_offset"] > 0
    assert 0 < trunc[0]["line"] - 1 < n_gz  # lines read before the stream broke off
    good_in = src["docs_in"] - len(rejects)
    assert good_in == (940 - len(expected)) + trunc[0]["line"] - 1


def test_summary_names_rejects_file_and_truncation(hostile_run):
    folder, m, _, _, _ = hostile_run
    card = (folder / "data_card.md").read_text("utf-8")
    assert "`rejects.jsonl`" in card and f"all {m['errors']['rejected']} rejected record(s)" in card
    assert "h/zz-truncated.jsonl.gz breaks off after byte" in card
    assert m["errors"]["rejects_file"] == "rejects.jsonl" and m["errors"]["truncated"][0]["byte_offset"] > 0


def test_rejects_file_is_deterministic(hostile_run):
    folder, _, _, _, first = hostile_run
    assert (folder / "rejects.jsonl").read_bytes() == first


def test_stage_log_names_the_rejects_file(tmp_path):
    from moxin.data.commands import run_data
    from moxin.layout import RunLayout
    from moxin.tokenizer.config import TokenizerConfig

    (tmp_path / "in").mkdir()
    expected, _ = _write_inputs(tmp_path / "in", random.Random(2))
    cfg = DataConfig(sources=[SourceConfig(name="h", type="jsonl", license="MIT", path=str(tmp_path / "in"))],
                     workers=1, dedup_fuzzy=False)
    lines: list[str] = []
    layout = RunLayout(tmp_path / "run")
    res = run_data(cfg, TokenizerConfig(vocab_size=300, sample_bytes=50_000), layout, 0, lambda p: tmp_path / p,
                   progress=False, log=lines.append)
    assert res.status == "done"
    assert lines[-1] == (f"data: {len(expected) + 1:,} record(s) could not be read; each is listed (file, line, "
                         f"reason) in {layout.data / 'rejects.jsonl'}")
