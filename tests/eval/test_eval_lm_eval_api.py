"""The lm-eval surface moxin relies on beyond its documented entry points: these fail loudly when an lm-eval upgrade
changes it, instead of moxin silently hashing no task config or probing the environment on every task again."""

import inspect

import lm_eval.evaluator as ev
from lm_eval.tasks import TaskManager

from moxin.eval.runner import TASKS_DIR, quiet_env_probe


def test_simple_evaluate_still_calls_the_module_global_add_env_info():
    assert callable(getattr(ev, "add_env_info", None)), "lm_eval.evaluator.add_env_info is gone: see quiet_env_probe"
    assert "add_env_info" in inspect.unwrap(ev.simple_evaluate).__code__.co_names, (
        "simple_evaluate no longer calls add_env_info by its module global: quiet_env_probe no longer skips it")


def test_quiet_env_probe_skips_the_probe_and_restores_it():
    original = ev.add_env_info
    with quiet_env_probe():
        assert ev.add_env_info is not original
        results: dict = {}
        ev.add_env_info(results)
        assert results == {}  # nothing probed, nothing added
    assert ev.add_env_info is original


def test_task_index_gives_each_task_its_yaml_config():
    tm = TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False)
    name = next(n for n in tm.all_subtasks if n.endswith("_local"))
    entry = tm.task_index.get(name)
    assert entry is not None and isinstance(entry.cfg, dict) and entry.cfg.get("task") == name
    assert entry.yaml_path is not None and entry.yaml_path.is_file()
