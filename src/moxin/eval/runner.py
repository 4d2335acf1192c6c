"""Evaluate one model on a list of tasks through lm-eval, one result file per (model SHA-256, task config hash).

A result file is written only after its task finished, atomically; a result that already exists for the same
model hash and task config hash is reused, so re-running an evaluation computes nothing new."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import EvalError
from moxin.eval.catalog import TASKS_DIR, Planned, plan
from moxin.eval.identity import ModelRef
from moxin.provenance import atomic_write_json, code_version, environment, fingerprint, sha256_file

RESULT_VERSION = 2  # 2: per-item scores (`items`) beside the aggregate metrics
BOOTSTRAP_ITERS = 1000  # stderr of non-mean metrics; recorded in every result


@dataclass
class Settings:
    tasks: list[str] = field(default_factory=lambda: ["moxin-zeroshot"])
    data_dir: Path | None = None
    limit: int | None = None
    batch_size: int = 32
    dtype: str = "float32"
    num_fewshot: int | None = None
    seed: int = 1234
    apply_chat_template: bool = False
    include_path: list[Path] = field(default_factory=list)
    device: str = "cpu"
    max_length: int | None = None

    @property
    def local(self) -> bool:
        return self.data_dir is not None


# ------------------------------------------------------------------------------------------------ lm-eval set-up
def hf_reachable(timeout: float = 3.0) -> bool:
    if any(os.environ.get(v) == "1" for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def resolve_source(s: Settings) -> Settings:
    """Local data when --data-dir (or MOXIN_EVAL_DATA_DIR) is given; otherwise lm-eval's built-in tasks (Hugging
    Face)."""
    from moxin.eval.local_data import ENV, data_dir

    if s.data_dir is None and os.environ.get(ENV):
        s.data_dir = Path(os.environ[ENV])
    if s.data_dir is not None:
        s.data_dir = data_dir(s.data_dir)
    elif not hf_reachable():
        raise EvalError(
            f"Hugging Face datasets are not reachable (offline); pass --data-dir DIR (or set {ENV}) with "
            f"the evaluation data laid out like ../shared/data"
        )
    return s


@functools.lru_cache(maxsize=4)
def task_manager(local: bool, data_dir: str | None, include: tuple[str, ...]):
    from lm_eval.tasks import TaskManager

    from moxin.eval.includes import mirror

    paths = [str(TASKS_DIR)] + [str(mirror(Path(p))) for p in include]
    return TaskManager(include_path=paths, include_defaults=not local, metadata={"data_dir": data_dir})


def _tm(s: Settings):
    from moxin.eval.own import only_own

    no_defaults = s.local or only_own(s.tasks)  # own tasks need none of lm-eval's ~14k task YAMLs (10-40 s to index)
    return task_manager(no_defaults, str(s.data_dir) if s.data_dir else None, tuple(str(p) for p in s.include_path))


def planned_tasks(s: Settings) -> tuple[list[Planned], list[str]]:
    tm = _tm(s)
    return plan(s.tasks, s.local, set(tm.all_tasks), s.num_fewshot)


# ------------------------------------------------------------------------------------------------ hashing
def task_config(p: Planned, s: Settings) -> dict[str, Any]:
    """Everything that decides a task's numbers (not the model): hashed into the result's name."""
    import lm_eval

    from moxin.eval.local_data import FILES

    entry = _tm(s).task_index.get(p.lm_eval_task)  # public: name → Entry(cfg, yaml_path, ...)
    yaml_cfg = _portable(getattr(entry, "cfg", None), getattr(entry, "yaml_path", None))
    roots = _include_roots(s)
    data_files = {}
    if p.source == "local" and p.spec and p.spec.data:
        from moxin.eval.local_data import ENV, data_file

        root = s.data_dir
        if root is None:  # a task with no Hugging Face version in moxin (toxicity) runs on local data only
            raise EvalError(
                f"task {p.name!r} reads local data only; pass --data-dir DIR (or set {ENV}) with the "
                f"evaluation data laid out like ../shared/data"
            )
        rels = FILES[p.spec.data]
        present = [rel for rel in rels if (root / rel).is_file()]
        for rel in rels if p.spec.data != "bbq" or not present else []:  # BBQ: any subset of its categories
            data_file(root, rel)  # a missing file fails here, before any model is loaded
        data_files = {rel: sha256_file(root / rel) for rel in present}
    elif yaml_cfg:
        data_files = _relocate(_yaml_data_files(yaml_cfg), roots)
    return {
        "task": p.lm_eval_task,
        "yaml": _relocate(yaml_cfg, roots),
        "source": p.source,
        "data_files": data_files,
        "num_fewshot": p.num_fewshot,
        "limit": s.limit,
        "seed": s.seed,
        "dtype": s.dtype,
        "apply_chat_template": s.apply_chat_template,
        "max_length": s.max_length,
        "lm_eval_version": lm_eval.__version__,
        "bootstrap_iters": BOOTSTRAP_ITERS,
        "result_version": RESULT_VERSION,
    }


def _yaml_data_files(cfg: dict[str, Any]) -> dict[str, str]:
    """Local files a task YAML reads (dataset_kwargs.data_files), with their SHA-256: any lm-eval task with local
    data records exactly what it was scored on."""
    files = ((cfg.get("dataset_kwargs") or {}).get("data_files")) or {}
    groups = files.values() if isinstance(files, dict) else [files]  # str | list | {split: str | list}
    paths = [v for vs in groups for v in ([vs] if isinstance(vs, str) else list(vs))]
    return {str(Path(v)): sha256_file(Path(v)) for v in paths if isinstance(v, str) and Path(v).is_file()}


def _portable(cfg: Any, yaml_path: Any) -> Any:
    """The index's raw config with `!function` paths made relative, so the hash does not depend on install paths."""
    if cfg is None:
        return None
    prefix = str(Path(yaml_path).resolve().parent) + "/" if yaml_path else "\0"
    text = json.dumps(cfg, sort_keys=True, default=str).replace(prefix, "")
    return json.loads(text)


