"""A user's folder as one `text` source: .txt and .md files are documents, each record of a .jsonl file is one,
an .html page contributes its visible text (no tags, scripts or styles); Japanese passes through unchanged."""

from __future__ import annotations

from adapt_helpers import JA, write_docs

from moxin.data.config import SourceConfig
from moxin.data.document import Ledger
from moxin.data.sources import html_text, read_source


def test_mixed_folder_reads_every_kind(tmp_path) -> None:
    folder = write_docs(tmp_path / "docs")
    (folder / "bad.jsonl").write_text('{"text": "fine"}\n{not json\n', "utf-8")
    cfg = SourceConfig(name="docs", type="text", path=str(folder), license="CC-BY-4.0")
    ledger = Ledger(["read"])
    docs = list(read_source(cfg, ledger))
    by_kind: dict[str, list] = {}
    for d in docs:
        kind = d.id.split("/")[1].split(":")[0].split(".")[-1]
        by_kind.setdefault(kind, []).append(d)
    assert {k: len(v) for k, v in by_kind.items()} == {"txt": 16, "md": 12, "jsonl": 13, "html": 8}
    assert all(d.id.startswith("docs/records.jsonl:") or d.id.startswith("docs/bad.jsonl:") for d in by_kind["jsonl"])
    assert not any(d.text.lstrip().startswith("{") for d in by_kind["jsonl"])
    assert all("<" not in d.text and (JA[:6] in d.text or "Chapter" in d.text) for d in by_kind["html"])
    assert any(JA[:6] in d.text for d in by_kind["md"])
    # the broken record is named by file and line; the rest of the file is read
    assert any(line.startswith("docs/bad.jsonl:2: ") for line in ledger.error_lines), ledger.error_lines


def test_html_text_drops_markup() -> None:
    page = "<html><head><style>p{}</style><script>var x = '<p>';</script></head><body><h1>題名</h1>"
    page += "<p>吾輩は &amp; 猫</p><p>two   words</p></body></html>"
    assert html_text(page) == "題名\n吾輩は & 猫\ntwo words"
