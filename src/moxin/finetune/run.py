"""`moxin finetune sft|dpo|grpo`: parent model + tokenizer + prepared data + a task, trained by the shared
`moxin.train.trainer.Trainer` (checkpoints, resume, metrics, FSDP2/DDP), with lineage in every checkpoint.

Output, `<run>/finetune/<name>/` (the pretrain/ layout): checkpoints/step-XXXXXXXX/, metrics.jsonl, loss.png,
run.json (plan, parent, data and before/after held-out metrics), data/ (the data manifest), tokenizer/ (with its
chat template), reference_logps.safetensors (DPO), and final/ for a LoRA run (the merged model)."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from moxin.errors import CheckpointError
from moxin.finetune import lineage as lin
from moxin.finetune.batches import PreferenceBatches, SFTBatches
from moxin.finetune.config import DPOConfig, GRPOConfig, ModeConfig
from moxin.finetune.lora import apply_lora, load_lora_weights
from moxin.finetune.prepare import Prepared, prepare
from moxin.finetune.template import end_of_turn_id, ensure_chat_template, pack, pad_rows
from moxin.layout import RunLayout, finetune_names
from moxin.recipe import Recipe
from moxin.records import write_stage_manifest

if TYPE_CHECKING:
    from moxin.finetune.grpo import GRPOBatches
    from moxin.model.transformer import Transformer
    from moxin.train.trainer import Batches, Task

Log = Callable[[str], None]
_STAGE_FILES = ("run.json", "metrics.jsonl")  # the stage's manifest; checkpoints, data/, tokenizer/ have their own


@dataclass
class Context:
    recipe: Recipe | None  # None when `reproduce_steps` re-runs a stage from its records
    mode: str
    cfg: ModeConfig
    run_dir: Path
    out: Path
    parent_path: Path
    parent: dict[str, Any]


def context(recipe: Recipe, mode: str) -> Context:
    fcfg = recipe.finetune
    cfg = fcfg.mode(mode)
    run = RunLayout.from_recipe(recipe)
    names = finetune_names(fcfg)
    key = f"finetune.{mode}.parent" if cfg.parent else "finetune.parent"
    spec = cfg.parent or fcfg.parent
    parent_path = lin.resolve_parent(spec, run.root, recipe.resolve_path, names, key)
    inside = spec in ("pretrain", "adapt") or spec in lin.MODES
    written = None if inside else spec  # an outside parent: as the recipe says
    return Context(
        recipe,
        mode,
        cfg,
        run.root,
        run.finetune(names[mode]),
        parent_path,
        lin.parent_record(parent_path, run.root, fcfg.parent_license, written),
    )


def resolver(recipe: Recipe, run_dir: Path) -> Callable[[str], Path]:
    """Data paths: `{run}` stands for this run's folder (data that earlier stages generated), else as in the
    recipe (relative to the recipe file)."""

    def resolve(p: str) -> Path:
        return Path(p.replace("{run}", str(run_dir))) if "{run}" in p else recipe.resolve_path(p)

    return resolve


def _recipe(ctx: Context) -> Recipe:
    if ctx.recipe is None:
        raise CheckpointError(f"{ctx.out}: this stage is being re-run from its records, without a recipe")
    return ctx.recipe


def _rel(ctx: Context, path: Path | None) -> str | None:
    """A path as records hold it: relative to the run folder (moxin.layout.RunLayout.rel)."""
    return RunLayout(ctx.run_dir).rel(path) if path is not None else None


# ------------------------------------------------------------------------------------------------ parent
def load_parent(path: Path) -> nn.Module:
    """Any model `moxin.interop.load_model` reads, plus LoRA checkpoints (merged on load), in fp32, verified
    against its manifest (see `load_parent_verified`)."""
    return load_parent_verified(path)[0]


def load_parent_verified(path: Path) -> tuple[Transformer, str | None]:
    """(model, SHA-256 of the manifest the loaded bytes were checked against, or None for a folder or file
    without one). The bytes are hashed as read, so the SHA-256 is the identity of what was loaded."""
    from moxin.interop import load_verified
    from moxin.interop.native import read_verified

    if (Path(path) / lin.STATE_NAME).is_file():
        lora = lin.read_state(path).lineage.lora
        if lora:
            _, sd, sealed = read_verified(Path(path) / "model")
            return load_lora_weights(Path(path) / "model", lora, sd=sd), sealed.sha256 if sealed else None
    model, sealed = load_verified(path, dtype=torch.float32)
    return model, sealed.sha256 if sealed else None


def load_tok(ctx: Context, log: Log):
    from moxin.interop.tokenizer import load_tokenizer

    recipe = _recipe(ctx)
    fcfg = recipe.finetune
    tok = load_tokenizer(recipe.resolve_path(fcfg.tokenizer) if fcfg.tokenizer else ctx.parent_path)
    source = ensure_chat_template(tok, fcfg.chat_template)
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    log(f"tokenizer: {len(tok)} tokens, chat template from {source}")
    return tok


def save_tokenizer(tok, folder: Path) -> None:
    from moxin.provenance import atomic_dir

    with atomic_dir(folder, overwrite=True) as tmp:
        tok.save_pretrained(tmp)
        write_stage_manifest(tmp, "finetune-tokenizer", {"chat_template": tok.chat_template})


# ------------------------------------------------------------------------------------------------ per mode
def sft_batches(prep: Prepared, cfg, seed: int, pad_id: int) -> SFTBatches:
    if cfg.packing:
        order = np.random.default_rng([seed, 0x7061636B]).permutation(len(prep.train))
        return SFTBatches(None, pack(prep.train, cfg.seq_len, pad_id, order), cfg.global_batch, seed, pad_id)
    return SFTBatches(prep.train, None, cfg.global_batch, seed, pad_id)


def sft_eval(prep: Prepared, cfg, pad_id: int):
    """Mean cross-entropy on the held-out examples' assistant tokens."""
    from moxin.finetune.tasks import SFTTask
    from moxin.train.evaluate import Samples, mean_loss

    if not prep.val:
        return None
    task = SFTTask()

    def collate(rows: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, torch.Tensor]:
        ids = torch.from_numpy(pad_rows([r[0] for r in rows], pad_id))
        return {"input_ids": ids, "labels": torch.from_numpy(pad_rows([r[1] for r in rows], -100, ids.shape[1]))}

    def evaluate(model: nn.Module, step: int) -> dict[str, float]:
        return {"val_loss": mean_loss(model, task, Samples(prep.val, collate), cfg.micro_batch, cfg.precision)["loss"]}

    return evaluate


