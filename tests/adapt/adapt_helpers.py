"""A tiny random base model with its own tokenizer (a Hugging Face folder), and a folder of a user's documents
(.txt, .md, .jsonl, .html; English and Japanese), for the adapt tests."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|pad|>"]
JA = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。何でも薄暗いじめじめした所で泣いていた。"
EN = "The river runs past the old mill, and the miller counts the sacks of flour before the winter comes."


def corpus() -> list[str]:
    """Distinct documents (sentences in a seeded random order, so near-duplicate removal keeps them), half
    Japanese."""
    import random

    rng = random.Random(0)
    ja = [x + "。" for x in JA.split("。") if x] + ["猫は庭で眠る。", "雨が降ると川が増える。", "先生は本を読む。"]
    en = [EN, "A cold wind comes down from the hills.", "She keeps the ledger in a drawer.", "Bread costs more."]
    out = []
    for i in range(24):
        out.append(f"第{i}章 " + "".join(rng.sample(ja, len(ja)) * 2) + "".join(rng.choices(ja, k=4)))
        out.append(f"Chapter {i}. " + " ".join(rng.sample(en, len(en)) * 2) + " ".join(rng.choices(en, k=3)))
    return out


def write_docs(folder: Path) -> Path:
    """The user's folder: plain text, Markdown, JSONL and HTML files."""
    docs = corpus()
    folder.mkdir(parents=True, exist_ok=True)
    for i, text in enumerate(docs[:16]):
        (folder / f"note{i:02d}.txt").write_text(text, "utf-8")
    for i, text in enumerate(docs[16:28]):
        (folder / f"page{i:02d}.md").write_text(f"# Page {i}\n\n{text}\n", "utf-8")
    rows = [json.dumps({"text": t}, ensure_ascii=False) for t in docs[28:40]]
    (folder / "records.jsonl").write_text("\n".join(rows) + "\n", "utf-8")
    for i, text in enumerate(docs[40:]):
        (folder / f"site{i:02d}.html").write_text(f"<html><body><h1>T{i}</h1><p>{text}</p></body></html>", "utf-8")
    return folder


@pytest.fixture(scope="session")
def base_dir(tmp_path_factory) -> Path:
    """A random LlamaForCausalLM whose vocabulary is its tokenizer's (byte-level BPE on the corpus, ChatML)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from moxin.tokenizer.config import CHATML_TEMPLATE

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=384, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # fmt: skip
    tok.train_from_iterator(corpus(), trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, chat_template=CHATML_TEMPLATE, eos_token="<|endoftext|>",
                                 pad_token="<|pad|>", additional_special_tokens=["<|im_start|>", "<|im_end|>"],
                                 clean_up_tokenization_spaces=False)  # fmt: skip
    torch.manual_seed(5)
    cfg = LlamaConfig(vocab_size=len(hf), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                      max_position_embeddings=256)  # fmt: skip
    out = tmp_path_factory.mktemp("base")
    LlamaForCausalLM(cfg).eval().save_pretrained(out)
    hf.save_pretrained(out)
    return out


SFT = """
[finetune]
parent = "adapt"

[finetune.sft]
data = [{path = "sft.jsonl", license = "CC0-1.0"}]
steps = 4
seq_len = 64
global_batch = 4
micro_batch = 4
"""


def write_sft(path: Path) -> None:
    rows = [{"messages": [{"role": "user", "content": f"質問{i}は何ですか"},
                          {"role": "assistant", "content": f"答え{i}です。"}]} for i in range(40)]  # fmt: skip
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def write_recipe(
    folder: Path, base: Path, extra: str = "", lora: str = "lora = {rank = 4, alpha = 8}", evaluate: bool = False
) -> Path:
    """An adapt recipe over `folder/docs`; `extra` is appended (e.g. `SFT` for a fine-tune of the adapted model).
    With `evaluate`, the build evaluates base and adapted on the generated held-out tasks and an own perplexity
    set (`folder/own.jsonl`), and compares them."""
    write_docs(folder / "docs")
    write_sft(folder / "sft.jsonl")
    text = f"""
[run]
name = "adapt-test"
seed = 3
out_dir = "runs"

[data]
val_fraction = 0.15

[[data.sources]]
name = "docs"
type = "text"
path = "docs"
license = "CC-BY-4.0"
quality = false

[adapt]
base = "{base}"
license = "Apache-2.0"
steps = 12
seq_len = 32
global_batch = 4
micro_batch = 4
lr = 0.003
eval_batches = 1
{lora}

[adapt.checkpoint]
every = 6
keep_last = 3

"""
    if evaluate:
        own = [{"text": "猫が台所の椅子の上で眠っていた。"}, {"text": "The boat left the harbour at dawn."}]
        (folder / "own.jsonl").write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in own), "utf-8")
        text += '\n[eval]\ntasks = []\nbatch_size = 4\nall_checkpoints = false\n'
        text += '[[eval.own]]\npath = "own.jsonl"\nkind = "perplexity"\nlicense = "CC0-1.0"\n'
    else:
        text += "\n[build]\nevaluate = false\n"
    path = folder / "recipe.toml"
    path.write_text(text + extra, "utf-8")
    return path


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moxin.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, check=False)  # fmt: skip
