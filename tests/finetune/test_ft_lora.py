"""Acceptance 4: LoRA merged vs unmerged logits within 1e-5; LoRA and full fine-tuning resume bit-exactly after
SIGKILL; a LoRA run's final/ is a plain moxin model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ft_helpers import (  # noqa: F401
    kill_after,
    pretrain_ckpt,
    run_cli,
    run_sub,
    tok_dir,
    write_recipe,
)

from moxin.finetune.config import LoRAConfig
from moxin.finetune.lora import LoRALinear, apply_lora, has_lora, merge_lora
from moxin.model import build, preset


def _randomise_adapters(model, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, LoRALinear):
                m.lora_b.copy_(torch.randn(m.lora_b.shape, generator=g) * 0.05)


@pytest.mark.parametrize("name", ["tiny", "llama-tiny"])
def test_merged_and_unmerged_logits_agree(name):
    model = build(preset(name), seed=1).eval()
    x = torch.randint(0, 500, (2, 40))
    with torch.no_grad():
        base = model(x)
        info = apply_lora(model, LoRAConfig(rank=4, alpha=8, targets=["q", "v", "o", "gate", "down"]), seed=0)
        assert torch.equal(model(x), base)  # B = 0: training starts exactly at the parent
        _randomise_adapters(model)
        unmerged = model(x)
        assert (unmerged - base).abs().max() > 1e-3  # the adapters do change the output
        merged = merge_lora(model)(x)
    assert not has_lora(model) and set(model.state_dict()) == set(build(preset(name)).state_dict())
    assert (merged - unmerged).abs().max().item() < 1e-5
    assert info["trainable_params"] == 2 * 4 * sum(
        a + b for a, b in [(64, 64), (64, 32), (64, 64), (64, 176), (176, 64)])


def test_lora_freezes_the_parent_and_trains_only_adapters():
    model = build(preset("tiny"), seed=1)
    apply_lora(model, LoRAConfig(rank=2), seed=0)
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.endswith(("lora_a", "lora_b")) for n in names)


RECIPE = '''[finetune]
parent = "{parent}"
[finetune.sft]
data = [{{path = "{data}", license = "Apache-2.0", max_records = 96}}]
steps = 8
global_batch = 8
micro_batch = 4
lr = 3e-3
seq_len = 128
val_fraction = 0.0
lora = {{rank = {rank}, alpha = 8, dropout = {dropout}}}
checkpoint = {{every = 3, keep_last = 10}}
'''


def _recipe(folder: Path, parent: Path, data: Path, rank: int, dropout: float = 0.0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return write_recipe(folder, RECIPE.format(parent=parent, data=data, rank=rank, dropout=dropout))


def test_lora_run_writes_a_merged_final_model(tmp_path, shared_data, pretrain_ckpt):
    from moxin.finetune.run import load_parent
    from moxin.interop import load_model

    recipe = _recipe(tmp_path, pretrain_ckpt, shared_data / "rasbt_instruction_data" / "instruction-data.json", 4)
    code, _, err = run_cli("finetune", "sft", str(recipe), "--no-progress", "--set", "finetune.sft.steps=3")
    assert code == 0, err
    out = tmp_path / "runs" / "ft" / "finetune" / "sft"
    final, last = out / "final", out / "checkpoints" / "step-00000003"
    x = torch.randint(0, 480, (1, 30))
    with torch.no_grad():
        merged = load_model(final)(x)  # the ordinary loader: a plain model
        assert (merged - load_parent(last)(x)).abs().max() < 1e-5  # the LoRA checkpoint, merged on load
        assert (merged - load_model(pretrain_ckpt)(x)).abs().max() > 1e-4  # and it did learn something
    state = json.loads((final / "train_state.json").read_text())
    assert state["lineage"]["merged_lora"]["rank"] == 4 and state["lineage"]["base"]["kind"] == "checkpoint"


@pytest.mark.slow
@pytest.mark.parametrize("rank,dropout", [(0, 0.0), (4, 0.1)])
def test_sigkill_resume_is_bit_exact(tmp_path, shared_data, pretrain_ckpt, rank, dropout):
    data = shared_data / "rasbt_instruction_data" / "instruction-data.json"
    ref = _recipe(tmp_path / "ref", pretrain_ckpt, data, rank, dropout)
    run_sub("finetune", "sft", str(ref), "--no-progress")
    killed = _recipe(tmp_path / "killed", pretrain_ckpt, data, rank, dropout)
    out = tmp_path / "killed" / "runs" / "ft" / "finetune" / "sft"
    at = kill_after(["finetune", "sft", str(killed), "--no-progress"], out / "metrics.jsonl", 4)
    assert at < 8 and (out / "checkpoints" / "step-00000003").is_dir()
    run_sub("finetune", "sft", str(killed), "--no-progress")  # resume=auto
    a = tmp_path / "ref" / "runs" / "ft" / "finetune" / "sft" / "checkpoints" / "step-00000008"
    b = out / "checkpoints" / "step-00000008"
    for f in ("model/model.safetensors", "optimizer.safetensors"):
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    la = [json.loads(x)["loss"] for x in (a.parent.parent / "metrics.jsonl").read_text().splitlines()]
    lb = [json.loads(x)["loss"] for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert la == lb


@pytest.mark.slow
def test_fsdp2_two_ranks_match_one_process(tmp_path, shared_data, pretrain_ckpt):
    """LoRA SFT under torchrun (2 gloo ranks, FSDP2) gives the single-process losses."""
    import subprocess
    import sys

    from ft_helpers import sub_env

    data = shared_data / "rasbt_instruction_data" / "instruction-data.json"
    losses = {}
    for world in (1, 2):
        recipe = _recipe(tmp_path / f"w{world}", pretrain_ckpt, data, 4)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(world), "--master_port",
               str(29400 + world), "-m", "moxin.cli", "finetune", "sft", str(recipe), "--no-progress",
               "--set", "finetune.sft.steps=3"]
        proc = subprocess.run(cmd, env=sub_env(), capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        metrics = tmp_path / f"w{world}" / "runs" / "ft" / "finetune" / "sft" / "metrics.jsonl"
        losses[world] = [json.loads(x)["loss"] for x in metrics.read_text().splitlines()]
    assert len(losses[2]) == 3 and losses[2] == pytest.approx(losses[1], abs=1e-5)


def test_imported_hf_parent_and_its_lineage(tmp_path, shared_data, tok_dir):
    """A Hugging Face folder as the parent: fine-tuned, recorded by file hashes, printed with its licence."""
    import shutil

    from moxin.interop.hf import to_hf

    hf = tmp_path / "hf"
    to_hf(build(preset("llama-tiny"), seed=5), hf)
    for f in tok_dir.iterdir():
        shutil.copy(f, hf / f.name)
    recipe = _recipe(tmp_path, hf, shared_data / "rasbt_instruction_data" / "instruction-data.json", 0)
    code, _, err = run_cli("finetune", "sft", str(recipe), "--no-progress", "--set", "finetune.sft.steps=2",
                           "--set", 'finetune.parent_license="Apache-2.0"')
    assert code == 0, err
    ck = tmp_path / "runs" / "ft" / "finetune" / "sft" / "checkpoints" / "step-00000002"
    base = json.loads((ck / "train_state.json").read_text())["lineage"]["base"]
    assert base["kind"] == "hf" and "model.safetensors" in base["files"] and base["license"] == "Apache-2.0"
    code, out, _ = run_cli("lineage", str(ck))
    assert code == 0 and "imported (hf)" in out and "licence: Apache-2.0" in out and "verified" in out
