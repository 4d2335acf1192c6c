"""Acceptance 1, 2, 5 and 6 of [2/8] on the shared corpora (Tiny Shakespeare, Python docs, Gutenberg, Aozora,
the stdlib) with injected near-duplicates, PII and planted HellaSwag/ARC items. One pipeline run, many checks."""

from __future__ import annotations

import json
import random

import numpy as np
from datahelpers import PII, corpus, corpus_run  # noqa: F401 (fixtures)


def _processed(run, source):
    path = run / "data" / "processed" / f"{source}.jsonl"
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def _dropped(manifest, source):
    s = next(s for s in manifest["sources"] if s["name"] == source)
    return sum(sum(st["dropped"].values()) for st in s["steps"])


def test_counts_add_up_for_every_source_and_step(corpus_run):
    run, m = corpus_run
    for s in m["sources"]:
        steps = s["steps"]
        assert s["docs_in"] == s["docs_kept"] + _dropped(m, s["name"]), s["name"]
        for a, b in zip(steps, steps[1:]):  # what leaves one step enters the next
            assert a["docs_out"] == b["docs_in"] and a["bytes_out"] == b["bytes_in"], (s["name"], a["step"])
        for st in steps:
            assert st["docs_in"] == st["docs_out"] + sum(st["dropped"].values()), (s["name"], st["step"])
        assert len(_processed(run, s["name"])) == s["docs_kept"]
        assert sum(s["docs"].values()) == s["docs_kept"]
    totals = m["steps"]
    assert totals[0]["docs_in"] == totals[-1]["docs_out"] + sum(sum(t["dropped"].values()) for t in totals)
    # every reason has a sample file, and nothing is dropped without one
    samples = {p.name for p in (run / "data" / "samples").iterdir()}
    for st in totals:
        for reason in list(st["dropped"]) + list(st["modified"]):
            assert f"{st['step']}.{reason}.jsonl" in samples, (st["step"], reason)


def test_injected_near_duplicates_removed(corpus, corpus_run):
    run, m = corpus_run
    kept = {r["id"] for s in m["sources"] for r in _processed(run, s["name"])}
    pairs = [(dup, orig, j) for dup, orig, j in corpus.near_dups if j >= 0.8 and orig in kept]
    assert len(pairs) >= 20, corpus.near_dups
    removed = [dup for dup, _, _ in pairs if dup not in kept]
    assert len(removed) / len(pairs) >= 0.9, (len(removed), len(pairs))
    reasons = [json.loads(x)["id"] for x in
               (run / "data" / "samples" / "dedup_fuzzy.near_duplicate.jsonl").read_text().splitlines()]
    assert set(reasons) & set(removed)


def test_pii_masked_everywhere(corpus_run):
    run, m = corpus_run
    texts = [r["text"] for r in _processed(run, "injected") if r["id"].startswith("injected/pii")]
    assert len(texts) == 5
    for t in texts:
        for value in PII.values():
            assert value not in t
        assert t.count("<EMAIL>") == 2 and t.count("<PHONE>") == 2 and t.count("<IP_ADDRESS>") == 1
    pii = next(st for st in m["steps"] if st["step"] == "pii")["modified"]
    assert pii["email"] >= 10 and pii["phone"] >= 10 and pii["ip"] >= 5
    # nothing written anywhere in the data folder still holds the planted PII
    for p in (run / "data").rglob("*"):
        if p.is_file() and p.suffix in (".jsonl", ".json", ".md"):
            body = p.read_text("utf-8")
            assert all(v not in body for v in PII.values()), p


def test_decontamination_reports_planted_items(corpus, corpus_run):
    run, m = corpus_run
    dec = m["decontamination"]
    for name, items in corpus.planted.items():
        # HellaSwag items of one video share their context, so a planted item can also hit its siblings
        assert set(items) <= set(dec[name]["example_items"]), (name, dec[name])
        assert len(items) <= dec[name]["items_found"] <= 2 * len(items)
        assert dec[name]["docs_by_source"] == {"injected": len(items)}
    drops = next(st for st in m["steps"] if st["step"] == "decontaminate")["dropped"]
    assert drops == {"hellaswag": 3, "arc_challenge": 2}
    card = (run / "data" / "data_card.md").read_text()
    assert "| hellaswag | 400 |" in card and "| arc_challenge | 1172 |" in card


