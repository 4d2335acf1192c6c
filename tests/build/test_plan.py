"""`moxin build --dry-run`: the plan of the Moxin-7B recipe agrees with `moxin model info` and with itself."""

import re

from moxin.build.plan import memory_per_gpu, phase_plans
from moxin.recipe import load_recipe
from moxintest import run_cli


def _params(text: str) -> int:
    m = re.search(r"([\d,]{5,}) parameters", text) or re.search(r"parameters: ([\d,]+)", text)
    return int(m.group(1).replace(",", ""))


def test_moxin_7b_dry_run_matches_model_info():
    code, plan, err = run_cli("build", "moxin-7b", "--dry-run")
    assert code == 0, err
    code, info, _ = run_cli("model", "info", "moxin-7b")
    assert _params(plan) == _params(info) == 8_114_180_096
    assert "phase ctx2k: seq 2048" in plan and "phase ctx4k: seq 4096" in plan and "phase capability" in plan
    assert "GPU-hours" in plan and "memory per GPU (FSDP2 over 128 GPUs" in plan
    assert "stages: data → selfdata → pretrain → finetune-sft → finetune-dpo → eval → release → verify" in plan


def test_plan_arithmetic():
    r = load_recipe("moxin-7b")
    phases = phase_plans(r.model, r.pretrain)
    for p, cfg in zip(phases, r.pretrain.phases):
        per_step = (cfg.global_batch or r.pretrain.global_batch) * cfg.seq_len
        assert p.tokens == p.steps * per_step and p.tokens >= cfg.tokens > p.tokens - per_step
    assert sum(p.tokens for p in phases) > 2e12  # "2T+ tokens"
    small, big = memory_per_gpu(r.model, 8, 1, 4096), memory_per_gpu(r.model, 64, 1, 4096)
    assert big["total"] < small["total"]
    assert small["sharded params+grads+adam (fp32)"] == 16 * 8_114_180_096 / 8


def test_every_recipe_dry_runs():
    for name in ("tiny", "gutenberg-small", "moxin-7b"):
        code, out, err = run_cli("build", name, "--dry-run")
        assert code == 0 and "# plan" in out, (name, err)
