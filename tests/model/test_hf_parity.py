"""Acceptance 1-2 of [1/8]: moxin equals transformers on imported and exported weights."""

import torch
from transformers import AutoModelForCausalLM

from moxin.interop.hf import from_hf, state_dict_to_hf, to_hf
from moxin.interop.safetensors_io import read_weights_dir


def _logits(model, x):
    with torch.no_grad():
        out = model(x)
    return out.logits if hasattr(out, "logits") else out


def test_mistral_sliding_window_import_matches_transformers(hf_mistral_dir):
    hf = AutoModelForCausalLM.from_pretrained(hf_mistral_dir).eval()
    ours = from_hf(hf_mistral_dir).eval()
    assert ours.cfg.sliding_window == 8 and ours.cfg.arch == "mistral"
    x = torch.randint(0, 300, (2, 40))  # 40 > window 8: the window matters
    torch.testing.assert_close(_logits(ours, x), _logits(hf, x), atol=1e-5, rtol=0)


def test_window_changes_the_logits(hf_mistral_dir):
    """Guards the test above: without the window the logits differ, so the window is really exercised."""
    ours = from_hf(hf_mistral_dir).eval()
    x = torch.randint(0, 300, (1, 40))
    with_window = _logits(ours, x)
    ours.cfg.sliding_window = None
    assert (with_window - _logits(ours, x)).abs().max() > 1e-3


def test_llama_tied_import_matches_transformers(hf_llama_dir):
    hf = AutoModelForCausalLM.from_pretrained(hf_llama_dir).eval()
    ours = from_hf(hf_llama_dir).eval()
    assert ours.cfg.tie_embeddings and ours.head is None and ours.cfg.arch == "llama"
    x = torch.randint(0, 300, (2, 40))
    torch.testing.assert_close(_logits(ours, x), _logits(hf, x), atol=1e-5, rtol=0)


def test_export_loads_in_transformers_with_same_logits(hf_mistral_dir, hf_llama_dir, tmp_path):
    for i, src in enumerate([hf_mistral_dir, hf_llama_dir]):
        ours = from_hf(src).eval()
        out = to_hf(ours, tmp_path / f"export{i}")
        hf = AutoModelForCausalLM.from_pretrained(out).eval()
        assert type(hf).__name__ == ("MistralForCausalLM" if i == 0 else "LlamaForCausalLM")
        x = torch.randint(0, 300, (2, 40))
        torch.testing.assert_close(_logits(hf, x), _logits(ours, x), atol=1e-5, rtol=0)


def test_round_trip_is_bit_identical(hf_mistral_dir, tmp_path):
    ours = from_hf(hf_mistral_dir)
    back = from_hf(to_hf(ours, tmp_path / "rt"))
    assert back.cfg == ours.cfg
    a, b = ours.state_dict(), back.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_sharded_export_with_index(hf_mistral_dir, tmp_path):
    ours = from_hf(hf_mistral_dir)
    out = to_hf(ours, tmp_path / "sharded", max_shard_bytes=60_000)
    shards = sorted(p.name for p in out.glob("model-*.safetensors"))
    assert len(shards) > 2 and (out / "model.safetensors.index.json").is_file()
    assert read_weights_dir(out).keys() == state_dict_to_hf(ours).keys()
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    x = torch.randint(0, 300, (1, 20))
    torch.testing.assert_close(_logits(hf, x), _logits(ours.eval(), x), atol=1e-5, rtol=0)
    back = from_hf(out)
    assert all(torch.equal(v, back.state_dict()[k]) for k, v in ours.state_dict().items())


def test_v4_style_config_reads(hf_mistral_dir, tmp_path):
    """A config.json with top-level rope_theta and torch_dtype (transformers 4) imports the same."""
    import json
    import shutil

    v4 = tmp_path / "v4"
    shutil.copytree(hf_mistral_dir, v4)
    cfg = json.loads((v4 / "config.json").read_text())
    theta = (cfg.pop("rope_parameters", None) or {}).get("rope_theta", cfg.get("rope_theta"))
    cfg["rope_theta"], cfg["torch_dtype"] = theta, "float32"
    cfg.pop("dtype", None)
    (v4 / "config.json").write_text(json.dumps(cfg))
    assert from_hf(v4).cfg.rope_theta == 5000.0 == from_hf(hf_mistral_dir).cfg.rope_theta


def test_native_weights_are_byte_deterministic_across_processes(tmp_path):
    """Same weights → same file bytes in two separate processes (hash-seeded metadata order would break this)."""
    import subprocess
    import sys

    code = ("import sys; from moxin.model import build, preset; from moxin.interop.native import save_model; "
            "save_model(build(preset('tiny'), seed=1), sys.argv[1])")
    for i in range(3):
        subprocess.run([sys.executable, "-c", code, str(tmp_path / f"m{i}")], check=True,
                       env={**__import__("os").environ, "PYTHONHASHSEED": str(i)})
    blobs = {(tmp_path / f"m{i}" / "model.safetensors").read_bytes() for i in range(3)}
    assert len(blobs) == 1
