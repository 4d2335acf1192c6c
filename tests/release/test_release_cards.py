"""The model card renders with its plots and states only numbers found in the release's own files; the data card
carries the sources' licences; a release of the same run is byte-identical."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from moxin.release.cards import num

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

NUMBER = re.compile(r"(?<![\w.\-/])-?\d+(?:\.\d+)?(?:e[-+]\d+)?(?![\w/])")


def _numbers_in(obj, out: set[str]) -> None:
    """Every number (and every number inside a string) of a JSON/TOML value, formatted as the cards format them."""
    if isinstance(obj, bool) or obj is None:
        return
    if isinstance(obj, (int, float)):
        out.add(num(obj))
    elif isinstance(obj, str):
        for m in NUMBER.finditer(obj):
            out.add(m.group(0))
    elif isinstance(obj, dict):
        for v in obj.values():
            _numbers_in(v, out)
    elif isinstance(obj, list):
        for v in obj:
            _numbers_in(v, out)


def _release_numbers(root: Path) -> set[str]:
    out: set[str] = set()
    for p in root.rglob("*"):
        if p.suffix == ".json":
            _numbers_in(json.loads(p.read_text("utf-8")), out)
        elif p.suffix == ".jsonl":
            for line in p.read_text("utf-8").splitlines():
                _numbers_in(json.loads(line), out)
        elif p.suffix == ".toml":
            _numbers_in(tomllib.loads(p.read_text("utf-8")), out)
    return out


def _stated_numbers(card: str) -> list[str]:
    text = re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.DOTALL)  # front matter (licence id)
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)  # code blocks: commands and quoted sample outputs
    text = re.sub(r"`[^`]*`", "", text)  # identifiers: paths, hashes, dates, licence ids
    text = re.sub(r"\]\([^)]*\)", "]", text)  # link and image targets
    return NUMBER.findall(text)


def test_model_card_states_only_numbers_from_the_release_files(built_release):
    card = (built_release / "README.md").read_text("utf-8")
    stated = _stated_numbers(card)
    known = _release_numbers(built_release)
    missing = sorted(set(stated) - known)
    assert missing == [], f"numbers in README.md not found in any result file: {missing}"
    # It does state the figures that matter, taken from the files.
    rel = json.loads((built_release / "release.json").read_text())
    assert num(rel["parameters"]) in stated
    results = [json.loads(p.read_text()) for p in (built_release / "eval" / "results").glob("*.json")]
    assert len(results) == 4
    for doc in results:
        for value in doc["metrics"].values():
            assert num(value) in stated
    last = json.loads((built_release / "pretrain" / "metrics.jsonl").read_text().splitlines()[-1])
    assert num(last["loss"]) in stated
    for heading in ("## Architecture", "## Training data", "## Training", "## Evaluation", "## Bias",
                    "## Openness and licences", "## Limitations", "## How to reproduce", "## Sample outputs"):
        assert heading in card


def test_the_cross_check_catches_an_invented_number(built_release):
    card = (built_release / "README.md").read_text("utf-8") + "\nThe model reaches 97.1234 accuracy.\n"
    assert "97.1234" in set(_stated_numbers(card)) - _release_numbers(built_release)


def test_model_card_plots_exist_and_are_png(built_release):
    card = (built_release / "README.md").read_text("utf-8")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert "plots/loss.png" in images and "plots/eval.png" in images
    for rel in images:
        data = (built_release / rel).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000, rel


def test_data_card_and_licence_files(built_release):
    card = (built_release / "DATA_CARD.md").read_text("utf-8")
    assert "| gutenberg | `LicenseRef-Public-Domain` | open |" in card
    assert "| python_docs | `PSF-2.0` | warning |" in card
    assert "| finetune/sft:rasbt_instruction_data | `Apache-2.0` | warning |" in card
    assert "| arc | arc_easy | `CC-BY-SA-4.0` | open |" in card
    for spdx in ("Apache-2.0", "CC-BY-4.0", "PSF-2.0", "LicenseRef-Public-Domain", "CC-BY-SA-4.0"):
        assert (built_release / "LICENSES" / f"{spdx}.txt").is_file(), spdx
    report = (built_release / "TECHNICAL_REPORT.md").read_text("utf-8")
    assert "## Recipe" in report and "## Environment" in report


def test_release_contents(built_release):
    rel = json.loads((built_release / "release.json").read_text())
    assert rel["final_checkpoint"]["name"] == "finetune/sft/step-00000002"
    assert rel["code"]["git_commit"] is None or len(rel["code"]["git_commit"]) == 40
    assert "git_dirty" in rel["code"]
    for p in ("hf/config.json", "hf/model.safetensors", "hf/tokenizer.json", "tokenizer/tokenizer.json",
              "code/src/moxin/release/mof.py", "code/requirements.txt", "config/recipe.toml",
              "samples/outputs.jsonl", "paper/moxin-method.md"):
        assert (built_release / p).is_file(), p
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(built_release / "hf").model_type == "mistral"


def test_same_run_gives_the_same_release_bytes(tiny_run, built_release, tmp_path):
    """Everything but the code snapshot (others edit the source tree while tests run: its files and the commit the
    cards name may move between two builds) is byte-identical."""
    from moxin.release.bundle import build_release

    build_release(tiny_run, tmp_path / "again", progress=False, eval_data_dir=SHARED)
    code_bound = ("code/", "README.md", "TECHNICAL_REPORT.md", "release.json")

    def sums(root: Path) -> set[str]:
        return {line for line in (root / "SHA256SUMS").read_text().splitlines()
                if not line.split("  ", 1)[1].startswith(code_bound)}

    differ = sorted(sums(built_release) ^ sums(tmp_path / "again"))
    assert differ == [], differ[:6]
    a, b = (json.loads((r / "release.json").read_text()) for r in (built_release, tmp_path / "again"))
    assert {k: v for k, v in a.items() if k != "code"} == {k: v for k, v in b.items() if k != "code"}


def test_hf_export_in_the_release_gives_the_final_models_logits(built_release):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from moxin.interop import load_model

    ids = AutoTokenizer.from_pretrained(built_release / "hf")("Once upon a time", return_tensors="pt").input_ids
    hf = AutoModelForCausalLM.from_pretrained(built_release / "hf").eval()
    ours = load_model(built_release / "model").eval()
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, ours(ids), rtol=1e-5, atol=1e-5)
