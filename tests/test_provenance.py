"""moxin.provenance.code_version: what every manifest records about the code."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import moxin
from moxin.provenance import code_version


def test_code_run_from_a_release_reports_the_recorded_commit(tmp_path: Path) -> None:
    """A rebuild runs the release's own code/ (no git there): it records the commit the release names, not None."""
    code = tmp_path / "release" / "code"
    shutil.copytree(Path(moxin.__file__).parent, code / "src" / "moxin", ignore=shutil.ignore_patterns("__pycache__"))
    recorded = {"package": "moxin", "version": moxin.__version__, "git_commit": "ab" * 20, "git_dirty": False}
    (code / "VERSION.json").write_text(json.dumps(recorded), "utf-8")
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from moxin.provenance import code_version; print(json.dumps(code_version(), sort_keys=True))",
        ],
        env={"PYTHONPATH": str(code / "src"), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(out.stdout) == recorded


def test_code_in_this_checkout_reports_git() -> None:
    info = code_version()
    assert info["package"] == "moxin" and info["version"] == moxin.__version__
    if (Path(moxin.__file__).parents[2] / ".git").exists():
        assert isinstance(info["git_commit"], str) and len(info["git_commit"]) == 40


def test_atomic_writes_get_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    """A published release must be readable by others: temp-file writes follow the umask, not mkstemp's 0600."""
    import moxin.provenance as prov

    prov.atomic_write_text(tmp_path / "a.txt", "x")
    with prov.atomic_dir(tmp_path / "folder") as d:
        (d / "b.txt").write_text("y")
    (tmp_path / "plain.txt").write_text("z")
    (tmp_path / "plain").mkdir()
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == (tmp_path / "plain.txt").stat().st_mode & 0o777
    assert (tmp_path / "folder").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
    assert prov._UMASK & 0o044 or (tmp_path / "a.txt").stat().st_mode & 0o044  # others can read under umask 022
