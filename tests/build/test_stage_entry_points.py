"""The stage entry points that `moxin X` and `moxin build` share: what they hand the stage internals and what
they return when training stops early (no KeyboardInterrupt, a `failed` result naming the step)."""

from pathlib import Path

import pytest

from moxin.errors import EvalError
from moxin.layout import RunLayout
from moxin.recipe import load_recipe


def _fake_checkpoint(layout: RunLayout, stage: str, step: int) -> None:
    layout.checkpoint(stage, step).mkdir(parents=True)


def test_run_pretrain_reports_an_interrupted_run_as_failed_with_its_step(tmp_path, monkeypatch):
    from moxin.train import pretrain
    from moxin.train.commands import run_pretrain

    recipe = load_recipe("tiny", [f'run.out_dir="{tmp_path / "elsewhere"}"'])
    layout = RunLayout(tmp_path / "built" / "tiny")
    seen = []

    def fake_run(rec, **kw):
        seen.append(pretrain.paths(rec).run)
        _fake_checkpoint(layout, "pretrain", 10)
        _fake_checkpoint(layout, "pretrain", 13)
        return "interrupted"

    monkeypatch.setattr(pretrain, "run", fake_run)
    res = run_pretrain(recipe, layout)
    assert seen == [layout.root]  # the stage trains in the layout's folder, not the recipe's out_dir
    assert res.status == "failed" and res.reason == "interrupted at step 13; run again to resume"
    assert recipe.run.out_dir == str(tmp_path / "elsewhere")  # the caller's recipe is untouched
    monkeypatch.setattr(pretrain, "run", lambda rec, **kw: "done")
    assert run_pretrain(recipe, layout).status == "done"


def test_run_finetune_uses_the_custom_folder_name(tmp_path, monkeypatch):
    from moxin.finetune import run as ft
    from moxin.finetune.commands import run_finetune

    recipe = load_recipe("tiny", ['finetune.sft.name="chat"'])
    layout = RunLayout(tmp_path / "tiny")
    monkeypatch.setattr(ft, "run", lambda rec, mode, **kw: _fake_checkpoint(layout, "finetune/chat", 30) or
                        {"status": "interrupted"})
    res = run_finetune(recipe, layout, "sft")
    assert res.stage == "finetune-sft" and res.reason == "interrupted at step 30; run again to resume"
    assert res.outputs[0] == layout.root / "finetune" / "chat" / "run.json"


def test_eval_settings_one_path_for_build_and_command(tmp_path, monkeypatch, shared_data):
    from moxin.eval.commands import eval_settings

    monkeypatch.delenv("MOXIN_EVAL_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = load_recipe("tiny", ["eval.limit=3"])
    s, notes = eval_settings(recipe.eval, recipe.resolve_path, ["moxin_heldout"], [tmp_path])
    assert s.tasks == ["moxin_heldout"] and s.limit == 3 and s.include_path == [tmp_path]
    assert len(notes) == 1 and "standard benchmarks (moxin-zeroshot, perplexity, bias) skipped" in notes[0]
    with pytest.raises(EvalError, match="--data-dir"):
        eval_settings(recipe.eval, recipe.resolve_path)  # nothing to run offline: an error, not an empty eval
    rec = tmp_path / "r.toml"
    rec.write_text(Path(recipe.source_path).read_text("utf-8"))
    (tmp_path / "evaldata").symlink_to(shared_data)
    recipe = load_recipe(str(rec), ['eval.data_dir="evaldata"'])  # relative to the recipe file
    s, notes = eval_settings(recipe.eval, recipe.resolve_path, ["moxin_heldout"])
    assert s.data_dir == shared_data.resolve() and s.tasks[0] == "moxin_heldout" and len(s.tasks) > 1 and not notes


def test_run_data_done_then_skipped_then_forced(tmp_path):
    from moxin.data.commands import run_data

    (tmp_path / "docs.jsonl").write_text("".join(f'{{"text": "Document {i}: the heron landed in the pond behind '
                                                 f'the house, and the swallows came back in spring {i}."}}\n'
                                                 for i in range(20)))
    rec = tmp_path / "r.toml"
    rec.write_text('[run]\nname = "t"\n[data]\nworkers = 1\ndedup_fuzzy = false\n[[data.sources]]\nname = "notes"\n'
                   'type = "jsonl"\nlicense = "CC0-1.0"\npath = "docs.jsonl"\nquality = false\n'
                   '[tokenizer]\nvocab_size = 300\n')
    recipe = load_recipe(str(rec), [])
    layout, lines = RunLayout(tmp_path / "built" / "t"), []

    def go(force=False):
        return run_data(recipe.data, recipe.tokenizer, layout, recipe.run.seed, recipe.resolve_path, force=force,
                        progress=False, log=lines.append)

    first = go()
    assert first.status == "done" and (layout.data / "tokens.json").is_file() and "20 documents kept" in lines[0]
    again = go()
    assert again.status == "skipped" and again.reason == "inputs unchanged since data/manifest.json"
    assert go(force=True).status == "done" and len(lines) == 2
