"""The report tests reuse the release tests' run and release (tests/release/conftest.py: a tiny run trained by the
real trainer, an SFT stage, eval results, and its release), built once per session."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_spec = importlib.util.spec_from_file_location("moxin_release_fixtures",
                                               Path(__file__).resolve().parents[1] / "release" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)

tiny_run = _fixtures.tiny_run
built_release = _fixtures.built_release
