"""Instruction pairs and the code-completion task generated from the corpus itself."""

import json

from moxin.build.selfdata import collect, completion_items, documents, sft_records, write_jsonl
from moxin.data.tokens import TokenData, TokenWriter

SRC = '''
import os

def join_parts(a, b="x"):
    """Join two path parts with the platform separator.

    More text here.
    """
    if not a:
        return b
    return os.path.join(a, b)


class Box:
    def area(self, scale=1):
        """Return the area of the box scaled by a factor."""
        w = self.width * scale
        h = self.height * scale
        return w * h

def undocumented(x):
    return x
'''


def test_functions_become_sft_pairs_without_docstrings():
    fns = collect([("lib/a.py", SRC)])
    assert [f.name for f in fns] == ["join_parts", "area"]
    recs = sft_records(fns)
    assert recs[0]["instruction"].startswith("Write a Python function `join_parts(a, b='x')`")
    assert "Join two path parts with the platform separator." in recs[0]["instruction"]
    assert '"""' not in recs[0]["output"] and recs[0]["output"].startswith("def join_parts(a, b=\"x\"):")
    assert recs[1]["output"].splitlines()[0] == "def area(self, scale=1):"


def test_completion_items_are_deterministic_and_answerable():
    fns = collect([("lib/a.py", SRC)])
    items = completion_items(fns)
    assert items == completion_items(fns)
    for it in items:
        assert len(it["choices"]) == 4 and len(set(it["choices"])) == 4
        fn = next(f for f in fns if it["id"].endswith(f.name))
        truth = it["choices"][it["label"]]
        assert (it["context"].rstrip(" ").splitlines()[-1] if it["context"].strip() else "") in fn.lines
        assert truth in [ln.strip() for ln in fn.lines]


def test_documents_decode_from_token_shards(tmp_path):
    w = TokenWriter(tmp_path, vocab_size=300, eos_id=0)
    encode = lambda s: [b + 1 for b in s.encode()]
    decode = lambda ids: bytes(i - 1 for i in ids).decode()
    w.add("code", "val", "lib/a.py", encode(SRC))
    w.close()
    docs = list(documents(TokenData(tmp_path), "code", "val", decode))
    assert docs == [("lib/a.py", SRC)]
    write_jsonl(tmp_path / "sft.jsonl", sft_records(collect(docs)))
    lines = (tmp_path / "sft.jsonl").read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[0])["source_doc"] == "lib/a.py"


def test_an_empty_selfdata_task_is_left_out_with_a_note(tmp_path):
    from moxin.build.selfdata import available_tasks

    (tmp_path / "heldout.jsonl").write_text('{"id": "a", "text": "x = 1"}\n', "utf-8")
    (tmp_path / "codecomp.jsonl").write_text("", "utf-8")  # no held-out function to complete
    tasks, notes = available_tasks(tmp_path)
    assert tasks == ["moxin_heldout"]
    assert len(notes) == 1 and "moxin_codecomp skipped" in notes[0] and "codecomp.jsonl" in notes[0]
