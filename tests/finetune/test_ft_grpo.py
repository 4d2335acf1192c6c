"""Acceptance 3: GRPO raises the mean reward on a toy verifiable arithmetic task; rollout batches are consistent
(labels = sampled completions, group-normalised advantages, sampling = policy log-probs, reference = parent)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from ft_helpers import pretrain_ckpt, run_cli, tok, tok_dir, write_recipe  # noqa: F401 (fixtures)

from moxin.finetune.grpo import (
    GRPOBatches,
    arithmetic_task,
    last_number,
    numeric_reward,
)


def test_numeric_reward():
    assert numeric_reward("so 3 + 4 = 7\n#### 7", "7") == 1.0
    assert numeric_reward("#### 1,234.", "1234") == 1.0
    assert numeric_reward("It is 8", "7") == 0.0 and numeric_reward("no idea", "7") == 0.0
    assert last_number("a 1 b 2.5") == "2.5"


def test_rollout_batch_is_consistent(tok, pretrain_ckpt):
    from moxin.finetune.config import GRPOConfig, LoRAConfig
    from moxin.finetune.lora import apply_lora
    from moxin.finetune.losses import token_logps
    from moxin.finetune.template import encode_prompt, end_of_turn_id
    from moxin.interop import load_model

    parent = load_model(pretrain_ckpt)
    model = load_model(pretrain_ckpt)
    apply_lora(model, LoRAConfig(rank=2), seed=0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("lora_b"):
                p.normal_(0, 0.05)
    cfg = GRPOConfig(group_size=4, global_batch=8, max_new_tokens=5)
    prompts = [encode_prompt(tok, [{"role": "user", "content": f"What is {i} + 1?"}]) for i in range(3)]
    b = GRPOBatches(prompts, ["1", "2", "3"], tok, cfg, seed=0, eot=end_of_turn_id(tok), pad_id=tok.pad_token_id)
    b.policy = model
    batch = b.batch(0)
    again = b.batch(0)
    assert all(torch.equal(batch[k], again[k]) for k in batch)  # a step's rollouts are a pure function of it
    ids, labels = batch["input_ids"], batch["labels"]
    assert ids.shape[0] == 8 and batch["advantages"].shape == (8,)
    adv = batch["advantages"].reshape(2, 4)
    r = batch["rewards"].reshape(2, 4)
    expect = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(adv, expect)
    for row in range(8):
        pos = (labels[row] != -100).nonzero().flatten()
        assert len(pos) >= 1 and torch.equal(labels[row, pos], ids[row, pos + 1])
    with torch.no_grad():
        assert torch.allclose(batch["old_logps"], token_logps(model(ids), labels), atol=1e-6)
        assert torch.allclose(batch["ref_logps"], token_logps(parent(ids), labels), atol=1e-6)


def test_batches_without_a_policy_say_so():
    from moxin.errors import TrainingError
    from moxin.finetune.config import GRPOConfig

    cfg = GRPOConfig(group_size=2, global_batch=2, max_new_tokens=2)
    b = GRPOBatches([np.array([1, 2])], ["1"], None, cfg, seed=0, eot=3, pad_id=0)
    with pytest.raises(TrainingError, match=r"GRPOBatches\.policy is not set"):
        b.batch(0)


@pytest.mark.slow
def test_grpo_raises_mean_reward(tmp_path, pretrain_ckpt):
    # SFT teaches the answer format on sums of 0..9 + 0..9; GRPO then has to find the one right answer for the
    # problems summing to 2, which the SFT model gives only now and then
    warm = arithmetic_task(tmp_path / "warm.jsonl", 300, seed=1, max_operand=9)
    task = arithmetic_task(tmp_path / "arith.jsonl", 40, seed=2, total=2)
    recipe = write_recipe(tmp_path, f'''[finetune]
parent = "{pretrain_ckpt}"

[finetune.sft]
data = [{{path = "{warm}", license = "CC0-1.0"}}]
steps = 30
global_batch = 16
micro_batch = 16
lr = 1e-2
seq_len = 64
val_fraction = 0.0

[finetune.grpo]
parent = "sft"
data = [{{path = "{task}", license = "CC0-1.0"}}]
steps = 16
global_batch = 48
micro_batch = 48
group_size = 16
max_new_tokens = 6
lr = 3e-3
beta = 0.04
seq_len = 64
val_fraction = 0.0
''')
    for mode in ("sft", "grpo"):
        code, _, err = run_cli("finetune", mode, str(recipe), "--no-progress")
        assert code == 0, err
    out = tmp_path / "runs" / "ft" / "finetune" / "grpo"
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    rewards = [r["reward"] for r in rows]
    # measured here: 0.02, 0.04, 0.0, 0.08 ... 0.27, 0.19, 0.17, 0.15 (a tiny random-init model: slow and noisy)
    assert rewards[0] < 0.2 and np.mean(rewards[-4:]) > np.mean(rewards[:4]) + 0.08, rewards
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and max(r["kl"] for r in rows) > 0
    state = json.loads((out / "checkpoints" / "step-00000016" / "train_state.json").read_text())
    assert state["mode"] == "grpo" and state["lineage"]["base"]["path"].endswith("sft/checkpoints/step-00000030")
