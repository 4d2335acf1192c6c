"""GGUF writer (llama architecture) through the `gguf` package, for llama.cpp and Ollama.

Weights: Q and K rows are permuted from Hugging Face's rotate-half layout to llama.cpp's adjacent-pair layout;
1-D tensors (norms) stay f32 as llama.cpp expects. Types (`TYPES`): f32, f16 and bf16 are plain casts; q8_0 and q4_0
quantize 32-value blocks with the `gguf` package and keep a tensor whose rows are not a multiple of 32 in f16 (as
llama.cpp's own converter does); q4_0 keeps the output matrix (the embedding when tied) in q8_0, because llama.cpp's
quantizer keeps it above 4 bits (q6_k, which the `gguf` package cannot write) and 4-bit logits cost most perplexity.
q4_k_m has no quantizer in the `gguf` package: an f32 file is written first and llama.cpp's own quantizer
(llama-cpp-python) turns it into q4_k_m, choosing per tensor as `llama-quantize` does.
Tokenizer: byte-level (GPT-2-style) BPE with tokens, merges, token types, special ids, the pre-tokenizer name
llama.cpp selects its split regex by, and the chat template.
The `llama` architecture has no sliding window: a windowed model matches its GGUF only while the context stays
within the window, so exporting one warns."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from moxin.errors import InteropError
from moxin.interop.gguf import permute_qk
from moxin.interop.keymap import GGUF_KEY_MAP, expand

TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m")
LLAMA_CPP_PIN = "llama-cpp-python==0.3.36"


def _file_type(dtype: str):
    from gguf import LlamaFileType as F

    return {"f32": F.ALL_F32, "f16": F.MOSTLY_F16, "bf16": F.MOSTLY_BF16, "q8_0": F.MOSTLY_Q8_0,
            "q4_0": F.MOSTLY_Q4_0}[dtype]  # fmt: skip


def check_type(dtype: str, flag: str = "dtype") -> None:
    """Refuse a type moxin does not write, or q4_k_m without llama.cpp's quantizer, before any work is done."""
    import importlib.util

    if dtype not in TYPES:
        raise InteropError(f"{flag} {dtype!r} is not a GGUF type moxin writes; use one of {', '.join(TYPES)}")
    if dtype == "q4_k_m" and importlib.util.find_spec("llama_cpp") is None:
        raise InteropError(
            f"{flag} q4_k_m needs llama.cpp's quantizer, which is not installed: run scripts/setup.sh or "
            f"`pip install {LLAMA_CPP_PIN}`, or choose q8_0 or q4_0"
        )


# ------------------------------------------------------------------------------------------------ tokenizer
def pre_tokenizer_name(tj: dict[str, Any]) -> str | None:
    """llama.cpp's name for the split regex a tokenizer.json uses (None: not one llama.cpp knows)."""
    pre = tj.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [(s.get("type"), s.get("use_regex", True), s.get("individual_digits")) for s in steps]
    if kinds == [("ByteLevel", True, None)]:
        return "gpt-2"
    if kinds == [("Digits", True, True), ("ByteLevel", True, None)]:
        return "smollm"  # the GPT-2 regex after splitting digits one by one (also StarCoder's)
    return None


def tokenizer_fields(tokenizer, vocab_size: int, pre: str | None = None) -> dict[str, Any]:
    """Everything GGUF stores about a byte-level BPE tokenizer, padded to the model's vocabulary size."""
    from gguf import TokenType

    tj = json.loads(tokenizer.backend_tokenizer.to_str())
    model = tj.get("model", {})
    decoder = json.dumps(tj.get("decoder") or {})
    if model.get("type") != "BPE" or "ByteLevel" not in decoder:
        raise InteropError(
            f"GGUF export supports byte-level (GPT-2-style) BPE tokenizers; this one is "
            f"{model.get('type')!r} with decoder {decoder[:60]}"
        )
    vocab = tokenizer.get_vocab()
    if max(vocab.values()) >= vocab_size:
        raise InteropError(
            f"the tokenizer has ids up to {max(vocab.values())} but the model's vocab_size is "
            f"{vocab_size}; export a tokenizer that matches the model"
        )
    tokens = [f"[PAD{i}]" for i in range(vocab_size)]  # ids the tokenizer never produces
    types = [int(TokenType.UNUSED)] * vocab_size
    for text, i in vocab.items():
        tokens[i], types[i] = text, int(TokenType.NORMAL)
    for added in tj.get("added_tokens", []):
        types[added["id"]] = int(TokenType.CONTROL if added.get("special") else TokenType.USER_DEFINED)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    pre = pre or pre_tokenizer_name(tj)
    if pre is None:
        warnings.warn(
            "the tokenizer's pre-tokenizer is not one llama.cpp knows by name; wrote 'gpt-2', so llama.cpp "
            "may split some text differently than transformers",
            stacklevel=3,
        )
        pre = "gpt-2"
    probe = tokenizer.encode("a")
    return {
        "tokens": tokens,
        "types": types,
        "merges": merges,
        "pre": pre,
        "bos": tokenizer.bos_token_id,
        "eos": tokenizer.eos_token_id,
        "pad": tokenizer.pad_token_id,
        "add_bos": tokenizer.bos_token_id is not None and bool(probe) and probe[0] == tokenizer.bos_token_id,
        "chat_template": getattr(tokenizer, "chat_template", None),
    }


