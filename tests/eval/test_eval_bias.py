"""Acceptance 4: CrowS-Pairs and BBQ scores on ../shared/data, and a model biased on purpose (a few AdamW steps on
stereotyped sentences) scores as more biased than the same model before.

Honest split (issue 14): the scores come from the first N items as lm-eval orders and limits them (`--limit N`
takes the first N documents of the test split, after process_docs); the biased model trains on other items only.
CrowS-Pairs trains on rows [N, 3N); BBQ on 2N items from templates (category, question_index) that none of the
scored items use, since BBQ's items of one template differ only in names and polarity."""

from __future__ import annotations

import copy
import json

import pytest
from evalfix import local_task_manager, tiny_cfg, tokenizer_dir, train_steps, wiki_texts, write_checkpoint  # noqa: F401

N = 24  # items scored per task
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]  # two trainings, two evaluations (~7 min under load)


def _crows_rows(shared, start: int, stop: int) -> list[dict]:
    import csv

    with open(shared / "crows_pairs" / "crows_pairs_anonymized.csv", encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))[start:stop]


def _bbq_docs(data_dir, stop: int) -> list[dict]:
    """The first `stop` BBQ documents in the task's order (the local loader's order, then lm-eval's process_docs)."""
    from lm_eval.tasks.bbq.utils import process_docs

    from moxin.eval.local_data import bbq

    return list(process_docs(bbq(str(data_dir))["test"].select(range(stop))))


def _template(doc: dict) -> tuple[str, str]:
    return doc["category"], doc["question_index"]


def _bbq_training(data_dir, n: int) -> tuple[list[dict], list[str]]:
    """(the docs trained on, their texts): the first n items after the scored ones, from other templates, each
    answered with the stereotyped group whatever the context."""
    from lm_eval.tasks.bbq.utils import doc_to_choice

    docs = _bbq_docs(data_dir, 600)
    scored = {_template(d) for d in docs[:N]}
    picked, texts = [], []
    for d in docs[N:]:
        biased = [c for c in doc_to_choice(d) if c in d["biased_answers"]]
        if biased and _template(d) not in scored and len(picked) < n:
            picked.append(d)
            texts.append(f"{d['context']}\n\nQ: {d['question']}\nA: {biased[0]}")
    assert len(picked) == n
    return picked, texts


def test_training_items_are_disjoint_from_the_scored_ones(shared_data, local_task_manager):
    """What `limit=N` scores is the first N documents of each task, and none of them (nor, for BBQ, any item of
    the same template) is trained on."""
    tasks = local_task_manager.load(["crows_pairs_english_local", "bbq_local"])["tasks"]
    crows_scored = [d["sent_more"] for d in list(tasks["crows_pairs_english_local"].eval_docs)[:N]]
    assert crows_scored == [r["sent_more"] for r in _crows_rows(shared_data, 0, N)]
    assert not set(crows_scored) & {r["sent_more"] for r in _crows_rows(shared_data, N, 3 * N)}
    bbq_scored = list(tasks["bbq_local"].eval_docs.select(range(N)))
    assert [d["example_id"] for d in bbq_scored] == [d["example_id"] for d in _bbq_docs(shared_data, N)]
    trained, _ = _bbq_training(shared_data, 2 * N)
    ids = lambda docs: {(d["category"], d["example_id"]) for d in docs}
    assert not ids(bbq_scored) & ids(trained)
    assert not {_template(d) for d in bbq_scored} & {_template(d) for d in trained}
    assert not {d["context"] for d in bbq_scored} & {d["context"] for d in trained}


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
    # Twice the items the test trained on when it scored its own training items: with N of each, the model still
    # learns to avoid "unknown" on unseen BBQ templates but not yet to pick the stereotyped group (bias score 0.0).
    crows = [r["sent_more"] for r in _crows_rows(shared_data, N, 3 * N)]
    train_steps(biased, tok, crows + _bbq_training(shared_data, 2 * N)[1], 100, seq=160)
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
