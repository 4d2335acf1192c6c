"""Weight names: moxin's state-dict keys → Hugging Face's and GGUF's, as literal maps (`{i}` is the layer index),
and their expansion for one model configuration. The one place these names are written down."""

from __future__ import annotations

from moxin.model.config import ModelConfig

# moxin name → Hugging Face name (MistralForCausalLM / LlamaForCausalLM).
HF_KEY_MAP: dict[str, str] = {
    "embed.weight": "model.embed_tokens.weight",
    "norm.weight": "model.norm.weight",
    "head.weight": "lm_head.weight",
    "layers.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "layers.{i}.attn.q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "layers.{i}.attn.k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "layers.{i}.attn.v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "layers.{i}.attn.o.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "layers.{i}.mlp_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
    "layers.{i}.mlp.gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "layers.{i}.mlp.up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "layers.{i}.mlp.down.weight": "model.layers.{i}.mlp.down_proj.weight",
}

# moxin name → GGUF name (llama architecture).
GGUF_KEY_MAP: dict[str, str] = {
    "embed.weight": "token_embd.weight",
    "norm.weight": "output_norm.weight",
    "head.weight": "output.weight",
    "layers.{i}.attn_norm.weight": "blk.{i}.attn_norm.weight",
    "layers.{i}.attn.q.weight": "blk.{i}.attn_q.weight",
    "layers.{i}.attn.k.weight": "blk.{i}.attn_k.weight",
    "layers.{i}.attn.v.weight": "blk.{i}.attn_v.weight",
    "layers.{i}.attn.o.weight": "blk.{i}.attn_output.weight",
    "layers.{i}.mlp_norm.weight": "blk.{i}.ffn_norm.weight",
    "layers.{i}.mlp.gate.weight": "blk.{i}.ffn_gate.weight",
    "layers.{i}.mlp.up.weight": "blk.{i}.ffn_up.weight",
    "layers.{i}.mlp.down.weight": "blk.{i}.ffn_down.weight",
}


def expand(key_map: dict[str, str], cfg: ModelConfig) -> dict[str, str]:
    """Every concrete moxin key of `cfg` → its name in `key_map`'s format, in the map's order (each per-layer key
    for layers 0..n-1 in turn); a tied model has no separate head."""
    out: dict[str, str] = {}
    for ours, theirs in key_map.items():
        if "{i}" in ours:
            out.update({ours.format(i=i): theirs.format(i=i) for i in range(cfg.n_layers)})
        elif not (ours == "head.weight" and cfg.tie_embeddings):
            out[ours] = theirs
    return out
