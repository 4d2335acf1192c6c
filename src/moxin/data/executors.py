"""`moxin data --executor local|ray|slurm`: the data stage's cleaning pass under datatrove's executors.

Stage 1 (`moxin.data.scale.AnalyzeShard`, `tasks` shards of the input files) runs under
`LocalPipelineExecutor` (processes on this machine), `RayPipelineExecutor` (a Ray cluster: the one at
`RAY_ADDRESS`, else a local one started here) or `SlurmPipelineExecutor` (a job array); stage 2
(`merge_analyzed`) and the rest of the data stage (tokenizer, shards, manifest, card) then run once, so `data/` is
byte-identical to the in-process run whatever the executor and the number of tasks.

Work folder: `<run>/.scale/<process fingerprint[:16]>-<tasks>t/` with `analyzed/` (one file per task) and `logs/`
(datatrove's logging_dir: `completions/<rank>` markers, stats, per-task logs). A task that failed or was killed has
no completion marker; running the same command again runs only those tasks. The folder is removed once `data/` is
written, and a change of inputs or of `tasks` uses a fresh one, so stale shards are never merged.

Slurm: `moxin data` submits two jobs and returns: the analysis array (`tasks` tasks) and, after it (afterok), a
one-task merge job that runs the data stage with the local executor (which finds every task complete, or finishes
any that is not) and writes `data/`. `--dry-run` prints both sbatch scripts and their `sbatch` arguments instead.
datatrove imports stay inside the functions (the CLI imports this module lazily anyway)."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
from pathlib import Path

from moxin.data.config import DataConfig, SlurmConfig
from moxin.data.process import ProcessResult
from moxin.errors import DataError

SCALE_DIR = ".scale"  # under the run folder


def n_tasks(cfg: DataConfig) -> int:
    return cfg.tasks or cfg.workers


def work_dir(run_dir: str | Path, cfg: DataConfig, process_fp: str) -> Path:
    """Where stage 1 of this input (and this number of tasks) keeps its shards and completion markers."""
    return Path(run_dir) / SCALE_DIR / f"{process_fp[:16]}-{n_tasks(cfg)}t"


def _executor(kind: str, cfg: DataConfig, work: Path):
    from moxin.data.scale import AnalyzeShard

    step, n, logs = AnalyzeShard(cfg, work), n_tasks(cfg), str(work / "logs")
    if kind == "local":
        from datatrove.executor import LocalPipelineExecutor

        return LocalPipelineExecutor(pipeline=[step], tasks=n, workers=min(cfg.workers, n), logging_dir=logs)
    if kind == "ray":
        from datatrove.executor import RayPipelineExecutor

        return RayPipelineExecutor(
            pipeline=[step], tasks=n, workers=cfg.workers, logging_dir=logs, cpus_per_task=1, mem_per_cpu_gb=0.5
        )
    raise DataError(f"data.executor {kind!r} cannot run in this process; use 'local' or 'ray' (or submit 'slurm')")


def _start_ray(workers: int) -> bool:
    """Connect to the cluster at RAY_ADDRESS, or start a local one (loopback, `workers` CPUs). True if started."""
    try:
        import ray
    except ImportError:
        raise DataError(
            "data.executor = 'ray' needs ray; install the scale extra (pip install 'moxin[scale]')"
        ) from None
    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
    return True


def analyze(kind: str, cfg: DataConfig, work: Path) -> None:
    """Stage 1 under `kind`; raises DataError naming the tasks left incomplete (re-running resumes them)."""
    ex = _executor(kind, cfg, work)
    started = _start_ray(cfg.workers) if kind == "ray" else False
    error = None
    try:
        ex.run()
    except Exception as e:  # a task raised: its rank has no completion marker, which is what resuming uses
        error = e
    finally:
        if started:
            import ray

            ray.shutdown()
    missing = ex.get_incomplete_ranks(range(n_tasks(cfg)))
    if missing:
        raise DataError(
            f"data: {len(missing)} of {n_tasks(cfg)} datatrove task(s) did not finish (ranks {missing[:8]}"
            f"{', …' if len(missing) > 8 else ''}; {type(error).__name__ if error else 'no error'}: {error}); logs in "
            f"{work / 'logs'}; run the same command again to resume (completed tasks are skipped)"
        )


def process_scaled(cfg: DataConfig, run_dir: str | Path, process_fp: str, processed: Path) -> ProcessResult:
    """The cleaning pass under datatrove: stage 1 under `cfg.executor`, then the merge into `processed`."""
    from moxin.data.scale import merge_analyzed

    if cfg.executor is None or cfg.executor in ("inprocess", "slurm"):
        raise DataError(f"data.executor {cfg.executor!r} is not a datatrove executor that runs here")
    work = work_dir(run_dir, cfg, process_fp)
    analyze(cfg.executor, cfg, work)
    return merge_analyzed(cfg, work, processed)


def clean_work(run_dir: str | Path, cfg: DataConfig, process_fp: str) -> None:
    """Remove stage 1's work folder once `data/` is written (and `.scale/` when nothing else is left in it)."""
    work = work_dir(run_dir, cfg, process_fp)
    shutil.rmtree(work, ignore_errors=True)
    with contextlib.suppress(OSError):
        work.parent.rmdir()


