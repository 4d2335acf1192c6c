"""Training throughput: moxin's Transformer + LMTask vs transformers' MistralForCausalLM, same config, optimizer
(AdamW) and batch, fp32 and bf16 autocast, eager and torch.compile; runs alternate in one process. Prints JSON.

    python benchmarks/train_throughput.py                 # S and M, all four modes
    python benchmarks/train_throughput.py --configs S --modes bf16-eager --rounds 2

moxin trains through `LMTask`, whose loss fuses the output projection with the cross-entropy
(`moxin.model.loss`); transformers computes full fp32 logits. Where moxin is under `--profile-below` (1.3×), one
step of each side is profiled and its top ops are added to the result, to show where the time goes.

MFU is achieved FLOP/s (moxin's `flops_per_token` × tokens/s) over the matmul peak measured in this process: the
best of 5 `torch.mm` of 2048×2048 matrices in the same dtype and thread count (2·n³ FLOPs each), measured at the
start and again after each mode (the highest seen is used, since a busy machine depresses single measurements).
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

CONFIGS = {
    "S": dict(dim=256, n_layers=8, n_heads=8, n_kv_heads=2, ffn_dim=688, vocab_size=8192, seq=256, batch=8),
    "M": dict(dim=512, n_layers=8, n_heads=8, n_kv_heads=4, ffn_dim=1376, vocab_size=16384, seq=512, batch=4),
}


def peak(dtype: torch.dtype, n: int = 2048) -> float:
    a, b = torch.randn(n, n).to(dtype), torch.randn(n, n).to(dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(5))
    return 2 * n**3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def build_pair(c: dict):
    from transformers import MistralConfig, MistralForCausalLM

    from moxin.model.config import ModelConfig
    from moxin.model.transformer import build

    mc = ModelConfig(vocab_size=c["vocab_size"], dim=c["dim"], n_layers=c["n_layers"], n_heads=c["n_heads"],
                     n_kv_heads=c["n_kv_heads"], ffn_dim=c["ffn_dim"], max_seq_len=c["seq"], sliding_window=None,
                     tie_embeddings=False)
    moxin = build(mc, seed=0)
    hc = MistralConfig(vocab_size=c["vocab_size"], hidden_size=c["dim"], intermediate_size=c["ffn_dim"],
                       num_hidden_layers=c["n_layers"], num_attention_heads=c["n_heads"],
                       num_key_value_heads=c["n_kv_heads"], max_position_embeddings=c["seq"], sliding_window=None,
                       tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    hf = MistralForCausalLM(hc)
    return mc, moxin, hf


def make_step(kind: str, model, bf16: bool):
    from moxin.train.optim import build_optimizer
    from moxin.train.tasks import LMTask

    opt = build_optimizer(model, 1e-4, 0.1, (0.9, 0.95), 1e-8)
    task = LMTask()

    def step(batch: torch.Tensor) -> float:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            if kind == "moxin":
                total, _ = task.loss(model, batch)
                loss = total / task.count(batch)
            else:
                loss = model(input_ids=batch[:, :-1], labels=batch[:, :-1]).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())

    return step


def top_ops(fn, batch: torch.Tensor, n: int = 12) -> list[list]:
    """One profiled step: the `n` ops with the most self CPU time as [name, ms, % of the step's op time]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn(batch)
    events = [e for e in prof.key_averages() if e.self_cpu_time_total > 0]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    return [[e.key, round(e.self_cpu_time_total / 1e3, 1), round(100 * e.self_cpu_time_total / total, 1)]
            for e in events[:n]]


def bench_config(name: str, c: dict, modes: list[str], rounds: int, steps: int, peaks: dict,
                 profile_below: float = 0.0) -> list[dict]:
    from moxin.model.config import flops_per_token
    from moxin.parallel import Dist, parallelize

    out = []
    batch = torch.randint(0, c["vocab_size"], (c["batch"], c["seq"] + 1), generator=torch.Generator().manual_seed(0))
    tokens = c["batch"] * c["seq"]
    for mode in modes:
        bf16, compiled = mode.startswith("bf16"), mode.endswith("compile")
        mc, moxin, hf = build_pair(c)
        if compiled:
            parallelize(moxin, Dist(), compile=True)  # per block, as the trainer does
            hf = torch.compile(hf)
        runners = {"moxin": make_step("moxin", moxin, bf16), "transformers": make_step("hf", hf, bf16)}
        warm = {}
        for k, fn in runners.items():  # compile happens here
            warm[k] = _timed(lambda: fn(batch)) + _timed(lambda: fn(batch))
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(rounds):  # alternate so that load changes on the shared machine hit both alike
            for k, fn in runners.items():
                times[k].append(min(_timed(lambda: fn(batch)) for _ in range(steps)))
        fpt = flops_per_token(mc, c["seq"])
        key = "bf16" if bf16 else "fp32"
        peaks[key] = max(peaks[key], peak(torch.bfloat16 if bf16 else torch.float32))  # re-measured: load varies
        pk = peaks[key]
        res = {"config": name, "mode": mode, "tokens_per_step": tokens}
        for k, ts in times.items():
            tps = tokens / min(ts)
            res[k] = {"tokens_per_s": round(tps, 1), "flops_per_s": round(fpt * tps), "mfu": round(fpt * tps / pk, 4),
                      "warmup_s": round(warm[k], 1), "step_s": [round(t, 3) for t in ts]}
        res["speedup"] = round(res["moxin"]["tokens_per_s"] / res["transformers"]["tokens_per_s"], 3)
        if profile_below and res["speedup"] < profile_below:  # where the time goes, for the closing note
            res["profile"] = {k: top_ops(fn, batch) for k, fn in runners.items()}
        print(json.dumps(res), flush=True)
        out.append(res)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--configs", default="S,M")
    ap.add_argument("--modes", default="fp32-eager,bf16-eager,fp32-compile,bf16-compile")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=2, help="timed steps per round (best of)")
    ap.add_argument("--profile-below", type=float, default=1.3,
                    help="profile one step of each side (top ops) when moxin's speedup is under this; 0: never")
    args = ap.parse_args()
    peaks = {"fp32": peak(torch.float32), "bf16": peak(torch.bfloat16)}
    load = os.getloadavg()[0]
    results = []
    for name in args.configs.split(","):
        results += bench_config(name, CONFIGS[name], args.modes.split(","), args.rounds, args.steps, peaks,
                                args.profile_below)
    summary = {"benchmark": "train_throughput", "torch": torch.__version__, "threads": torch.get_num_threads(),
               "peak_flops": {k: round(v) for k, v in peaks.items()},
               "peak_method": "best of 5 torch.mm 2048x2048 per dtype, same process and threads; max over the run",
               "load_avg_1min_start": load, "load_avg_1min_end": os.getloadavg()[0], "results": results}
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
