"""Prefill and decode tokens/s of moxin vs transformers on the same ~40M-parameter weights, fp32 and bf16.

Run: .venv/bin/python benchmarks/forward_decode.py [--quick]   (prints one JSON object)

The model is the `small` preset (vocab 16384, hidden 512, 8 layers, 8/4 heads, FFN 1376: 40.1 M parameters),
random weights exported with `to_hf` so transformers runs exactly the same numbers. Decode: greedy, prompt 32,
128 new tokens, transformers' `generate` (min_new_tokens forces the same length) vs `moxin.model.generate`.
Prefill: one forward over 512 tokens. Each pair is timed alternately, best of N (see _common.best_of)."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, cpu_load  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repeats and tokens")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    from moxin.interop.hf import to_hf
    from moxin.model import build, fast, generate, num_params, preset

    cfg = preset("small")
    base = build(cfg, seed=0).eval()
    folder = tempfile.mkdtemp()
    to_hf(base, folder)
    new = 32 if args.quick else 128
    reps = 2 if args.quick else 4
    out: dict = {"benchmark": "forward_decode", "model": "small", "params": num_params(cfg), "torch": torch.__version__,
                 "threads": torch.get_num_threads(), "load_before": cpu_load(), "results": []}
    for dtype in (torch.float32, torch.bfloat16):
        ours = fast.enable(build(cfg, seed=0).eval().to(dtype))
        hf = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).eval()
        for batch in (1, 8):
            prompt = torch.randint(0, cfg.vocab_size, (batch, 32), generator=torch.Generator().manual_seed(batch))
            long = torch.randint(0, cfg.vocab_size, (batch, 512), generator=torch.Generator().manual_seed(7))

            def moxin_decode():
                return generate(ours, prompt, new)

            def hf_decode():
                return hf.generate(prompt, max_new_tokens=new, min_new_tokens=new, do_sample=False, pad_token_id=0)

            def moxin_prefill():
                with torch.inference_mode():
                    return ours(long, last_only=True)

            def hf_prefill():
                with torch.inference_mode():
                    return hf(long, logits_to_keep=1).logits

            t = best_of({"moxin_decode": moxin_decode, "hf_decode": hf_decode,
                         "moxin_prefill": moxin_prefill, "hf_prefill": hf_prefill}, repeats=reps)
            same = moxin_decode().tolist() == hf_decode().tolist()
            row = {"dtype": str(dtype).removeprefix("torch."), "batch": batch,
                   "decode_tok_s": {"moxin": batch * new / t["moxin_decode"], "transformers": batch * new / t["hf_decode"]},
                   "prefill_tok_s": {"moxin": batch * 512 / t["moxin_prefill"], "transformers": batch * 512 / t["hf_prefill"]},
                   "greedy_tokens_identical": same}
            row["decode_speedup"] = row["decode_tok_s"]["moxin"] / row["decode_tok_s"]["transformers"]
            row["prefill_speedup"] = row["prefill_tok_s"]["moxin"] / row["prefill_tok_s"]["transformers"]
            out["results"].append(row)
            print(json.dumps(row), file=sys.stderr)
    bf16_b1 = next(r for r in out["results"] if r["dtype"] == "bfloat16" and r["batch"] == 1)
    out["target"] = {"decode_batch1_speedup_min": 2.0, "bf16_batch1": bf16_b1["decode_speedup"],
                     "met": bf16_b1["decode_speedup"] >= 2.0}
    out["load_after"] = cpu_load()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
