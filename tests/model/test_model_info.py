"""Acceptance 5 of [1/8]: exact parameter counts, checked against transformers on the meta device."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from moxin.interop.hf import config_to_hf
from moxin.model import PRESETS, Transformer, flops_per_token, num_params, preset
from moxintest import run_cli


def _hf_count(cfg) -> int:
    hf = config_to_hf(cfg)
    cls, conf = (MistralForCausalLM, MistralConfig) if cfg.arch == "mistral" else (LlamaForCausalLM, LlamaConfig)
    keep = {k: v for k, v in hf.items() if k not in ("architectures", "model_type", "torch_dtype", "dtype")}
    with torch.device("meta"):
        model = cls(conf(**keep))
    return sum(p.numel() for p in model.parameters())


def test_moxin_7b_count_equals_transformers():
    cfg = preset("moxin-7b")
    assert (cfg.n_layers, cfg.dim, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim, cfg.vocab_size, cfg.sliding_window,
            cfg.rope_theta, cfg.max_seq_len) == (36, 4096, 32, 8, 14336, 32000, 4096, 10000.0, 32768)
    expected = _hf_count(cfg)
    assert expected == 8_114_180_096
    assert num_params(cfg) == expected
    code, out, _ = run_cli("model", "info", "moxin-7b")
    assert code == 0 and "8,114,180,096" in out


def test_every_preset_counts_like_the_model():
    for name in PRESETS:
        cfg = preset(name)
        with torch.device("meta"):
            counted = sum(p.numel() for p in Transformer(cfg).parameters())
        assert counted == num_params(cfg) == _hf_count(cfg), name


def test_flops_per_token_is_six_n_plus_attention():
    cfg = preset("llama-7b")
    n = num_params(cfg) - cfg.vocab_size * cfg.dim - (2 * cfg.n_layers + 1) * cfg.dim  # matmul weights incl. head
    assert flops_per_token(cfg, 2048) == 6 * n + 6 * cfg.n_layers * cfg.n_heads * cfg.hd * 2 * 1024
