"""llama.cpp (llama-cpp-python) for the GGUF tests. Imported hard: scripts/setup.sh installs it, and a skip would hide
a broken export in CI."""

from __future__ import annotations

import numpy as np
import pytest


def require_llama_cpp():
    try:
        import llama_cpp
    except ImportError:
        pytest.fail(
            "llama-cpp-python is not installed: run scripts/setup.sh (or pip install -e '.[llama]'); the GGUF "
            "parity tests need it",
            pytrace=False,
        )
    return llama_cpp


def open_llama(path, n_ctx: int = 256, f32_cache: bool = True):
    """A llama.cpp context on the GGUF file at `path`, keeping every position's logits. `f32_cache`: an f32 KV cache
    (llama.cpp's default is f16, which alone moves SmolLM2's logits by ~1e-2)."""
    from moxin.interop.gguf_export import open_llama_cpp

    llama_cpp = require_llama_cpp()
    cache = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if f32_cache else {}
    return open_llama_cpp(path, n_ctx=n_ctx, logits_all=True, verbose=False, seed=0, **cache)


def llama_logits(llm, ids: list[int]) -> np.ndarray:
    """(len(ids), vocab) logits of one pass over `ids` from an empty cache."""
    llm.reset()
    llm.eval(ids)
    return np.array(llm.scores[: len(ids)], dtype=np.float32)


def llama_greedy(llm, ids: list[int], n: int) -> list[int]:
    """`n` greedy tokens after `ids` (EOS not special: the count is fixed)."""
    llm.reset()
    return [int(t) for _, t in zip(range(n), llm.generate(ids, temp=0.0, top_k=1, reset=True))]