def _write_tokenizer(w, t: dict[str, Any]) -> None:
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(t["pre"])
    w.add_token_list(t["tokens"])
    w.add_token_types(t["types"])
    w.add_token_merges(t["merges"])
    for key, add in (("bos", w.add_bos_token_id), ("eos", w.add_eos_token_id), ("pad", w.add_pad_token_id)):
        if t[key] is not None:
            add(int(t[key]))
    w.add_add_bos_token(bool(t["add_bos"]))
    w.add_add_eos_token(False)
    if t["chat_template"]:
        w.add_chat_template(t["chat_template"])


# ------------------------------------------------------------------------------------------------ weights
def gguf_tensors(model) -> dict[str, np.ndarray]:
    """GGUF name → float32 array (Q/K permuted), in the order llama.cpp's converter writes them."""
    cfg = model.cfg
    sd = model.state_dict()
    out: dict[str, np.ndarray] = {}
    for o, t in expand(GGUF_KEY_MAP, cfg).items():
        w = sd[o].detach().float().cpu().numpy()
        if o.endswith("attn.q.weight"):
            w = permute_qk(w, cfg.n_heads)
        elif o.endswith("attn.k.weight"):
            w = permute_qk(w, cfg.n_kv_heads)
        out[t] = np.ascontiguousarray(w, dtype=np.float32)
    return out


def _encode(arr: np.ndarray, dtype: str, is_output: bool = False):
    """float32 array → (data, raw GGML type or None) for `GGUFWriter.add_tensor`. `is_output`: the matrix that
    produces the logits (output.weight, or token_embd.weight when the embeddings are tied)."""
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    if arr.ndim == 1 or dtype == "f32":
        return arr, None
    if dtype == "bf16":
        return quants.quantize(arr, Q.BF16), Q.BF16
    if dtype in ("q8_0", "q4_0") and arr.shape[-1] % 32 == 0:
        q = Q.Q8_0 if dtype == "q8_0" or is_output else Q.Q4_0
        return quants.quantize(arr, q), q
    return arr.astype(np.float16), None


def _write_model_fields(w, cfg, name: str, ctx: int, file_type) -> None:
    w.add_name(name)
    w.add_context_length(ctx)
    w.add_embedding_length(cfg.dim)
    w.add_block_count(cfg.n_layers)
    w.add_feed_forward_length(cfg.ffn_dim)
    w.add_head_count(cfg.n_heads)
    w.add_head_count_kv(cfg.n_kv_heads)
    w.add_rope_dimension_count(cfg.hd)
    if cfg.hd != cfg.dim // cfg.n_heads:
        w.add_key_length(cfg.hd)
        w.add_value_length(cfg.hd)
    w.add_rope_freq_base(cfg.rope_theta)
    w.add_layer_norm_rms_eps(cfg.norm_eps)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(file_type)


def _progress(items, total: int, what: str, show: bool):
    """Iterate `items`, with a rich progress bar (rate, ETA) on stderr when `show`."""
    if not show:
        yield from items
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), transient=True
    ) as bar:
        task = bar.add_task(what, total=total)
        for item in items:
            yield item
            bar.advance(task)


