"""Issue 14 [3/7], acceptance "Lineage": a release derived from an imported base is capped by the base's openness
(data closed → at most Class II, code closed → at most Class III), names the base (name, SHA-256, licence) as the
reason with each fact's source, and says what would lift the cap. A release without an imported base is unchanged."""

from __future__ import annotations

import json

import pytest

from moxin.release.basecap import cap_of
from moxin.release.cards import model_card
from moxin.release.mof import report, validate_schema, write_mof

SHA = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def _origin(data: bool, code: bool, source: str = "table:smollm2") -> dict:
    return {
        "format_version": 1,
        "name": "SmolLM2-135M-Instruct",
        "source": {"file": "SmolLM2-135M-Instruct.Q4_1.gguf", "sha256": SHA, "format": "gguf"},
        "license": "Apache-2.0",
        "license_source": "gguf:general.license",
        "openness": {
            "weights": True,
            "data": data,
            "code": code,
            "urls": {"code": "https://github.com/huggingface/smollm"},
            "notes": {},
            "sources": {"data": source, "code": source},
            "source": source,
        },
    }


def _root_on(release, origin: dict) -> None:
    """Make every fine-tuning checkpoint of the release record `origin` as its base's, as `moxin finetune` does
    for a parent folder written by `moxin import`."""
    states = sorted(release.glob("finetune/*/checkpoints/step-*/train_state.json"))
    assert states, "the tiny release has no fine-tuning checkpoint"
    for path in states:
        state = json.loads(path.read_text())
        state["lineage"]["base"]["origin"] = origin
        path.write_text(json.dumps(state))


def _by_name(rep):
    return {c["name"]: c for c in rep["components"]}


def test_closed_base_data_caps_the_release_at_class_two_naming_the_base(release_copy):
    assert report(release_copy)["class"] == "I"
    _root_on(release_copy, _origin(data=False, code=True))
    rep = report(release_copy)
    assert rep["class"] == "II"
    ds = _by_name(rep)["Datasets"]
    assert ds["verdict"] == "capped"
    for part in ("SmolLM2-135M-Instruct", SHA, "Apache-2.0", "training data not released (source: table:smollm2",
                 "to lift this cap, publish the base's training data"):
        assert part in ds["reason"], part
    assert any(SHA in r for r in rep["reasons"]["I"])
    assert _by_name(rep)["Training code"]["verdict"] in ("open", "warning")
    (base,) = rep["bases"]
    assert base["cap"] == "II" and base["facts"]["data"] == {
        "open": False, "source": "table:smollm2", "url": None, "note": None}
    assert base["facts"]["code"]["url"] == "https://github.com/huggingface/smollm"


def test_closed_base_code_or_weights_only_caps_at_class_three(release_copy):
    _root_on(release_copy, _origin(data=True, code=False, source="declared"))
    rep = report(release_copy)
    assert rep["class"] == "III"
    assert _by_name(rep)["Training code"]["verdict"] == "capped"
    assert "training code not released (source: declared" in _by_name(rep)["Training code"]["reason"]
    _root_on(release_copy, _origin(data=False, code=False, source="not declared"))
    rep = report(release_copy)
    assert rep["class"] == "III" and rep["bases"][0]["cap"] == "III" and len(rep["bases"][0]["lift"]) == 2


def test_an_open_base_keeps_class_one_and_is_still_named(release_copy):
    _root_on(release_copy, _origin(data=True, code=True, source="table:moxin-7b"))
    rep = report(release_copy)
    assert rep["class"] == "I" and rep["bases"][0]["cap"] is None


def test_model_card_and_mof_files_state_the_cap_and_its_lift(release_copy):
    _root_on(release_copy, _origin(data=False, code=True))
    meta = json.loads((release_copy / "release.json").read_text())
    rep = write_mof(release_copy, meta)
    assert json.loads((release_copy / "mof.json").read_text()) == json.loads(json.dumps(rep))
    import yaml

    doc = yaml.safe_load((release_copy / "mof.yml").read_text())
    assert validate_schema(doc) == [] and doc["release"]["origin"] == "SmolLM2-135M-Instruct"
    card = model_card(release_copy)
    assert "**Class II**" in card and "### Base model" in card
    assert f"sha256 `{SHA}`" in card and "licence `Apache-2.0`" in card
    assert "- To lift the cap: publish the base's training data" in card
    from moxin.report.collect import collect
    from moxin.report.labels import labels
    from moxin.report.page import openness

    page = openness(collect(release_copy), labels("en"))
    assert 'id="mof-class" class="big">II<' in page and f"sha256 `{SHA}`" in page and "at most Class II" in page


@pytest.mark.parametrize(("data", "code", "cap"), [(True, True, None), (False, True, "II"), (True, False, "III"),
                                                   (False, False, "III")])
def test_cap_rule(data, code, cap):
    assert cap_of(_origin(data, code)) == cap
