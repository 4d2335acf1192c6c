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


def sub_env() -> dict[str, str]:
    """One thread in every run (as tests/train does): in-process and subprocess runs then compute identically."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    return env


def cli_cmd(*args: str) -> list[str]:
    import sys

    return [sys.executable, "-m", "moxin.cli", *args]


def run_sub(*args: str) -> None:
    import subprocess

    proc = subprocess.run(cli_cmd(*args), env=sub_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


def kill_after(args: list[str], metrics: Path, step: int, timeout: float = 300) -> int:
    """Start `moxin ARGS`, SIGKILL it once metrics.jsonl has logged `step` (modelled on tests/train's helper);
    returns the last logged step."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cli_cmd(*args), env=sub_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout
    last = -1
    while time.monotonic() < deadline:
        if metrics.exists():
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            last = rows[-1]["step"] if rows else -1
            if last >= step:
                break
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return last
