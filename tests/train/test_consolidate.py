"""Sharded (DCP) checkpoints: `moxin checkpoint consolidate DIR` turns them into the single-file layout; loads
name the command instead of failing obscurely; `moxin release` refuses a run that holds them, naming them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import one_thread  # noqa: F401 (fixture)

from moxintest import run_cli


def _sharded_run(root: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A run folder with one sharded pretrain checkpoint at step 2 (a 1-process DCP save), and its weights."""
    from moxin.model import build, preset
    from moxin.train.checkpoint import save_checkpoint
    from moxin.train.optim import build_optimizer

    torch.manual_seed(0)
    model = build(preset("tiny"), seed=1)
    opt = build_optimizer(model, 1e-3, 0.0, (0.9, 0.95), 1e-8)
    model(torch.randint(0, 100, (2, 16))).float().sum().backward()
    opt.step()
    path = save_checkpoint(root / "pretrain" / "checkpoints", 2, model, opt, model.cfg, {"step": 2, "rng": []},
                           sharded=True)
    assert (path / "dcp").is_dir() and not (path / "model").exists()
    return path, {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_consolidate_command_writes_the_single_file_layout(tmp_path):
    from moxin.interop import load_model
    from moxin.provenance import verify_manifest
    from moxin.train.checkpoint import read_state

    path, weights = _sharded_run(tmp_path / "run")
    code, out, err = run_cli("checkpoint", "consolidate", str(tmp_path / "run"))
    assert code == 0, err
    assert f"consolidated {path}" in out
    assert (path / "model" / "model.safetensors").is_file() and (path / "optimizer.safetensors").is_file()
    assert not (path / "dcp").exists() and verify_manifest(path) == []
    assert read_state(path)["consolidated_from_world_size"] == 1
    loaded = load_model(path).state_dict()
    assert all(torch.equal(loaded[k], weights[k]) for k in weights)
    code, _, err = run_cli("checkpoint", "consolidate", str(path))  # nothing left to do: says so
    assert code == 2 and "no sharded checkpoint" in err


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_loading_a_sharded_checkpoint_names_the_command(tmp_path):
    from moxin.errors import CheckpointError
    from moxin.interop import load_model

    path, _ = _sharded_run(tmp_path / "run")
    with pytest.raises(CheckpointError, match="moxin checkpoint consolidate"):
        load_model(path)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_consolidate_refuses_a_corrupted_sharded_checkpoint(tmp_path):
    path, _ = _sharded_run(tmp_path / "run")
    shard = next((path / "dcp").glob("*.distcp"))
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 1
    shard.write_bytes(bytes(data))
    code, _, err = run_cli("checkpoint", "consolidate", str(path))
    assert code == 2 and "fails its SHA-256 check" in err and shard.name in err
    assert not (path / "model").exists()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_release_refuses_sharded_checkpoints_naming_them(tmp_path):
    from moxin.errors import MoxinError
    from moxin.release.bundle import build_release

    run = tmp_path / "run"
    _sharded_run(run)
    with pytest.raises(MoxinError) as e:
        build_release(run, tmp_path / "release", progress=False)
    msg = str(e.value)
    assert "pretrain/checkpoints/step-00000002" in msg and "moxin checkpoint consolidate" in msg
    assert not (tmp_path / "release").exists()
