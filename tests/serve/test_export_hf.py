"""`moxin export hf` writes weights, config, tokenizer and chat template that transformers loads offline."""

import shutil

import torch
from serve_toy import CHATML, make_checkpoint

from moxin.interop import load_model
from moxintest import run_cli


def test_export_hf_includes_tokenizer_and_chat_template(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ckpt = make_checkpoint(tmp_path / "ckpt", seed=2)
    out = tmp_path / "hf"
    code, stdout, err = run_cli("export", "hf", str(ckpt), str(out))
    assert code == 0, err
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= {
        p.name for p in out.iterdir()}
    tok = AutoTokenizer.from_pretrained(out)
    assert tok.chat_template == CHATML
    msgs = [{"role": "user", "content": "東京 data"}]
    assert tok.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False) == \
        "<|im_start|>user\n東京 data<|im_end|>\n<|im_start|>assistant\n"
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert hf.config.eos_token_id == tok.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")
    ids = torch.tensor([tok.encode("hello moxin world")])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, load_model(ckpt)(ids), atol=1e-5, rtol=0)
    code, _, err = run_cli("export", "hf", str(ckpt), str(out))
    assert code == 2 and "already exists" in err


def test_export_hf_without_tokenizer(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    shutil.copytree(ckpt / "model", tmp_path / "bare")  # no tokenizer inside or beside it
    code, stdout, err = run_cli("export", "hf", str(tmp_path / "bare"), str(tmp_path / "hf"))
    assert code == 0, err
    assert "weights and config only" in stdout and (tmp_path / "hf" / "config.json").is_file()
