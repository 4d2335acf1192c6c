"""The commands: moxin data, data inspect, data trace, tokenizer, and --dry-run, on a small recipe."""

from __future__ import annotations

import json

from datahelpers import run_cli

PROSE = ("Anna kept a small notebook in which she wrote down the names of the birds she saw from her window. "
         "In spring there were swallows and blackbirds, and once a heron landed in the pond behind the house. "
         "Her brother laughed at the notebook at first, but by the end of the summer he was asking to borrow it.")


def _recipe(tmp_path, vocab=400):
    src = tmp_path / "docs.jsonl"
    rows = [{"text": f"Chapter {i}. " + PROSE.replace("Anna", f"Anna{i}") + " 日本語の文も少しあります。"}
            for i in range(30)]
    src.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    r = tmp_path / "r.toml"
    r.write_text(f'[run]\nname = "t"\nout_dir = "{tmp_path / "runs"}"\n[data]\nworkers = 1\nval_fraction = 0.1\n'
                 f'dedup_fuzzy = false\n[[data.sources]]\nname = "notes"\ntype = "jsonl"\nlicense = "CC0-1.0"\n'
                 f'path = "docs.jsonl"\n[tokenizer]\nvocab_size = {vocab}\nsample_bytes = 100000\n')
    return r


def test_data_inspect_trace_and_tokenizer(tmp_path):
    r = _recipe(tmp_path)
    code, out, err = run_cli("data", str(r), "--dry-run")
    assert code == 0 and "source notes: jsonl" in out and "[[data.sources]]" in out
    assert not (tmp_path / "runs").exists()
    code, out, err = run_cli("data", str(r))
    assert code == 0, err
    assert "30 documents kept of 30" in out
    run = tmp_path / "runs" / "t"
    assert (run / "data" / "data_card.md").read_text().startswith("# Data card")
    code, out, err = run_cli("data", "inspect", str(run / "data"))
    assert code == 0 and "notes" in out and "all SHA-256 match" in out and "CC0-1.0" in out
    code, out, err = run_cli("data", "trace", str(run), "--token", "5")
    assert code == 0 and "re-tokenized document has this token at position 5: yes" in out
    assert "notes/docs.jsonl:" in out and "Chapter" in out
    code, out, err = run_cli("data", "trace", str(run), "--token", "999999999")
    assert code == 2 and "outside the train tokens" in err
    code, out, err = run_cli("data", "trace", str(run))
    assert code == 2 and "needs --token" in err
    # a new vocabulary: the tokenizer alone is retrained from the processed text already there
    before = json.loads((run / "tokenizer" / "manifest.json").read_text())
    r2 = _recipe(tmp_path, vocab=450)
    code, out, err = run_cli("tokenizer", str(r2))
    assert code == 0 and "tokenizer: vocab" in out, err
    m = json.loads((run / "tokenizer" / "manifest.json").read_text())
    assert m["config"]["vocab_size"] == 450 and before["config"]["vocab_size"] == 400
    assert m["vocab_size"] > before["vocab_size"] and m["sample"] == before["sample"]


def test_inspect_bad_folder(tmp_path):
    code, out, err = run_cli("data", "inspect", str(tmp_path))
    assert code == 2 and "not a tokenized data folder" in err
