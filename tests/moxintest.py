"""Helpers shared by tests in every folder. A plain module with a unique name: `from conftest import ...` would be
ambiguous once a sub-folder has its own conftest.py."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


def run_cli(*args: str) -> tuple[int, str, str]:
    """Run `moxin ARGS` in-process; returns (exit code, stdout, stderr)."""
    import contextlib
    import io

    from moxin.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(args))
        except SystemExit as e:  # argparse usage errors
            code = e.code if isinstance(e.code, int) else 1
    return code, out.getvalue(), err.getvalue()