class FinishData:
    """The Slurm merge job's one step: the data stage with the local executor over the same work folder."""

    name = "moxin data merge"
    type = "🧩 - MERGE"

    def __init__(self, cfg: DataConfig, tok_cfg, seed: int, run_dir: str) -> None:
        self.cfg, self.tok_cfg, self.seed, self.run_dir = cfg, tok_cfg, seed, run_dir

    def __call__(self, data=None, rank: int = 0, world_size: int = 1):
        from moxin.data.pipeline import run_data_stage

        cfg = dataclasses.replace(self.cfg, executor="local")
        run_data_stage(cfg, self.tok_cfg, self.seed, self.run_dir, progress=False)
        return data


def slurm_jobs(cfg: DataConfig, tok_cfg, seed: int, run_dir: str | Path, process_fp: str):
    """(analysis executor, merge executor); the merge depends on the analysis (afterok)."""
    from datatrove.executor import SlurmPipelineExecutor

    from moxin.data.scale import AnalyzeShard

    s = cfg.slurm or SlurmConfig()
    work = work_dir(run_dir, cfg, process_fp)
    common = {
        "time": s.time,
        "partition": s.partition,
        "cpus_per_task": s.cpus_per_task,
        "mem_per_cpu_gb": s.mem_per_cpu_gb,
        "qos": s.qos,
        "env_command": s.env_command or None,
        "sbatch_args": dict(s.sbatch_args),
    }
    first = SlurmPipelineExecutor(
        pipeline=[AnalyzeShard(cfg, work)],
        tasks=n_tasks(cfg),
        job_name="moxin-data-analyze",
        logging_dir=str(work / "logs"),
        **common,
    )
    merge = SlurmPipelineExecutor(
        pipeline=[FinishData(cfg, tok_cfg, seed, str(run_dir))],
        tasks=1,
        job_name="moxin-data-merge",
        logging_dir=str(work / "merge-logs"),
        depends=first,
        **common,
    )
    return first, merge


def submit_slurm(
    cfg: DataConfig, tok_cfg, seed: int, run_dir: str | Path, process_fp: str, dry_run: bool = False
) -> list[tuple[str, list[str]]]:
    """Submit the analysis array and the merge job; returns [(sbatch script, sbatch arguments)] in submission
    order. With `dry_run`, nothing is submitted (job ids are shown as DRYRUN-<n>); the scripts and the pickled
    pipelines they run are still written under the work folder, so they can be submitted by hand."""
    import datatrove.executor.slurm as dslurm

    calls: list[tuple[str, list[str]]] = []
    real = dslurm.launch_slurm_job

    def launch(contents: str, job_id_retriever, *args: str) -> str:
        calls.append((contents, list(args)))
        if dry_run:
            return f"DRYRUN-{len(calls)}"
        try:
            return real(contents, job_id_retriever, *args)
        except FileNotFoundError:
            raise DataError(
                "data.executor = 'slurm' needs `sbatch` on PATH; run on a Slurm login node, or pass --dry-run "
                "to print the scripts"
            ) from None

    _first, merge = slurm_jobs(cfg, tok_cfg, seed, run_dir, process_fp)
    dslurm.launch_slurm_job = launch
    try:
        merge.run()
    finally:
        dslurm.launch_slurm_job = real
    return calls
