"""CLI commands: chat, serve, export gguf. Heavy imports stay inside the functions (fast `moxin --help`)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from moxin.errors import MoxinError


def _engine(model: Path, dtype: str, int8: bool, max_batch: int):
    """(Engine, tokenizer): bf16 runs through the prepacked oneDNN linears; int8 quantizes weights (bf16 compute)."""
    import torch

    from moxin.commands import torch_dtype
    from moxin.interop import load_model
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.model import fast
    from moxin.serve.engine import Engine
    from moxin.serve.quant import quantize_int8

    dt = torch_dtype(dtype)
    tok = load_tokenizer(model)
    m, head = load_model(model, dtype=torch.float32 if int8 else dt).eval(), None
    if int8:
        m, head = quantize_int8(m, torch.bfloat16)
    elif dt == torch.bfloat16:
        fast.enable(m)
    return Engine(m, tok, max_batch=max_batch, head=head), tok


def chat(
    model: Path,
    system: str | None = None,
    max_tokens: int = 512,
    temperature: float = 0.7,
    top_p: float = 0.9,
    top_k: int | None = None,
    repetition_penalty: float = 1.0,
    seed: int | None = 0,
    dtype: str = "float32",
    int8: bool = False,
) -> None:
    """Chat with a model in the terminal, using its chat template (/reset clears the conversation, /exit quits).

    Args:
        model: moxin checkpoint, Hugging Face directory or .gguf file (with a tokenizer that has a chat template)
        system: system prompt put before the conversation
        max_tokens: the longest reply, in tokens
        temperature: sampling temperature; 0 for greedy (deterministic) replies
        top_p: sample from the smallest set of tokens whose probability reaches p
        top_k: sample among the k most likely tokens
        repetition_penalty: above 1 discourages repeating earlier tokens (1 = off)
        seed: random seed for sampling (the same seed and inputs give the same replies)
        dtype: weight dtype to run in (float32, bfloat16)
        int8: weight-only int8 linear layers with bf16 activations (about twice the decode speed of bf16 on CPU;
            see benchmarks/serve.py for its logit difference and perplexity change)
    """
    from moxin.serve.chat import ChatSession, repl
    from moxin.serve.engine import SamplingParams

    engine, tok = _engine(model, dtype, int8, max_batch=1)
    params = SamplingParams(
        max_tokens=max_tokens,
        temperature=temperature,
        top_p=top_p,
        top_k=top_k,
        repetition_penalty=repetition_penalty,
        seed=seed,
    )
    try:
        repl(ChatSession(engine, tok, params, system), sys.stdin, sys.stdout, interactive=sys.stdin.isatty())
    finally:
        engine.close()


def _checked_access(host: str, api_key: str | None, insecure_no_key: bool, max_batch: int, max_tokens_limit: int,
                    max_body_bytes: int, max_queue: int) -> str | None:  # fmt: skip
    """Validate the limits and the bind: a non-loopback host needs an API key unless --insecure-no-key is given.
    Returns the API key in force (--api-key, else MOXIN_API_KEY, else None)."""
    if max_batch < 1 or max_tokens_limit < 1:
        raise MoxinError(f"--max-batch ({max_batch}) and --max-tokens-limit ({max_tokens_limit}) must be at least 1")
    if max_body_bytes < 1024 or max_queue < 0:
        raise MoxinError(
            f"--max-body-bytes ({max_body_bytes}) must be at least 1024 and --max-queue ({max_queue}) at least 0"
        )
    api_key = api_key or os.environ.get("MOXIN_API_KEY") or None
    if not api_key and not insecure_no_key and not is_loopback(host):
        raise MoxinError(
            f"--host {host} exposes the model to the network without an API key: set --api-key (or "
            f"MOXIN_API_KEY), bind 127.0.0.1, or pass --insecure-no-key to serve it unauthenticated"
        )
    return api_key


def serve(
    model: Path,
    host: str = "127.0.0.1",
    port: int = 8000,
    api_key: str | None = None,
    name: str | None = None,
    max_batch: int = 8,
    max_tokens_limit: int = 2048,
    dtype: str = "float32",
    int8: bool = False,
    max_body_bytes: int = 4 * 2**20,
    max_queue: int = 64,
    insecure_no_key: bool = False,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/completions, /v1/chat/completions).

    Args:
        model: moxin checkpoint, Hugging Face directory or .gguf file (with its tokenizer)
        host: address to bind; the default 127.0.0.1 is reachable from this machine only. Any other address needs
            an API key (or --insecure-no-key)
        port: TCP port
        api_key: require 'Authorization: Bearer KEY' (default: the MOXIN_API_KEY environment variable, else none)
        name: model name clients use (default: the model folder's name)
        max_batch: the most concurrent requests decoded together
        max_tokens_limit: the most tokens a single request may ask for
        dtype: weight dtype to run in (float32, bfloat16)
        int8: weight-only int8 linear layers with bf16 activations: about twice the bf16 decode speed for one
            stream, but no faster than bf16 once several requests share a batch (its kernel works row by row)
        max_body_bytes: larger request bodies are refused with 413 while they are read
        max_queue: requests that may wait beyond the --max-batch decoding ones; more are refused with 429
        insecure_no_key: allow a non-loopback --host without an API key (anyone who can reach it can use it)
    """
    import uvicorn

    from moxin.serve.server import ServerConfig, create_app, uvicorn_config

    api_key = _checked_access(host, api_key, insecure_no_key, max_batch, max_tokens_limit, max_body_bytes,
                              max_queue)  # fmt: skip
    engine, tok = _engine(model, dtype, int8, max_batch)
    served = name or (model.stem if model.is_file() else model.resolve().name)
    cfg = ServerConfig(served, api_key, max_tokens_limit, max_body_bytes=max_body_bytes, max_queue=max_queue)
    app = create_app(engine, tok, cfg)
    if not api_key and not is_loopback(host):
        print(
            f"warning: serving {host} without an API key (--insecure-no-key): anyone who can reach it can use it",
            file=sys.stderr,
        )
    print(
        f"serving {served!r} on http://{host}:{port}/v1 (batch up to {max_batch}, queue up to {max_queue}; "
        f"{'API key required' if api_key else 'no API key'})",
        file=sys.stderr,
    )
    try:
        uvicorn.Server(uvicorn_config(app, cfg, host, port)).run()
    finally:
        engine.close()


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the server reachable from this machine only."""
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def export_gguf(checkpoint: Path, out: Path, type: str = "f16", context_length: int | None = None) -> None:
    """Export a model as a llama-architecture GGUF file (for llama.cpp / Ollama) with its tokenizer and chat template.

    Args:
        checkpoint: moxin checkpoint, moxin model directory, Hugging Face directory or .gguf file
        out: the .gguf file to write
        type: weight type: f32, f16, bf16, q8_0 or q4_0 (8- and 4-bit blocks of 32; q4_0 keeps the output matrix
            in q8_0), or q4_k_m (llama.cpp's own quantizer; needs llama-cpp-python). 1-D tensors always stay f32
        context_length: context length written to the file (default: the model's max_seq_len); set it to the
            sliding window to keep llama.cpp, which ignores windows, within what the model was trained on
    """
    import warnings

    from moxin.interop import load_model
    from moxin.interop.gguf_export import check_type, to_gguf
    from moxin.interop.tokenizer import load_tokenizer

    if out.suffix != ".gguf":
        raise MoxinError(f"OUT {out} must end in .gguf")
    check_type(type, "--type")
    model = load_model(checkpoint)
    tok = load_tokenizer(checkpoint)
    pre = None
    if checkpoint.suffix == ".gguf":  # keep the source file's pre-tokenizer name (transformers does not record it)
        from moxin.interop.gguf import _field, open_gguf

        pre = _field(open_gguf(checkpoint), "tokenizer.ggml.pre")
    name = checkpoint.stem if checkpoint.is_file() else checkpoint.resolve().name
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = to_gguf(model, tok, out, dtype=type, context_length=context_length, name=name, pre=pre, progress=True)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    print(
        f"wrote {out} ({info['tensors']} tensors, {info['bytes'] / 2**20:.1f} MiB, {type}, "
        f"vocab {info['vocab']}, chat template {'embedded' if info['chat_template'] else 'absent'})"
    )
