"""GGUF quantization types (issue 16, item 3): bf16, q4_0 and q8_0 written by the `gguf` package and read back by
moxin, q4_k_m through llama.cpp's quantizer; every type loads in llama.cpp with logits close to fp32."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp_fix import llama_logits, open_llama

from moxin.errors import InteropError
from moxin.interop import load_model
from moxin.interop.gguf_export import TYPES, check_type, gguf_tensors, to_gguf
from moxin.model import build, preset
from moxintest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_toy import build_tokenizer, make_checkpoint

X = torch.randint(0, 512, (4, 64), generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def model():
    """llama-tiny widened to dim 256 and ffn 512: whole 32-value blocks in every row, and whole 256-value super-blocks,
    so that llama.cpp's q4_k_m really uses its k-quants (it falls back to other types for narrower rows)."""
    cfg = preset("llama-tiny")
    cfg.dim, cfg.ffn_dim = 256, 512
    return build(cfg, seed=3).eval()


@pytest.fixture(scope="module")
def exports(tmp_path_factory, model, tok):
    folder = tmp_path_factory.mktemp("gguf")
    out = {}
    for t in ("f32", "bf16", "q8_0", "q4_0"):
        to_gguf(model, tok, folder / f"{t}.gguf", dtype=t)
        out[t] = folder / f"{t}.gguf"
    return out


def _types(path):
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    return int(r.fields["general.file_type"].contents()), {t.name: t.tensor_type.name for t in r.tensors}


def _logits(m, ids):
    with torch.no_grad():
        return m(ids)


def test_block_types_per_tensor(exports, model):
    from gguf import LlamaFileType as F

    names = gguf_tensors(model)
    for t, ftype, matrix, output in (("bf16", F.MOSTLY_BF16, "BF16", "BF16"), ("q8_0", F.MOSTLY_Q8_0, "Q8_0", "Q8_0"),
                                     ("q4_0", F.MOSTLY_Q4_0, "Q4_0", "Q8_0")):  # fmt: skip
        file_type, types = _types(exports[t])
        assert file_type == int(ftype) and set(types) == set(names), t
        for name, arr in names.items():
            want = "F32" if arr.ndim == 1 else output if name == "token_embd.weight" else matrix
            assert types[name] == want, (t, name, types[name])


def test_moxin_reads_quantized_exports_back(exports, model):
    """moxin's GGUF import dequantizes each type; the error grows with fewer bits and top-1 mostly holds (measured on
    these 256 positions: max |Δlogit| bf16 0.006, q8_0 0.021, q4_0 0.29 of logits up to 3.7; top-1 all 100%)."""
    ref = _logits(model, X)
    err = {}
    for t, path in exports.items():
        got = _logits(load_model(path), X)
        err[t] = (got - ref).abs().max().item()
        top1 = (got.argmax(-1) == ref.argmax(-1)).float().mean().item()
        assert top1 >= {"f32": 1, "bf16": 0.98, "q8_0": 0.98, "q4_0": 0.9}[t], (t, top1)
    assert err["f32"] < 1e-4 < err["bf16"] and err["q8_0"] < err["q4_0"], err
    assert err["bf16"] < 0.02 and err["q8_0"] < 0.06 and err["q4_0"] < 0.75, err


def test_q4_0_values_are_blockwise_4_bit(exports, model):
    from gguf import GGMLQuantizationType as Q
    from gguf import GGUFReader, quants

    r = GGUFReader(str(exports["q4_0"]))
    t = next(t for t in r.tensors if t.name == "blk.0.ffn_up.weight")
    arr = gguf_tensors(model)["blk.0.ffn_up.weight"]
    deq = quants.dequantize(t.data, Q.Q4_0).reshape(arr.shape)
    blocks, orig = deq.reshape(-1, 32), arr.reshape(-1, 32)
    assert all(len(np.unique(b)) <= 16 for b in blocks)  # 16 levels per block
    step = np.abs(orig).max(1, keepdims=True) / 8  # q4_0: d = -max/8 (max by magnitude), levels -8..7 times d
    err = np.abs(blocks - orig)
    # rounding to the nearest level: half a step, except values beyond +7d on the side opposite the max, clipped
    assert (err <= step * 1.001).all() and (err <= step * 0.501).mean() > 0.95


def test_type_errors(tmp_path, monkeypatch):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    code, out, err = run_cli("export", "gguf", str(ckpt), str(tmp_path / "m.gguf"), "--type", "q5_k")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert "--type 'q5_k'" in lines[0] and "q4_k_m" in lines[0] and not (tmp_path / "m.gguf").exists()
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "llama_cpp" else real(n, *a))
    with pytest.raises(InteropError, match=r"--type q4_k_m needs llama.cpp's quantizer.*llama-cpp-python==0.3.36"):
        check_type("q4_k_m", "--type")
    for t in TYPES[:-1]:
        check_type(t, "--type")  # the others need nothing beyond the gguf package


def test_every_type_runs_in_llama_cpp(tmp_path, exports, model, tok):
    """llama.cpp loads each export (q4_k_m written by its own quantizer, with its per-tensor mix) and its logits stay
    near moxin's fp32 ones; moxin reads the q4_k_m file back to llama.cpp's logits too. f32 KV cache throughout, so
    only the weights' rounding shows."""
    from gguf import LlamaFileType as F

    q4km = tmp_path / "q4_k_m.gguf"
    info = to_gguf(model, tok, q4km, dtype="q4_k_m")
    file_type, types = _types(q4km)
    assert file_type == int(F.MOSTLY_Q4_K_M) and info["tensors"] == len(types) == len(gguf_tensors(model))
    assert {"Q4_K", "Q6_K"} <= set(types.values()) and types["blk.0.attn_norm.weight"] == "F32", types
    ids = X[0].tolist()
    ref = _logits(model, X[:1])[0].numpy()
    err, top1, theirs = {}, {}, {}
    for t, path in {**exports, "q4_k_m": q4km}.items():
        llm = open_llama(path)
        theirs[t] = llama_logits(llm, ids)
        llm.close()
        err[t] = float(np.abs(theirs[t] - ref).max())
        top1[t] = float((theirs[t].argmax(-1) == ref.argmax(-1)).mean())
    # measured max |Δlogit| (logits up to 3.7): f32 1.7e-6, bf16 0.006, q8_0 0.022, q4_0 0.29, q4_k_m 0.13
    assert err["f32"] < 1e-5 and err["bf16"] < 0.03 and err["q8_0"] < 0.1, err
    assert err["q4_0"] < 0.8 and err["q4_k_m"] < 0.5, err
    assert min(top1.values()) >= 0.9, top1
    ours = _logits(load_model(q4km), X[:1])[0].numpy()
    assert np.abs(ours - theirs["q4_k_m"]).max() < 0.1
