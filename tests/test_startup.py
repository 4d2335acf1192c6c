"""Start-up: `moxin --help` and `moxin <command> --help` import neither torch nor transformers; the lazy command
table shows the same summaries as the commands' docstrings; recipes and configs are torch-free."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from moxin.cli import COMMANDS, command_summary, load_command, parse_doc
from moxintest import REPO, run_cli

HEAVY = ("torch", "transformers")


def _python(code: str, *flags: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, *flags, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _loaded(modules: list[str]) -> set[str]:
    """Top-level packages among `modules` that are heavy."""
    return {m.split(".")[0] for m in modules} & set(HEAVY)


def test_importtime_of_cli_shows_no_torch():
    err = _python("import moxin.cli", "-X", "importtime").stderr
    names = [line.rsplit("|", 1)[1].strip() for line in err.splitlines() if line.startswith("import time:")]
    assert "moxin.cli" in names, err[-2000:]
    assert not _loaded(names), sorted(n for n in names if n.split(".")[0] in HEAVY)[:10]


def test_help_of_every_command_loads_no_torch():
    """`moxin --help`, each group's overview and every command's parser, all in one fresh process."""
    code = """
import contextlib, io, json, sys
from moxin.cli import COMMANDS, build_parser, load_command, main
with contextlib.redirect_stdout(io.StringIO()) as out:
    codes = {"": main(["--help"]), "model": main(["model", "--help"]), "export": main(["export"])}
helps = {}
for key in COMMANDS:
    helps[key] = build_parser(key, load_command(key)).format_help()
for key in ("build", "eval", "serve"):
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):
        main([key, "--help"])
print(json.dumps({"codes": codes, "overview": out.getvalue(), "helps": helps, "modules": sorted(sys.modules)}))
"""
    got = json.loads(_python(code).stdout)
    assert got["codes"] == {"": 0, "model": 0, "export": 0}
    assert all(f"  {key}" in got["overview"] for key in COMMANDS)
    assert all(h.startswith(f"usage: moxin {key}") for key, h in got["helps"].items())
    assert not _loaded(got["modules"]), sorted(m for m in got["modules"] if m.split(".")[0] in HEAVY)[:10]


def test_recipe_and_every_config_are_torch_free():
    code = """
import json, sys
import moxin.recipe, moxin.model
import moxin.build.config, moxin.data.config, moxin.eval.config, moxin.finetune.config, moxin.model.config
import moxin.release.config, moxin.tokenizer.config, moxin.train.config
moxin.recipe.load_recipe("tiny", ["model.n_layers=3"])
print(json.dumps(sorted(sys.modules)))
"""
    modules = json.loads(_python(code).stdout)
    assert not _loaded(modules), sorted(m for m in modules if m.split(".")[0] in HEAVY)[:10]


def test_config_module_imports_no_recipe_or_model():
    """The old circle config → recipe → model.config → config is gone: generic loading stands alone."""
    code = "import json, sys, moxin.config; print(json.dumps(sorted(m for m in sys.modules if m.startswith('moxin'))))"
    assert json.loads(_python(code).stdout) == ["moxin", "moxin.config", "moxin.errors"]


def test_table_summaries_equal_the_docstrings():
    """`moxin --help` reads summaries from the sources without importing; they must be the docstrings' own."""
    for key in COMMANDS:
        assert command_summary(key) == parse_doc(load_command(key))[0], key
        assert command_summary(key), f"{key}: no docstring summary"


def test_summary_follows_reexports_and_falls_back_to_import(monkeypatch):
    # `moxin tokenizer` is re-exported from moxin.data.commands (`from moxin.data.commands import tokenizer`)
    assert COMMANDS["tokenizer"] == "moxin.tokenizer.commands:tokenizer"
    assert command_summary("tokenizer").startswith("Train the tokenizer")
    # a function outside moxin's sources is imported to read its docstring
    monkeypatch.setitem(COMMANDS, "dumps", "json:dumps")
    assert command_summary("dumps") == "Serialize ``obj`` to a JSON formatted ``str``."


@pytest.mark.parametrize("key", list(COMMANDS))
def test_every_command_help_exits_zero(key):
    code, out, err = run_cli(*key.split(), "--help")
    assert code == 0, err
    assert out.startswith(f"usage: moxin {key}"), out[:200]
    assert parse_doc(load_command(key))[0].split()[0] in out


def test_lazy_model_package_keeps_its_names():
    code = """
import sys
import moxin.model
assert "torch" not in sys.modules
import moxin.model.generate  # binds the submodule on the package; the function must stay
from moxin.model import KVCache, Sampling, Transformer, build, fast, generate
assert callable(generate) and generate.__module__ == "moxin.model.generate", generate
assert Transformer.__name__ == "Transformer" and build.__module__ == "moxin.model.transformer"
assert fast.__name__ == "moxin.model.fast" and "KVCache" in dir(moxin.model)
try:
    moxin.model.nope
except AttributeError as e:
    assert "nope" in str(e)
else:
    raise SystemExit("no AttributeError")
print("ok")
"""
    assert _python(code).stdout.strip() == "ok"


def test_pytest_runs_with_a_default_timeout(pytestconfig):
    """pyproject.toml sets a per-test timeout (pytest-timeout) so a hung test fails instead of stalling the suite."""
    assert pytestconfig.pluginmanager.hasplugin("timeout"), "install the dev extra: pip install -e '.[dev]'"
    assert 60 <= float(pytestconfig.getini("timeout")) <= 1200