def _include_roots(s: Settings) -> list[tuple[str, str]]:
    """(absolute prefix, portable prefix) pairs for what a result records: each --include-path folder (and its
    mirror, see moxin.eval.includes) becomes `<folder name>/` (for a run's selfdata/ that is the path relative to
    the run) and the evaluation data folder its name, so that no result holds an absolute path."""
    from moxin.eval.includes import mirror

    out = []
    for f in s.include_path:
        folder = Path(f).expanduser().resolve()
        out += [(str(mirror(folder)) + "/", folder.name + "/"), (str(folder) + "/", folder.name + "/")]
    if s.data_dir is not None:
        out.append((str(Path(s.data_dir).resolve()), Path(s.data_dir).resolve().name))
    return out


def _relocate(cfg: Any, roots: list[tuple[str, str]]) -> Any:
    if cfg is None or not roots:
        return cfg
    text = json.dumps(cfg, sort_keys=True, default=str)
    for absolute, portable in roots:
        text = text.replace(json.dumps(absolute)[1:-1], json.dumps(portable)[1:-1])
    return json.loads(text)


def _stable(cfg: Any) -> Any:
    """lm-eval's config with the memory addresses of its functions (`<function f at 0x7f...>`) left out: they
    differ in every process, and a result's bytes must not."""
    if cfg is None:
        return None
    return json.loads(re.sub(r" at 0x[0-9a-fA-F]+>", ">", json.dumps(cfg, sort_keys=True, default=str)))


def result_path(out: Path, model: ModelRef, config_hash: str) -> Path:
    return out / "results" / f"{model.sha256}-{config_hash}.json"


