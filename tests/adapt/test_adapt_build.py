"""`moxin build` of an adapt recipe on a tiny random base and a folder of .txt/.md/.jsonl/.html files (Japanese
included): import → data with the base's tokenizer → selfdata → adapt (LoRA) → release → verify, which re-runs
adapt steps 6..12 and gets the same bytes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adapt_helpers import SFT, base_dir, run_cli, write_recipe  # noqa: F401

from moxin.layout import RunLayout

pytestmark = pytest.mark.slow  # a whole build (about a minute on 2 idle cores)


@pytest.fixture(scope="module")
def built(tmp_path_factory, base_dir) -> tuple[RunLayout, str]:
    folder = tmp_path_factory.mktemp("adapt-build")
    recipe = write_recipe(folder, base_dir, extra=SFT, evaluate=True)
    res = run_cli("build", str(recipe), cwd=folder)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return RunLayout(folder / "runs" / "adapt-test"), res.stdout


def test_checkpoints_final_and_loss(built) -> None:
    lay, out = built
    assert [c.step for c in lay.checkpoints("adapt")] == [6, 12]
    assert (lay.adapt / "final" / "model" / "model.safetensors").is_file()
    summary = json.loads(lay.run_json("adapt").read_text("utf-8"))
    assert summary["status"] == "done" and summary["final"] == "adapt/final"
    assert summary["after"]["val_loss"] < summary["before"]["val_loss"]
    losses = [json.loads(x)["loss"] for x in lay.metrics("adapt").read_text("utf-8").splitlines() if '"loss"' in x]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    assert "pretrain" not in list(lay.training_stages())


def test_tokenizer_is_the_base_one_and_no_tokenizer_is_trained(built, base_dir) -> None:
    lay, _ = built
    ours = json.loads((lay.tokenizer / "tokenizer.json").read_text("utf-8"))
    theirs = json.loads((Path(base_dir) / "tokenizer.json").read_text("utf-8"))
    assert ours["model"]["vocab"] == theirs["model"]["vocab"] and ours["model"]["merges"] == theirs["model"]["merges"]
    manifest = json.loads((lay.tokenizer / "manifest.json").read_text("utf-8"))
    assert manifest["kind"] == "reused" and manifest["reused_from"] == "tokenizer"
    ck = lay.checkpoints("adapt")[-1].path
    assert (ck / "tokenizer" / "tokenizer.json").read_bytes() == (lay.tokenizer / "tokenizer.json").read_bytes()


def test_every_file_kind_and_japanese_reach_the_shards(built) -> None:
    from moxin.data.tokens import TokenData
    from moxin.interop.tokenizer import load_tokenizer

    lay, _ = built
    td, tok = TokenData(lay.data), load_tokenizer(lay.tokenizer)
    ids = td.doc_ids("docs", "train") + td.doc_ids("docs", "val")
    assert {i.split("/")[1].split(":")[0].split(".")[-1] for i in ids} == {"txt", "md", "jsonl", "html"}
    text = tok.decode(td.read("docs", 0, td.length("docs", "train"), "train").tolist())
    assert "吾輩は猫である" in text and "miller" in text


def test_heldout_documents_for_bits_per_byte(built) -> None:
    from moxin.build.selfdata import available_tasks

    lay, _ = built
    rows = [json.loads(x) for x in (lay.selfdata / "heldout.jsonl").read_text("utf-8").splitlines()]
    assert 0 < len(rows) <= 32 and all(0 < len(r["text"]) <= 2000 for r in rows)
    assert available_tasks(lay.selfdata)[0] == ["moxin_heldout"]
    assert not (lay.selfdata / "sft.jsonl").exists()  # an adapt build generates no SFT pairs


def test_lineage_names_the_base(built) -> None:
    from moxin.records import model_identity, read_train_state

    lay, _ = built
    state = read_train_state(lay.checkpoints("adapt")[-1].path)
    assert state.kind == "adapt" and state.lineage.lora and state.lineage.lora["rank"] == 4
    base = state.lineage.base
    assert base is not None and base.path == "base" and base.license == "Apache-2.0"
    assert base.sha256 == model_identity(lay.base)[1]
    final = read_train_state(lay.adapt / "final")
    assert final.lineage.base == base and final.lineage.merged_lora == state.lineage.lora


def test_release_verifies_and_reproduces_adapt_bitwise(built) -> None:
    lay, out = built
    mof = json.loads((lay.release / "mof.json").read_text("utf-8"))
    assert mof.get("class") is not None
    rel = json.loads((lay.release / "release.json").read_text("utf-8"))
    assert rel["final_checkpoint"]["name"] == "finetune/sft/step-00000004"  # the SFT of the adapted model
    assert "reproduce: adapt steps 6..12: bitwise identical" in " ".join(out.split())
    assert (lay.release / "adapt" / "checkpoints" / "step-00000012" / "optimizer.safetensors").is_file()


def test_sft_of_the_adapted_model(built) -> None:
    from moxin.finetune.lineage import chain

    lay, _ = built
    nodes = chain(lay.checkpoints("finetune/sft")[-1].path)
    assert [n["kind"] for n in nodes] == ["finetune", "adapt", "imported (model)"]  # back to the imported root
    assert nodes[0]["base"]["path"] == "adapt/final" and nodes[0]["base"]["verified"]
    assert nodes[1]["base"]["path"] == "base" and nodes[1]["base"]["license"] == "Apache-2.0"


def test_reproduce_stage_directly(built) -> None:
    from moxin.train.reproduce import reproduce_stage

    lay, _ = built
    res = reproduce_stage(lay.root, "adapt", 6, 12)
    assert res.bitwise_equal and res.max_abs_diff == 0.0 and sorted(res.losses) == list(range(6, 12))


def test_compare_stage_base_against_adapted(built) -> None:
    """The build's compare stage: the documents' source is the data B added, the two share the base as common
    ancestor, and the held-out bits per byte come with a paired-bootstrap interval (the eval results, reused)."""
    lay, out = built
    doc = json.loads((lay.compare / "compare.json").read_text("utf-8"))
    assert [s["name"] for s in doc["differs"]["data"]["added"]] == ["docs"]
    assert doc["differs"]["lineage"]["common_ancestor"]["name"] == "base"
    # final (the merged step 12) continued from step 6, which started from the base
    assert [(n["stage"], n["step"]) for n in doc["differs"]["lineage"]["b_path"]] == [("adapt", 6), ("adapt", 12)]
    held = next(e for e in doc["evals"] if e["task"] == "moxin_heldout")
    bpb = next(m for m in held["metrics"] if m["metric"] == "bits_per_byte")
    assert bpb["ci95"][0] <= bpb["delta"] <= bpb["ci95"][1] and bpb["b"] < bpb["a"]
    assert "data added in B: docs" in (lay.compare / "compare.md").read_text("utf-8")
    assert "compare: data added in B: docs" in out


def test_generated_own_eval_set_is_scored_and_released_with_its_licence(built) -> None:
    lay, _ = built
    items = [json.loads(x) for x in (lay.selfdata / "cloze.jsonl").read_text("utf-8").splitlines()]
    assert items and all(it["choices"][it["answer"]] not in it["question"] for it in items)
    table = (lay.eval / "table.md").read_text("utf-8")
    assert "own_cloze" in table
    sources = json.loads((lay.release / "eval" / "data" / "sources.json").read_text("utf-8"))
    own = next(s for s in sources if s["name"] == "own")
    assert own["license"] == "CC-BY-4.0" and "eval/data/own/cloze/items.jsonl" in own["files"]