def _write(model, tok: dict[str, Any], path: Path, dtype: str, ctx: int, name: str, progress: bool) -> int:
    """Write the GGUF file at `path` (not atomically: the caller writes a temporary name); returns its tensor count."""
    import gguf

    w = gguf.GGUFWriter(str(path), "llama")
    _write_model_fields(w, model.cfg, name, ctx, _file_type(dtype))
    _write_tokenizer(w, tok)
    tensors = gguf_tensors(model)
    output = "output.weight" if "output.weight" in tensors else "token_embd.weight"
    for tname, arr in _progress(tensors.items(), len(tensors), f"encoding {dtype}", progress):
        data, raw = _encode(arr, dtype, is_output=tname == output)
        w.add_tensor(tname, data, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return len(tensors)


def llama_cpp_quantize(src: Path, dst: Path, dtype: str = "q4_k_m", threads: int = 0) -> None:
    """Quantize the GGUF file `src` into `dst` with llama.cpp's own quantizer (what `llama-quantize` runs)."""
    import ctypes
    import logging

    import llama_cpp

    ftypes = {"q4_k_m": llama_cpp.LLAMA_FTYPE_MOSTLY_Q4_K_M}
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftypes[dtype]
    params.nthread = threads
    log = logging.getLogger("llama-cpp-python")  # llama-cpp-python prints llama.cpp's log at this logger's level
    level = log.level
    log.setLevel(logging.ERROR)  # a line per tensor otherwise; errors still show
    try:
        rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    finally:
        log.setLevel(level)
    if rc != 0:
        raise InteropError(f"llama.cpp's quantizer failed ({rc}) turning {src} into {dtype}; its log above says why")


def _cpu_has_amx() -> bool:
    try:
        return "amx_int8" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def open_llama_cpp(path: str | Path, **kwargs):
    """`llama_cpp.Llama(model_path=path, **kwargs)`, working around a crash: on CPUs with AMX, llama-cpp-python
    0.3.36 moves quantized weights (q8_0, q4_0, k-quants; also files from llama.cpp's own quantizer) into its AMX
    buffer, and the first forward pass dies with SIGSEGV. There the model loads without llama.cpp's extra weight
    buffers (AMX and repacking; plain CPU kernels), which the Python API does not expose, so its default-parameters
    function is wrapped while the model loads. Elsewhere nothing changes."""
    import llama_cpp
    import llama_cpp.llama_cpp as lib

    if not _cpu_has_amx():
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    defaults = lib.llama_model_default_params

    def plain_buffers():
        params = defaults()
        params.use_extra_bufts = False
        return params

    lib.llama_model_default_params = plain_buffers
    try:
        return llama_cpp.Llama(model_path=str(path), **kwargs)
    finally:
        lib.llama_model_default_params = defaults


def _atomic_gguf(out: Path, write) -> None:
    """Call `write(tmp)` then move tmp onto `out` (fsynced): a reader never sees half a file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)


def to_gguf(
    model,
    tokenizer,
    out: str | Path,
    dtype: str = "f16",
    context_length: int | None = None,
    name: str = "moxin",
    pre: str | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write a llama-architecture GGUF file atomically; returns what was written (tensor count, bytes, vocab).
    `dtype` is one of `TYPES`; q4_k_m needs llama-cpp-python (its quantizer)."""
    cfg, out = model.cfg, Path(out)
    check_type(dtype)
    ctx = context_length or cfg.max_seq_len
    if not 0 < ctx <= cfg.max_seq_len:
        raise InteropError(f"context_length {ctx} must be between 1 and the model's max_seq_len {cfg.max_seq_len}")
    if cfg.sliding_window is not None and cfg.sliding_window < ctx:
        warnings.warn(
            f"the model attends within a sliding window of {cfg.sliding_window} tokens, but llama.cpp's "
            f"llama architecture ignores sliding windows: outputs match moxin only while the context stays "
            f"within {cfg.sliding_window} tokens (context length written: {ctx}; pass --context-length "
            f"{cfg.sliding_window} to cap it)",
            stacklevel=2,
        )
    tok = tokenizer_fields(tokenizer, cfg.vocab_size, pre)
    counts: list[int] = []

    def write(tmp: Path) -> None:
        if dtype != "q4_k_m":
            counts.append(_write(model, tok, tmp, dtype, ctx, name, progress))
            return
        src = tmp.with_name(tmp.name + ".f32")  # the quantizer's input: full precision, so rounding happens once
        try:
            counts.append(_write(model, tok, src, "f32", ctx, name, progress))
            llama_cpp_quantize(src, tmp, dtype)
        finally:
            src.unlink(missing_ok=True)

    _atomic_gguf(out, write)
    return {
        "tensors": counts[0],
        "bytes": out.stat().st_size,
        "vocab": cfg.vocab_size,
        "chat_template": bool(tok["chat_template"]),
        "pre": tok["pre"],
    }
