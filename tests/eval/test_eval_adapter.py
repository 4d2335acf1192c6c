"""The adapter on its own: shared-context scoring equals plain full forwards, generation stops at stop strings,
rolling log-likelihood covers every token, lm-eval's registry and CLI know `--model moxin`, user task folders with
relative data paths work from any directory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from evalfix import tiny_checkpoint, tiny_hf_export, tokenizer_dir  # noqa: F401  (sets OMP_WAIT_POLICY first)


@pytest.fixture(scope="module")
def lm(tiny_checkpoint):
    from moxin.eval.adapter import MoxinLM

    return MoxinLM(path=str(tiny_checkpoint), batch_size=5, max_batch_tokens=400, show_progress=False)


def _reference(lm, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    x = torch.tensor([ctx + cont[:-1]])
    with torch.no_grad():
        logp = torch.log_softmax(lm.model(x).float(), -1)[0, len(ctx) - 1:]  # (len(cont), V)
    t = torch.tensor(cont)
    return float(logp.gather(1, t[:, None]).sum()), bool((logp.argmax(-1) == t).all())


def test_grouped_scoring_equals_full_forward(lm):
    from lm_eval.api.instance import Instance

    texts = [("The cat sat on the", c) for c in (" mat.", " roof of the old house", " a")]
    texts += [("It was a long and rainy day in the town, and", c) for c in (" nobody came", " the river rose")]
    texts += [("One", " two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen")]
    texts += [("", " empty context")]
    got = lm.loglikelihood([Instance("loglikelihood", {}, t, i) for i, t in enumerate(texts)])
    for (c, x), (lp, greedy) in zip(texts, got, strict=True):
        ctx, cont = lm._encode_pair(c, x) if c else ([lm.prefix_token_id], lm.tok_encode(x))
        ref_lp, ref_greedy = _reference(lm, ctx, cont)
        assert abs(lp - ref_lp) < 1e-4 and greedy == ref_greedy, (c, x, lp, ref_lp)


def test_scoring_runs_fp32_linears_through_onednn_with_the_plain_paths_scores(lm, monkeypatch):
    reqs = [(None, [5, 6, 7, 8, 9, 10], [11, 12, 13]), (None, [5, 6, 7], [20, 21]), (None, [9], [3, 4, 5, 6])]
    assert lm._onednn and lm.model.embed.weight.dtype == torch.float32
    routed = lm._loglikelihood_tokens(reqs)
    assert any(getattr(m, "_moxin_pack_key", None) is not None for m in lm.model.modules())  # oneDNN ran
    monkeypatch.setattr(lm, "_onednn", False)
    plain = lm._loglikelihood_tokens(reqs)
    for (a, ga), (b, gb) in zip(routed, plain, strict=True):
        assert abs(a - b) < 1e-5 and ga == gb, (a, b)


def test_truncation_matches_hflm_rule(lm):
    long_ctx = list(range(5, 5 + 700))  # longer than max_length 512: the left is cut as HFLM does
    (lp, _), = lm._loglikelihood_tokens([(None, long_ctx, [7, 8])])
    full = (long_ctx + [7, 8])[-513:]
    ref, _ = _reference(lm, full[:-2], [7, 8])
    assert abs(lp - ref) < 1e-4


def test_rolling_loglikelihood_sums_every_token(lm):
    from lm_eval.api.instance import Instance

    text = "word " * 700  # crosses max_length: several windows
    (total,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    toks = lm.tok_encode(text)
    assert len(toks) > lm.max_length
    from lm_eval import utils

    windows = list(map(utils.make_disjoint_window, utils.get_rolling_token_windows(toks, lm.prefix_token_id,
                                                                                   lm.max_length, 1)))
    assert len(windows) >= 2 and sum(len(t) for _, t in windows) == len(toks)  # every token scored once
    ref = sum(_reference(lm, c, t)[0] for c, t in windows)
    assert abs(total - ref) < 1e-6 * abs(ref) and total < 0  # fp32 sums over ~1,400 tokens


def test_generate_until_stops_and_cuts(lm):
    from lm_eval.api.instance import Instance

    reqs = [Instance("generate_until", {}, ("The history of the", {"until": ["\n"], "max_gen_toks": 12,
                                                                   "do_sample": False}), 0),
            Instance("generate_until", {}, ("A", {"until": ["the"], "max_gen_toks": 6}), 1)]
    out = lm.generate_until(reqs)
    assert len(out) == 2 and all(isinstance(o, str) for o in out)
    assert "\n" not in out[0] and "the" not in out[1]
    # greedy and batched == greedy alone
    again = lm.generate_until(reqs[:1])
    assert again[0] == out[0]


def test_registered_for_lm_eval():
    from lm_eval.api.registry import get_model

    from moxin.eval.adapter import MoxinLM

    assert get_model("moxin") is MoxinLM


@pytest.mark.slow  # lm-eval's own CLI indexes its ~14,000 built-in tasks first
def test_python_m_lm_eval_cli(tiny_checkpoint, shared_data, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "moxin.eval.lm_eval_cli", "run", "--model", "moxin", "--model_args",
                           f"path={tiny_checkpoint},show_progress=false", "--batch_size", "8", "--tasks", "piqa_local",
                           "--limit", "4", "--metadata", json.dumps({"data_dir": str(shared_data)}),
                           "--output_path", str(out)], capture_output=True, text=True, cwd=tmp_path, timeout=300,
                          env={**__import__("os").environ, "OMP_WAIT_POLICY": "PASSIVE"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    (res,) = list(out.rglob("results_*.json"))
    data = json.loads(res.read_text())
    assert 0.0 <= data["results"]["piqa_local"]["acc,none"] <= 1.0
    assert data["n-samples"]["piqa_local"]["effective"] == 4


def test_user_task_folder_with_relative_data_path(tiny_checkpoint, tmp_path, monkeypatch):
    """A user's YAML with `dataset_path: json` and a relative data file works from another working directory."""
    from evalfix import run_cli

    tasks = tmp_path / "mytasks"
    (tasks / "data").mkdir(parents=True)
    rows = [{"q": f"Is {i} even?", "choices": ["yes", "no"], "gold": i % 2} for i in range(6)]
    (tasks / "data" / "even.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tasks / "even.yaml").write_text(
        "task: my_even\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: data/even.jsonl\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{q}}\\nAnswer:\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: gold\nmetric_list:\n  - metric: acc\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    code, out, err = run_cli("eval", str(tiny_checkpoint), "--tasks", "my_even", "--include-path", str(tasks),
                             "--data-dir", str(tmp_path), "--out", str(tmp_path / "res"))
    assert code == 0, err[-3000:]
    (res,) = [json.loads(p.read_text()) for p in (tmp_path / "res" / "results").glob("*.json")]
    assert res["task"] == "my_even" and res["n_items"] == 6 and 0.0 <= res["metrics"]["acc"] <= 1.0
    assert [i["doc_id"] for i in res["items"]] == list(range(6))  # per item, for `moxin compare`'s bootstrap
    assert sum(i["acc"] for i in res["items"]) / 6 == pytest.approx(res["metrics"]["acc"])
    assert res["items"][3]["example"] == "Question: Is 3 even? Answer: → no"
    (data_file,) = res["task_config"]["data_files"]  # resolved against the YAML's folder, hashed
    assert data_file == "mytasks/data/even.jsonl"  # named by its task folder, never by an absolute path
    assert str(tmp_path) not in json.dumps(res)


def test_hf_folder_scores_like_the_checkpoint(lm, tiny_hf_export):
    """Evaluation also runs on Hugging Face folders (and .gguf files, see test_eval_smollm2): same weights, same
    scores."""
    from lm_eval.api.instance import Instance

    from moxin.eval.adapter import MoxinLM

    hf = MoxinLM(path=str(tiny_hf_export), show_progress=False)
    reqs = [Instance("loglikelihood", {}, ("The river", c), i) for i, c in enumerate((" rose", " fell slowly"))]
    for (a, ga), (b, gb) in zip(lm.loglikelihood(reqs), hf.loglikelihood(reqs), strict=True):
        assert abs(a - b) < 1e-5 and ga == gb
