"""Formats, drop reasons with file:line, strict errors, decontamination and the data manifest."""

import json
from pathlib import Path

import pytest
from ft_helpers import pretrain_ckpt, run_cli, tok, tok_dir, write_jsonl, write_recipe  # noqa: F401 (fixtures)

from moxin.errors import ConfigError, DataError
from moxin.finetune.config import DatasetConfig, EvalSetConfig, FinetuneConfig
from moxin.finetune.data import detect_format, gsm8k_answer, normalise
from moxin.finetune.prepare import prepare


def _cfg(mode, paths, **kw):
    f = FinetuneConfig()
    m = f.mode(mode)
    m.data = [DatasetConfig(path=str(p), license="CC0-1.0") for p in paths]
    m.val_fraction = 0.0
    for k, v in kw.items():
        setattr(m, k, v)
    return f


def test_formats_normalise_to_conversations():
    chat = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert normalise(chat, detect_format(chat)) == chat
    inst = {"instruction": "Spell", "input": "freind", "output": "friend"}
    assert normalise(inst, detect_format(inst))["messages"] == [
        {"role": "user", "content": "Spell\n\nfreind"}, {"role": "assistant", "content": "friend"}]
    pr = {"prompt": "Q", "response": "A"}
    assert normalise(pr, detect_format(pr))["messages"][1] == {"role": "assistant", "content": "A"}
    hh = {"chosen": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: rude?\n\nAssistant: no",
          "rejected": "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: rude?\n\nAssistant: yes"}
    ex = normalise(hh, detect_format(hh))
    assert [m["content"] for m in ex["prompt"]] == ["hi", "hello", "rude?"]
    assert ex["chosen"] == [{"role": "assistant", "content": "no"}] and ex["rejected"][0]["content"] == "yes"
    rasbt = {"instruction": "Fix", "input": "x", "output": "o", "chosen": "good", "rejected": "bad"}
    ex = normalise(rasbt, detect_format(rasbt))
    assert ex["prompt"][0]["content"] == "Fix\n\nx" and ex["chosen"][0]["content"] == "good"
    gsm = {"question": "2+2?", "answer": "2+2=<<2+2=4>>4\n#### 4"}
    assert normalise(gsm, detect_format(gsm))["answer"] == "4"
    assert gsm8k_answer("so\n#### 1,234") == "1234"


def test_bad_records_are_counted_with_file_and_line(tmp_path, tok):
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    rows = [good, "{not json", {"messages": [{"role": "wizard", "content": "x"}]}, {"messages": "oops"},
            {"messages": [{"role": "user", "content": "only a question"}]},
            {"messages": [{"role": "user", "content": "long " * 400}, {"role": "assistant", "content": "ok"}]},
            good]
    path = write_jsonl(tmp_path / "chat.jsonl", rows)
    prep = prepare(_cfg("sft", [path], seq_len=64), "sft", tok, Path, tmp_path / "out", 0)
    c = prep.ledger.sets["chat"]
    assert (c.records_in, c.kept) == (7, 1)
    assert c.dropped == {"malformed_json": 1, "unknown_role:wizard": 1, "bad_type:messages": 1,
                         "no_assistant_turn": 1, "too_long": 1, "duplicate": 1}
    assert any(e.startswith("chat.jsonl:2: malformed_json") for e in c.examples)
    assert any(e.startswith("chat.jsonl:3: unknown_role:wizard") for e in c.examples)
    assert any(e.startswith("chat.jsonl:6: too_long") for e in c.examples)
    manifest = json.loads((tmp_path / "out" / "data" / "manifest.json").read_text())
    ds = manifest["datasets"][0]
    assert ds["license"] == "CC0-1.0" and len(ds["sha256"]) == 64 and ds["dropped"]["too_long"] == 1
    assert set(manifest["files"]) == {"train.jsonl", "val.jsonl"}


def test_preference_missing_rejected_counted_or_error(tmp_path, tok):
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "q", "chosen": "a"}]
    path = write_jsonl(tmp_path / "prefs.jsonl", rows)
    prep = prepare(_cfg("dpo", [path]), "dpo", tok, Path, None, 0, write=False)
    assert prep.ledger.sets["prefs"].dropped == {"missing_field:rejected": 1}
    with pytest.raises(DataError, match=r"prefs.jsonl:2: missing_field:rejected"):
        prepare(_cfg("dpo", [path], on_bad_record="error"), "dpo", tok, Path, None, 0, write=False)