def dpo_setup(ctx: Context, prep: Prepared, model: nn.Module, seed: int, pad_id: int, log: Log, progress: bool = True):
    """Batches with the reference log-probs, computed once with the parent (before any update) and cached."""
    from moxin.finetune.tasks import reference_logps

    cfg = ctx.cfg
    train = PreferenceBatches(prep.train, np.zeros((len(prep.train), 2)), cfg.global_batch, seed, pad_id)
    val = (
        PreferenceBatches(prep.val, np.zeros((len(prep.val), 2)), max(1, len(prep.val)), seed, pad_id)
        if prep.val
        else None
    )
    key = {"parent_sha256": ctx.parent["sha256"], "train": train.fingerprint, "val": val.fingerprint if val else None}
    cached = _read_ref_cache(ctx.out / "reference_logps.safetensors", key)
    if cached is None:
        log(f"reference log-probs: computing for {len(prep.train)} + {len(prep.val)} pairs (once; cached)")
        cached = {"train": reference_logps(model, train, len(prep.train), cfg.micro_batch, progress).numpy()}
        if val:
            cached["val"] = reference_logps(model, val, len(prep.val), cfg.micro_batch, progress).numpy()
        _write_ref_cache(ctx.out / "reference_logps.safetensors", cached, key)
    else:
        log("reference log-probs: reused the cache (same parent and data)")
    train = PreferenceBatches(prep.train, cached["train"], cfg.global_batch, seed, pad_id)
    val = PreferenceBatches(prep.val, cached["val"], len(prep.val), seed, pad_id) if val else None
    return train, val


def _read_ref_cache(path: Path, key: dict) -> dict[str, np.ndarray] | None:
    import json

    from moxin.interop.safetensors_io import read_safetensors

    if not path.is_file():
        return None
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("key") != json.dumps(key, sort_keys=True):
        return None
    return {k: v.numpy() for k, v in read_safetensors(path).items()}


