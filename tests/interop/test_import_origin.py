"""`moxin import` on tiny random models: refused without a licence (one line naming --license, nothing written);
with one, origin.json names the source by file name and SHA-256, and an unknown base's openness is "not declared"
(closed) unless the user declares it. The shipped table matches known bases by name."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from moxin.errors import CheckpointError
from moxin.interop.origin import hf_facts, match_base, read_origin, readme_licence
from moxin.provenance import sha256_file, verify_manifest
from moxintest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_toy import build_tokenizer


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory) -> Path:
    """A random llama-tiny GGUF with a tokenizer and no general.license."""
    from moxin.interop.gguf_export import to_gguf
    from moxin.model import build, preset

    path = tmp_path_factory.mktemp("gguf") / "acme-tiny.Q8_0.gguf"
    to_gguf(build(preset("llama-tiny"), seed=3).eval(), build_tokenizer(), path, dtype="f32", name="acme tiny")
    return path


def _one_line(code: int, err: str) -> str:
    assert code == 2, err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_refuses_a_source_without_a_licence(tiny_gguf, tmp_path):
    line = _one_line(*run_cli("import", str(tiny_gguf), str(tmp_path / "out"))[::2])
    assert "--license" in line and "gguf:general.license" in line and str(tiny_gguf) in line
    assert not (tmp_path / "out").exists()
    line = _one_line(*run_cli("import", str(tiny_gguf), str(tmp_path / "out"), "--license", "not a licence")[::2])
    assert "--license 'not a licence' is not an SPDX id" in line


def test_an_unknown_base_is_imported_as_not_declared(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    code, stdout, err = run_cli("import", str(tiny_gguf), str(out), "--license", "MIT")
    assert code == 0, err
    assert "openness not declared" in stdout
    origin = json.loads((out / "origin.json").read_text())
    assert origin["name"] == "acme-tiny"
    assert origin["source"] == {"file": tiny_gguf.name, "sha256": sha256_file(tiny_gguf), "format": "gguf"}
    assert (origin["license"], origin["license_source"]) == ("MIT", "--license")
    op = origin["openness"]
    assert (op["weights"], op["data"], op["code"], op["source"]) == (True, False, False, "not declared")
    assert op["sources"] == {"data": "not declared", "code": "not declared"}
    assert verify_manifest(out) == [] and (out / "tokenizer" / "chat_template.jinja").is_file()
    assert str(tmp_path) not in (out / "manifest.json").read_text() + (out / "origin.json").read_text()
    assert read_origin(out) == origin and read_origin(tiny_gguf) is None
    (out / "origin.json").write_text(json.dumps({**origin, "openness": {**op, "data": True}}))
    with pytest.raises(CheckpointError, match="origin.json fails its SHA-256 check"):
        read_origin(out)


def test_declared_openness_and_urls(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    code, _, err = run_cli("import", str(tiny_gguf), str(out), "--license", "Apache-2.0", "--name", "Acme-1",
                           "--data-open", "--no-code-open", "--url", "data=https://example.org/acme-corpus")
    assert code == 0, err
    origin = json.loads((out / "origin.json").read_text())
    op = origin["openness"]
    assert origin["name"] == "Acme-1" and (op["data"], op["code"], op["source"]) == (True, False, "declared")
    assert op["sources"] == {"data": "--data-open", "code": "--code-open"}
    assert op["urls"] == {"data": "https://example.org/acme-corpus"}
    line = _one_line(*run_cli("import", str(tiny_gguf), str(tmp_path / "o2"), "--license", "MIT", "--url", "x")[::2])
    assert "--url 'x' must be KEY=URL" in line


def test_existing_output_and_a_moxin_folder_are_refused(tiny_gguf, tmp_path):
    out = tmp_path / "out"
    assert run_cli("import", str(tiny_gguf), str(out), "--license", "MIT")[0] == 0
    assert "already exists" in _one_line(*run_cli("import", str(tiny_gguf), str(out), "--license", "MIT")[::2])
    line = _one_line(*run_cli("import", str(out), str(tmp_path / "again"), "--license", "MIT")[::2])
    assert "already a moxin model folder" in line


def test_hugging_face_licence_from_readme_front_matter(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    (tmp_path / "README.md").write_text("---\nlibrary_name: transformers\nlicense: apache-2.0\n---\n# card\n")
    assert readme_licence(tmp_path) == "apache-2.0"
    facts = hf_facts(tmp_path)
    assert facts["license_source"] == "hf:README.md license"
    assert match_base(facts["names"])[0] == "smollm2"
    (tmp_path / "README.md").write_text("# no front matter\nlicense: MIT\n")
    assert readme_licence(tmp_path) is None


def test_hugging_face_folder_with_a_readme_licence_and_a_tokenizer(hf_llama_dir, tmp_path):
    import shutil

    src = tmp_path / "Acme-Llama"
    shutil.copytree(hf_llama_dir, src)
    line = _one_line(*run_cli("import", str(src), str(tmp_path / "out"))[::2])
    assert "hf:README.md license" in line and "--license" in line
    (src / "README.md").write_text("---\nlicense: mit\n---\n# Acme\n")
    line = _one_line(*run_cli("import", str(src), str(tmp_path / "out"))[::2])
    assert "needs the source's tokenizer" in line
    build_tokenizer(vocab_size=400).save_pretrained(src)
    line = _one_line(*run_cli("import", str(src), str(tmp_path / "out"))[::2])
    assert "the tokenizer has 400 tokens but the model's vocabulary is 300" in line
    build_tokenizer(vocab_size=300).save_pretrained(src)
    code, _, err = run_cli("import", str(src), str(tmp_path / "out"))
    assert code == 0, err
    origin = json.loads((tmp_path / "out" / "origin.json").read_text())
    assert (origin["name"], origin["license"]) == ("Acme-Llama", "MIT")
    assert origin["license_source"] == "hf:README.md license"
    assert origin["source"]["format"] == "hf" and origin["source"]["file"] == "Acme-Llama"
    from moxin.interop.tokenizer import load_tokenizer

    text = "hello moxin, 東京"
    assert load_tokenizer(tmp_path / "out")(text)["input_ids"] == load_tokenizer(src)(text)["input_ids"]


@pytest.mark.parametrize(("names", "key"), [
    (["SmolLM2-135M-Instruct.Q4_1"], "smollm2"),
    (["Smollm2 135M 8k Lc100K Mix1 Ep2"], "smollm2"),
    (["moxin-org/moxin-llm-7b"], "moxin-7b"),  # a Hugging Face id: the part after the organisation
    (["moxin-llm-7b"], "moxin-7b"),
    (["Moxin-7B-Instruct"], "moxin-7b"),
    (["acme-tiny", "llama-7b"], None),
])
def test_table_matches_known_bases_by_name(names, key):
    found = match_base(names)
    assert (found[0] if found else None) == key
