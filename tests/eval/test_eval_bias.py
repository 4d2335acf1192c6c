"""Acceptance 4: CrowS-Pairs and BBQ scores on ../shared/data, and a model biased on purpose (a few AdamW steps on
stereotyped sentences) scores as more biased than the same model before."""

from __future__ import annotations

import copy
import json

import pytest
from evalfix import tiny_cfg, tokenizer_dir, train_steps, wiki_texts, write_checkpoint  # noqa: F401

N = 24  # items per task
pytestmark = pytest.mark.slow  # two trainings and two evaluations of CrowS-Pairs and BBQ


def _crows_stereotypes(shared, n: int) -> list[str]:
    import csv

    with open(shared / "crows_pairs" / "crows_pairs_anonymized.csv", encoding="utf-8", newline="") as f:
        return [r["sent_more"] for r in list(csv.DictReader(f))[:n]]


def _bbq_biased_answers(n: int, data_dir) -> list[str]:
    """The first n BBQ items (as the task orders them) answered with the stereotyped group, whatever the context."""
    from lm_eval.tasks.bbq.utils import doc_to_choice, process_docs

    from moxin.eval.local_data import bbq

    docs = process_docs(bbq(str(data_dir))["test"].select(range(n)))
    out = []
    for d in docs:
        biased = [c for c in doc_to_choice(d) if c in d["biased_answers"]]
        if biased:
            out.append(f"{d['context']}\n\nQ: {d['question']}\nA: {biased[0]}")
    return out


@pytest.fixture(scope="module")
def scores(tmp_path_factory, tokenizer_dir, shared_data):
    from transformers import AutoTokenizer

    from moxin.eval.identity import identify
    from moxin.eval.runner import Settings, evaluate
    from moxin.model.transformer import build

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    base = build(tiny_cfg(), seed=1)
    train_steps(base, tok, wiki_texts(shared_data, 16), 20)  # a small language model first
    biased = copy.deepcopy(base)
    train_steps(biased, tok, _crows_stereotypes(shared_data, N) + _bbq_biased_answers(N, shared_data), 100, seq=160)
    root = tmp_path_factory.mktemp("bias")
    s = Settings(tasks=["bias"], data_dir=shared_data, limit=N, batch_size=32)
    out = {}
    for name, model in (("base", base), ("biased", biased)):
        ck = write_checkpoint(root / name / "step-00000001", model, tokenizer_dir, 1, 1)
        results, computed = evaluate(identify(ck), s, root / "eval", log=lambda *_: None)
        assert computed == 2
        out[name] = {r["task"]: r["metrics"] for r in results}
    (root / "scores.json").write_text(json.dumps(out, indent=1))
    return out


def test_bias_metrics_are_computed(scores):
    for name in ("base", "biased"):
        crows, bbq = scores[name]["crows_pairs_english"], scores[name]["bbq"]
        assert 0.0 <= crows["pct_stereotype"] <= 1.0 and crows["likelihood_diff"] > 0
        for key in ("acc", "accuracy_amb", "accuracy_disamb", "amb_bias_score", "disamb_bias_score"):
            assert bbq[key] is not None and -1.0 <= bbq[key] <= 1.0, (name, key, bbq[key])


def test_model_trained_on_stereotypes_scores_more_biased(scores):
    base, biased = scores["base"], scores["biased"]
    assert biased["crows_pairs_english"]["pct_stereotype"] >= base["crows_pairs_english"]["pct_stereotype"] + 0.15
    assert biased["bbq"]["amb_bias_score"] > base["bbq"]["amb_bias_score"]
    assert biased["bbq"]["accuracy_amb"] < base["bbq"]["accuracy_amb"] or base["bbq"]["accuracy_amb"] == 0.0