def _write_ref_cache(path: Path, arrays: dict[str, np.ndarray], key: dict) -> None:
    import json
    import os

    from moxin.interop.safetensors_io import write_safetensors

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_safetensors(
        tmp,
        {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()},
        metadata={"key": json.dumps(key, sort_keys=True)},
    )
    os.replace(tmp, path)


def dpo_eval(val: PreferenceBatches | None, cfg):
    """The DPO loss and reward statistics on the held-out pairs (means over pairs)."""
    from moxin.finetune.tasks import DPOTask
    from moxin.train.evaluate import Samples, mean_loss

    if val is None:
        return None
    task = DPOTask(cfg.beta, cfg.label_smoothing)
    held_out = Samples(range(len(val.pairs)), val.collate)

    def evaluate(model: nn.Module, step: int) -> dict[str, float]:
        return {f"val_{k}": v for k, v in mean_loss(model, task, held_out, cfg.micro_batch, cfg.precision).items()}

    return evaluate


def grpo_setup(
    ctx: Context, prep: Prepared, model: nn.Module, tok, seed: int, pad_id: int, lora: bool
) -> tuple[GRPOBatches, Callable[[nn.Module, int], dict[str, float]] | None]:
    from moxin.finetune.grpo import GRPOBatches, eval_reward

    eot = end_of_turn_id(tok)
    batches = GRPOBatches([p for p, _ in prep.train], [a for _, a in prep.train], tok, ctx.cfg, seed, eot, pad_id)
    batches.reference = None if lora else copy.deepcopy(model).requires_grad_(False).eval()
    if not prep.val:
        return batches, None
    val = GRPOBatches([p for p, _ in prep.val], [a for _, a in prep.val], tok, ctx.cfg, seed, eot, pad_id)

    def evaluate(m: nn.Module, step: int) -> dict[str, float]:
        val.policy, val.fixed_length = m, batches.fixed_length  # FSDP: every rank runs the same forwards
        return {"val_reward": eval_reward(val, list(range(len(prep.val))))}

    return batches, evaluate


# ------------------------------------------------------------------------------------------------ the run
def build(ctx: Context, tok, prep: Prepared, seed: int, dist, log: Log, progress: bool = True):
    """The model (LoRA applied, parallelised), the task, the batch source, the evaluator and the LoRA record."""
    from moxin.finetune.tasks import DPOTask, SFTTask
    from moxin.parallel import parallelize

    cfg, mode = ctx.cfg, ctx.mode
    base, verified_sha = load_parent_verified(ctx.parent_path)
    base = base.to(dist.device)
    if verified_sha and ctx.parent["kind"] in ("checkpoint", "model") and ctx.parent["sha256"] != verified_sha:
        # lineage names the bytes that were loaded, even if the parent changed after the run started
        ctx.parent = {**ctx.parent, "sha256": verified_sha}
    if len(tok) > base.cfg.vocab_size:
        raise CheckpointError(
            f"the tokenizer has {len(tok)} tokens but the parent model's vocabulary is "
            f"{base.cfg.vocab_size}; use the parent's own tokenizer (finetune.tokenizer)"
        )
    lora = apply_lora(base, cfg.lora, seed) if cfg.lora.rank > 0 else None
    if lora:
        log(
            f"LoRA rank {lora['rank']} on {', '.join(lora['targets'])}: {lora['trainable_params']:,} trainable of "
            f"{lora['total_params']:,} parameters"
        )
    pad_id = int(tok.pad_token_id)
    task: Task
    batches: Batches
    rollouts: GRPOBatches | None = None  # GRPO samples with the model being trained
    if mode == "sft":
        task, batches, evaluate = SFTTask(), sft_batches(prep, cfg, seed, pad_id), sft_eval(prep, cfg, pad_id)
    elif mode == "dpo":
        dcfg = cast(DPOConfig, cfg)
        # LoRA starts with B = 0, so the adapted model's outputs are exactly the parent's: a valid reference.
        batches, val = dpo_setup(ctx, prep, base, seed, pad_id, log, progress and dist.is_main)
        task, evaluate = DPOTask(dcfg.beta, dcfg.label_smoothing), dpo_eval(val, cfg)
    else:
        from moxin.finetune.grpo import GRPOTask

        gcfg = cast(GRPOConfig, cfg)
        rollouts, evaluate = grpo_setup(ctx, prep, base, tok, seed, pad_id, lora is not None)
        task, batches = GRPOTask(gcfg.clip_eps, gcfg.beta), rollouts
    model = parallelize(base, dist, cfg.parallel, cfg.activation_checkpointing, cfg.compile, cfg.fsdp_bf16_params)
    if rollouts is not None:
        rollouts.policy, rollouts.fixed_length = model, dist.distributed
    return model, task, batches, evaluate, lora


