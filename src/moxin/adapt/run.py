"""`[adapt]`: continued pretraining of the imported base (`<run>/base/`) on the data stage's token shards, which the
base's own tokenizer wrote. Next-token loss through pretraining's set-up (phases, mixture sampler, LM task,
held-out loss) and the shared Trainer (checkpoints, resume, metrics), starting from the base's weights instead of
a random init; LoRA (`moxin.finetune.lora`) or full.

Output, `<run>/adapt/` (the pretrain/ layout): checkpoints/step-XXXXXXXX/, metrics.jsonl, loss.png, run.json
(plan, base, before/after held-out loss), manifest.json, and final/ for a LoRA run (the merged model, as a LoRA
fine-tune writes it). Every checkpoint's lineage names the base (`finetune.lineage.parent_record`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from moxin.adapt.config import AdaptConfig
from moxin.config import to_dict
from moxin.errors import CheckpointError
from moxin.finetune import lineage as lin
from moxin.finetune.config import LoRAConfig
from moxin.layout import RunLayout
from moxin.records import write_stage_manifest
from moxin.train.config import PhaseConfig, PretrainConfig, TrainConfig
from moxin.train.pretrain import Setup

Log = Callable[[str], None]
STAGE = "adapt"


def pretrain_config(cfg: AdaptConfig) -> PretrainConfig:
    """The loop settings as pretraining's config, with the stage as its one phase (what `Setup` reads)."""
    loop = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}
    phase = PhaseConfig(
        name=STAGE,
        seq_len=cfg.seq_len,
        steps=cfg.steps,
        mixture=dict(cfg.mixture),
        schedule=cfg.schedule,
        warmup_steps=cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    return PretrainConfig(**loop, phases=[phase], eval_batches=cfg.eval_batches)


def make_setup(cfg: AdaptConfig, layout: RunLayout, seed: int, model_cfg, log: Log) -> Setup:
    """Pretraining's set-up over `layout.data` with the base's model config; the data's vocabulary must fit it."""
    setup = Setup(pretrain_config(cfg), model_cfg, seed, layout.data, layout.adapt, layout.tokenizer, log, "[adapt]")
    if setup.model_cfg.vocab_size != model_cfg.vocab_size:
        raise CheckpointError(
            f"{layout.rel(layout.data)} was tokenized with {setup.data.vocab_size} tokens but the base model's "
            f"vocabulary is {model_cfg.vocab_size}; run the data stage again with the base's tokenizer "
            f"(leave tokenizer.path empty in an adapt recipe)"
        )
    return setup


def lineage_record(layout: RunLayout, cfg: AdaptConfig, lora: dict | None, recipe_path: Path | None) -> dict:
    """What every checkpoint records it came from: the base (kind, path, identity, licence), the data manifest,
    the recipe and the code."""
    from moxin.provenance import code_version, sha256_file

    src = layout.recipe_file if layout.recipe_file.is_file() else recipe_path
    manifest = layout.data / "manifest.json"
    return {
        "base": lin.parent_record(layout.base, layout.root, cfg.license),
        "lora": lora,
        "code": code_version(),
        "recipe": {"name": src.name if src else "", "sha256": sha256_file(src) if src and src.is_file() else None},
        "data": {"manifest": layout.rel(manifest), "sha256": sha256_file(manifest), "datasets": []},
    }


def _lora(model, cfg: LoRAConfig, seed: int, log: Log) -> dict[str, Any] | None:
    from moxin.finetune.lora import apply_lora

    if cfg.rank <= 0:
        return None
    info = apply_lora(model, cfg, seed)
    log(
        f"LoRA rank {info['rank']} on {', '.join(info['targets'])}: {info['trainable_params']:,} trainable of "
        f"{info['total_params']:,} parameters"
    )
    return info


def make_trainer(
    setup: Setup, model, out: Path, state: dict, lineage: dict, dist, log: Log, progress: bool, evaluate: bool = True
):
    """The shared loop over the set-up's sampler and LM task; checkpoints under `out/checkpoints`."""
    from moxin.parallel import parallelize
    from moxin.train.callbacks import default_callbacks
    from moxin.train.tasks import LMTask
    from moxin.train.trainer import Checkpointing, Trainer

    cfg, plan = setup.cfg, setup.plan()
    model = parallelize(model, dist, cfg.parallel, cfg.activation_checkpointing, cfg.compile, cfg.fsdp_bf16_params)
    checkpointing = Checkpointing(out / "checkpoints", setup.model_cfg, setup.seed, setup.tokenizer_dir, state, lineage)
    callbacks = default_callbacks(out, cfg, plan, setup.evaluator() if evaluate else None, progress)
    trainer = Trainer(model, LMTask(cfg.z_loss), setup.sampler, cfg, plan, checkpointing, callbacks, dist=dist, log=log)
    return trainer, model


def run(
    cfg: AdaptConfig,
    layout: RunLayout,
    seed: int,
    recipe_path: Path | None = None,
    resume: str = "auto",
    progress: bool = True,
    log: Log = lambda m: None,
) -> dict[str, Any]:
    """Continue pretraining `layout.base` on `layout.data` into `layout.adapt`. Returns the summary (run.json)."""
    from moxin.finetune.run import load_parent_verified, write_final
    from moxin.parallel import init_distributed
    from moxin.provenance import atomic_write_json, environment
    from moxin.train.pretrain import choose_checkpoint

    dist = init_distributed()
    log = log if dist.is_main else (lambda m: None)
    torch.manual_seed(seed)
    base, _ = load_parent_verified(layout.base)
    setup = make_setup(cfg, layout, seed, base.cfg, log)
    lora = _lora(base, cfg.lora, seed, log)
    state = {"kind": STAGE, "config": {**setup.run_info(), "adapt": to_dict(cfg), "lora": lora}}
    lineage = lineage_record(layout, cfg, lora, recipe_path)
    out = layout.adapt
    trainer, model = make_trainer(setup, base.to(dist.device), out, state, lineage, dist, log, progress)
    start = choose_checkpoint(out / "checkpoints", resume)
    summary = _read_before(out) if start is not None else {}
    evaluate = setup.evaluator()
    if start is not None:
        trainer.resume(start)
    elif evaluate is not None:
        summary["before"] = evaluate(model, 0)
    for line in setup.describe():
        log(line)
    status = trainer.fit()
    if status == "done" and evaluate is not None:
        summary["after"] = evaluate(model, setup.total_steps)
    final = write_final(out, trainer.last_checkpoint) if status == "done" and lora and dist.is_main else None
    summary.update(
        status=status, steps=setup.total_steps, base=lineage["base"], lora=lora, data_dir=setup.data_record(),
        last_checkpoint=layout.rel(trainer.last_checkpoint) if trainer.last_checkpoint else None,
        final=layout.rel(final) if final else None, environment=environment(),
    )  # fmt: skip
    if dist.is_main:
        atomic_write_json(out / "run.json", summary)
        write_stage_manifest(out, STAGE, {"status": status}, include=("run.json", "metrics.jsonl"))
    return summary


def _read_before(out: Path) -> dict[str, Any]:
    import json

    try:
        return {k: v for k, v in json.loads((out / "run.json").read_text("utf-8")).items() if k == "before"}
    except (OSError, ValueError):
        return {}


def result(layout: RunLayout) -> Path | None:
    """The adapted model: final/ (merged LoRA) when present, else the last checkpoint."""
    if (layout.adapt / "final" / "manifest.json").is_file():
        return layout.adapt / "final"
    return layout.latest_checkpoint(STAGE)


# ------------------------------------------------------------------------------------------------ reproduce
def reproduce_steps(
    start: Path, to_step: int, out: Path, data_dir: Path, log: Log = lambda m: None
) -> dict[int, float]:
    """Re-run the adapt stage from checkpoint `start` to `to_step` into `out/checkpoints/` (one plain process) with
    the config, seed and data the checkpoint records. The checkpoint holds every weight (a LoRA one: the base's
    frozen tensors and the adapters), so the base itself is not needed. Returns the per-step losses."""
    from moxin.model.transformer import Transformer
    from moxin.parallel import Dist
    from moxin.train import checkpoint as ckpt

    state = ckpt.read_state(start)
    config = state.get("config") or {}
    if state.get("kind") != STAGE or "adapt" not in config:
        raise CheckpointError(f"{start}/train_state.json is not an adapt checkpoint (kind {state.get('kind')!r})")
    setup = Setup.from_info(config, out, data_dir)
    torch.manual_seed(setup.seed)
    model = Transformer(setup.model_cfg)
    lora = config.get("lora")
    if lora:
        from moxin.finetune.lora import apply_lora

        keys = ("rank", "alpha", "dropout", "targets")
        apply_lora(model, LoRAConfig(**{k: lora[k] for k in keys if k in lora}), int(lora.get("seed", 0)))
    keep = {k: state[k] for k in ("kind", "config") if k in state}
    trainer, _ = make_trainer(setup, model, out, keep, state.get("lineage") or {}, Dist(), log, False, evaluate=False)
    trainer.resume(start)
    trainer.fit(until=to_step)
    return dict(trainer.losses)
