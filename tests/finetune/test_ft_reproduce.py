"""`--reproduce finetune/<name>:K..M`: fine-tuning steps re-run from a checkpoint give the published weights bit
for bit; a NaN in the weights is a mismatch (never `nan > tol` is False)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from ft_helpers import pretrain_ckpt, run_cli, tok_dir, write_recipe  # noqa: F401 (fixtures)

from moxin.interop.safetensors_io import read_safetensors, write_safetensors
from moxin.provenance import write_manifest
from moxin.train.reproduce import compare_weights, reproduce_stage


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory, shared_data, pretrain_ckpt) -> Path:
    """A real 4-step SFT run (checkpoints at 2 and 4) whose parent is the run's own pretrain checkpoint."""
    tmp = tmp_path_factory.mktemp("ftrepro")
    run = tmp / "runs" / "ft"
    shutil.copytree(pretrain_ckpt, run / "pretrain" / "checkpoints" / pretrain_ckpt.name)
    rasbt = shared_data / "rasbt_instruction_data" / "instruction-data.json"
    recipe = write_recipe(tmp, f'''[finetune]
parent = "pretrain"

[finetune.sft]
data = [{{path = "{rasbt}", license = "Apache-2.0", max_records = 40}}]
steps = 4
global_batch = 4
micro_batch = 2
lr = 3e-3
seq_len = 96
val_max = 4
checkpoint = {{every = 2}}
''')
    code, _, err = run_cli("finetune", "sft", str(recipe), "--no-progress")
    assert code == 0, err
    return run


def test_finetune_steps_reproduce_bitwise(sft_run):
    r = reproduce_stage(sft_run, "finetune/sft", 2, 4)
    assert r.stage == "finetune/sft" and sorted(r.losses) == [2, 3]
    assert r.bitwise_equal and r.max_abs_diff == 0.0 and not r.nonfinite
    assert r.max_loss_diff == 0.0  # the same losses as metrics.jsonl


def test_verify_check_reproduce_parses_the_stage(sft_run):
    from moxin.release.runs import ReleaseError
    from moxin.release.verify import check_reproduce

    c = check_reproduce(sft_run, "finetune/sft:2..4")
    assert c.ok, c.problems
    assert "finetune/sft steps 2..4: bitwise identical" in c.summary
    with pytest.raises(ReleaseError, match="no finetune/sft checkpoint at step 3"):
        check_reproduce(sft_run, "finetune/sft:2..3")
    with pytest.raises(ReleaseError, match="finetune/<name>"):
        check_reproduce(sft_run, "sft:2..4")


def test_nan_in_the_published_weights_is_a_mismatch(sft_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(sft_run, run)
    target = run / "finetune" / "sft" / "checkpoints" / "step-00000004"
    weights = target / "model" / "model.safetensors"
    sd = read_safetensors(weights)
    name = sorted(sd)[0]
    sd[name].view(-1)[0] = float("nan")
    write_safetensors(weights, sd, metadata={"format": "pt"})
    import json

    info = {k: v for k, v in json.loads((target / "manifest.json").read_text()).items() if k != "files"}
    write_manifest(target, info)  # an attacker who reseals the checkpoint
    r = reproduce_stage(run, "finetune/sft", 2, 4)
    assert r.max_abs_diff == float("inf") and not r.bitwise_equal
    assert r.nonfinite == [f"published {name}"]
    from moxin.release.verify import check_reproduce

    c = check_reproduce(run, "finetune/sft:2..4")
    assert not c.ok and "non-finite" in c.problems[0] and name in c.problems[0]


def test_compare_weights_is_inf_for_nan_on_both_sides(tmp_path):
    t = torch.zeros(3)
    t[1] = float("nan")
    write_safetensors(tmp_path / "a.safetensors", {"w": t})
    write_safetensors(tmp_path / "b.safetensors", {"w": t.clone()})
    assert compare_weights(tmp_path / "a.safetensors", tmp_path / "b.safetensors") == float("inf")
    write_safetensors(tmp_path / "c.safetensors", {"w": torch.zeros(3)})
    assert compare_weights(tmp_path / "c.safetensors", tmp_path / "c.safetensors") == 0.0
