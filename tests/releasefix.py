"""A tiny run folder in the exact layout of docs/CONTRACTS.md (data, tokenizer, pretrain with two checkpoints, an
SFT stage, eval results), synthesised here so the release can be tested while the real stages are built; and a
release of it, built once per session (tests copy it before changing anything). A plain module: tests/conftest.py
registers its fixtures once for every folder (tests/release and tests/report share one build)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"

TEXT = (
    "The quick brown fox jumps over the lazy dog. A model is only as open as the data it was trained on. "
    "def add(a, b): return a + b. 日本の首都は東京です。 Once upon a time there was a tiny language model. "
) * 20

SOURCES = [  # name, licence, documents
    ("gutenberg", "LicenseRef-Public-Domain", 24),
    ("python_docs", "PSF-2.0", 16),
]


def _tokenizer(folder: Path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512, special_tokens=["<|endoftext|>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator([TEXT], trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>")
    fast.save_pretrained(folder)
    return fast


def _data(folder: Path, tok) -> str:
    from moxin.data.tokens import TokenWriter
    from moxin.provenance import write_manifest

    w = TokenWriter(folder, vocab_size=512, eos_id=tok.eos_token_id, shard_tokens=4096)
    counts: dict[str, dict[str, dict[str, int]]] = {}
    words = TEXT.split()
    for name, _lic, n in SOURCES:
        c = counts.setdefault(name, {"docs": {"train": 0, "val": 0}, "tokens": {"train": 0, "val": 0}})
        for i in range(n):
            ids = tok.encode(" ".join(words[i * 7 : (i + 1) * 7 + 30]))
            split = "val" if i % 8 == 7 else "train"
            w.add(name, split, f"{name}:{i}", ids)
            c["docs"][split] += 1
            c["tokens"][split] += len(ids) + 1
    w.close()
    # The data stage's manifest layout (moxin.data.card.build_manifest), reduced to what a release reads.
    write_manifest(
        folder,
        {
            "stage": "data",
            "format": 1,
            "sources": [
                {
                    "name": name,
                    "type": "jsonl",
                    "license": lic,
                    "path": f"../shared/data/{name}",
                    "docs_in": n,
                    "docs_kept": n,
                    **counts[name],
                }
                for name, lic, n in SOURCES
            ],
        },
    )
    from moxin.provenance import sha256_file

    return sha256_file(folder / "tokens.json")


def _checkpoint(path: Path, model, opt, step: int, stage: str, fingerprint: str, tok_dir: Path, lineage: dict) -> None:
    """A fine-tuning checkpoint written the way the trainer writes one (moxin.train.checkpoint.save_checkpoint)."""
    from moxin.train.checkpoint import save_checkpoint

    state = {
        "step": step,
        "kind": "finetune",
        "mode": stage.split("/")[-1],
        "phase": stage,
        "tokens_seen": step * 2 * 16,
        "seed": 99,
        "data": {"fingerprint": fingerprint, "position": {"next_step": step}},
        "config": {"lr": 0.01},
        "lineage": lineage,
    }
    assert save_checkpoint(path.parent, step, model, opt, model.cfg, state, tok_dir) == path


def _train(model, opt, steps: int, seed: int) -> list[float]:
    import torch

    g = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        x = torch.randint(0, 512, (2, 17), generator=g)
        logits = model(x[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 512), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


RECIPE = """
[run]
name = "tiny"
seed = 1234
out_dir = "{out}"

[model]
preset = "tiny"

[pretrain]
global_batch = 4
micro_batch = 2
lr = 3e-3
eval_batches = 1
log_every = 1

[pretrain.checkpoint]
every = 2
keep_last = 100

[[pretrain.phases]]
name = "base"
seq_len = 32
steps = 6
warmup_steps = 1
schedule = "wsd"
mixture = {{gutenberg = 0.6, python_docs = 0.4}}

