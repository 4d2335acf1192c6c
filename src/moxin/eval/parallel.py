"""Evaluate many checkpoints at once: worker processes on this machine, or Ray tasks on a cluster.

Each checkpoint is one job. A worker evaluates it exactly as the serial run does (`moxin.eval.runner.evaluate`),
writing its result files into the shared results/ folder (atomically); a (model SHA-256, task hash) whose result
file already exists is reused, never computed again. Workers return the paths of their result files, and the parent
reads them back in checkpoint order, so the table and plots it writes are those of the serial run.

Each worker limits torch to its share of the cores (cores / N, at least 1): N workers each running a full-width
thread pool on the same cores only slow each other down."""

from __future__ import annotations

import os
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from moxin.errors import EvalError, MoxinError
from moxin.layout import RunLayout

EXECUTORS = ("local", "ray")


def cores() -> int:
    """CPU cores this process may use (its affinity mask where the platform has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def threads_per_worker(parallel: int) -> int:
    return max(1, cores() // parallel)


def limit_threads(n: int) -> None:
    """Set before torch starts its thread pool (a fresh worker process); torch.set_num_threads covers the rest."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)
    import torch

    torch.set_num_threads(n)


def evaluate_one(stage: str, folder: str, s: Any, out_dir: str, threads: int) -> tuple[list[str], int]:
    """One job, in a worker: evaluate one checkpoint; (its result files, number computed)."""
    from moxin.eval import identity
    from moxin.eval.runner import evaluate, result_path

    limit_threads(threads)
    model = identity.identify(folder, stage=stage)
    results, computed = evaluate(model, s, Path(out_dir), log=_quiet)
    return [str(result_path(Path(out_dir), model, r["task_config_hash"])) for r in results], computed


def _quiet(message: str) -> None:
    """Workers print only notes; per-task progress lines from N processes at once would interleave."""
    if message.startswith("note:"):
        print(message, flush=True)


def evaluate_parallel(
    layout: RunLayout, ckpts: list[tuple[str, Path]], s: Any, out_dir: Path, parallel: int, executor: str
) -> tuple[list[dict], int]:
    """Evaluate `ckpts` on `parallel` workers (`executor` local or ray); (all results in checkpoint order, computed)."""
    if parallel < 1:
        raise EvalError(f"--parallel must be at least 1, got {parallel}")
    if executor not in EXECUTORS:
        raise EvalError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}")
    threads = threads_per_worker(parallel)
    jobs = [(stage, str(folder), s, str(out_dir), threads) for stage, folder in ckpts]
    run = _run_ray if executor == "ray" else _run_local
    outcomes = run(jobs, parallel, lambda i: layout.rel(ckpts[i][1]))
    return _collect(outcomes)


def _collect(outcomes: list[tuple[list[str], int]]) -> tuple[list[dict], int]:
    from moxin.eval.runner import load_result

    everything, computed = [], 0
    for paths, n in outcomes:
        computed += n
        for p in paths:
            res = load_result(Path(p))
            if res is None:
                raise EvalError(f"result file {p} written by a worker is missing or unreadable; run the eval again")
            everything.append(res)
    return everything, computed


def _failure(name: str, e: BaseException) -> EvalError:
    """A worker's error as one line naming the checkpoint."""
    cause = getattr(e, "cause", None) or e  # Ray wraps the task's exception in a RayTaskError
    first = (str(cause).strip().splitlines() or [""])[0]
    if isinstance(cause, MoxinError):
        return EvalError(f"checkpoint {name}: {first}")
    return EvalError(f"checkpoint {name}: evaluation failed in a worker: {type(cause).__name__}: {first}")


def _run_local(jobs: list[tuple], parallel: int, name) -> list[tuple[list[str], int]]:
    """Worker processes (spawn: a fresh interpreter each, no forked torch or lm-eval state)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(parallel, len(jobs)), mp_context=ctx) as pool:
        futures: list[Future] = [pool.submit(evaluate_one, *job) for job in jobs]
        outcomes = []
        for i, fut in enumerate(futures):
            try:
                outcomes.append(fut.result())
            except Exception as e:  # a worker's error (or its death) → one line naming the checkpoint
                for other in futures:
                    other.cancel()
                raise _failure(name(i), e) from None
    return outcomes


def _run_ray(jobs: list[tuple], parallel: int, name) -> list[tuple[list[str], int]]:
    """Ray tasks, at most `parallel` in flight, each asking Ray for (cluster CPUs / parallel) CPUs and using that
    many threads. Uses the Ray cluster already initialised in this process, else `ray.init()` (which connects to
    RAY_ADDRESS, or starts a local one)."""
    try:
        import ray
    except ImportError:
        raise EvalError("--executor ray needs Ray; install it with: pip install 'moxin[scale]'") from None
    if not ray.is_initialized():
        ray.init(include_dashboard=False, log_to_driver=False)
    threads = max(1, int(ray.cluster_resources().get("CPU", 1)) // parallel)  # the cluster's cores, not ours
    jobs = [(*job[:-1], threads) for job in jobs]
    gpus = 1 if jobs and str(jobs[0][2].device).startswith("cuda") else 0  # --device cuda: a GPU per task
    task = ray.remote(num_cpus=threads, num_gpus=gpus)(evaluate_one)
    outcomes: dict[int, tuple[list[str], int]] = {}
    pending: dict[Any, int] = {}
    todo = list(enumerate(jobs))
    while todo or pending:
        while todo and len(pending) < parallel:
            i, job = todo.pop(0)
            pending[task.remote(*job)] = i
        (done,), _ = ray.wait(list(pending), num_returns=1)
        i = pending.pop(done)
        try:
            outcomes[i] = ray.get(done)
        except Exception as e:
            for ref in pending:
                ray.cancel(ref)
            raise _failure(name(i), e) from None
    return [outcomes[i] for i in range(len(jobs))]
