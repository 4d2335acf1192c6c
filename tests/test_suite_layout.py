"""The suite collects every test folder: pytest skips folders named like build outputs by default (`build`, `dist`),
and tests/build holds the tests that run `moxin build` itself."""

import subprocess
import sys

from moxintest import REPO


def test_every_test_folder_is_collected() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    ).stdout
    folders = {line.split("/")[1] for line in out.splitlines() if line.startswith("tests/") and "::" in line}
    expected = {p.name for p in (REPO / "tests").iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert expected <= folders, f"not collected: {sorted(expected - folders)}"
    assert "tests/build/test_build_relocation.py::" in out
