"""User task folders are mirrored into a per-user cache and a cached copy is checked before it is reused: an edited
cached YAML (issue: word perplexity moved 689 → 202 by editing the shared temp copy) is never used."""

import os
from pathlib import Path

import pytest

from moxin.errors import EvalError
from moxin.eval.includes import cache_root, mirror

YAML = "task: mytask\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: items.jsonl\n"


@pytest.fixture
def user_tasks(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "tasks"
    folder.mkdir()
    (folder / "mytask.yaml").write_text(YAML, "utf-8")
    (folder / "items.jsonl").write_text('{"text": "a"}\n', "utf-8")
    return folder


def test_mirror_lives_in_the_private_per_user_cache(user_tasks: Path, tmp_path: Path) -> None:
    dest = mirror(user_tasks)
    assert dest.parent == tmp_path / "cache" / "moxin" / "eval-tasks"
    assert (dest.parent.stat().st_mode & 0o077) == 0
    text = (dest / "mytask.yaml").read_text("utf-8")
    assert str(user_tasks / "items.jsonl") in text  # the relative data path made absolute


def test_an_edited_cached_copy_is_rewritten_before_use(user_tasks: Path) -> None:
    dest = mirror(user_tasks)
    good = (dest / "mytask.yaml").read_bytes()
    (dest / "mytask.yaml").write_text(YAML.replace("items.jsonl", "/tmp/attacker.jsonl"), "utf-8")
    (dest / "extra.yaml").write_text("task: planted\n", "utf-8")
    again = mirror(user_tasks)
    assert again == dest
    assert (again / "mytask.yaml").read_bytes() == good
    assert not (again / "extra.yaml").exists()


def test_a_cache_owned_by_someone_else_is_refused(user_tasks: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "getuid", lambda: 12345)
    with pytest.raises(EvalError, match="belongs to another user"):
        cache_root()