def test_japanese_kept_identified_and_round_trips(corpus_run):
    from tokenizers import Tokenizer

    run, m = corpus_run
    ao = next(s for s in m["sources"] if s["name"] == "aozora")
    assert ao["docs_in"] == 15 and ao["keep_rate"] >= 0.9, ao
    assert ao["languages"] == {"ja": ao["docs_kept"]}
    tok = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    for r in _processed(run, "aozora"):
        assert tok.decode(tok.encode(r["text"]).ids, skip_special_tokens=False) == r["text"]


def test_mixed_corpus_per_language_counts(corpus_run):
    _, m = corpus_run
    assert m["languages"]["ja"] >= 13 and m["languages"]["code"] >= 35 and m["languages"]["en"] >= 200
    by = {s["name"]: s["languages"] for s in m["sources"]}
    assert set(by["stdlib"]) == {"code"} and set(by["gutenberg"]) == {"en"} and set(by["shakespeare"]) == {"en"}
    st = next(s for s in m["sources"] if s["name"] == "stdlib")
    assert st["keep_rate"] >= 0.9  # code is not dropped by prose rules


def test_every_source_has_a_val_split(corpus_run):
    from moxin.data.tokens import TokenData

    run, m = corpus_run
    td = TokenData(run / "data")
    for s in m["sources"]:
        assert td.length(s["name"], "val") > 0, s["name"]
        assert td.length(s["name"], "train") > 0


def test_trace_round_trips_random_tokens(corpus_run):
    from tokenizers import Tokenizer

    from moxin.data.tokens import TokenData
    from moxin.data.trace import trace_token

    run, _ = corpus_run
    td = TokenData(run / "data")
    total = sum(td.length(s) for s in td.sources)
    tok = Tokenizer.from_file(str(run / "tokenizer" / "tokenizer.json"))
    rng = random.Random(0)
    for n in [0, total - 1] + [rng.randrange(total) for _ in range(40)]:
        t = trace_token(run, n)
        assert t.verified, (n, t.doc_id, t.position)
        ids = tok.encode(t.text, add_special_tokens=False).ids + [td.eos_id]
        assert ids[t.position] == t.token_id
        span = td.document_at(t.source, t.offset)
        assert td.read(t.source, span.start, span.length).tolist() == ids
    t = trace_token(run, 3, source="aozora", split="val")
    assert t.split == "val" and t.lang == "ja" and t.verified


def test_tokenizer_loads_in_transformers_with_chat_template(corpus_run):
    from transformers import AutoTokenizer

    run, m = corpus_run
    tk = AutoTokenizer.from_pretrained(str(run / "tokenizer"))
    text = "def f(x):\n    return x  # 日本語のコメント\n"
    assert tk.decode(tk.encode(text, add_special_tokens=False)) == text
    assert tk.eos_token == "<|endoftext|>" and tk.eos_token_id == m["tokens"]["eos_id"] == 0
    chat = tk.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert chat == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert np.dtype(m["tokens"]["dtype"]) == np.uint16


def test_mixture_for_a_phase_from_the_manifest(corpus_run):
    from moxin.data.mixture import mixture_for
    from moxin.data.tokens import TokenData

    run, m = corpus_run
    td = TokenData(run / "data")
    total = sum(td.length(s) for s in td.sources)
    got = mixture_for(run / "data", 2 * total)  # equal weights: small sources hit their 4-epoch cap first
    assert sum(e.tokens for e in got.values()) == 2 * total
    assert max(e.epochs for e in got.values()) <= 4.0 and got["aozora"].available == td.length("aozora")
    assert mixture_for(run / "data", 2 * total) == got
