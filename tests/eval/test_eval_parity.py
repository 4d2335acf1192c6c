"""Acceptance 1: on the same exported model and data, moxin's adapter gives lm-eval's `hf` per-item log-likelihoods
(within 1e-4) and identical accuracies for HellaSwag, ARC-Easy, PIQA and WinoGrande (20 items each)."""

from __future__ import annotations

import pytest
from evalfix import TASKS, local_task_manager, tiny_checkpoint, tiny_hf_export, tokenizer_dir  # noqa: F401

LIMIT = 20
pytestmark = pytest.mark.slow  # ~20 s of CPU: two lm-eval runs (moxin and transformers) over four tasks


def _lls(samples: list[dict]) -> dict[int, list[float]]:
    return {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in samples}


@pytest.fixture(scope="module")
def both(tiny_checkpoint, tiny_hf_export, local_task_manager):
    from lm_eval import simple_evaluate

    from moxin.eval.adapter import MoxinLM

    common = dict(tasks=TASKS, limit=LIMIT, task_manager=local_task_manager, log_samples=True, bootstrap_iters=0,
                  random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    ours = simple_evaluate(model=MoxinLM(path=str(tiny_checkpoint), batch_size=16, show_progress=False), **common)
    ref = simple_evaluate(model="hf", model_args=f"pretrained={tiny_hf_export},dtype=float32", batch_size=8,
                          device="cpu", **common)
    return ours, ref


@pytest.mark.parametrize("task", TASKS)
def test_per_item_loglikelihoods_and_accuracy_match_hf(both, task):
    ours, ref = both
    a, b = _lls(ours["samples"][task]), _lls(ref["samples"][task])
    assert sorted(a) == sorted(b) == list(range(LIMIT))
    worst = max(abs(x - y) for d in a for x, y in zip(a[d], b[d], strict=True))
    assert worst < 1e-4, (task, worst)
    assert any(abs(x) > 1.0 for d in a for x in a[d])  # real scores, not zeros
    for metric in ("acc,none", "acc_norm,none"):
        if metric in ref["results"][task]:
            assert ours["results"][task][metric] == ref["results"][task][metric], (task, metric)