def total_steps(cfg: ModeConfig, n_samples: int, mode: str) -> int:
    if cfg.steps is not None:
        return cfg.steps
    per_step = cfg.global_batch // cast(GRPOConfig, cfg).group_size if mode == "grpo" else cfg.global_batch
    return max(1, math.ceil((cfg.epochs or 1.0) * n_samples / per_step))


def epoch_samples(prep: Prepared, batches: Batches) -> int:
    """What an epoch counts: the packed rows of packed SFT, else the training examples."""
    if isinstance(batches, SFTBatches) and batches.packed is not None:
        return len(batches.packed.input_ids)
    return len(prep.train)


def plan(cfg: ModeConfig, steps: int, mode: str):
    from moxin.train.config import PhaseConfig
    from moxin.train.schedule import layout, lr_at
    from moxin.train.trainer import Plan

    phase = PhaseConfig(
        name=mode,
        seq_len=cfg.seq_len,
        steps=steps,
        schedule=cfg.schedule,
        warmup_steps=cfg.warmup_steps,
        min_lr_ratio=cfg.min_lr_ratio,
    )
    (span,) = layout([phase], cfg.global_batch, cfg.lr)
    return Plan(total_steps=steps, lr=lambda s: lr_at(span, s), phase=lambda s: mode, forced_saves={steps})


def lineage_record(ctx: Context, prep: Prepared, lora: dict | None) -> dict[str, Any]:
    from moxin.provenance import code_version, sha256_file

    # The run's resolved recipe (written by `moxin build`) when present: its bytes depend on the recipe's content
    # only, not on the file's name or folder, so a rebuild from a release's config/recipe.toml records the same.
    resolved = RunLayout(ctx.run_dir).recipe_file
    src = resolved if resolved.is_file() else _recipe(ctx).source_path
    return {
        "base": ctx.parent,
        "lora": lora,
        "code": code_version(),
        "recipe": {"name": src.name if src else "", "sha256": sha256_file(src) if src and src.is_file() else None},
        "data": {
            "manifest": _rel(ctx, prep.manifest_path),
            "sha256": prep.manifest_sha256,
            "datasets": [
                {k: c.as_dict()[k] for k in ("name", "license", "path", "sha256", "kept")}
                for c in prep.ledger.sets.values()
            ],
        },
    }


def _make_trainer(recipe: Recipe, ctx: Context, tok, prep: Prepared, seed: int, dist, log: Log, progress: bool):
    """The model, task and batches of the mode, wrapped in a Trainer with the stage's checkpointing and callbacks.
    Returns (trainer, model, total steps, the held-out evaluation or None, the LoRA record or None)."""
    from moxin.config import to_dict
    from moxin.train.callbacks import default_callbacks
    from moxin.train.trainer import Checkpointing, Trainer

    mode = ctx.mode
    torch.manual_seed(seed)
    model, task, batches, evaluate, lora = build(ctx, tok, prep, seed, dist, log, progress)
    steps = total_steps(ctx.cfg, epoch_samples(prep, batches), mode)
    shared = {k: v for k, v in to_dict(recipe.finetune).items() if k not in lin.MODES}
    config = {
        "mode": mode,
        "finetune": shared,
        mode: to_dict(ctx.cfg),
        "seed": seed,
        "model": dataclasses.asdict(_model_cfg(model)),
    }
    checkpointing = Checkpointing(
        ctx.out / "checkpoints",
        _model_cfg(model),
        seed,
        ctx.out / "tokenizer",
        {"kind": "finetune", "mode": mode, "config": config},
        lineage_record(ctx, prep, lora),
    )
    the_plan = plan(ctx.cfg, steps, mode)
    trainer = Trainer(
        model,
        task,
        batches,
        ctx.cfg,
        the_plan,
        checkpointing,
        default_callbacks(ctx.out, ctx.cfg, the_plan, evaluate, progress),
        dist=dist,
        log=log,
    )
    return trainer, model, steps, evaluate, lora


