"""The objectives against hand-computed values."""

import math

import pytest
import torch

from moxin.finetune.losses import (
    dpo_loss,
    group_advantages,
    grpo_loss,
    kl_k3,
    token_logps,
)


def test_dpo_loss_matches_hand_computation():
    pc, pr = torch.tensor([-1.0]), torch.tensor([-2.0])
    rc, rr = torch.tensor([-1.5]), torch.tensor([-1.5])
    loss, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta=0.5)
    # rewards: 0.5 * (-1 + 1.5) = 0.25 and 0.5 * (-2 + 1.5) = -0.25; z = 0.5; loss = log(1 + e^-0.5)
    assert chosen.item() == pytest.approx(0.25) and rejected.item() == pytest.approx(-0.25)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-0.5)), abs=1e-7)
    smoothed, _, _ = dpo_loss(pc, pr, rc, rr, beta=0.5, label_smoothing=0.1)
    assert smoothed.item() == pytest.approx(0.9 * math.log1p(math.exp(-0.5)) + 0.1 * math.log1p(math.exp(0.5)))


def test_dpo_loss_is_log2_when_policy_equals_reference():
    lp = torch.tensor([-3.0, -7.0])
    loss, c, r = dpo_loss(lp, lp + 1, lp, lp + 1, beta=0.1)
    assert torch.allclose(loss, torch.full((2,), math.log(2.0)))
    assert torch.equal(c, torch.zeros(2)) and torch.equal(r, torch.zeros(2))


def test_group_advantages_normalise_within_each_group():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    adv = group_advantages(rewards)
    # group 0: mean 0.5, sample std sqrt(1/3) → ±0.5 / (0.57735 + 1e-4)
    expect = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    assert adv[0].tolist() == pytest.approx([expect, -expect, -expect, expect], rel=1e-6)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # equal rewards: no signal
    # group 2: mean 0.75, std 1.5 → (-0.75, ..., 2.25) / 1.5001
    assert adv[2].tolist() == pytest.approx([-0.75 / 1.5001] * 3 + [2.25 / 1.5001], rel=1e-6)
    assert adv.sum(dim=1).abs().max() < 1e-6


def test_k3_kl_on_hand_values():
    logp, ref = torch.log(torch.tensor([0.5, 0.3])), torch.log(torch.tensor([0.25, 0.3]))
    kl = kl_k3(logp, ref)
    # token 0: r/p = 0.5 → 0.5 - ln 0.5 - 1 = 0.193147; token 1: equal → 0
    assert kl[0].item() == pytest.approx(0.5 - math.log(0.5) - 1, abs=1e-6)
    assert kl[1].item() == pytest.approx(0.0, abs=1e-7)


def test_grpo_clipped_objective_and_kl_term():
    mask = torch.tensor([[1, 1, 0]])
    old = torch.zeros(1, 3)
    logp = torch.tensor([[0.5, 0.0, 9.0]], requires_grad=True)  # ratio e^0.5 = 1.6487 on token 0; token 2 padding
    ref = torch.zeros(1, 3)
    loss, m = grpo_loss(logp, old, ref, torch.tensor([2.0]), mask, clip_eps=0.2, beta=0.0)
    # token 0: min(1.6487·2, 1.2·2) = 2.4; token 1: ratio 1 → 2; mean over 2 tokens, negated
    assert loss.item() == pytest.approx(-(2.4 + 2.0) / 2, abs=1e-6)
    assert m["clip_frac"].item() == pytest.approx(0.5)
    loss.sum().backward()
    assert logp.grad[0, 0].item() == 0.0  # clipped: no gradient
    assert logp.grad[0, 1].item() == pytest.approx(-2.0 / 2)  # d(-ρA/2)/dlogp at ρ = 1
    assert logp.grad[0, 2].item() == 0.0  # masked
    neg, _ = grpo_loss(logp.detach(), old, ref, torch.tensor([-2.0]), mask, clip_eps=0.2, beta=0.0)
    # negative advantage: min(-3.2974, -2.4) = -3.2974 on token 0 (the pessimistic bound is not clipped)
    assert neg.item() == pytest.approx((2 * math.exp(0.5) + 2.0) / 2, abs=1e-5)
    with_kl, m = grpo_loss(logp.detach(), old, torch.log(torch.tensor([[0.5, 1.0, 1.0]])) + 0.5, torch.tensor([0.0]),
                           mask, clip_eps=0.2, beta=0.1)
    # advantage 0: only β·KL; token 0: d = ln0.5 → 0.193147; token 1: d = 0.5 → e^0.5 - 1.5 = 0.148721
    k = (0.5 - math.log(0.5) - 1 + math.exp(0.5) - 1.5) / 2
    assert with_kl.item() == pytest.approx(0.1 * k, abs=1e-6) and m["kl"].item() == pytest.approx(k, abs=1e-6)


def test_token_logps_ignore_and_values():
    logits = torch.log(torch.tensor([[[0.1, 0.9], [0.6, 0.4]]]))
    lp = token_logps(logits, torch.tensor([[1, -100]]))
    assert lp[0, 0].item() == pytest.approx(math.log(0.9), abs=1e-6) and lp[0, 1].item() == 0.0
