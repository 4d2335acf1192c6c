"""Training: one loop for pretraining and every fine-tuning mode.

The loop (`moxin.train.trainer`)::

    from moxin.parallel import init_distributed, parallelize
    from moxin.train.callbacks import default_callbacks
    from moxin.train.trainer import Checkpointing, Plan, Trainer

    dist = init_distributed()                       # torchrun env → gloo/NCCL group; 1 process → nothing
    model = parallelize(build(model_cfg, seed), dist, mode="fsdp")   # AC → compile → FSDP2/DDP, from outside
    checkpointing = Checkpointing(stage_dir / "checkpoints", model_cfg, seed, tokenizer_dir=...,
                                  state={"config": ...}, lineage={"base": {"path":..., "sha256":...}})
    callbacks = default_callbacks(stage_dir, cfg, plan, evaluate)   # metrics, loss.png, eval, pruning, progress
    trainer = Trainer(model, task, batches, cfg, plan, checkpointing, callbacks, dist=dist, log=print)
    trainer.resume(checkpoint_path)                 # optional: verified by SHA-256, data fingerprint checked
    status = trainer.fit()                          # 'done' | 'interrupted' (SIGINT/SIGTERM → checkpoint, exit 0)

- `task` computes the loss: `count(batch) -> int` (loss units, known before the forward: target tokens, pairs)
  and `loss(model, batch) -> (sum over units, {metric: sum})`. The trainer normalises by the global batch's
  units, so gradient accumulation and any world size give the same mean. `tasks.LMTask` is next-token
  cross-entropy (+ z-loss) on (B, T+1) token rows or on {input_ids, labels} with -100 masking (SFT).
- `batches` is a deterministic source keyed by step: `batch(step, rank, world)` returns this rank's slice of the
  step's global batch (tensor, dict of tensors or list; dim 0 = samples); `fingerprint` identifies the data. Its
  position is the step, stored in every checkpoint; resuming, re-running or changing the world size therefore
  cannot change what a step sees. `sampler.MixtureSampler` is pretraining's source.
- `cfg` is a `config.TrainConfig` (batch sizes, AdamW, clipping, precision, AC/compile, FSDP/DDP, NaN policy,
  checkpoint cadence and retention); `plan` (`trainer.Plan`) gives total steps, LR per step, phase names, forced
  checkpoint steps and FLOPs per unit (for MFU).
- `checkpointing` (`trainer.Checkpointing`): the `checkpoints/` folder that receives `step-XXXXXXXX/`
  (docs/CONTRACTS.md), the model config, the seed (seeds the global RNGs), the tokenizer copied into each checkpoint,
  extra train_state keys and the lineage. `fit(until=K)` stops at step K (with a checkpoint there) instead of the
  plan's end: what `reproduce` uses.
- `callbacks` (`moxin.train.callbacks`): hooks `on_fit_start`, `on_step_end(step, metrics)`,
  `on_checkpoint(path, step)`, `on_fit_end(status)`; `MetricsLogger` (metrics.jsonl, TensorBoard), `LossPlot`
  (loss.png), `Evaluation` (held-out evaluation when a checkpoint follows; `moxin.train.evaluate.mean_loss` is the
  shared mean-loss helper), `PruneCheckpoints` (retention) and `ProgressBar` (rich, rate and ETA).

Checkpoints (`moxin.train.checkpoint`): `save_checkpoint`, `load_checkpoint(path, model, optimizer)` (any world
size), `verify(path)` (SHA-256; names the previous good checkpoint), `list_checkpoints`, `prune`, `consolidate`
(sharded DCP → single files). Re-running part of a run: `moxin.train.reproduce.reproduce(path, K, M)` trains
K..M from checkpoint K and returns the max |Δ| against checkpoint M's weights (0.0 = bitwise identical).

Pretraining (`moxin.train.pretrain`): `run(recipe, resume, allow_data_change)`, `show_batch(run_dir, step)`,
`Setup` (phases, sampler, model config from a recipe or from a checkpoint's recorded config).
"""

IGNORE = -100  # the label of a position that carries no loss (cross-entropy ignore_index)
