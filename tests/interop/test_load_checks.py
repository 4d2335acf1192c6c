"""Every load of a moxin checkpoint or model folder checks its manifest first (issue 12, "Corrupted weights"):
generate and finetune from a checkpoint with one flipped byte fail with one line naming the file; the lineage
records the hash of the bytes actually loaded."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "finetune"))
from ft_helpers import pretrain_ckpt, tok_dir, write_recipe  # noqa: F401 (fixtures)

from moxin.errors import CheckpointError
from moxin.interop import load_model, load_verified
from moxin.interop.tokenizer import load_tokenizer
from moxin.train.checkpoint import checkpoint_sha
from moxintest import run_cli


def _one_step_sft(tmp: Path, parent: Path, shared_data: Path, extra: str = "") -> Path:
    """A recipe for one SFT step on 20 instruction records from `parent`."""
    rasbt = shared_data / "rasbt_instruction_data" / "instruction-data.json"
    return write_recipe(tmp, f'''[finetune]
parent = "{parent}"

[finetune.sft]
data = [{{path = "{rasbt}", license = "Apache-2.0", max_records = 20}}]
steps = 1
global_batch = 4
micro_batch = 4
seq_len = 64
{extra}''')


def _flip(path: Path, at: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def ckpt(tmp_path, pretrain_ckpt) -> Path:
    out = tmp_path / "pretrain" / "checkpoints" / pretrain_ckpt.name
    shutil.copytree(pretrain_ckpt, out)
    return out


def _one_line_naming(err: str, path: Path) -> str:
    """The error is one line (progress lines a command logged before it are not part of it)."""
    lines = [x for x in err.strip().splitlines() if x.startswith("error")]
    assert len(lines) == 1 and err.strip().endswith(lines[0]), err
    assert str(path) in lines[0], lines[0]
    assert "Traceback" not in err
    return lines[0]


def test_clean_checkpoint_loads_and_names_its_identity(ckpt):
    model, sealed = load_verified(ckpt)
    assert sealed is not None and sealed.sha256 == checkpoint_sha(ckpt)
    assert sealed.root == ckpt and sealed.prefix == "model/"
    assert sum(p.numel() for p in model.parameters()) > 0


def test_flipped_weight_byte_fails_naming_the_file(ckpt):
    weights = ckpt / "model" / "model.safetensors"
    _flip(weights)
    with pytest.raises(CheckpointError, match="fails its SHA-256 check") as e:
        load_model(ckpt)
    assert str(weights) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(CheckpointError, match="model.safetensors fails"):  # the model folder itself is sealed too
        load_model(ckpt / "model")


@pytest.mark.parametrize("rel", ["model/model_config.json", "train_state.json", "optimizer.safetensors"])
def test_any_changed_file_of_the_checkpoint_stops_the_load(ckpt, rel):
    _flip(ckpt / rel, at=3)
    with pytest.raises(CheckpointError) as e:
        load_model(ckpt)
    assert str(ckpt / rel) in str(e.value)


def test_missing_file_and_unlisted_weights_are_named(ckpt):
    (ckpt / "optimizer.safetensors").unlink()
    with pytest.raises(CheckpointError, match="optimizer.safetensors is missing"):
        load_model(ckpt)


def test_changed_tokenizer_file_is_named(ckpt):
    target = ckpt / "tokenizer" / "tokenizer.json"
    target.write_text(target.read_text("utf-8").replace("<|im_end|>", "<|im_END|>"), "utf-8")
    with pytest.raises(CheckpointError) as e:
        load_tokenizer(ckpt)
    assert str(target) in str(e.value)


def test_unsealed_model_folder_still_loads(tmp_path, ckpt):
    bare = tmp_path / "bare"
    shutil.copytree(ckpt / "model", bare)
    model, sealed = load_verified(bare)
    assert sealed is None
    ref = load_model(ckpt)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), ref.state_dict().values()))


def test_cli_generate_from_a_flipped_checkpoint_fails_with_one_line(ckpt):
    code, _, err = run_cli("generate", str(ckpt), "--prompt", "hello", "--max-new-tokens", "2")
    assert code == 0, err
    weights = ckpt / "model" / "model.safetensors"
    _flip(weights)
    code, _, err = run_cli("generate", str(ckpt), "--prompt", "hello", "--max-new-tokens", "2")
    assert code == 2
    assert "fails its SHA-256 check" in _one_line_naming(err, weights)


def test_cli_finetune_from_a_flipped_parent_fails_with_one_line(tmp_path, ckpt, shared_data):
    recipe = _one_step_sft(tmp_path, ckpt, shared_data, "val_max = 4\n")
    weights = ckpt / "model" / "model.safetensors"
    _flip(weights)
    code, _, err = run_cli("finetune", "sft", str(recipe), "--no-progress")
    assert code == 2
    assert "fails its SHA-256 check" in _one_line_naming(err, weights)
    assert not list((tmp_path / "runs").rglob("step-*"))  # nothing was trained from the corrupted bytes


def test_lora_parent_is_verified_and_its_identity_returned(tmp_path, tok_dir):
    from moxin.finetune.config import LoRAConfig
    from moxin.finetune.lora import apply_lora
    from moxin.finetune.run import load_parent_verified
    from moxin.model import build, preset
    from moxin.train.checkpoint import save_checkpoint
    from moxin.train.optim import build_optimizer

    model = build(preset("tiny"), seed=2)
    info = apply_lora(model, LoRAConfig(rank=2, alpha=4, targets=["q", "v"]), seed=0)
    opt = build_optimizer(model, 1e-3, 0.0, (0.9, 0.95), 1e-8)
    state = {"step": 5, "kind": "finetune", "lineage": {"lora": info}, "rng": []}
    path = save_checkpoint(tmp_path / "checkpoints", 5, model, opt, model.cfg, state, tok_dir)
    merged, sha = load_parent_verified(path)
    assert sha == checkpoint_sha(path)
    assert not any("lora" in k for k in merged.state_dict())
    _flip(path / "model" / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors fails its SHA-256 check"):
        load_parent_verified(path)


def test_lineage_names_the_bytes_loaded_even_when_the_parent_changes_after_start(tmp_path, ckpt, shared_data):
    """The parent is resealed (new weights, new manifest) between the run's start and the load: the lineage
    records the manifest the loaded bytes were checked against, not the one hashed at start."""
    import json

    from moxin.finetune.prepare import prepare
    from moxin.finetune.run import build, context, load_tok, resolver
    from moxin.interop.safetensors_io import read_safetensors, write_safetensors
    from moxin.parallel import Dist
    from moxin.provenance import write_manifest
    from moxin.recipe import load_recipe

    recipe = load_recipe(_one_step_sft(tmp_path, ckpt, shared_data))
    ctx = context(recipe, "sft")
    at_start = ctx.parent["sha256"]
    assert at_start == checkpoint_sha(ckpt)
    weights = ckpt / "model" / "model.safetensors"
    sd = read_safetensors(weights)
    sd["norm.weight"] = sd["norm.weight"] * 2
    write_safetensors(weights, sd, metadata={"format": "pt"})
    write_manifest(ckpt, {k: v for k, v in json.loads((ckpt / "manifest.json").read_text()).items() if k != "files"})
    tok = load_tok(ctx, lambda m: None)
    prep = prepare(recipe.finetune, "sft", tok, resolver(recipe, ctx.run_dir), None, 0, write=False)
    model = build(ctx, tok, prep, 0, Dist(), lambda m: None, progress=False)[0]
    assert ctx.parent["sha256"] == checkpoint_sha(ckpt) != at_start
    assert torch.equal(model.norm.weight, sd["norm.weight"])
