"""What `moxin build` fingerprints as a stage's inputs, and that it hands each stage the inputs its command uses."""

from pathlib import Path

from moxin.build.run import BuildContext, finetune_stage, plan_names
from moxin.layout import RunLayout
from moxin.provenance import atomic_write_json
from moxin.recipe import load_recipe
from moxin.stage import recipe_at


def _recipe(tmp_path, *sets):
    return load_recipe("tiny", ["finetune.sft.name=\"mysft\"", f"run.out_dir=\"{tmp_path}\"",
                                'finetune.dpo.data=[{path="{run}/prefs.jsonl", license="CC0-1.0"}]', *sets])


def test_dpo_inputs_follow_a_custom_named_sft_output(tmp_path):
    recipe = _recipe(tmp_path)
    layout = RunLayout.from_recipe(recipe)
    ctx = BuildContext(recipe, layout, log=lambda m: None)
    assert plan_names(recipe)[3:5] == ["finetune-sft", "finetune-dpo"]
    dpo = finetune_stage(ctx, "dpo")
    sft_json = layout.finetune("mysft") / "run.json"
    atomic_write_json(sft_json, {"status": "done", "steps": 60})
    before = dpo.inputs()
    atomic_write_json(sft_json, {"status": "done", "steps": 61})  # the custom-named SFT stage's output changed
    after = dpo.inputs()
    assert after != before and after["before"] != before["before"]
    assert finetune_stage(ctx, "sft").outputs == [sft_json]
    atomic_write_json(layout.finetune("sft") / "run.json", {"unrelated": True})  # the mode's own name is not read
    assert dpo.inputs() == after


def test_recipe_at_points_stage_internals_at_the_layout_without_touching_the_recipe(tmp_path):
    recipe = _recipe(tmp_path)
    elsewhere = RunLayout(tmp_path / "other" / "built")
    view = recipe_at(recipe, elsewhere)
    assert RunLayout.from_recipe(view).root == elsewhere.root
    assert recipe.run.out_dir == str(tmp_path) and recipe.run.name == "tiny"
    assert view.source_path == recipe.source_path and view.resolve_path("x") == recipe.resolve_path("x")


def test_data_stage_resolves_a_reused_tokenizer_against_the_recipe_in_build_and_command(tmp_path):
    from moxin.data.commands import stage_configs

    rec = tmp_path / "r.toml"
    rec.write_text((Path(load_recipe("tiny", []).source_path)).read_text("utf-8"))
    recipe = load_recipe(str(rec), ["tokenizer.path=\"tok\""])
    _, tok = stage_configs(recipe.data, recipe.tokenizer, recipe.resolve_path)
    assert Path(tok.path) == tmp_path / "tok"
