"""Hugging Face interop: `to_hf` writes a directory `AutoModelForCausalLM.from_pretrained` loads offline
(MistralForCausalLM or LlamaForCausalLM); `from_hf` reads such a directory (v4 or v5 config, single or sharded
safetensors, tied embeddings) into moxin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from moxin.errors import InteropError
from moxin.interop.keymap import HF_KEY_MAP, expand
from moxin.interop.safetensors_io import read_weights_dir, write_weights_dir
from moxin.io import read_json
from moxin.model.config import ModelConfig
from moxin.model.transformer import Transformer
from moxin.provenance import atomic_write_json

SUPPORTED = {"mistral": "MistralForCausalLM", "llama": "LlamaForCausalLM"}


def expanded_key_map(cfg: ModelConfig) -> dict[str, str]:
    return expand(HF_KEY_MAP, cfg)


# ------------------------------------------------------------------------------------------------ config
def config_to_hf(
    cfg: ModelConfig, dtype: torch.dtype = torch.float32, bos_id: int | None = None, eos_id: int | None = None
) -> dict[str, Any]:
    dtype_name = str(dtype).removeprefix("torch.")
    hf = {
        "architectures": [SUPPORTED[cfg.arch]],
        "model_type": cfg.arch,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.dim,
        "intermediate_size": cfg.ffn_dim,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.hd,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        # v4 reads rope_theta; v5 reads rope_parameters. Both are written so either version loads it.
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_theta": cfg.rope_theta, "rope_type": "default"},
        "tie_word_embeddings": cfg.tie_embeddings,
        "attention_dropout": 0.0,
        "initializer_range": cfg.init_std,
        "use_cache": True,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": dtype_name,
        "dtype": dtype_name,
    }
    if cfg.arch == "mistral":
        hf["sliding_window"] = cfg.sliding_window
    else:
        if cfg.sliding_window is not None:
            raise InteropError(
                f"a llama-architecture model has no sliding window, but sliding_window="
                f"{cfg.sliding_window}; set model.arch='mistral' to export it"
            )
        hf.update(attention_bias=False, mlp_bias=False, pretraining_tp=1)
    return hf


def _rope_theta(hf: dict[str, Any], where: str) -> float:
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or {}
    kind = params.get("rope_type") or scaling.get("rope_type") or scaling.get("type") or "default"
    if kind != "default":
        raise InteropError(f"{where}: RoPE scaling {kind!r} is not supported; only default RoPE models import")
    return float(params.get("rope_theta", hf.get("rope_theta", 10000.0)))


def config_from_hf(hf: dict[str, Any], where: str) -> ModelConfig:
    model_type = hf.get("model_type")
    if model_type not in SUPPORTED:
        raise InteropError(
            f"{where}: model_type {model_type!r} is not supported; moxin imports "
            f"{', '.join(SUPPORTED)} (architectures {', '.join(SUPPORTED.values())})"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if hf.get(flag):
            raise InteropError(f"{where}: {flag}=true is not supported (moxin models have no biases)")
    if hf.get("hidden_act", "silu") != "silu":
        raise InteropError(f"{where}: hidden_act {hf.get('hidden_act')!r} is not supported; only 'silu' (SwiGLU)")
    try:
        n_heads = hf["num_attention_heads"]
        dim = hf["hidden_size"]
        head_dim = hf.get("head_dim") or dim // n_heads
        window = hf.get("sliding_window") if model_type == "mistral" else None
        cfg = ModelConfig(
            vocab_size=hf["vocab_size"],
            dim=dim,
            n_layers=hf["num_hidden_layers"],
            n_heads=n_heads,
            n_kv_heads=hf.get("num_key_value_heads") or n_heads,
            ffn_dim=hf["intermediate_size"],
            head_dim=None if head_dim == dim // n_heads else head_dim,
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            rope_theta=_rope_theta(hf, where),
            max_seq_len=hf.get("max_position_embeddings", 4096),
            sliding_window=window,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            arch=model_type,
            init_std=float(hf.get("initializer_range", 0.02)),
        )
    except KeyError as e:
        raise InteropError(f"{where}: required field {e.args[0]!r} missing from config.json") from None
    cfg.validate(where=where)
    return cfg


# ------------------------------------------------------------------------------------------------ weights
def state_dict_to_hf(model: Transformer) -> dict[str, torch.Tensor]:
    sd = model.state_dict()
    return {theirs: sd[ours] for ours, theirs in expanded_key_map(model.cfg).items()}


def state_dict_from_hf(cfg: ModelConfig, tensors: dict[str, torch.Tensor], where: str) -> dict[str, torch.Tensor]:
    kmap = expanded_key_map(cfg)
    if cfg.tie_embeddings:
        tensors = {k: v for k, v in tensors.items() if k != "lm_head.weight"}
    missing = [theirs for theirs in kmap.values() if theirs not in tensors]
    if missing:
        raise InteropError(f"{where}: weights missing {len(missing)} tensors, e.g. {missing[0]!r}")
    extra = sorted(set(tensors) - set(kmap.values()) - {k for k in tensors if k.endswith("rotary_emb.inv_freq")})
    if extra:
        raise InteropError(f"{where}: unexpected tensors {extra[:3]} (an unsupported variant of the architecture?)")
    return {ours: tensors[theirs] for ours, theirs in kmap.items()}


def to_hf(
    model: Transformer,
    out: str | Path,
    dtype: torch.dtype | None = None,
    max_shard_bytes: int = 5 * 2**30,
    bos_id: int | None = None,
    eos_id: int | None = None,
) -> Path:
    """Write `out/` with config.json, generation_config.json and (sharded) safetensors weights."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dtype = dtype or model.embed.weight.dtype
    tensors = {k: v.to(dtype) for k, v in state_dict_to_hf(model).items()}
    write_weights_dir(out, tensors, max_shard_bytes, metadata={"format": "pt"})
    atomic_write_json(out / "config.json", config_to_hf(model.cfg, dtype, bos_id, eos_id))
    gen = {"_from_model_config": True, "bos_token_id": bos_id, "eos_token_id": eos_id}
    atomic_write_json(out / "generation_config.json", {k: v for k, v in gen.items() if v is not None})
    return out


def read_hf_config(folder: Path) -> dict[str, Any]:
    path = folder / "config.json"
    if not path.is_file():
        raise InteropError(f"{folder} has no config.json; is it a Hugging Face model directory?")
    return read_json(path, InteropError, "Hugging Face config")


def from_hf(folder: str | Path, dtype: torch.dtype = torch.float32) -> Transformer:
    """Load a Hugging Face Mistral or Llama directory into a moxin model."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InteropError(f"Hugging Face model directory not found: {folder}")
    cfg = config_from_hf(read_hf_config(folder), str(folder / "config.json"))
    tensors = read_weights_dir(folder)
    sd = state_dict_from_hf(cfg, tensors, str(folder))
    with torch.device("meta"):
        model = Transformer(cfg)
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()}, strict=True, assign=True)
    model.reset_rope()
    return model