def _outcome(ctx: Context, prep: Prepared, trainer, status: str, steps: int, lora, final: Path | None) -> dict:
    """What run.json records about the finished (or interrupted) stage; paths run-relative."""
    from moxin.provenance import environment

    return {
        "status": status, "steps": steps, "parent": ctx.parent, "data_manifest": _rel(ctx, prep.manifest_path),
        "examples": {"train": len(prep.train), "val": len(prep.val)}, "lora": lora,
        "last_checkpoint": _rel(ctx, trainer.last_checkpoint), "final": _rel(ctx, final),
        "environment": environment(),
    }  # fmt: skip


def run(
    recipe: Recipe, mode: str, resume: str = "auto", progress: bool = True, log: Log = lambda m: None
) -> dict[str, Any]:
    """Fine-tune per the recipe's [finetune.<mode>] table. Returns the summary written to run.json."""
    from moxin.parallel import barrier, init_distributed
    from moxin.provenance import atomic_write_json
    from moxin.train.pretrain import choose_checkpoint

    dist = init_distributed()
    log = log if dist.is_main else (lambda m: None)
    ctx, seed = context(recipe, mode), recipe.run.seed
    log(f"parent: {ctx.parent['kind']} {ctx.parent_path} (sha256 {ctx.parent['sha256'][:12]}…)")
    tok = load_tok(ctx, log)
    prep = prepare(
        recipe.finetune,
        mode,
        tok,
        resolver(recipe, ctx.run_dir),
        ctx.out if dist.is_main else None,
        seed,
        write=dist.is_main,
        log=log,
    )
    if dist.is_main:
        save_tokenizer(tok, ctx.out / "tokenizer")
    barrier()
    if not dist.is_main:  # every rank records the same lineage: read what rank 0 wrote
        from moxin.provenance import sha256_file

        prep.manifest_path = ctx.out / "data" / "manifest.json"
        prep.manifest_sha256 = sha256_file(prep.manifest_path)
    trainer, model, steps, evaluate, lora = _make_trainer(recipe, ctx, tok, prep, seed, dist, log, progress)
    start = choose_checkpoint(ctx.out / "checkpoints", resume)
    summary = _read_summary(ctx.out) if start is not None else {}
    if start is not None:
        trainer.resume(start)
    elif evaluate is not None:
        summary["before"] = evaluate(model, 0)
    log(f"{mode}: {steps} steps of {ctx.cfg.global_batch} on {len(prep.train)} examples → {ctx.out}")
    status = trainer.fit()
    if status == "done" and evaluate is not None:
        summary["after"] = evaluate(model, steps)
    final = None
    if status == "done" and lora and dist.is_main:
        final = write_final(ctx.out, trainer.last_checkpoint)
    summary.update(_outcome(ctx, prep, trainer, status, steps, lora, final))
    if dist.is_main:
        atomic_write_json(ctx.out / "run.json", summary)
        write_stage_manifest(
            ctx.out, f"finetune/{ctx.out.name}", {"mode": mode, "status": status}, include=_STAGE_FILES
        )
    return summary


def _model_cfg(model: nn.Module):
    from moxin.parallel import unwrap

    return unwrap(model).cfg


def _read_summary(out: Path) -> dict[str, Any]:
    import json

    try:
        return {k: v for k, v in json.loads((out / "run.json").read_text("utf-8")).items() if k == "before"}
    except (OSError, ValueError):
        return {}


