"""MOF class computed from a release's files: Class I for a full tiny run, II without intermediate checkpoints,
and Class I failing by name when a non-commercial data source is added; mof.yml valid for the MOT schema."""

from __future__ import annotations

import copy
import json
import shutil

import yaml

from moxin.release.mof import COMPONENT_NAMES, MOT_SCHEMA, report, validate_schema


def _by_name(rep):
    return {c["name"]: c for c in rep["components"]}


def test_tiny_release_is_class_one_with_every_required_component_audited(built_release):
    rep = json.loads((built_release / "mof.json").read_text())
    assert rep["class"] == "I" and rep["reasons"] == {}
    comps = _by_name(rep)
    assert len(comps) == 17 and set(comps) == set(COMPONENT_NAMES)
    for c in comps.values():
        assert c["present"], c["name"]
        assert c["licence"], c["name"]
        assert c["verdict"] in ("open", "warning"), (c["name"], c["verdict"], c["reason"])
    # Licences propagate from the data manifest; PSF-2.0 on data is open with a warning, stated as such.
    ds = comps["Datasets"]
    assert ds["licence"] == "Apache-2.0 AND LicenseRef-Public-Domain AND PSF-2.0"  # pretraining + SFT data
    assert ds["verdict"] == "warning" and "source 'python_docs'" in ds["reason"]
    assert "source 'finetune/sft:rasbt_instruction_data'" in ds["reason"]
    assert comps["Evaluation data"]["licence"] == "CC-BY-SA-4.0"  # read from ../shared/data/arc/SOURCE.md
    assert comps["Model parameters (Intermediate)"]["files"] == 3  # pretrain steps 2, 4, 6; SFT is the final one
    assert report(built_release)["class"] == "I"  # recomputing from the files gives the same


def test_without_intermediate_checkpoints_the_class_drops_to_two(release_copy):
    for ck in release_copy.glob("*/checkpoints/step-*"):
        if ck.parent.parent.name == "pretrain":
            shutil.rmtree(ck)
    rep = report(release_copy)
    assert rep["class"] == "II"
    assert list(rep["reasons"]) == ["I"]
    (reason,) = rep["reasons"]["I"]
    assert reason.startswith("Model parameters (Intermediate):")
    assert _by_name(rep)["Model parameters (Intermediate)"]["verdict"] == "missing"


def test_release_option_without_intermediate_checkpoints(tiny_run, tmp_path, shared_data):
    from moxin.release.bundle import build_release

    rep = build_release(tiny_run, tmp_path / "rel", overrides=["release.intermediate_checkpoints=false"],
                        progress=False, eval_data_dir=shared_data)
    assert rep["class"] == "II" and "Model parameters (Intermediate)" in rep["reasons"]["I"][0]
    assert not (tmp_path / "rel" / "pretrain" / "checkpoints").exists()


def test_a_non_commercial_source_fails_class_one_naming_it(tiny_run, tmp_path, shared_data):
    from moxin.provenance import write_manifest
    from moxin.release.bundle import build_release
    from moxin.release.licences import licence_from_source_md

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    manifest = json.loads((run / "data" / "manifest.json").read_text())
    lic = licence_from_source_md(shared_data / "sciq")
    manifest["sources"].append({"name": "sciq", "type": "jsonl", "license": lic, "path": str(shared_data / "sciq"),
                                "docs_kept": 1000, "tokens": {"train": 0}})
    write_manifest(run / "data", {k: v for k, v in manifest.items() if k != "files"})
    rep = build_release(run, tmp_path / "rel", progress=False, eval_data_dir=shared_data)
    assert rep["class"] == "II"
    (reason,) = rep["reasons"]["I"]
    assert reason.startswith("Datasets:") and "source 'sciq'" in reason and "CC-BY-NC-3.0" in reason
    assert "sciq" in (tmp_path / "rel" / "DATA_CARD.md").read_text()
    assert "| sciq | `CC-BY-NC-3.0` |" in (tmp_path / "rel" / "LICENSES" / "datasets.md").read_text()


def test_mof_yml_validates_against_the_model_openness_tool_schema(built_release):
    doc = yaml.safe_load((built_release / "mof.yml").read_text())
    assert validate_schema(doc) == []
    rel = doc["release"]
    assert doc["framework"] == {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}
    assert rel["treatment"] == "instruct fine-tuned" and rel["architecture"] == "transformer decoder"
    assert len(rel["components"]) == 17
    for c in rel["components"]:
        assert (built_release / c["license_path"]).is_file(), c
        assert (built_release / c["component_path"]).exists(), c
    assert rel["license"]["data"]["name"] == "Apache-2.0 AND LicenseRef-Public-Domain AND PSF-2.0"


def test_schema_rules_reject_what_the_tool_rejects(built_release):
    good = yaml.safe_load((built_release / "mof.yml").read_text())

    def broken(edit):
        doc = copy.deepcopy(good)
        edit(doc)
        return validate_schema(doc)

    assert any("missing required 'framework'" in e for e in broken(lambda d: d.pop("framework")))
    assert any("missing required 'producer'" in e for e in broken(lambda d: d["release"].pop("producer")))
    assert any("'Model Openness Frame'" in e
               for e in broken(lambda d: d["framework"].update(name="Model Openness Frame")))
    assert any("architecture" in e for e in broken(lambda d: d["release"].update(architecture="mamba")))
    assert any("treatment" in e for e in broken(lambda d: d["release"].update(treatment="finetuned")))
    assert any("type" in e for e in broken(lambda d: d["release"].update(type="text")))
    assert any("not a date" in e for e in broken(lambda d: d["release"].update(date="29/11/2026")))
    assert any("must not be empty" in e for e in broken(lambda d: d["release"].update(name="")))
    assert any("at most 17" in e for e in broken(lambda d: d["release"]["components"].append(
        dict(d["release"]["components"][0]))))
    assert any("Model weights" in e
               for e in broken(lambda d: d["release"]["components"][0].update(name="Model weights")))
    assert any("missing required 'description'" in e for e in broken(
        lambda d: d["release"]["components"][0].pop("description")))
    assert any("expected string" in e for e in broken(lambda d: d["release"].update(version=1)))
    assert MOT_SCHEMA["properties"]["release"]["properties"]["components"]["maxItems"] == 17


def test_non_commercial_evaluation_data_fails_class_two_naming_it(release_copy, shared_data):
    from moxin.release.licences import licence_from_source_md

    path = release_copy / "eval" / "data" / "sources.json"
    sources = json.loads(path.read_text())
    sources.append({"name": "sciq", "license": licence_from_source_md(shared_data / "sciq"), "tasks": ["sciq"],
                    "files": [], "origin": str(shared_data / "sciq")})
    path.write_text(json.dumps(sources))
    rep = report(release_copy)
    assert rep["class"] == "III"
    (reason,) = rep["reasons"]["II"]
    assert reason.startswith("Evaluation data:") and "source 'sciq'" in reason and "CC-BY-NC-3.0" in reason
