"""The dry-run plan of a build: parameters, tokens and FLOPs per phase, memory per GPU under FSDP2, GPU-hours.

Memory model (per GPU, FSDP2 full sharding over N GPUs, bf16 compute with fp32 master weights, AdamW):
- sharded state: fp32 parameters (4 B) + fp32 gradients (4 B) + Adam moments (8 B) = 16 B per parameter / N;
- unsharded working set: two blocks' bf16 parameters all-gathered (current + prefetched) and one block's fp32
  gradients before reduce-scatter;
- activations with per-block activation checkpointing: each block's bf16 input is kept (2·b·s·d bytes per layer)
  plus one block recomputed in full, ~34·b·s·d bytes (Korthikanti et al. 2022, without the attention-score term
  since SDPA/flash attention never materialises it), plus the fp32 logits and their gradient (8·b·s·V bytes).
This is an estimate for planning, not a measurement; allocator fragmentation and communication buffers add
typically 10-20%.
"""

from __future__ import annotations

from dataclasses import dataclass

from moxin.model.config import ModelConfig, flops_per_token, num_params


@dataclass
class PhasePlan:
    name: str
    seq_len: int
    tokens: int
    steps: int
    flops: float


def phase_plans(model: ModelConfig, pretrain) -> list[PhasePlan]:
    plans = []
    for p in pretrain.phases:
        gb = p.global_batch or pretrain.global_batch
        per_step = gb * p.seq_len
        steps = p.steps if p.steps is not None else -(-p.tokens // per_step)
        tokens = steps * per_step
        plans.append(PhasePlan(p.name, p.seq_len, tokens, steps, float(flops_per_token(model, p.seq_len)) * tokens))
    return plans


def block_params(model: ModelConfig) -> int:
    return (num_params(model, include_embeddings=False) - model.dim) // model.n_layers


def memory_per_gpu(model: ModelConfig, gpus: int, micro_batch: int, seq_len: int) -> dict[str, float]:
    """Bytes per GPU by category (see the module docstring for the model)."""
    n = num_params(model)
    b, s, d, v = micro_batch, seq_len, model.dim, model.vocab_size
    parts = {
        "sharded params+grads+adam (fp32)": 16 * n / gpus,
        "gathered blocks (bf16 x2) + block grads (fp32)": block_params(model) * (2 * 2 + 4),
        "checkpointed block inputs (bf16)": 2 * b * s * d * model.n_layers,
        "one block recomputed": 34 * b * s * d,
        "logits + grad (fp32)": 8 * b * s * v,
    }
    parts["total"] = sum(parts.values())
    return parts


def plan_lines(model: ModelConfig, pretrain, build) -> list[str]:
    """Human-readable plan for `moxin build --dry-run`."""
    gib = 2**30
    n = num_params(model)
    phases = phase_plans(model, pretrain)
    total_tokens = sum(p.tokens for p in phases)
    total_flops = sum(p.flops for p in phases)
    sustained = build.gpu_peak_tflops * 1e12 * build.mfu
    gpu_hours = total_flops / sustained / 3600
    lines = [
        f"model: {model.preset or 'custom'}: {n:,} parameters ({n / 1e9:.2f} B), {model.n_layers} layers, "
        f"hidden {model.dim}, {model.n_heads}/{model.n_kv_heads} heads, window {model.sliding_window}"
    ]
    for p in phases:
        lines.append(
            f"phase {p.name}: seq {p.seq_len}, {p.steps:,} steps, {p.tokens:,} tokens "
            f"({p.tokens / 1e9:.1f} B), {p.flops:.3e} FLOPs"
        )
    lines.append(f"total: {total_tokens:,} tokens ({total_tokens / 1e12:.2f} T), {total_flops:.3e} training FLOPs")
    lines.append(
        f"compute: {gpu_hours:,.0f} GPU-hours at {build.mfu:.0%} MFU of {build.gpu_peak_tflops:g} TFLOP/s "
        f"= {gpu_hours / build.gpus / 24:,.1f} days on {build.gpus} GPUs"
    )
    worst = max(phases, key=lambda p: p.seq_len)
    mem = memory_per_gpu(model, build.gpus, pretrain.micro_batch, worst.seq_len)
    lines.append(
        f"memory per GPU (FSDP2 over {build.gpus} GPUs, micro-batch {pretrain.micro_batch}, seq "
        f"{worst.seq_len}, activation checkpointing): {mem['total'] / gib:.1f} GiB of "
        f"{build.gpu_memory_gib:g} GiB"
        + ("" if mem["total"] / gib <= build.gpu_memory_gib else "  ← does not fit: add GPUs or lower micro_batch")
    )
    lines += [f"  {k}: {v / gib:.2f} GiB" for k, v in mem.items() if k != "total"]
    return lines
