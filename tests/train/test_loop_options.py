"""Loop options applied from outside the model: activation checkpointing (same numbers, same checkpoint keys),
gradient accumulation (same mean as one big batch), z-loss, and the LM task on masked {input_ids, labels}."""

from __future__ import annotations

import pytest
import torch
from helpers import one_thread, small_tokens, write_recipe  # noqa: F401 (fixture)

from moxin.interop.safetensors_io import read_safetensors
from moxin.model.config import preset
from moxin.model.transformer import build
from moxin.parallel import Dist
from moxin.recipe import load_recipe
from moxin.train.pretrain import Setup
from moxin.train.tasks import IGNORE, LMTask


@pytest.fixture(scope="module")
def data(tmp_path_factory, shared_data):
    return small_tokens(tmp_path_factory.mktemp("tok") / "data")


def _train(tmp_path, data, name, *overrides):
    rec = write_recipe(tmp_path / f"{name}.toml", data, tmp_path / name, every=8, steps_a=3, steps_b=1)
    setup = Setup.from_recipe(load_recipe(rec, list(overrides)))
    trainer = setup.trainer(setup.build_model(Dist()), Dist(), log=lambda m: None, progress=False)
    trainer.fit()
    weights = read_safetensors(setup.run_dir / "checkpoints" / "step-00000004" / "model" / "model.safetensors")
    return [trainer.losses[s] for s in sorted(trainer.losses)], weights


def test_activation_checkpointing_changes_nothing_but_memory(tmp_path, data):
    base, w0 = _train(tmp_path, data, "plain")
    ac, w1 = _train(tmp_path, data, "ac", "pretrain.activation_checkpointing=true")
    assert ac == base
    assert set(w0) == set(w1) and all(torch.equal(w0[k], w1[k]) for k in w0)  # plain names, same bits


def test_accumulation_matches_one_batch(tmp_path, data):
    base, w0 = _train(tmp_path, data, "mb2")  # micro 2 × 2 accumulation
    one, w1 = _train(tmp_path, data, "mb4", "pretrain.micro_batch=4")
    assert max(abs(a - b) for a, b in zip(base, one)) < 1e-5
    assert max(float((w0[k] - w1[k]).abs().max()) for k in w0) < 1e-5


def test_z_loss_and_masked_labels():
    torch.manual_seed(0)
    model = build(preset("tiny"), seed=0)
    rows = torch.randint(0, 512, (2, 9))
    plain, _ = LMTask().loss(model, rows)
    total, metrics = LMTask(z_loss=1e-2).loss(model, rows)
    assert torch.allclose(metrics["ce"], plain) and float(metrics["z_loss"]) > 0
    assert torch.allclose(total, plain + metrics["z_loss"])
    labels = rows[:, 1:].clone()
    labels[:, :4] = IGNORE  # a prompt masked as in SFT
    masked = {"input_ids": rows[:, :-1], "labels": labels}
    assert LMTask().count(masked) == 8
    logits = model(rows[:, :-1]).float()
    ref = torch.nn.functional.cross_entropy(logits[:, 4:].reshape(-1, 512), rows[:, 5:].reshape(-1), reduction="sum")
    assert torch.allclose(LMTask().loss(model, masked)[0], ref, rtol=1e-6)
