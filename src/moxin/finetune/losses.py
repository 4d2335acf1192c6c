"""The objectives, as pure tensor functions (tested against hand-computed values).

Shapes: B sequences (or pairs), T tokens, V vocabulary, P prompts, G completions per prompt."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from moxin.train import IGNORE


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """logits (B, T, V), labels (B, T) aligned to them (IGNORE = no target) → log p(label) (B, T), 0 where ignored."""
    keep = labels != IGNORE
    safe = labels.masked_fill(~keep, 0)
    lp = torch.log_softmax(logits.float(), dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)  # (B, T)
    return lp * keep


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sequence log-probs (B,) each → (loss (B,), chosen reward (B,), rejected reward (B,)).

    loss = -log σ(β[(πc - rc) - (πr - rr)]) (Rafailov et al. 2023); with label smoothing ε the conservative form
    -(1-ε) log σ(z) - ε log σ(-z). Rewards are β(π - r), the implicit reward of each response."""
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    z = chosen - rejected
    loss = -(1.0 - label_smoothing) * F.logsigmoid(z) - label_smoothing * F.logsigmoid(-z)
    return loss, chosen.detach(), rejected.detach()


def group_advantages(rewards: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """rewards (P, G) → advantages (P, G): (r - mean of the group) / (std of the group + eps).

    The std is the sample std (n-1), as in TRL's GRPOTrainer; a group with equal rewards gets advantage 0."""
    mean = rewards.mean(dim=1, keepdim=True)
    std = rewards.std(dim=1, keepdim=True, unbiased=True)
    return (rewards - mean) / (std + eps)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(π || π_ref) estimate (Schulman's k3): exp(r - l) - (r - l) - 1 ≥ 0, unbiased under π."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1.0


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float,
    beta: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Completion-token log-probs (N, T) under the policy, the sampling policy and the reference; advantages (N,);
    mask (N, T) of completion tokens → (loss per completion (N,), {metric: per completion (N,)}).

    Per token: -min(ρA, clip(ρ, 1-ε, 1+ε)A) + β·KL_k3, with ρ = exp(logp - old_logp); averaged over each
    completion's tokens (DeepSeekMath's GRPO objective, negated for minimisation)."""
    m = mask.to(logp.dtype)
    n = m.sum(dim=1).clamp(min=1.0)  # (N,)
    ratio = torch.exp(logp - old_logp)  # (N, T)
    a = advantages.unsqueeze(1)  # (N, 1)
    surrogate = torch.minimum(ratio * a, ratio.clamp(1.0 - clip_eps, 1.0 + clip_eps) * a)
    kl = kl_k3(logp, ref_logp)
    per_token = -surrogate + beta * kl  # (N, T)
    loss = (per_token * m).sum(dim=1) / n
    clipped = ((ratio - 1.0).abs() > clip_eps).to(logp.dtype)
    metrics = {"kl": ((kl * m).sum(dim=1) / n).detach(), "clip_frac": ((clipped * m).sum(dim=1) / n).detach()}
    return loss, metrics
