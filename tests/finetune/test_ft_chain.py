"""Acceptance 1, 2, 5: SFT lowers held-out assistant loss, DPO raises the held-out reward margin with the
reference unchanged, and `moxin lineage` on the DPO checkpoint walks back to the pretraining data and licences.
One chain (pretrain checkpoint → SFT → DPO) on ../shared/data, built once for the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from ft_helpers import pretrain_ckpt, run_cli, tok_dir, write_recipe  # noqa: F401 (fixtures)

from moxin.provenance import verify_manifest

SFT_STEPS, DPO_STEPS = 12, 10
pytestmark = pytest.mark.slow  # one real SFT → DPO chain: ~1-2 min on a busy 2-core machine


@pytest.fixture(scope="module")
def chain(tmp_path_factory, shared_data, pretrain_ckpt):
    tmp = tmp_path_factory.mktemp("chain")
    rasbt = shared_data / "rasbt_instruction_data"
    recipe = write_recipe(tmp, f'''[finetune]
parent = "{pretrain_ckpt}"

[finetune.sft]
data = [{{path = "{rasbt / 'instruction-data.json'}", license = "Apache-2.0", max_records = 400}}]
steps = {SFT_STEPS}
global_batch = 16
micro_batch = 16
lr = 3e-3
seq_len = 160
packing = true
val_max = 32
checkpoint = {{every = 6}}

[finetune.dpo]
parent = "sft"
data = [{{path = "{rasbt / 'instruction-data-with-preference.json'}", license = "Apache-2.0", max_records = 200}}]
steps = {DPO_STEPS}
global_batch = 16
micro_batch = 16
lr = 1e-3
beta = 0.1
seq_len = 160
val_max = 32
checkpoint = {{every = 5}}
''')
    for mode in ("sft", "dpo"):
        code, out, err = run_cli("finetune", mode, str(recipe), "--no-progress")
        assert code == 0, err
    return tmp / "runs" / "ft" / "finetune"


def _run(chain: Path, mode: str) -> dict:
    return json.loads((chain / mode / "run.json").read_text())


def test_sft_lowers_held_out_assistant_loss(chain):
    run = _run(chain, "sft")
    assert run["status"] == "done" and 0 < run["examples"]["val"] <= 32  # ~5% of 400, by content hash
    before, after = run["before"]["val_loss"], run["after"]["val_loss"]
    assert after < before - 0.5, (before, after)
    ck = chain / "sft" / "checkpoints" / f"step-{SFT_STEPS:08d}"
    assert verify_manifest(ck) == [] and (ck / "tokenizer" / "tokenizer.json").is_file()
    assert "<|im_start|>" in (ck / "tokenizer" / "chat_template.jinja").read_text()  # stored with the tokenizer
    state = json.loads((ck / "train_state.json").read_text())
    assert state["kind"] == "finetune" and state["mode"] == "sft"
    assert state["lineage"]["base"]["kind"] == "checkpoint" and state["lineage"]["code"]["package"] == "moxin"
    assert state["lineage"]["data"]["datasets"][0]["license"] == "Apache-2.0"
    assert (chain / "sft" / "loss.png").is_file() and (chain / "sft" / "metrics.jsonl").is_file()


def test_dpo_raises_held_out_margin_and_keeps_the_reference(chain):
    from moxin.finetune.batches import PreferenceBatches
    from moxin.finetune.run import load_parent
    from moxin.finetune.tasks import reference_logps
    from moxin.interop.safetensors_io import read_safetensors

    run = _run(chain, "dpo")
    assert run["before"]["val_reward_margin"] == pytest.approx(0.0, abs=1e-6)  # policy = reference at the start
    assert run["after"]["val_reward_margin"] > 0.05 and run["after"]["val_loss"] < run["before"]["val_loss"]
    assert run["parent"]["path"] == f"finetune/sft/checkpoints/step-{SFT_STEPS:08d}"  # relative to the run folder
    parent = chain.parent / run["parent"]["path"]
    assert parent.parent.parent.name == "sft" and verify_manifest(parent) == []  # the SFT checkpoint is untouched
    # the cached reference log-probs are exactly what the (unchanged) parent computes now
    cache = read_safetensors(chain / "dpo" / "reference_logps.safetensors")
    from moxin.finetune.prepare import prepare
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.recipe import load_recipe

    recipe = load_recipe(chain.parent.parent.parent / "recipe.toml")
    tok = load_tokenizer(chain / "dpo" / "tokenizer")
    prep = prepare(recipe.finetune, "dpo", tok, recipe.resolve_path, None, 0, write=False)
    val = PreferenceBatches(prep.val, torch.zeros(len(prep.val), 2).numpy(), len(prep.val), 0, tok.pad_token_id)
    again = reference_logps(load_parent(parent), val, len(prep.val), 16)
    assert torch.allclose(again, cache["val"].double(), atol=1e-4)


def test_lineage_of_the_dpo_checkpoint(chain, pretrain_ckpt):
    ck = chain / "dpo" / "checkpoints" / f"step-{DPO_STEPS:08d}"
    code, out, err = run_cli("lineage", str(ck))
    assert code == 0, err
    sft_ck = chain / "sft" / "checkpoints" / f"step-{SFT_STEPS:08d}"
    for needle in (str(ck.resolve()), str(sft_ck.resolve()), str(Path(pretrain_ckpt).resolve()),
                   str(chain / "dpo" / "data" / "manifest.json"), str(chain / "sft" / "data" / "manifest.json"),
                   "instruction-data-with-preference: licence Apache-2.0", "instruction-data: licence Apache-2.0",
                   "python: licence PSF-2.0", "gutenberg: licence LicenseRef-PD-US", "verified"):
        assert needle in out, needle
    code, out, _ = run_cli("lineage", str(ck), "--json-out")
    nodes = json.loads(out)
    assert [n["kind"] for n in nodes] == ["finetune", "finetune", "pretrain"]
    assert [n["mode"] for n in nodes[:2]] == ["dpo", "sft"]
    assert nodes[2]["data"]["sources"][0]["license"] == "PSF-2.0"


def test_lineage_flags_a_changed_parent(tmp_path, chain):
    import shutil

    src = chain / "dpo" / "checkpoints" / f"step-{DPO_STEPS:08d}"
    state = json.loads((src / "train_state.json").read_text())
    fake_parent = tmp_path / "parent"
    shutil.copytree(chain.parent / state["lineage"]["base"]["path"], fake_parent)  # run-relative
    (fake_parent / "manifest.json").write_text((fake_parent / "manifest.json").read_text() + " ")
    state["lineage"]["base"]["path"] = str(fake_parent)
    child = tmp_path / "child"
    shutil.copytree(src, child)
    (child / "train_state.json").write_text(json.dumps(state))
    code, out, _ = run_cli("lineage", str(child))
    assert code == 0 and "CHANGED since" in out


def test_lineage_of_a_non_checkpoint_is_a_clear_error(tmp_path):
    code, _, err = run_cli("lineage", str(tmp_path))
    assert code == 2 and "train_state.json not found" in err