def write_final(out: Path, ckpt: Path | None) -> Path:
    """The LoRA run's result as a plain model: final/ = merged model/, tokenizer/, train_state.json, manifest."""
    import dataclasses
    import shutil

    from moxin.interop.native import save_model
    from moxin.provenance import atomic_dir, sha256_file
    from moxin.records import ModelRecord, run_root, write_train_state

    if ckpt is None:
        raise CheckpointError(f"{out / 'checkpoints'}: the run finished without a checkpoint to merge into final/")
    state = lin.read_state(ckpt)
    if not state.lineage.lora:
        raise CheckpointError(
            f"{ckpt / lin.STATE_NAME} records no lineage.lora; only a LoRA checkpoint has a merged final/ model"
        )
    model = load_lora_weights(ckpt / "model", state.lineage.lora)
    final = out / "final"
    home = run_root(ckpt)
    rel = RunLayout(home).rel(ckpt) if home is not None else ckpt.name
    with atomic_dir(final, overwrite=True) as tmp:
        save_model(model, tmp / "model")
        if (ckpt / "tokenizer").is_dir():
            shutil.copytree(ckpt / "tokenizer", tmp / "tokenizer")
        merged = dataclasses.replace(
            state,
            rng=[],
            optimizer_groups=None,
            merged_from=ModelRecord("checkpoint", rel, sha256_file(ckpt / "manifest.json")),
            lineage=dataclasses.replace(state.lineage, lora=None, merged_lora=state.lineage.lora),
        )
        write_train_state(tmp, merged)
        write_stage_manifest(tmp, "finetune-final", {"step": state.step})
    return final


# ------------------------------------------------------------------------------------------------ reproduce
def _stage_data(stage: Path, mode: str, cfg: ModeConfig, tok) -> Prepared:
    """The examples a stage trained on, from its data/ folder (train.jsonl, val.jsonl: normalised, deduplicated,
    decontaminated and split), encoded again with the stage's tokenizer and config."""
    import json

    from moxin.finetune import data as fd
    from moxin.finetune.prepare import encode
    from moxin.provenance import verify_manifest

    folder = stage / "data"
    problems = verify_manifest(folder)
    if problems:
        raise CheckpointError(f"cannot re-run {stage.name}: its data folder fails its check ({problems[0]})")
    sets = []
    for split in ("train", "val"):
        rows = [json.loads(x) for x in (folder / f"{split}.jsonl").read_text("utf-8").splitlines() if x.strip()]
        sets.append([encode(r, mode, tok, cfg) for r in rows])
    return Prepared(sets[0], sets[1], fd.Ledger(), manifest_path=folder / "manifest.json")


def reproduce_steps(
    stage: Path, start: Path, to_step: int, out: Path, parent: Path, log: Log = lambda m: None
) -> dict[int, float]:
    """Re-run a fine-tuning stage from its checkpoint `start` to step `to_step` into `out` (one plain process),
    with the config, seed, tokenizer and data the stage recorded; `parent` is the stage's parent model (its
    weights seed a LoRA model, DPO's reference log-probs and GRPO's reference). Returns the per-step losses;
    the checkpoint lands in `out/checkpoints/`."""
    import shutil

    from moxin.config import from_dict
    from moxin.finetune.config import FinetuneConfig
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.parallel import Dist
    from moxin.train.trainer import Checkpointing, Trainer

    state = lin.read_state(start).to_dict()
    config = state.get("config") or {}
    mode = config.get("mode")
    if mode not in lin.MODES:
        raise CheckpointError(f"{start}/train_state.json records no fine-tuning mode (config.mode = {mode!r})")
    fcfg = from_dict(
        FinetuneConfig,
        {**config.get("finetune", {}), mode: config[mode]},
        f"{start}/train_state.json",
        prefix="finetune.",
    )
    cfg, seed = fcfg.mode(mode), int(config.get("seed", 0))
    tok = load_tokenizer(stage / "tokenizer")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    prep = _stage_data(stage, mode, cfg, tok)
    if (stage / "reference_logps.safetensors").is_file():  # DPO: the cache is reused when parent and data match
        out.mkdir(parents=True, exist_ok=True)
        shutil.copy2(stage / "reference_logps.safetensors", out / "reference_logps.safetensors")
    ctx = Context(
        None, mode, cfg, stage.parent.parent, out, Path(parent), lin.parent_record(Path(parent), stage.parent.parent)
    )
    torch.manual_seed(seed)
    model, task, batches, _, _ = build(ctx, tok, prep, seed, Dist(), log, progress=False)
    steps = total_steps(cfg, epoch_samples(prep, batches), mode)
    checkpointing = Checkpointing(
        out / "checkpoints",
        _model_cfg(model),
        seed,
        stage / "tokenizer",
        {k: state[k] for k in ("kind", "mode", "config") if k in state},
        state.get("lineage") or {},
    )
    trainer = Trainer(model, task, batches, cfg, plan(cfg, steps, mode), checkpointing, dist=Dist(), log=log)
    trainer.resume(start)
    trainer.fit(until=to_step)
    return dict(trainer.losses)
