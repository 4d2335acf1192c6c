"""moxin.model.fast: bf16 linears with pre-packed oneDNN weights give bit-identical results to plain bf16 linears."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from moxin.model import fast

pytestmark = pytest.mark.skipif(not fast.supported(), reason="oneDNN packed linear not available in this torch build")


@pytest.mark.parametrize("shape", [(1, 64), (3, 64), (1, 1, 64), (2, 5, 64), (4, 7, 64)])
@pytest.mark.parametrize("out_features", [32, 96])
def test_packed_bf16_linear_is_bit_identical_to_plain(shape, out_features):
    torch.manual_seed(len(shape) * 100 + shape[0] * 10 + out_features)
    plain = nn.Linear(64, out_features, bias=False).to(torch.bfloat16).eval()
    packed = fast.enable(nn.Sequential(nn.Linear(64, out_features, bias=False))).to(torch.bfloat16).eval()
    packed[0].weight.data.copy_(plain.weight.data)
    x = torch.randn(*shape).to(torch.bfloat16)
    with torch.no_grad():
        want, got = plain(x), packed(x)
    assert packed[0]._moxin_pack_key is not None  # the packed path ran
    assert got.shape == want.shape
    assert torch.equal(got, want)


def test_packed_copy_follows_a_changed_weight_and_autograd_takes_the_plain_path():
    torch.manual_seed(0)
    lin = fast.enable(nn.Sequential(nn.Linear(16, 8, bias=False))).to(torch.bfloat16).eval()[0]
    x = torch.randn(2, 16).to(torch.bfloat16)
    with torch.no_grad():
        before = lin(x)
        lin.weight.mul_(2)  # bumps the version counter: the packed copy must be rebuilt
        after = lin(x)
    assert torch.equal(after, torch.nn.functional.linear(x, lin.weight))
    assert not torch.equal(before, after)
    y = lin(x.requires_grad_())  # grad enabled: the plain path, with a graph
    assert y.grad_fn is not None


def test_disable_restores_plain_linears():
    m = fast.enable(nn.Sequential(nn.Linear(8, 8, bias=False)))
    fast.disable(m)
    assert not hasattr(m[0], "_moxin_pack_key") and "forward" not in m[0].__dict__