[release]
producer = "moxin tests"
sample_max_new_tokens = 6
"""


def _pretrain(root: Path, run: Path) -> None:
    """The real trainer (moxin.train.pretrain) on the synthesised data: checkpoints at steps 2, 4, 6."""
    import torch

    from moxin.recipe import load_recipe
    from moxin.train.pretrain import run as pretrain

    (run / "recipe.toml").write_text(RECIPE.format(out=root), "utf-8")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reproduce test re-runs with the same thread count, for bitwise equality
    try:
        assert pretrain(load_recipe(run / "recipe.toml"), progress=False) == "done"
    finally:
        torch.set_num_threads(threads)


def _sft(run: Path, fp: str) -> Path:
    """An SFT stage in the checkpoint layout, continuing from the last pretrain checkpoint (lineage by hash)."""
    import torch

    from moxin.interop import load_model
    from moxin.provenance import sha256_file

    base = sorted((run / "pretrain" / "checkpoints").glob("step-*"))[-1]
    model = load_model(base)
    opt = torch.optim.AdamW(model.parameters(), lr=0.005)
    sft = [{"step": i + 1, "loss": loss} for i, loss in enumerate(_train(model, opt, 2, seed=99))]
    path = run / "finetune" / "sft" / "checkpoints" / "step-00000002"
    # moxin.finetune's lineage: the base checkpoint by hash, and the fine-tuning data sets with their licences.
    lineage = {
        "base": {
            "kind": "checkpoint",
            "path": base.relative_to(run).as_posix(),
            "sha256": sha256_file(base / "manifest.json"),
        },
        "data": {
            "manifest": "finetune/sft/data/manifest.json",
            "sha256": None,
            "datasets": [
                {
                    "name": "rasbt_instruction_data",
                    "license": "Apache-2.0",
                    "path": "../shared/data/rasbt_instruction_data",
                    "sha256": None,
                    "kept": 1100,
                }
            ],
        },
    }
    _checkpoint(path, model, opt, 2, "finetune/sft", fp, run / "tokenizer", lineage)
    (run / "finetune" / "sft" / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in sft))
    return path


def make_run(root: Path, eval_data: Path | None) -> Path:
    from moxin.provenance import sha256_file

    run = root / "tiny"
    tok = _tokenizer(run / "tokenizer")
    fp = _data(run / "data", tok)
    _pretrain(root, run)
    sft_path = _sft(run, fp)
    last = sorted((run / "pretrain" / "checkpoints").glob("step-*"))[-1]
    # moxin.eval's result files: one task per file, named <checkpoint sha>-<task config hash>.json.
    for path, stage, acc, stereo in ((last, "pretrain", 0.2632, 0.5523), (sft_path, "finetune/sft", 0.2807, 0.5461)):
        sha = sha256_file(path / "manifest.json")
        step = int(path.name.split("-")[1])
        model = {
            "path": path.relative_to(run).as_posix(),
            "sha256": sha,
            "kind": "checkpoint",
            "step": step,
            "stage": stage,
        }
        for task, metrics, files in (
            ("arc_easy", {"acc": acc, "acc_norm": acc + 0.01}, ["arc/ARC-Easy-Dev.jsonl"]),
            ("crows_pairs_english", {"pct_stereotype": stereo}, []),
        ):
            data_files = {rel: sha256_file(eval_data / rel) for rel in files} if eval_data else {}
            doc = {
                "result_version": 1,
                "task": task,
                "model": model,
                "metrics": metrics,
                "stderr": dict.fromkeys(metrics, 0.0123),
                "task_config": {"task": task, "data_files": data_files},
            }
            (run / "eval" / "results").mkdir(parents=True, exist_ok=True)
            (run / "eval" / "results" / f"{sha}-{task[:8]}.json").write_text(json.dumps(doc, indent=2))
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, shared_data) -> Path:
    return make_run(tmp_path_factory.mktemp("run"), shared_data)


@pytest.fixture(scope="session")
def built_release(tiny_run, tmp_path_factory) -> Path:
    from moxin.release.bundle import build_release

    out = tmp_path_factory.mktemp("rel") / "release"
    build_release(tiny_run, out, progress=False, eval_data_dir=SHARED)
    return out


@pytest.fixture
def release_copy(built_release, tmp_path) -> Path:
    dst = tmp_path / "release"
    shutil.copytree(built_release, dst)
    return dst
