"""Issue 14, "your own evaluation without YAML": a JSONL file of choice, exact or perplexity records becomes the
lm-eval task own_<stem>, scored by the ordinary runner, with the user's file SHA-256 in every result; a malformed
record is a one-line `file:line` error before any model is loaded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from evalfix import one_line_error, run_cli, tiny_checkpoint, tokenizer_dir, trained_run  # noqa: F401

from moxin.errors import ConfigError, DataError, EvalError
from moxin.eval.own import exact_match_results, normalize_answer, parse_spec, read_own
from moxin.provenance import sha256_file

CHOICE = [
    {"question": "日本の首都はどこですか？", "choices": ["東京", "大阪", "京都"], "answer": "東京"},
    {"question": "What is two plus two?", "choices": ["three", "four"], "answer": 1},
    {"question": "富士山は何県？", "choices": ["長野県", "静岡県と山梨県", "北海道"], "answer": 1, "id": "x"},
]
EXACT = [
    {"question": "日本の首都は？", "answer": "東京"},
    {"question": "Spell ABC123 in lower case.", "answer": "abc123"},
    {"question": "カタカナで書いてください。", "answer": ["カタカナ", "かたかな"]},
]
PERPLEXITY = [
    {"text": "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"},
    {"text": "The quick brown fox jumps over the lazy dog, and the dog does not mind at all."},
]


def _write(path: Path, records: list) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), "utf-8")
    return path


@pytest.fixture
def own_files(tmp_path, monkeypatch) -> dict[str, Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the private task cache of a bare model
    folder = tmp_path / "mine"
    folder.mkdir()
    return {
        "choice": _write(folder / "qa.jsonl", CHOICE),
        "exact": _write(folder / "短答.jsonl", EXACT),
        "perplexity": _write(folder / "docs.jsonl", PERPLEXITY),
    }


# ------------------------------------------------------------------------------------------------ normalisation
@pytest.mark.parametrize(
    ("a", "b"),
    [("ＡＢＣ１２３", "abc123"), ("ｶﾀｶﾅ", "カタカナ"), ("東京。", "東京"), ("  Paris!  ", "paris"), ("はい、", "はい"),
     ("本当？！", "本当"), ("New\u3000 York", "new york"), ("Straße", "STRASSE")],
)  # fmt: skip
def test_normalised_answers_match(a: str, b: str) -> None:
    assert normalize_answer(a) == normalize_answer(b)


@pytest.mark.parametrize(("a", "b"), [("東京", "京都"), ("50%", "50"), ("C#", "C"), ("ｶﾀｶﾅ", "かたかな")])
def test_different_answers_stay_different(a: str, b: str) -> None:
    assert normalize_answer(a) != normalize_answer(b)


def test_exact_match_accepts_any_listed_answer() -> None:
    doc = {"answers": ["カタカナ", "かたかな"]}
    assert exact_match_results(doc, [" ｶﾀｶﾅ。"]) == {"exact_match": 1.0}
    assert exact_match_results(doc, ["かたかな"]) == {"exact_match": 1.0}
    assert exact_match_results(doc, ["ひらがな"]) == {"exact_match": 0.0}


# ------------------------------------------------------------------------------------------------ checking
def test_records_are_normalised(own_files) -> None:
    s = read_own(own_files["choice"], "choice", limit=2)
    assert (s.name, s.task, s.total, len(s.records)) == ("qa", "own_qa", 3, 2)
    assert [r["answer"] for r in s.records] == [0, 1] and s.records[0]["line"] == 1
    assert s.sha256 == sha256_file(own_files["choice"])
    e = read_own(own_files["exact"], "exact")
    assert e.name == "短答" and e.records[2]["answers"] == ["カタカナ", "かたかな"]


@pytest.mark.parametrize(
    ("kind", "record", "needles"),
    [("choice", {"question": "q", "choices": ["a"], "answer": 0}, ["'choices'", "at least 2"]),
     ("choice", {"question": "q", "choices": ["a", "b"], "answer": 2}, ["answer 2 is out of range", "0..1"]),
     ("choice", {"question": "q", "choices": ["a", "b"], "answer": "c"}, ["answer 'c' is not among the choices"]),
     ("choice", {"question": "q", "choices": ["a", "a"], "answer": 0}, ["'a' twice"]),
     ("choice", {"question": "q", "choices": ["a", "b"], "answer": True}, ["choice index"]),
     ("exact", {"question": "q"}, ["field 'answer' missing", "fields present: question"]),
     ("exact", {"question": "q", "answer": "。"}, ["empty after normalisation"]),
     ("perplexity", {"text": ""}, ["'text' must be a non-empty string"]),
     ("perplexity", {"body": "x"}, ["field 'text' missing"])],
)  # fmt: skip
def test_bad_record_names_file_and_line(tmp_path, kind, record, needles) -> None:
    good = {"choice": CHOICE[0], "exact": EXACT[0], "perplexity": PERPLEXITY[0]}[kind]
    path = _write(tmp_path / "bad.jsonl", [good, good, record])
    with pytest.raises(DataError) as e:
        read_own(path, kind)
    msg = str(e.value)
    assert msg.startswith(f"{path}:3: ") and "\n" not in msg, msg
    for n in needles:
        assert n in msg, (n, msg)


def test_bad_spec_empty_and_missing_files(tmp_path) -> None:
    with pytest.raises(EvalError, match="kind 'choise' is not one of choice, exact, perplexity"):
        parse_spec("qa.jsonl:choise")
    with pytest.raises(EvalError, match="no kind; write PATH:KIND"):
        parse_spec("qa.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n", "utf-8")
    with pytest.raises(DataError, match="empty.jsonl has no records"):
        read_own(tmp_path / "empty.jsonl", "perplexity")
    with pytest.raises(DataError, match="file not found"):
        read_own(tmp_path / "absent.jsonl", "exact")


def test_malformed_files_fail_on_the_command_line(tiny_checkpoint, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = tmp_path / "out"
    cases = [
        ("choice", {"question": "q", "choices": ["a", "b", "c"], "answer": 5}, "answer 5 is out of range"),
        ("exact", {"question": "q", "answer": 12}, "'answer' must be a non-empty string"),
        ("perplexity", {"txt": "x"}, "field 'text' missing"),
    ]
    for kind, record, needle in cases:
        good = {"choice": CHOICE[0], "exact": EXACT[0], "perplexity": PERPLEXITY[0]}[kind]
        path = _write(tmp_path / f"bad_{kind}.jsonl", [good, good, record, good])
        res = run_cli("eval", str(tiny_checkpoint), "--own", f"{path}:{kind}", "--out", str(out))
        one_line_error(res, f"bad_{kind}.jsonl:3:", needle)
    (tmp_path / "broken.jsonl").write_text('{"text": "ok"}\n{"text": \n', "utf-8")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--own", f"{tmp_path / 'broken.jsonl'}:perplexity"),
                   "broken.jsonl:2", "not valid JSON")  # fmt: skip
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--own", "qa.jsonl:mcq"), "--own", "'mcq'", "choice")
    assert not out.exists()  # nothing was evaluated


# ------------------------------------------------------------------------------------------------ running
def _result(results: list[dict], task: str) -> dict:
    (r,) = [r for r in results if r["task"] == task]
    return r


def test_each_kind_runs_through_the_runner(tiny_checkpoint, own_files, tmp_path) -> None:
    from moxin.eval.identity import identify
    from moxin.eval.own import from_specs
    from moxin.eval.runner import Settings, evaluate

    specs = [f"{p}:{kind}" for kind, p in own_files.items()]
    tasks, dirs = from_specs(specs, None)
    assert tasks == ["own_qa", "own_短答", "own_docs"]
    assert dirs[0].parent == tmp_path / "cache" / "moxin" / "eval-tasks"  # a bare model: the private cache
    s = Settings(tasks=tasks, include_path=dirs, batch_size=8)
    results, computed = evaluate(identify(tiny_checkpoint), s, tmp_path / "out", log=lambda *_: None)
    assert computed == 3
    choice, exact, ppl = (_result(results, t) for t in tasks)
    assert 0.0 <= choice["metrics"]["acc"] <= 1.0 and 0.0 <= choice["metrics"]["acc_norm"] <= 1.0
    assert choice["n_items"] == 3 and exact["n_items"] == 3 and ppl["n_items"] == 2
    assert exact["metrics"]["exact_match"] in (0.0, 1 / 3, 2 / 3, 1.0)
    assert exact["lm_eval_config"]["generation_kwargs"]["until"] == ["\n"]
    assert 1.0 < ppl["metrics"]["word_perplexity"] < math.inf and ppl["metrics"]["bits_per_byte"] > 0
    assert ppl["metrics"]["byte_perplexity"] == pytest.approx(2 ** ppl["metrics"]["bits_per_byte"], rel=1e-6)
    for r, kind in zip((choice, exact, ppl), own_files):
        meta = r["task_config"]["yaml"]["metadata"]
        assert meta["source_sha256"] == sha256_file(own_files[kind]) and meta["kind"] == kind
        assert meta["source_file"] == own_files[kind].name
        assert str(tmp_path) not in json.dumps(r["task_config"])  # no absolute path in what is hashed
    again, computed = evaluate(identify(tiny_checkpoint), s, tmp_path / "out", log=lambda *_: None)
    assert computed == 0 and [r["metrics"] for r in again] == [r["metrics"] for r in results]


class _Scripted:
    """Stands in for the model in an exact task: answers each prompt with a fixed text, records the requests."""

    def __init__(self, answers: dict[str, str]) -> None:
        from lm_eval.api.model import LM

        scripted = self

        class _LM(LM):
            def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
                scripted.requests += requests
                return [next(a for q, a in answers.items() if q in r.args[0]) for r in requests]

            def loglikelihood(self, requests, disable_tqdm: bool = False):
                raise AssertionError("an exact task only generates")

            loglikelihood_rolling = loglikelihood

        self.requests: list = []
        self.lm = _LM()


def test_exact_scores_normalised_generations(tiny_checkpoint, own_files, tmp_path) -> None:
    from moxin.eval.identity import identify
    from moxin.eval.own import from_specs
    from moxin.eval.runner import Settings, evaluate

    tasks, dirs = from_specs([f"{own_files['exact']}:exact"], None)
    model = _Scripted({"首都": " 東京。", "ABC123": "ＡＢＣ１２３", "カタカナ": "ひらがな"})
    s = Settings(tasks=tasks, include_path=dirs)
    (res,), _ = evaluate(identify(tiny_checkpoint), s, tmp_path / "out", lm=model.lm, log=lambda *_: None)
    assert res["metrics"]["exact_match"] == pytest.approx(2 / 3)
    assert model.requests[0].args[0].startswith("Question: ") and model.requests[0].args[0].endswith("\nAnswer:")
    assert all(r.args[1]["until"] == ["\n"] and r.args[1]["max_gen_toks"] <= 32 for r in model.requests)


def test_own_only_on_the_command_line(tiny_checkpoint, own_files, tmp_path) -> None:
    out = tmp_path / "out"
    spec = f"{own_files['choice']}:choice"
    code, stdout, err = run_cli("eval", str(tiny_checkpoint), "--own", spec, "--out", str(out))
    assert code == 0, err[-2000:]
    (path,) = (out / "results").glob("*.json")
    res = json.loads(path.read_text("utf-8"))
    assert res["task"] == "own_qa" and res["task_config"]["yaml"]["metadata"]["source_sha256"] == sha256_file(
        own_files["choice"]
    )


# ------------------------------------------------------------------------------------------------ recipes
RECIPE = """[eval]
tasks = []
[[eval.own]]
path = "mine/qa.jsonl"
kind = "choice"
limit = 2
[[eval.own]]
path = "mine/docs.jsonl"
kind = "perplexity"
name = "held_docs"
"""


def test_recipe_own_section_loads_and_validates(own_files, tmp_path) -> None:
    from moxin.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text(RECIPE, "utf-8")
    r = load_recipe(path)
    assert [(o.path, o.kind, o.name, o.limit) for o in r.eval.own] == [
        ("mine/qa.jsonl", "choice", None, 2), ("mine/docs.jsonl", "perplexity", "held_docs", None)
    ]  # fmt: skip
    with pytest.raises(ConfigError, match=r"eval\.own\[0\]\.kind .* invalid value 'choise'; did you mean 'choice'"):
        load_recipe(path, ["eval.own=[{path = 'a.jsonl', kind = 'choise'}]"])
    with pytest.raises(ConfigError, match=r"eval\.own\[1\] .* named 'a' like eval\.own\[0\]"):
        load_recipe(path, ["eval.own=[{path = 'x/a.jsonl', kind = 'exact'}, {path = 'a.jsonl', kind = 'exact'}]"])
    with pytest.raises(ConfigError, match=r"missing required key 'eval\.own\[0\]\.kind'"):
        load_recipe(path, ["eval.own=[{path = 'a.jsonl'}]"])
    with pytest.raises(ConfigError, match=r"eval\.own\[0\]\.name .* 'a b'"):
        load_recipe(path, ["eval.own=[{path = 'a.jsonl', kind = 'exact', name = 'a b'}]"])
    path.write_text(RECIPE.replace("limit = 2", "limit = 0"), "utf-8")
    one_line_error(run_cli("config", str(path)), "eval.own[0].limit", "at least 1")


def test_recipe_own_tasks_run_in_the_eval_stage(own_files, tmp_path, tokenizer_dir, shared_data) -> None:
    from moxin.eval.commands import run_eval
    from moxin.layout import RunLayout
    from moxin.recipe import load_recipe

    path = tmp_path / "r.toml"
    path.write_text(RECIPE, "utf-8")
    r = load_recipe(path)
    r.eval.batch_size = 8
    layout = RunLayout(trained_run(tmp_path / "runs", tokenizer_dir, shared_data, (2,)))
    run_eval(r.eval, layout, r.resolve_path)
    assert (layout.eval / "own" / "qa" / "own_qa.yaml").is_file()
    kept = (layout.eval / "own" / "qa" / "items.jsonl").read_text("utf-8").splitlines()
    assert len(kept) == 2  # limit = 2
    results = {json.loads(p.read_text("utf-8"))["task"]: json.loads(p.read_text("utf-8"))
               for p in layout.eval_results.glob("*.json")}  # fmt: skip
    assert set(results) == {"own_qa", "own_held_docs"}
    assert results["own_qa"]["n_items"] == 2
    assert results["own_held_docs"]["task_config"]["yaml"]["metadata"]["source_sha256"] == sha256_file(
        own_files["perplexity"]
    )
    assert "own_qa" in (layout.eval / "table.md").read_text("utf-8")
