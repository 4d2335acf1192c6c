"""Issue 15 item 12: lm-eval's own CLI through moxin keeps the user's task folders (lm-eval 0.4.13's TaskManager
takes a list; a ':'-joined string is not split), and the `moxin-lm-eval` console script runs `--model moxin`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from evalfix import tiny_checkpoint, tokenizer_dir  # noqa: F401  (fixtures; sets OMP_WAIT_POLICY first)

ROOT = Path(__file__).resolve().parents[2]


def _user_tasks(folder: Path) -> Path:
    """A tiny multiple-choice task `my_even` whose data path is absolute (lm-eval resolves relative ones against the
    working directory)."""
    (folder / "data").mkdir(parents=True)
    rows = [{"q": f"Is {i} even?", "choices": ["yes", "no"], "gold": i % 2} for i in range(6)]
    (folder / "data" / "even.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (folder / "even.yaml").write_text(
        "task: my_even\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
        f"    test: {folder / 'data' / 'even.jsonl'}\n"
        "test_split: test\noutput_type: multiple_choice\ndoc_to_text: \"Question: {{q}}\\nAnswer:\"\n"
        "doc_to_choice: \"{{choices}}\"\ndoc_to_target: gold\nmetric_list:\n  - metric: acc\n")
    return folder


def test_include_paths_become_a_list_with_moxin_tasks_last(tmp_path):
    from moxin.eval.catalog import TASKS_DIR
    from moxin.eval.lm_eval_cli import _with_moxin_tasks

    a, b, c = (tmp_path / n for n in "abc")
    args, paths = _with_moxin_tasks(["--model", "moxin", "--include_path", f"{a}:{b}", "--tasks", "t",
                                     f"--include_path={c}"])
    assert args == ["run", "--model", "moxin", "--tasks", "t"]
    assert paths == [str(a), str(b), str(c), str(TASKS_DIR)]
    assert _with_moxin_tasks(["ls", "tasks"]) == (["ls", "tasks"], [str(TASKS_DIR)])


def test_task_manager_finds_user_and_moxin_tasks(tmp_path):
    """What the CLI hands lm-eval finds both folders' tasks (the old ':'-joined string found neither)."""
    from lm_eval.tasks import TaskManager

    from moxin.eval.catalog import TASKS_DIR
    from moxin.eval.lm_eval_cli import _with_moxin_tasks

    user = _user_tasks(tmp_path / "mytasks")
    _, paths = _with_moxin_tasks(["--include_path", str(user)])
    tm = TaskManager(include_path=paths, include_defaults=False)
    assert {"my_even", "piqa_local"} <= set(tm.all_tasks)
    joined = TaskManager(include_path=f"{user}:{TASKS_DIR}", include_defaults=False)
    assert "my_even" not in joined.all_tasks  # the defect this fixes: lm-eval does not split the string


def _console_script() -> list[str]:
    """The installed `moxin-lm-eval`, or (in a checkout installed before the script was added) the launcher pip
    writes for the pyproject entry, run with the same argv[0]."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]["scripts"]["moxin-lm-eval"]
    assert entry == "moxin.eval.lm_eval_cli:main"
    found = shutil.which("moxin-lm-eval")
    if found:
        return [found]
    module, func = entry.split(":")
    return [sys.executable, "-c", f"import sys; sys.argv[0] = 'moxin-lm-eval'; from {module} import {func}; "
                                  f"sys.exit({func}())"]


@pytest.mark.slow  # lm-eval's CLI indexes its ~14,000 built-in tasks first
@pytest.mark.timeout(600)
def test_moxin_lm_eval_script_runs_a_user_task(tiny_checkpoint, tmp_path):
    user = _user_tasks(tmp_path / "mytasks")
    out = tmp_path / "out"
    cmd = _console_script() + ["--model", "moxin", "--model_args", f"path={tiny_checkpoint},show_progress=false",
                               "--tasks", "my_even", "--include_path", str(user), "--limit", "4",
                               "--batch_size", "4", "--output_path", str(out)]
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=540, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (res,) = list(out.rglob("results_*.json"))
    data = json.loads(res.read_text())
    assert data["n-samples"]["my_even"]["effective"] == 4
    assert 0.0 <= data["results"]["my_even"]["acc,none"] <= 1.0
    assert data["config"]["model"] == "moxin"