def load_result(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None  # absent or unreadable: computed again, then replaced atomically
    return data if data.get("result_version") == RESULT_VERSION else None


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(model: ModelRef, s: Settings, out: Path, lm: Any = None, log=print) -> tuple[list[dict], int]:
    """Run every planned task not already computed for this model; returns (all results, number computed)."""
    planned, notes = planned_tasks(s)
    for note in notes:
        log(f"note: {note}")
    todo, results = [], []
    for p in planned:
        cfg = task_config(p, s)
        h = fingerprint(cfg)
        path = result_path(out, model, h)
        cached = load_result(path)
        if cached is not None:
            results.append(cached)
        else:
            todo.append((p, cfg, h, path))
    if todo:
        _check_local_data([p for p, *_ in todo], s)  # malformed data fails here, before any model is loaded
        lm = lm or _load_lm(model, s)
    for p, cfg, h, path in todo:
        log(f"evaluating {p.name} ({p.lm_eval_task}, {p.source}) on {model.path.name} [{model.sha256[:12]}]")
        res, seconds = _run_task(lm, p, cfg, h, model, s)
        atomic_write_json(path, res)  # a pure function of model, task config and code: the same bytes on any rerun
        log_timing(out, path.name, seconds)
        results.append({**res, "time_s": round(seconds, 3)})  # shown in the summary, not stored in the result
    return results, len(todo)


TIMINGS = "timings.jsonl"  # wall-clock per computed result: kept beside results/, never inside a result file


def log_timing(out: Path, result: str, seconds: float) -> None:
    """Append when a result was computed and how long its task took to OUT/timings.jsonl (one short line, appended
    in one write, so parallel workers do not interleave). Result files hold no clock, so a result is the same bytes
    whether it was computed serially, in parallel or again."""
    line = json.dumps({"result": result, "time_s": round(seconds, 3),
                       "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, sort_keys=True)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with open(out / TIMINGS, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _check_local_data(planned: list[Planned], s: Settings) -> None:
    from moxin.eval import local_data

    for p in planned:
        if p.source == "local" and p.spec and p.spec.data:
            getattr(local_data, p.spec.data)(str(s.data_dir))  # memoised: lm-eval's later call costs nothing


def _load_lm(model: ModelRef, s: Settings):
    from moxin.eval.adapter import MoxinLM

    return MoxinLM(
        path=str(model.path), batch_size=s.batch_size, dtype=s.dtype, device=s.device, max_length=s.max_length
    )


def _run_task(
    lm, p: Planned, cfg: dict, config_hash: str, model: ModelRef, s: Settings
) -> tuple[dict[str, Any], float]:
    import logging

    import lm_eval
    from lm_eval import simple_evaluate

    logging.getLogger("lm_eval").setLevel(logging.ERROR)  # moxin shows its own progress; keep lm-eval's chatter out
    t0 = time.perf_counter()
    try:
        with quiet_env_probe():
            out = simple_evaluate(
                model=lm,
                tasks=[p.lm_eval_task],
                num_fewshot=p.num_fewshot,
                limit=s.limit,
                task_manager=_tm(s),
                random_seed=s.seed,
                numpy_random_seed=s.seed,
                torch_random_seed=s.seed,
                fewshot_random_seed=s.seed,
                log_samples=True,  # per-item scores: `moxin compare` pairs them for its bootstrap
                apply_chat_template=s.apply_chat_template,
                bootstrap_iters=BOOTSTRAP_ITERS,
                batch_size=s.batch_size,
            )
    except (KeyError, ValueError, FileNotFoundError, ConnectionError, OSError) as e:
        first = str(e).splitlines()[0] if str(e) else ""
        raise EvalError(f"lm-eval could not run task {p.lm_eval_task!r}: {type(e).__name__}: {first}") from None
    seconds = time.perf_counter() - t0
    metrics, stderr = _metrics(out["results"].get(p.lm_eval_task, {}))
    return {
        "result_version": RESULT_VERSION,
        "task": p.name,
        "lm_eval_task": p.lm_eval_task,
        "source": p.source,
        "suite": p.suite,
        "model": model.record(),
        "task_config_hash": config_hash,
        "task_config": cfg,
        "lm_eval_version": lm_eval.__version__,
        "num_fewshot": out.get("n-shot", {}).get(p.lm_eval_task, p.num_fewshot),
        "batch_size": s.batch_size,
        "dtype": s.dtype,
        "seed": s.seed,
        "apply_chat_template": s.apply_chat_template,
        "limit": s.limit,
        "n_items": out.get("n-samples", {}).get(p.lm_eval_task, {}).get("effective"),
        "metrics": metrics,
        "items": per_item((out.get("samples") or {}).get(p.lm_eval_task) or []),
        "stderr": stderr,
        "lm_eval_config": _stable(_relocate(out.get("configs", {}).get(p.lm_eval_task), _include_roots(s))),
        "environment": environment(),
        "code": code_version(),
    }, seconds


@contextlib.contextmanager
def quiet_env_probe():
    """lm-eval ends every simple_evaluate with torch's collect_env, which shells out to pip (~2-7 s per task per
    checkpoint), and asks `git describe` about the working directory, whose "fatal: not a git repository" reaches
    the user's terminal from any other folder. moxin records the environment and its own code version itself
    (`environment()`, `code_version()` in every result), so both probes are skipped.

    lm-eval has no public switch for them: this is the one place moxin patches lm-eval, the module globals
    `lm_eval.evaluator.add_env_info` and `get_git_commit_hash` that `simple_evaluate` calls.
    tests/eval/test_eval_lm_eval_api.py fails when lm-eval stops calling them that way; should a name be gone,
    evaluation still runs (only slower or noisier)."""
    import lm_eval.evaluator as ev

    quiet = {"add_env_info": lambda results: None, "get_git_commit_hash": lambda: None}
    saved = {name: getattr(ev, name) for name in quiet if hasattr(ev, name)}
    for name in saved:
        setattr(ev, name, quiet[name])
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(ev, name, fn)


EXAMPLE_CHARS = 200


def per_item(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """lm-eval's logged samples → one entry per document, by doc_id: each per-item metric under the name the
    aggregate carries ('acc', 'exact_match,strict-match'), as a float, or as a [value, weight] pair for corpus-level
    metrics (perplexity tasks log (loglikelihood, bytes or words) per document, enough to recompute bits per byte
    on any subset); and a short `example` of the item so that won and lost items can be shown."""
    items: dict[int, dict[str, Any]] = {}
    for sample in samples:
        doc_id = int(sample["doc_id"])
        entry = items.setdefault(doc_id, {"doc_id": doc_id, "example": _example(sample)})
        filt = sample.get("filter") or "none"
        for name in sample.get("metrics") or []:
            value = _item_value(sample.get(name))
            if value is not None:
                entry[name if filt == "none" else f"{name},{filt}"] = value
    return [items[k] for k in sorted(items)]


def _item_value(v: Any) -> float | list[float] | None:
    if isinstance(v, (bool, int, float)):
        return None if v != v else float(v)
    if isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) for x in v):
        return [float(v[0]), float(v[1])]
    return None  # free-form per-item values (strings, references) are not scores


def _example(sample: dict[str, Any]) -> str:
    """The end of the item's prompt (where the question is, after any few-shot examples) and its answer."""
    args = [a for a in sample.get("arguments") or [] if isinstance(a, (list, tuple)) and a]
    prompt = str(args[0][0]) if args else ""
    target = sample.get("target")
    if isinstance(target, int) and not isinstance(target, bool) and 0 <= target < len(args) and len(args[target]) > 1:
        answer = str(args[target][1])  # multiple choice: the continuation of the correct choice
    else:
        answer = "" if target is None else str(target)
    answer = " ".join(answer.split())[:60]
    room = EXAMPLE_CHARS - len(answer) - 3
    prompt = " ".join(prompt.split())
    prompt = prompt if len(prompt) <= room else "…" + prompt[-(room - 1) :]
    return f"{prompt} → {answer}" if answer else prompt


def _metrics(raw: dict[str, Any]) -> tuple[dict[str, float | None], dict[str, float | None]]:
    """lm-eval's 'acc,none' keys → 'acc' (filters other than none keep their name: 'exact_match,strict-match')."""
    metrics: dict[str, float | None] = {}
    stderr: dict[str, float | None] = {}
    for key, value in raw.items():
        if "," not in key or not isinstance(value, (int, float)):  # metrics are 'name,filter'; skip alias etc.
            continue
        name, _, filt = key.partition(",")
        target = stderr if name.endswith("_stderr") else metrics
        name = name.removesuffix("_stderr")
        label = name if filt in ("", "none") else f"{name},{filt}"
        target[label] = None if value != value else float(value)  # NaN → null in JSON
    return metrics, stderr
