"""The fused output projection + cross-entropy (`moxin.model.loss`) against the plain logits route: loss, z-loss,
ignored tokens and gradients, in fp32 and under bf16 autocast; and the Transformer/LMTask route that uses it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from moxin.model.config import ModelConfig
from moxin.model.loss import linear_cross_entropy
from moxin.model.transformer import build
from moxin.train.tasks import LMTask


def _plain(h, w, t, z_loss, bf16):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = F.linear(h, w).float()
    ce = F.cross_entropy(logits, t, ignore_index=-100, reduction="sum")
    lse = torch.logsumexp(logits[t != -100], dim=-1)
    return ce + z_loss * (lse * lse).sum()


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("z_loss", [0.0, 1e-2])
def test_matches_plain_route(bf16, z_loss):
    g = torch.Generator().manual_seed(0)
    h0, w0 = torch.randn(70, 24, generator=g), torch.randn(50, 24, generator=g) * 0.3
    t = torch.randint(0, 50, (70,), generator=g)
    t[::5] = -100
    grads = []
    for fused in (False, True):
        h, w = h0.clone().requires_grad_(), w0.clone().requires_grad_()
        if fused:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss, ce, z = linear_cross_entropy(h, w, t, z_loss=z_loss, rows=16)  # several chunks
            assert torch.allclose(ce + z, loss.detach())
            assert (z == 0) == (z_loss == 0)
        else:
            loss = _plain(h, w, t, z_loss, bf16)
        (loss * 0.37).backward()
        grads.append((loss.detach(), h.grad, w.grad))
    (la, ha, wa), (lb, hb, wb) = grads
    tol = 2e-2 if bf16 else 1e-5  # bf16: the gradient is rounded to bf16 before or after the 0.37 scale
    assert torch.allclose(la, lb, rtol=1e-5)
    assert (ha - hb).abs().max() <= tol * ha.abs().max()
    assert (wa - wb).abs().max() <= tol * wa.abs().max()
    assert hb.dtype == wb.dtype == torch.float32


def test_no_grad_skips_gradient_and_all_ignored_is_zero():
    h, w = torch.randn(8, 4, requires_grad=True), torch.randn(6, 4, requires_grad=True)
    with torch.no_grad():
        loss, _, _ = linear_cross_entropy(h, w, torch.randint(0, 6, (8,)))
    assert not loss.requires_grad and loss > 0
    loss, ce, _ = linear_cross_entropy(h, w, torch.full((8,), -100))
    assert float(ce) == 0.0
    loss.backward()
    assert h.grad is not None and float(h.grad.abs().sum()) == 0.0


@pytest.mark.parametrize("tie", [False, True])
def test_lm_task_fused_equals_logits_route(tie):
    cfg = ModelConfig(
        vocab_size=64, dim=32, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dim=48, max_seq_len=16, tie_embeddings=tie
    )
    batch = torch.randint(0, 64, (3, 13), generator=torch.Generator().manual_seed(1))
    task = LMTask(z_loss=1e-3)
    results = []
    for fused in (True, False):
        model = build(cfg, seed=0)
        if fused:
            total, metrics = task.loss(model, batch)
        else:  # the plain route: logits, then cross-entropy
            logits = model(batch[:, :-1]).float().reshape(-1, 64)
            total = _plain_from_logits(logits, batch[:, 1:].reshape(-1), 1e-3)
        total.backward()
        results.append((total.detach(), {n: p.grad for n, p in model.named_parameters()}))
        if fused:
            assert set(metrics) == {"ce", "z_loss"}
    (ta, ga), (tb, gb) = results
    assert torch.allclose(ta, tb, rtol=1e-6)
    for n in ga:
        assert torch.allclose(ga[n], gb[n], rtol=1e-4, atol=1e-6), n


def _plain_from_logits(logits, t, z_loss):
    lse = torch.logsumexp(logits, dim=-1)
    return F.cross_entropy(logits, t, reduction="sum") + z_loss * (lse * lse).sum()
