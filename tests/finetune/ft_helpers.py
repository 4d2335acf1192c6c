"""Helpers for the fine-tuning tests: recipes, JSONL files, the CLI in-process and in a killable subprocess."""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_recipe(folder: Path, body: str) -> Path:
    path = folder / "recipe.toml"
    path.write_text(f'[run]\nname = "ft"\nseed = 0\nout_dir = "{folder / "runs"}"\n\n[model]\npreset = "tiny"\n\n'
                    + body, "utf-8")
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), "utf-8")
    return path


def run_cli(*args: str) -> tuple[int, str, str]:
    """`moxin ARGS` in-process: (exit code, stdout, stderr)."""
    import contextlib
    import io

    from moxin.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()
