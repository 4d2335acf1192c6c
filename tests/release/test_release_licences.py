"""SPDX audit: licence classes, verdicts per component kind, and licences read from the shared data's SOURCE.md."""

from __future__ import annotations

import pytest

from moxin.release.licences import audit, combine, first_licence_in, licence_from_source_md, licence_text, normalise


@pytest.mark.parametrize("text, spdx", [
    ("CC BY-NC 3.0", "CC-BY-NC-3.0"), ("cc-by-sa 4.0", "CC-BY-SA-4.0"), ("PSF License", "PSF-2.0"),
    ("public domain", "LicenseRef-Public-Domain"), ("apache-2.0", "Apache-2.0"), ("Made-Up-1.0", "Made-Up-1.0"),
])
def test_normalise(text, spdx):
    assert normalise(text) == spdx


@pytest.mark.parametrize("spdx, kind, verdict", [
    ("Apache-2.0", "code", "open"), ("CC-BY-4.0", "code", "warning"),
    ("CDLA-Permissive-2.0", "data", "open"), ("CC-BY-SA-4.0", "data", "open"), ("PSF-2.0", "data", "warning"),
    ("MIT", "data", "warning"), ("CC-BY-4.0", "document", "open"), ("Apache-2.0", "document", "warning"),
    ("CC-BY-NC-3.0", "data", "fail"), ("CC-BY-NC-SA-4.0", "document", "fail"), ("CC-BY-ND-4.0", "data", "fail"),
    ("NCSA", "code", "open"), ("Made-Up-1.0", "code", "fail"), (None, "data", "fail"),
    ("Apache-2.0 WITH LLVM-exception", "code", "open"),
])
def test_verdicts(spdx, kind, verdict):
    assert audit(spdx, kind).verdict == verdict


def test_expressions_take_best_choice_and_worst_term():
    assert audit("CC-BY-NC-4.0 OR CC-BY-4.0", "data").verdict == "open"
    worst = audit("CC0-1.0 AND CC-BY-NC-3.0", "data")
    assert worst.verdict == "fail" and "CC-BY-NC-3.0" in worst.reason
    assert combine(["MIT", "Apache-2.0 AND MIT", "BSD-3-Clause"]) == "Apache-2.0 AND BSD-3-Clause AND MIT"


def test_psf_on_data_is_open_with_a_warning_not_silently_open():
    a = audit("PSF-2.0", "data")
    assert a.verdict == "warning" and a.ok and "OSI" in a.reason and "open data licence" in a.reason


def test_source_md_licences_of_the_shared_data(shared_data):
    expect = {"sciq": ("CC-BY-NC-3.0", "fail"), "python_docs": ("PSF-2.0", "warning"),
              "gutenberg": ("LicenseRef-Public-Domain", "open"), "aozora_ja": ("LicenseRef-Public-Domain", "open"),
              "arc": ("CC-BY-SA-4.0", "open"), "piqa": ("AFL-3.0", "warning"), "lambada": ("CC-BY-4.0", "open")}
    for folder, (spdx, verdict) in expect.items():
        got = licence_from_source_md(shared_data / folder)
        assert got == spdx, folder
        assert audit(got, "data").verdict == verdict, folder


def test_first_licence_in_free_text():
    assert first_licence_in("Text: Shakespeare, public domain. Repository: MIT.") == "LicenseRef-Public-Domain"
    assert first_licence_in("CC BY-SA 3.0 / GFDL") == "CC-BY-SA-3.0"
    assert first_licence_in("nothing here") is None


def test_licence_text_full_or_reference():
    apache = licence_text("Apache-2.0")
    assert ("Apache License" in apache and len(apache) > 1000) or "spdx.org/licenses/Apache-2.0" in apache
    ref = licence_text("CDLA-Permissive-2.0")
    assert "SPDX-License-Identifier: CDLA-Permissive-2.0" in ref
    assert "https://spdx.org/licenses/CDLA-Permissive-2.0" in ref
