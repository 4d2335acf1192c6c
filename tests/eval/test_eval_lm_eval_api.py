"""The lm-eval surface moxin relies on beyond its documented entry points: these fail loudly when an lm-eval upgrade
changes it, instead of moxin silently hashing no task config or probing the environment on every task again."""

import inspect

import lm_eval.evaluator as ev
from lm_eval.tasks import TaskManager

from moxin.eval.runner import TASKS_DIR, quiet_env_probe


def test_simple_evaluate_still_calls_the_module_globals_moxin_quiets():
    for name in ("add_env_info", "get_git_commit_hash"):
        assert callable(getattr(ev, name, None)), f"lm_eval.evaluator.{name} is gone: see quiet_env_probe"
        assert name in inspect.unwrap(ev.simple_evaluate).__code__.co_names, (
            f"simple_evaluate no longer calls {name} by its module global: quiet_env_probe no longer skips it"
        )


def test_quiet_env_probe_skips_the_probe_and_restores_it():
    original, git = ev.add_env_info, ev.get_git_commit_hash
    with quiet_env_probe():
        assert ev.add_env_info is not original
        results: dict = {}
        ev.add_env_info(results)
        assert results == {}  # nothing probed, nothing added
        assert ev.get_git_commit_hash() is None  # no `git describe` in the user's working directory
    assert ev.add_env_info is original and ev.get_git_commit_hash is git


def test_task_index_gives_each_task_its_yaml_config():
    tm = TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False)
    name = next(n for n in tm.all_subtasks if n.endswith("_local"))
    entry = tm.task_index.get(name)
    assert entry is not None and isinstance(entry.cfg, dict) and entry.cfg.get("task") == name
    assert entry.yaml_path is not None and entry.yaml_path.is_file()
