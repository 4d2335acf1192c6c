"""`moxin data --executor local|ray|slurm`: every file of `data/` is byte-identical to the in-process run; a failed
task is resumed from datatrove's completion markers; the Slurm scripts match golden files (`--dry-run`)."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from moxin.data.commands import data
from moxin.errors import ConfigError, DataError
from moxin.recipe import load_recipe

pytest.importorskip("datatrove")

GOLDEN = Path(__file__).parent / "golden"
PROSE = (
    "The ferry left the island at dawn, carrying crates of apples, two bicycles and a sleepy dog. The captain "
    "hummed an old song while the gulls followed the boat across the grey water towards the harbour. On the "
    "quay a baker was already selling bread, and the school children ran past him with their bags. "
)
MORE = ["Later it rained for an hour.", "Nobody noticed the missing crate.", "The dog found a warm corner."]


def _prose(seed: int) -> str:
    """A different shuffle of the words of PROSE per seed: documents that are not near-duplicates of each other."""
    words = PROSE.split()
    random.Random(seed).shuffle(words)
    return " ".join(words) + " "


def _recipe(root: Path, name: str) -> Path:
    """A small corpus (5 JSONL files with a broken line and a cross-file duplicate each, 3 text files with an
    e-mail address) and a recipe whose data stage reads it; `runs/<name>` is the run folder."""
    if not (root / "j").is_dir():
        (root / "j").mkdir(parents=True)
        for f in range(5):
            rows = [json.dumps({"text": _prose(f * 10 + i) + MORE[i % 3]}) for i in range(6)]
            rows.insert(2, "{broken json")
            rows.append(json.dumps({"text": _prose(1) + MORE[1]}))  # an exact duplicate of 0.1 across files
            (root / "j" / f"{f}.jsonl").write_text("\n".join(rows) + "\n")
        (root / "t").mkdir()
        for f in range(3):
            (root / "t" / f"{f}.txt").write_text(_prose(100 + f) + "Mail me at someone@mailhost.com.\n")
    path = root / f"{name}.toml"
    path.write_text(
        f'[run]\nname = "{name}"\nseed = 7\nout_dir = "{root}/runs"\n[model]\npreset = "tiny"\n'
        "[data]\nval_fraction = 0.1\nshard_tokens = 1024\nworkers = 2\n"
        '[[data.sources]]\nname = "j"\ntype = "jsonl"\nlicense = "MIT"\npath = "j"\n'
        '[[data.sources]]\nname = "t"\ntype = "text"\nlicense = "MIT"\npath = "t"\n'
        "[tokenizer]\nvocab_size = 300\nsample_bytes = 100000\n"
    )
    return path


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    root = tmp_path_factory.mktemp("corpus")
    data(load_recipe(_recipe(root, "inproc")))
    files = _files(root / "runs" / "inproc" / "data")
    assert {"manifest.json", "data_card.md", "rejects.jsonl", "tokens.json", "processed/j.jsonl"} <= set(files)
    return root, files


def _assert_same(ref: dict[str, bytes], run: Path) -> None:
    got = _files(run / "data")
    assert sorted(got) == sorted(ref)
    for name, content in ref.items():
        assert got[name] == content, f"{name} differs from the in-process run"
    assert not (run / ".scale").exists(), "the work folder is removed once data/ is written"


def test_local_executor_two_workers_is_byte_identical(reference):
    root, ref = reference
    data(load_recipe(_recipe(root, "local")), executor="local", tasks=3, workers=2)
    _assert_same(ref, root / "runs" / "local")


def test_failed_task_resumes_from_completion_markers(reference, monkeypatch):
    from moxin.data import scale

    root, _ = reference
    data(load_recipe(_recipe(root, "inproc1")), workers=1)  # data.workers is recorded in the manifest's config
    ref = _files(root / "runs" / "inproc1" / "data")
    run = root / "runs" / "killed"
    real = scale.AnalyzeShard._events

    def failing(self, rank, world_size):
        if rank == 1:
            raise OSError("simulated node loss")
        yield from real(self, rank, world_size)

    monkeypatch.setattr(scale.AnalyzeShard, "_events", failing)
    with pytest.raises(DataError, match=r"1 of 2 datatrove task\(s\) did not finish \(ranks \[1\].*resume"):
        data(load_recipe(_recipe(root, "killed")), executor="local", tasks=2, workers=1)
    (work,) = (run / ".scale").iterdir()
    assert sorted(p.name for p in (work / "logs" / "completions").iterdir()) == ["00000"]
    assert (work / "analyzed" / "00000.jsonl").is_file() and not (work / "analyzed" / "00001.jsonl").exists()
    assert not (run / "data").exists()
    monkeypatch.setattr(scale.AnalyzeShard, "_events", real)
    calls = []
    monkeypatch.setattr(scale.AnalyzeShard, "run", _counting(scale.AnalyzeShard.run, calls))
    data(load_recipe(_recipe(root, "killed")), executor="local", tasks=2, workers=1)
    assert calls == [1], "only the failed task runs again; rank 0's shard is reused"
    _assert_same(ref, run)


def _counting(fn, calls):
    def run(self, data=None, rank=0, world_size=1):
        calls.append(rank)
        return fn(self, data, rank, world_size)

    return run


def test_ray_four_tasks_is_byte_identical(reference):
    pytest.importorskip("ray")
    root, ref = reference
    data(load_recipe(_recipe(root, "ray")), executor="ray", tasks=4, workers=2)
    _assert_same(ref, root / "runs" / "ray")


def _normalise(text: str, root: Path) -> str:
    text = text.replace(str(root), "<ROOT>")
    return re.sub(r"\.scale/[0-9a-f]{16}-", ".scale/<FP>-", text)


def test_slurm_dry_run_prints_golden_sbatch_scripts(reference, capsys):
    root, _ = reference
    recipe = load_recipe(_recipe(root, "slurm"), ["data.slurm.partition=cpu-long", "data.slurm.time='12:00:00'"])
    data(recipe, dry_run=True, executor="slurm", tasks=512)
    out = _normalise(capsys.readouterr().out, root)
    scripts = out[out.index("# sbatch job 1") :]
    assert scripts == (GOLDEN / "slurm_data.sh").read_text()  # reviewed by hand: partition, time, array 0-511
    assert "executor: datatrove slurm, 512 task(s)" in out
    assert not (root / "runs" / "slurm" / "data").exists(), "a dry run submits and writes no data"


def test_bad_executor_settings_name_the_key(reference):
    root, _ = reference
    with pytest.raises(ConfigError, match=r"data\.tasks in the command line.* is 0; use >= 1"):
        data(load_recipe(_recipe(root, "bad")), executor="local", tasks=0)
    with pytest.raises(ConfigError, match=r"data\.slurm in .* got \{'time': '4h'\}"):
        load_recipe(_recipe(root, "bad"), ["data.slurm.time=4h"])
