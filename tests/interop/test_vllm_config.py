"""Issue 18, item 3: `moxin export hf` output is what vLLM (`lm_eval --model vllm`) loads, sliding window included.

No GPU here, and vLLM is not installed: the test reads the exported config the way vLLM does. vLLM loads config.json
through transformers' AutoConfig and runs MistralForCausalLM on its Llama implementation, which reads
num_attention_heads, num_key_value_heads, head_dim (else hidden_size / heads), max_position_embeddings,
rope_parameters, hidden_act (silu only), attention_bias, rms_norm_eps and tie_word_embeddings. The sliding window is
the model-level `sliding_window` (disabled only where `use_sliding_window` is present and false), applied to every
layer unless `layer_types` marks some layers "full_attention"."""

from __future__ import annotations

import json
from pathlib import Path

from moxintest import run_cli


def _export(tmp_path: Path, preset: str, dtype: str = "bfloat16"):
    from moxin.interop.native import save_model
    from moxin.model import build
    from moxin.model import preset as get_preset

    cfg = get_preset(preset)
    save_model(build(cfg, seed=0), tmp_path / "model")
    out = tmp_path / "hf"
    code, _, err = run_cli("export", "hf", str(tmp_path / "model"), str(out), "--dtype", dtype)
    assert code == 0, err
    return cfg, out, json.loads((out / "config.json").read_text("utf-8"))


def _vllm_sliding_window(hf) -> list[int | None]:
    """The window of each layer as vLLM resolves it: per-layer from layer_types, else the model-level one."""
    model_level = getattr(hf, "sliding_window", None)
    if hasattr(hf, "use_sliding_window") and not hf.use_sliding_window:
        model_level = None
    layer_types = getattr(hf, "layer_types", None)
    if layer_types:
        return [hf.sliding_window if t == "sliding_attention" else None for t in layer_types]
    return [model_level] * hf.num_hidden_layers


def test_mistral_with_sliding_window_has_the_fields_vllm_reads(tmp_path):
    from safetensors import safe_open
    from transformers import AutoConfig

    cfg, out, raw = _export(tmp_path, "tiny")
    assert cfg.arch == "mistral" and cfg.sliding_window is not None and cfg.sliding_window < cfg.max_seq_len
    assert raw["architectures"] == ["MistralForCausalLM"] and raw["model_type"] == "mistral"
    assert raw["sliding_window"] == cfg.sliding_window and isinstance(raw["sliding_window"], int)
    assert raw.get("use_sliding_window", True) is True
    assert raw["max_position_embeddings"] == cfg.max_seq_len
    assert raw["rope_theta"] == cfg.rope_theta
    assert raw["rope_parameters"] == {"rope_theta": cfg.rope_theta, "rope_type": "default"}
    assert raw["num_attention_heads"] == cfg.n_heads and raw["num_key_value_heads"] == cfg.n_kv_heads
    assert raw["head_dim"] == cfg.hd and raw["hidden_size"] == cfg.dim
    assert raw["torch_dtype"] == raw["dtype"] == "bfloat16"
    assert raw["tie_word_embeddings"] is cfg.tie_embeddings
    assert raw["hidden_act"] == "silu" and not raw.get("attention_bias", False)

    hf = AutoConfig.from_pretrained(out)  # what vLLM holds as hf_config
    assert _vllm_sliding_window(hf) == [cfg.sliding_window] * cfg.n_layers
    assert hf.rope_parameters["rope_theta"] == cfg.rope_theta and hf.rope_parameters["rope_type"] == "default"
    assert hf.head_dim == cfg.hd and hf.num_key_value_heads == cfg.n_kv_heads
    assert hf.max_position_embeddings == cfg.max_seq_len and hf.tie_word_embeddings is cfg.tie_embeddings

    # weight names are the checkpoint names vLLM's Llama loader maps (q/k/v → qkv_proj, gate/up → gate_up_proj)
    names = set()
    for f in out.glob("*.safetensors"):
        with safe_open(str(f), "pt") as st:
            keys = list(st.keys())
            names |= set(keys)
            assert {str(st.get_tensor(k).dtype) for k in keys} == {"torch.bfloat16"}
    expected = _hf_names(hf)
    assert names == expected, sorted(names ^ expected)[:5]


def _hf_names(hf) -> set[str]:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(hf)
    names = set(model.state_dict())
    return names - {"lm_head.weight"} if hf.tie_word_embeddings else names


def test_llama_export_has_no_window(tmp_path):
    from transformers import AutoConfig

    cfg, out, raw = _export(tmp_path, "llama-tiny", dtype="float32")
    assert raw["architectures"] == ["LlamaForCausalLM"] and raw["model_type"] == "llama"
    assert raw.get("sliding_window") is None and raw["torch_dtype"] == "float32"
    assert _vllm_sliding_window(AutoConfig.from_pretrained(out)) == [None] * cfg.n_layers
