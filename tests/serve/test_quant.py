"""Weight-only int8: the kernel equals a matmul with the dequantized weights; the engine runs the int8 model."""

import torch

from moxin.model import build, generate, preset
from moxin.serve.engine import Engine, SamplingParams
from moxin.serve.quant import Int8Linear, quantize_int8, quantize_rows


def test_int8_linear_equals_dequantized_matmul():
    w = torch.randn(96, 64, generator=torch.Generator().manual_seed(0))
    q, s = quantize_rows(w)
    assert q.dtype == torch.int8 and q.abs().max() == 127
    assert ((q.float() * s[:, None] - w).abs() <= s[:, None] / 2 + 1e-7).all()  # half a step per row
    lin = Int8Linear(w)
    x = torch.randn(3, 5, 64).bfloat16()
    ref = x.float() @ lin.dequantized().bfloat16().float().T
    torch.testing.assert_close(lin(x).float(), ref, atol=5e-2, rtol=1e-2)  # bf16 output rounding
    assert lin(x).shape == (3, 5, 96)


def test_quantized_model_logits_close_and_engine_runs_it():
    model = build(preset("tiny"), seed=1).eval()
    qmodel, head = quantize_int8(model)
    assert all(not isinstance(m, torch.nn.Linear) for m in qmodel.layers.modules())
    x = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(x)
        got = head(qmodel(x, return_hidden=True)).float()
    rel = (got - ref).abs().max() / ref.abs().max()
    assert 0 < rel < 0.05, rel
    assert model.layers[0].attn.q.weight.dtype == torch.float32  # the original is untouched
    engine = Engine(qmodel, None, max_batch=2, head=head)
    try:
        prompt = x[0, :10].tolist()
        out = engine.generate(prompt, SamplingParams(max_tokens=8, ignore_eos=True))
        ids = torch.tensor([prompt])
        with torch.no_grad():  # the same model and head without the cache, one token at a time
            for _ in range(8):
                nxt = head(qmodel(ids, return_hidden=True))[:, -1].float().argmax(-1, keepdim=True)
                ids = torch.cat([ids, nxt], 1)
        assert out.token_ids == ids[0, 10:].tolist()
        assert len(generate(model, torch.tensor([prompt]), 8)[0]) == 18
    finally:
        engine.close()
