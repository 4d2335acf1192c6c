"""Acceptance 5: bad input gives one clear line (exit code 2) naming the problem and the fix."""

from __future__ import annotations

import shutil

from evalfix import data_copy, one_line_error, run_cli, tiny_checkpoint, tokenizer_dir  # noqa: F401


def test_unknown_task_suggests_nearest(tiny_checkpoint, shared_data, tmp_path):
    line = one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "hellaswagg", "--data-dir", str(shared_data),
                                  "--out", str(tmp_path)), "unknown task 'hellaswagg'", "--tasks")
    assert "did you mean 'hellaswag'" in line
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "moxin-zeroshott", "--data-dir", str(shared_data),
                           "--out", str(tmp_path)), "did you mean 'moxin-zeroshot'")


def test_missing_data_file_names_the_file(tiny_checkpoint, shared_data, tmp_path):
    data = data_copy(shared_data, tmp_path / "data", "arc")  # no hellaswag/
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "hellaswag", "--data-dir", str(data), "--out",
                           str(tmp_path / "out")), "data file missing", "hellaswag/hellaswag_val.jsonl.gz")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "piqa", "--data-dir", str(tmp_path / "nowhere")),
                   "evaluation data folder not found", "nowhere", "--data-dir")
    assert not (tmp_path / "out" / "results").exists()


def test_malformed_item_names_file_line_and_field(tiny_checkpoint, shared_data, tmp_path):
    data = tmp_path / "data"
    (data / "winogrande").mkdir(parents=True)
    lines = (shared_data / "winogrande" / "winogrande_dev.jsonl").read_text().splitlines()[:5]
    lines[2] = lines[2].replace('"answer": "1"', '"answer": "3"').replace('"answer": "2"', '"answer": "3"')
    (data / "winogrande" / "winogrande_dev.jsonl").write_text("\n".join(lines) + "\n")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "winogrande", "--data-dir", str(data), "--out",
                           str(tmp_path / "out")), "winogrande_dev.jsonl:3", "answer '3'", "'1' or '2'")
    lines[2] = "{not json"
    (data / "winogrande" / "winogrande_dev.jsonl").write_text("\n".join(lines) + "\n")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "winogrande", "--data-dir", str(data), "--out",
                           str(tmp_path / "out")), "winogrande_dev.jsonl:3", "not valid JSON")


def test_checkpoint_with_bad_hash_is_refused(tiny_checkpoint, shared_data, tmp_path):
    bad = tmp_path / "step-00000010"
    shutil.copytree(tiny_checkpoint, bad)
    weights = bad / "model" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in the last weight
    weights.write_bytes(bytes(data))
    one_line_error(run_cli("eval", str(bad), "--tasks", "piqa", "--data-dir", str(shared_data), "--out",
                           str(tmp_path / "out")), "fails its manifest", "model.safetensors", "SHA-256 mismatch")


def test_bad_flags(tiny_checkpoint, shared_data, tmp_path):
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "piqa:x", "--data-dir", str(shared_data)),
                   "n-shot after ':'")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--dtype", "fp8", "--data-dir", str(shared_data)), "--dtype")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--all-checkpoints", "--data-dir", str(shared_data)),
                   "--all-checkpoints needs a run folder")
    one_line_error(run_cli("eval", str(tmp_path / "none"), "--data-dir", str(shared_data)), "does not exist")
    one_line_error(run_cli("eval", str(tiny_checkpoint), "--tasks", "mmlu", "--data-dir", str(shared_data)),
                   "'mmlu' has no local data")


def test_recipe_eval_section_is_validated():
    one_line_error(run_cli("config", "tiny", "--set", "eval.dtype=fp8"), "eval.dtype", "'fp8'", "float32")
    one_line_error(run_cli("config", "tiny", "--set", "eval.limit=0"), "eval.limit", "at least 1")
    one_line_error(run_cli("config", "tiny", "--set", "eval.tasks=['piqa:x']"), "eval.tasks", "n-shot")
