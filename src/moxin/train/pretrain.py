"""`moxin pretrain`: phases + mixture sampler + LM task on the shared Trainer, and the tools that re-read a run
(`show_batch`, `reproduce`)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from moxin.config import to_dict
from moxin.data.tokens import TokenData
from moxin.errors import CheckpointError, ConfigError
from moxin.layout import RunLayout
from moxin.model.config import ModelConfig, flops_per_token, num_params
from moxin.parallel import Dist, init_distributed, parallelize
from moxin.provenance import atomic_write_json, code_version, environment
from moxin.recipe import Recipe
from moxin.records import write_stage_manifest
from moxin.train import checkpoint as ckpt
from moxin.train.callbacks import default_callbacks
from moxin.train.config import PretrainConfig
from moxin.train.evaluate import Samples, mean_loss
from moxin.train.sampler import MixtureSampler
from moxin.train.schedule import PhaseSpan, layout, lr_at, phase_at
from moxin.train.tasks import LMTask
from moxin.train.trainer import Checkpointing, Plan, Trainer


@dataclass
class Paths:
    run: Path  # <out_dir>/<name>
    pretrain: Path  # run/pretrain
    data: Path
    tokenizer: Path | None

    @property
    def checkpoints(self) -> Path:
        return self.pretrain / "checkpoints"


def paths(recipe: Recipe) -> Paths:
    cfg: PretrainConfig = recipe.pretrain
    run = RunLayout.from_recipe(recipe)
    data = recipe.resolve_path(cfg.data_dir) if cfg.data_dir else run.data
    tok = recipe.resolve_path(cfg.tokenizer_dir) if cfg.tokenizer_dir else run.tokenizer
    return Paths(run.root, run.pretrain, data, tok if tok.is_dir() else None)


def recorded_data_dir(info: dict[str, Any], homes: list[Path]) -> Path:
    """The data folder a run.json / train state "config" names: run-relative (tried against each of `homes`, the
    run folder first), or absolute in records written before paths were relative."""
    rec = Path(str(info.get("data_dir") or ""))
    if rec.is_absolute():
        return rec
    for home in homes:
        if (home / rec / "tokens.json").is_file():
            return home / rec
    raise CheckpointError(
        f"the run's data folder {str(rec)!r} (data_dir, relative to the run folder) is not under "
        f"{', '.join(str(h) for h in homes) or 'a run folder'}; pass --data-dir with the tokenized "
        f"data the run trained on"
    )


def model_config(
    cfg: ModelConfig, data: TokenData, spans: list[PhaseSpan], log: Callable[[str], None], where: str
) -> ModelConfig:
    """The recipe's model, with its vocabulary widened to the data's tokenizer when that is larger."""
    if data.vocab_size > cfg.vocab_size:
        log(f"model.vocab_size {cfg.vocab_size} < the data's vocabulary {data.vocab_size}: using {data.vocab_size}")
        cfg = dataclasses.replace(cfg, vocab_size=data.vocab_size)
    longest = max(s.cfg.seq_len for s in spans)
    if longest > cfg.max_seq_len:
        raise ConfigError(
            f"pretrain phase seq_len {longest} exceeds model.max_seq_len={cfg.max_seq_len} in "
            f"{where}; raise model.max_seq_len or lower the phase's seq_len"
        )
    return cfg


class Setup:
    """Everything a pretraining run (or a re-run of part of it) is built from: config, data, phases, sampler."""

    def __init__(
        self,
        cfg: PretrainConfig,
        model_cfg: ModelConfig,
        seed: int,
        data_dir: Path,
        run_dir: Path,
        tokenizer_dir: Path | None = None,
        log: Callable[[str], None] = lambda m: None,
        where: str = "the recipe",
    ) -> None:
        self.cfg, self.seed, self.run_dir, self.tokenizer_dir = cfg, seed, Path(run_dir), tokenizer_dir
        self.data = TokenData(data_dir)
        self.spans = layout(cfg.phases, cfg.global_batch, cfg.lr)
        self.sampler = MixtureSampler(self.data, self.spans, seed)
        self.model_cfg = model_config(model_cfg, self.data, self.spans, log, where)

    @classmethod
    def from_recipe(cls, recipe: Recipe, log: Callable[[str], None] = lambda m: None) -> Setup:
        p = paths(recipe)
        return cls(
            recipe.pretrain,
            recipe.model,
            recipe.run.seed,
            p.data,
            p.pretrain,
            p.tokenizer,
            log,
            str(recipe.source_path),
        )

    @classmethod
    def from_info(cls, info: dict[str, Any], run_dir: Path, data_dir: Path | None = None) -> Setup:
        """Rebuild from a run.json / train_state.json "config" (what `reproduce` and `show-batch` use)."""
        from moxin.config import from_dict
        from moxin.model.config import from_json_dict

        where = f"{run_dir}/run.json"
        cfg = from_dict(PretrainConfig, info["pretrain"], where, "pretrain.")
        data_dir = data_dir or recorded_data_dir(info, [Path(run_dir), Path(run_dir).parent])
        return cls(cfg, from_json_dict(info["model"], where), info["seed"], data_dir, run_dir, None, where=where)

    @property
    def total_steps(self) -> int:
        return self.spans[-1].end

    def plan(self) -> Plan:
        spans, mc = self.spans, self.model_cfg
        return Plan(
            total_steps=self.total_steps,
            lr=lambda s: lr_at(phase_at(spans, s), s),
            phase=lambda s: phase_at(spans, s).cfg.name,
            forced_saves={s.end for s in spans},
            flops_per_unit=lambda s: float(flops_per_token(mc, phase_at(spans, s).cfg.seq_len)),
            tokens_per_step=lambda s: phase_at(spans, s).tokens_per_step,
        )

    def describe(self) -> list[str]:
        lines = [
            f"data: {self.data.folder} (fingerprint {self.data.fingerprint[:12]}…, vocab {self.data.vocab_size})",
            f"model: {num_params(self.model_cfg):,} parameters; {self.total_steps} steps in {len(self.spans)} phase(s)",
        ]
        for s in self.spans:
            mix = ", ".join(f"{k} {v:.2f}" for k, v in self.sampler.effective_mixture(s.index).items())
            lines.append(
                f"phase {s.cfg.name}: steps {s.start}..{s.end - 1}, seq {s.cfg.seq_len}, batch "
                f"{s.global_batch}, {s.steps * s.tokens_per_step:,} tokens, LR {s.peak_lr:g} "
                f"({s.cfg.schedule}, warmup {s.cfg.warmup_steps}), mixture: {mix}"
            )
        return lines

    def data_record(self) -> str:
        """The data folder as records name it: relative to the run folder (the parent of `run_dir`, the pretrain
        folder), else as written in the recipe (pretrain.data_dir), never as an absolute path."""
        home = RunLayout(self.run_dir.parent)
        rel = home.rel(self.data.folder)
        inside = (home.root / rel).resolve() == Path(self.data.folder).resolve()
        return rel if inside else (self.cfg.data_dir or Path(self.data.folder).name)

    def run_info(self) -> dict[str, Any]:
        return {
            "data_dir": self.data_record(),
            "data_fingerprint": self.data.fingerprint,
            "seed": self.seed,
            "pretrain": to_dict(self.cfg),
            "model": dataclasses.asdict(self.model_cfg),
            "phases": [
                {
                    "name": s.cfg.name,
                    "start": s.start,
                    "steps": s.steps,
                    "seq_len": s.cfg.seq_len,
                    "global_batch": s.global_batch,
                    "mixture": self.sampler.effective_mixture(s.index),
                }
                for s in self.spans
            ],
        }

    def build_model(self, dist: Dist) -> torch.nn.Module:
        from moxin.model.transformer import build

        cfg = self.cfg
        model = build(self.model_cfg, seed=self.seed, device=dist.device)
        return parallelize(model, dist, cfg.parallel, cfg.activation_checkpointing, cfg.compile, cfg.fsdp_bf16_params)

    def evaluator(self) -> Callable[[torch.nn.Module, int], dict[str, float]] | None:
        """Mean cross-entropy on fixed val windows of the current phase's sources (identical on every rank)."""
        n = self.cfg.eval_batches * self.cfg.micro_batch
        if n == 0:
            return None
        task, data, spans, cfg = LMTask(), self.data, self.spans, self.cfg

        def evaluate(model: torch.nn.Module, step: int) -> dict[str, float]:
            span = phase_at(spans, max(step - 1, 0))
            L = span.cfg.seq_len
            rows = []
            for s in self.sampler.plans[span.index]["quotas"]:
                if "val" in data.splits(s):
                    k = min(n, (data.length(s, "val") - 1) // L)
                    rows += [data.read(s, i * L, L + 1, "val") for i in range(k)]
            if not rows:
                return {}
            held_out = Samples(rows, lambda r: torch.from_numpy(np.stack(r)))
            return {"val_loss": mean_loss(model, task, held_out, cfg.micro_batch, cfg.precision)["loss"]}

        return evaluate

    def trainer(
        self,
        model: torch.nn.Module,
        dist: Dist,
        log: Callable[[str], None],
        progress: bool = True,
        run_dir: Path | None = None,
        evaluate: bool = True,
    ) -> Trainer:
        """The loop with pretraining's callbacks (evaluation only when `evaluate` and eval_batches > 0)."""
        run_dir = Path(run_dir or self.run_dir)
        plan = self.plan()
        checkpointing = Checkpointing(
            run_dir / "checkpoints",
            self.model_cfg,
            self.seed,
            self.tokenizer_dir,
            state={"config": self.run_info(), "kind": "pretrain"},
        )
        callbacks = default_callbacks(run_dir, self.cfg, plan, self.evaluator() if evaluate else None, progress)
        return Trainer(
            model, LMTask(self.cfg.z_loss), self.sampler, self.cfg, plan, checkpointing, callbacks, dist=dist, log=log
        )


def choose_checkpoint(root: Path, resume: str) -> Path | None:
    """--resume: 'auto' (the latest checkpoint, if any), 'none' (a fresh run), or a checkpoint path."""
    found = ckpt.list_checkpoints(root)
    if resume == "auto":
        return found[-1][1] if found else None
    if resume == "none":
        if found:
            raise ConfigError(
                f"{root} already holds checkpoints (last: {found[-1][1].name}); pass --resume auto to "
                f"continue, or set run.name to start a new run"
            )
        return None
    path = Path(resume)
    if not path.is_dir():
        raise CheckpointError(f"--resume {resume}: no such checkpoint folder; use auto, none or a step-XXXXXXXX path")
    return path


def run(
    recipe: Recipe,
    resume: str = "auto",
    allow_data_change: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = lambda m: None,
) -> str:
    """Pretrain per the recipe (single process or one rank of torchrun). Returns 'done' or 'interrupted'."""
    dist = init_distributed()
    log = log if dist.is_main else (lambda m: None)
    setup = Setup.from_recipe(recipe, log)
    start = choose_checkpoint(setup.run_dir / "checkpoints", resume)
    model = setup.build_model(dist)
    trainer = setup.trainer(model, dist, log, progress)
    if start is not None:
        trainer.resume(start, allow_data_change)
    home = RunLayout(setup.run_dir.parent)
    if dist.is_main:
        atomic_write_json(
            setup.run_dir / "run.json",
            {
                **setup.run_info(),
                "world_size": dist.world,
                "code": code_version(),
                "environment": environment(),
                "resumed_from": home.rel(start) if start else None,
            },
        )
        for line in setup.describe():
            log(line)
    status = trainer.fit()
    if dist.is_main:  # the stage's own files; each checkpoint has its own manifest
        write_stage_manifest(setup.run_dir, "pretrain", {"status": status}, include=("run.json", "metrics.jsonl"))
    return status


def show_batch(run_dir: Path, step: int, data_dir: Path | None = None) -> list[str]:
    """The documents (source, doc id, token span) that every sample of global step `step` was cut from."""
    info = _run_info(run_dir)
    setup = Setup.from_info(info, Path(run_dir), data_dir)
    if setup.data.fingerprint != info["data_fingerprint"]:
        raise CheckpointError(
            f"the data in {setup.data.folder} changed since the run (fingerprint "
            f"{info['data_fingerprint'][:12]}… → {setup.data.fingerprint[:12]}…); show-batch "
            f"needs the original data"
        )
    if not 0 <= step < setup.total_steps:
        raise ConfigError(f"--step {step} is outside the run's steps 0..{setup.total_steps - 1}")
    lines = [
        f"step {step} (phase {phase_at(setup.spans, step).cfg.name}); data fingerprint {setup.data.fingerprint[:12]}…"
    ]
    for i, (sample, docs) in enumerate(setup.sampler.documents(step)):
        lines.append(
            f"sample {i}: {sample.source}/{sample.split} tokens [{sample.offset}, {sample.offset + sample.length})"
        )
        for d in docs:
            lo, hi = max(d.start, sample.offset), min(d.end, sample.offset + sample.length)
            lines.append(f"    {d.doc_id}  doc tokens [{lo - d.start}, {hi - d.start}) of {d.length}")
    return lines


def _run_info(folder: Path) -> dict[str, Any]:
    """run.json of a pretrain folder, or of a run folder's pretrain stage (moxin.layout)."""
    for p in (Path(folder) / "run.json", RunLayout(Path(folder)).run_json("pretrain")):
        if p.is_file():
            return json.loads(p.read_text("utf-8"))
    raise CheckpointError(
        f"no run.json in {folder} or {folder}/pretrain; pass a run folder written by `moxin pretrain`"
    )