def test_too_long_error_and_truncate(tmp_path, tok):
    rows = [{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "word " * 200}]}]
    path = write_jsonl(tmp_path / "long.jsonl", rows)
    with pytest.raises(DataError, match="long.jsonl:1: too_long"):
        prepare(_cfg("sft", [path], seq_len=32, on_bad_record="error"), "sft", tok, Path, None, 0, write=False)
    prep = prepare(_cfg("sft", [path], seq_len=32, too_long="truncate"), "sft", tok, Path, None, 0, write=False)
    assert len(prep.train[0][0]) == 32


def test_wrong_format_for_the_mode_is_a_config_error(tmp_path, tok):
    path = write_jsonl(tmp_path / "inst.jsonl", [{"instruction": "a", "output": "b"}])
    with pytest.raises(ConfigError, match=r"'instruction' format, which `finetune dpo` cannot use"):
        prepare(_cfg("dpo", [path]), "dpo", tok, Path, None, 0, write=False)


def test_decontamination_drops_eval_overlap(tmp_path, tok):
    q = "Janet has twelve apples and gives three of them to her brother every single morning before school"
    evals = write_jsonl(tmp_path / "eval.jsonl", [{"question": q, "answer": "#### 9"}])
    rows = [{"instruction": f"Solve: {q}.", "output": "9"}, {"instruction": "Spell freind.", "output": "friend"}]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    f = _cfg("sft", [path])
    f.decontaminate = [EvalSetConfig(name="gsm8k", path=str(evals), fields=["question"])]
    prep = prepare(f, "sft", tok, Path, tmp_path / "o", 0)
    assert prep.ledger.sets["train"].dropped == {"contaminated:gsm8k": 1} and len(prep.train) == 1
    assert prep.manifest["decontamination"]["eval_sets"][0]["matched"] == 1


def test_shared_data_sets_load(shared_data, tok):
    f = _cfg("dpo", [shared_data / "rasbt_instruction_data" / "instruction-data-with-preference.json",
                     shared_data / "hh_rlhf" / "harmless-base_test.jsonl.gz"], seq_len=4096)
    f.dpo.data[0].license, f.dpo.data[1].license = "Apache-2.0", "MIT"
    f.dpo.data[1].max_records = 50
    prep = prepare(f, "dpo", tok, Path, None, 0, write=False)
    sets = prep.ledger.sets
    assert sets["instruction-data-with-preference"].records_in == 1100
    assert sets["harmless-base_test"].records_in == 50
    assert sets["instruction-data-with-preference"].kept >= 1090


def test_cli_strict_error_is_one_line(tmp_path, tok_dir, pretrain_ckpt):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"messages": [{"role": "robot", "content": "x"}]}])
    recipe = write_recipe(tmp_path, f'[finetune]\nparent = "{pretrain_ckpt}"\n[finetune.sft]\n'
                                    f'on_bad_record = "error"\ndata = [{{path = "{path}", license = "MIT"}}]\n')
    code, out, err = run_cli("finetune", "sft", str(recipe), "--no-progress")
    assert code == 2 and "bad.jsonl:1: unknown_role:robot" in err and "Traceback" not in err


def test_shared_sft_and_math_sets_load(shared_data, tok):
    f = _cfg("sft", [shared_data / "dolly_hhrlhf_small" / "dolly_hhrlhf_train_small.jsonl",
                     shared_data / "gsm8k" / "train.jsonl"], seq_len=100_000)
    for d in f.sft.data:
        d.max_records = 40
    prep = prepare(f, "sft", tok, Path, None, 0, write=False)
    assert {n: (c.format, c.records_in, c.kept) for n, c in prep.ledger.sets.items()} == {
        "dolly_hhrlhf_train_small": ("prompt-response", 40, 40), "train": ("math", 40, 40)}
    g = _cfg("grpo", [shared_data / "gsm8k" / "train.jsonl"], seq_len=4096)
    g.grpo.data[0].max_records = 20
    prep = prepare(g, "grpo", tok, Path, None, 0, write=False)
    assert len(prep.train) == 20 and prep.train[0][1] == "72"  # Natalia's clips: '#### 72'
