"""The pretraining command end to end on a tiny token folder: the golden loss curve (CI), outputs, show-batch,
retention, reproduce (re-run K..M and compare bitwise), and bad input."""

from __future__ import annotations

import json

import pytest
from helpers import one_thread, small_tokens, write_recipe  # noqa: F401 (fixture)

from moxin.train import checkpoint as ckpt
from moxin.train.metrics import read_metrics
from moxin.train.reproduce import reproduce
from moxintest import run_cli

# Per-step training loss (nats/token) of helpers.RECIPE in fp32 on the byte-level shakespeare+python folder
# (2 phases: seq 32 then 48). Tolerance 2e-4 absolute: fp32 matmul kernels may round differently on other CPUs,
# while a real change to the data order, the model, the schedule or the optimizer moves these by > 1e-2.
GOLDEN = [5.531187057495117, 5.474353551864624, 5.292781829833984, 5.16669225692749, 5.207127412160237,
          5.051817576090495, 5.005736509958903, 4.950047016143799]
TOL = 2e-4


@pytest.fixture(scope="module")
def trained(tmp_path_factory, shared_data):
    import torch

    tmp = tmp_path_factory.mktemp("pre")
    data = small_tokens(tmp / "data")
    rec = write_recipe(tmp / "r.toml", data, tmp / "runs", every=2)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    code, out, err = run_cli("pretrain", str(rec), "--no-progress")
    torch.set_num_threads(before)
    assert code == 0, err
    return tmp, rec, tmp / "runs" / "t" / "pretrain"


def test_golden_loss_curve(trained):
    losses = [r["loss"] for r in read_metrics(trained[2] / "metrics.jsonl")]
    assert len(losses) == len(GOLDEN)
    assert max(abs(a - b) for a, b in zip(losses, GOLDEN)) < TOL, losses


def test_run_outputs(trained):
    pre = trained[2]
    rows = read_metrics(pre / "metrics.jsonl")
    for key in ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "step_time", "tokens_seen", "phase"):
        assert key in rows[0], key
    assert [r["phase"] for r in rows] == ["a"] * 4 + ["b"] * 4
    assert rows[-1]["tokens_seen"] == 4 * 4 * 32 + 4 * 4 * 48
    assert 0 < rows[0]["mfu"] < 1 and "val_loss" in rows[1]
    assert (pre / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    run = json.loads((pre / "run.json").read_text())
    assert run["phases"][1]["start"] == 4 and run["data_fingerprint"]
    last = pre / "checkpoints" / "step-00000008"
    assert not ckpt.verify(last)
    state = ckpt.read_state(last)
    assert state["step"] == 8 and state["phase"] == "b" and state["data"]["position"] == {"next_step": 8}
    assert state["lineage"]["parent"]["path"] == "step-00000006"
    assert state["lineage"]["parent"]["sha256"] == ckpt.checkpoint_sha(pre / "checkpoints" / "step-00000006")


def test_reproduce_is_bitwise(trained):
    r = reproduce(trained[2], 4, 8)
    assert r.bitwise_equal and r.max_abs_diff == 0.0
    assert sorted(r.losses) == [4, 5, 6, 7] and r.max_loss_diff == 0.0


def test_show_batch_lists_documents(trained):
    code, out, err = run_cli("pretrain", "show-batch", str(trained[2].parent), "--step", "5")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("step 5 (phase b)")
    samples = [ln for ln in lines if ln.startswith("sample ")]
    assert len(samples) == 4 and all("[" in s for s in samples)
    docs = [ln.split()[0] for ln in lines if ln.startswith("    ")]
    assert docs and all(d.split("/")[0] in ("shakespeare", "python") for d in docs)
    code, out, err = run_cli("pretrain", "show-batch", str(trained[2].parent), "--step", "99")
    assert code == 2 and "--step 99 is outside" in err
    code, out, err = run_cli("pretrain", "show-batch", str(trained[2].parent))
    assert code == 2 and "--step is required" in err


def test_retention_keeps_last_every_kth_and_phase_ends(tmp_path, shared_data):
    data = small_tokens(tmp_path / "data")
    rec = write_recipe(tmp_path / "r.toml", data, tmp_path / "runs", every=1, steps_a=5, steps_b=4,
                       extra="")
    code, _, err = run_cli("pretrain", str(rec), "--no-progress", "--set", "pretrain.checkpoint.keep_last=2",
                           "--set", "pretrain.checkpoint.keep_every=3")
    assert code == 0, err
    kept = [s for s, _ in ckpt.list_checkpoints(tmp_path / "runs" / "t" / "pretrain" / "checkpoints")]
    assert kept == [3, 5, 6, 8, 9]  # every 3rd, the end of phase a (5), the last two


def test_bad_input_is_one_line(tmp_path, shared_data):
    data = small_tokens(tmp_path / "data")
    rec = write_recipe(tmp_path / "r.toml", data, tmp_path / "runs")
    code, _, err = run_cli("pretrain", str(rec), "--set", "pretrain.micro_batch=3")
    assert code == 2 and "pretrain.micro_batch" in err and "multiple of micro_batch=3" in err
    code, _, err = run_cli("pretrain", str(rec), "--set", "pretrain.phases=[{name='x', seq_len=300, steps=2}]")
    assert code == 2 and "model.max_seq_len=256" in err
    code, _, err = run_cli("pretrain", str(rec), "--set", f"pretrain.data_dir='{tmp_path / 'nope'}'")
    assert code == 2 and "tokens.json not found" in err
    code, out, err = run_cli("pretrain", str(rec), "--dry-run")
    assert code == 0 and "phase a: steps 0..3, seq 32" in out
    assert run_cli("pretrain", str(rec), "--no-progress")[0] == 0
    code, _, err = run_cli("pretrain", str(rec), "--resume", "none")
    assert code == 2 and "already holds checkpoints" in err
