"""moxin.records: one reader per record, one-line errors naming the file and key, relocatable paths, and one
model identity for lineage and evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from moxin.errors import CheckpointError
from moxin.records import (
    FORMAT_VERSION,
    TrainState,
    model_identity,
    read_manifest,
    read_train_state,
    recorded_path,
    run_root,
    write_stage_manifest,
    write_train_state,
)


def _state(step: int = 7, **extra) -> dict:
    return {"step": step, "tokens_seen": 70, "phase": "p1", "seed": 1, "data": {"fingerprint": "f" * 64},
            "config": {"data_dir": "data"}, "lineage": {"parent": {"path": "step-00000005", "sha256": "a" * 64}},
            **extra}


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_train_state_round_trip(tmp_path):
    folder = tmp_path / "step-00000007"
    written = write_train_state(folder, _state())
    assert isinstance(written, TrainState) and written.format_version == FORMAT_VERSION
    back = read_train_state(folder)
    assert back == written and back.step == 7 and back.data_fingerprint == "f" * 64
    assert back.lineage.parent.kind == "checkpoint" and back.lineage.parent.path == "step-00000005"
    assert json.loads((folder / "train_state.json").read_text())["format_version"] == FORMAT_VERSION


def test_step_must_match_the_folder_name(tmp_path):
    folder = tmp_path / "step-00000008"
    write_train_state(folder, _state(7))
    with pytest.raises(CheckpointError) as e:
        read_train_state(folder)
    msg = _one_line(e)
    assert "step-00000008" in msg and "is 7" in msg and str(folder / "train_state.json") in msg


@pytest.mark.parametrize("bad, needle", [({"step": "7"}, "step"), ({"step": 7.0}, "step"), ({"step": True}, "step"),
                                         ({"tokens_seen": "x"}, "tokens_seen"), ({"kind": "pretrian"}, "kind"),
                                         ({"stepp": 3}, "stepp"), ({"format_version": 99}, "format_version"),
                                         ({"lineage": {"base": {"kind": "hf"}}}, "lineage.base")])
def test_a_bad_field_is_one_line_naming_file_and_key(tmp_path, bad, needle):
    folder = tmp_path / "step-00000007"
    folder.mkdir()
    (folder / "train_state.json").write_text(json.dumps({**_state(), **bad}))
    with pytest.raises(CheckpointError) as e:
        read_train_state(folder)
    msg = _one_line(e)
    assert needle in msg and str(folder / "train_state.json") in msg


def test_unreadable_train_state(tmp_path):
    (tmp_path / "train_state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_train_state(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        read_train_state(tmp_path / "missing")


def test_stage_manifest_keys_and_selection(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    (tmp_path / "metrics.jsonl").write_text("")
    (tmp_path / "checkpoints" / "step-00000001").mkdir(parents=True)
    (tmp_path / "checkpoints" / "step-00000001" / "x.bin").write_bytes(b"x")
    m = write_stage_manifest(tmp_path, "pretrain", {"status": "done"}, include=("run.json", "metrics.jsonl"))
    assert m.stage == "pretrain" and m.code["package"] == "moxin" and m.info == {"status": "done"}
    assert sorted(m.files) == ["metrics.jsonl", "run.json"]  # the checkpoints carry their own manifests
    back = read_manifest(tmp_path)
    assert back == m
    doc = json.loads((tmp_path / "manifest.json").read_text())
    assert "kind" not in doc and "code_version" not in doc and doc["stage"] == "pretrain"


def test_model_identity_kinds(tmp_path):
    from moxin.provenance import sha256_file, write_manifest

    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert model_identity(gguf) == ("gguf", sha256_file(gguf))
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text("{}")
    kind, sha = model_identity(hf)
    (hf / "config.json").write_text('{"a": 1}')
    assert kind == "hf" and model_identity(hf)[1] != sha  # a fingerprint of the folder's files
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"w")
    write_manifest(model, {"stage": "import"})
    assert model_identity(model) == ("model", sha256_file(model / "manifest.json"))
    (model / "w.bin").write_bytes(b"flipped")
    with pytest.raises(CheckpointError) as e:
        model_identity(model)
    assert "w.bin" in _one_line(e)
    assert model_identity(model, verify=False)[0] == "model"


def test_run_relative_paths(tmp_path):
    run = tmp_path / "run"
    ck = run / "finetune" / "sft" / "checkpoints" / "step-00000002"
    ck.mkdir(parents=True)
    (run / "finetune" / "sft" / "final").mkdir()
    assert run_root(ck) == run.resolve() and run_root(run / "finetune" / "sft" / "final") == run.resolve()
    assert run_root(tmp_path) is None
    assert recorded_path("pretrain/checkpoints/step-00000001", run) == run / "pretrain/checkpoints/step-00000001"
    assert recorded_path("/abs/old", run) == Path("/abs/old")  # records written before paths were relative


def test_lineage_refuses_an_unreadable_data_manifest(tmp_path):
    from moxin.finetune.lineage import chain

    ck = tmp_path / "run" / "finetune" / "sft" / "checkpoints" / "step-00000003"
    write_train_state(ck, _state(3, kind="finetune", mode="sft", lineage={
        "data": {"manifest": "finetune/sft/data/manifest.json", "sha256": None}}))
    data = tmp_path / "run" / "finetune" / "sft" / "data"
    data.mkdir(parents=True)
    (data / "manifest.json").write_text("{broken")
    with pytest.raises(CheckpointError) as e:
        chain(ck)
    assert str(data / "manifest.json") in _one_line(e)
    (data / "manifest.json").unlink()
    with pytest.raises(CheckpointError, match="cannot be read"):
        chain(ck)
