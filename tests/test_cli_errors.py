"""Acceptance 6 of [1/8]: bad input gives one clear line naming the problem, exit code 2, no traceback."""

import json
import subprocess
import sys

import pytest

from moxintest import REPO, run_cli


def _one_line_error(code, out, err, *needles):
    assert code == 2, (code, out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])


def test_unknown_key_suggests_nearest(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[modle]\nn_layers = 3\n")
    _one_line_error(*run_cli("config", str(bad)), "unknown key 'modle.n_layers'", str(bad),
                    "did you mean 'model.n_layers'?")
    bad.write_text("[model]\nn_layer = 3\n")
    _one_line_error(*run_cli("config", str(bad)), "'model.n_layer'", "did you mean 'model.n_layers'?")


def test_wrong_type_names_key_and_value(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text('[model]\nn_layers = "four"\n')
    _one_line_error(*run_cli("config", str(bad)), "model.n_layers", "must be int", "'four'", str(bad))
    _one_line_error(*run_cli("config", "tiny", "--set", "model.arch=mistal"), "model.arch", "did you mean 'mistral'?")


def test_missing_recipe_file(tmp_path):
    _one_line_error(*run_cli("config", str(tmp_path / "nope.toml")), "not found", "nope.toml")


def test_corrupted_safetensors(hf_mistral_dir, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(hf_mistral_dir, broken)
    data = (broken / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    _one_line_error(*run_cli("import", str(broken), str(tmp_path / "out")), "model.safetensors",
                    "not a valid safetensors file")
    assert not (tmp_path / "out").exists()


def test_unsupported_architecture(hf_mistral_dir, tmp_path):
    import shutil

    other = tmp_path / "gpt2"
    shutil.copytree(hf_mistral_dir, other)
    cfg = json.loads((other / "config.json").read_text())
    cfg["model_type"] = "gpt2"
    (other / "config.json").write_text(json.dumps(cfg))
    _one_line_error(*run_cli("import", str(other), str(tmp_path / "out")), "model_type 'gpt2' is not supported")


def test_unknown_preset_and_command():
    _one_line_error(*run_cli("model", "info", "moxin7b"), "unknown model preset 'moxin7b'", "did you mean 'moxin-7b'?")
    _one_line_error(*run_cli("modle", "info"), "unknown command", "did you mean 'moxin model info'?")


def test_real_process_exit_code_and_no_traceback(tmp_path):
    bad = tmp_path / "x.toml"
    bad.write_text("[model]\ndepth = 3\n")
    proc = subprocess.run([sys.executable, "-m", "moxin.cli", "config", str(bad)], capture_output=True, text=True,
                          cwd=REPO)
    _one_line_error(proc.returncode, proc.stdout, proc.stderr, "unknown key 'model.depth'")


@pytest.mark.parametrize("flag", ["--help"])
def test_every_command_has_generated_help(flag):
    from moxin.cli import COMMANDS, build_parser, load_command, parse_doc, takes_recipe

    for key in COMMANDS:
        fn = load_command(key)
        summary, _, params = parse_doc(fn)
        assert summary, f"{key}: missing docstring"
        text = build_parser(key, fn).format_help()
        import inspect

        for name in inspect.signature(fn).parameters:
            assert name in params, f"{key}: parameter {name!r} is not documented in Args:"
        if takes_recipe(fn):
            assert "--set" in text and "--dry-run" in text, key
