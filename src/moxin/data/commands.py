"""`moxin data`, `moxin data inspect`, `moxin data trace`, `moxin tokenizer`. Heavy imports stay in the bodies.

`run_data` is the data stage's one entry point: `moxin data` and `moxin build` both call it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from moxin.layout import RunLayout
from moxin.recipe import Recipe
from moxin.stage import StageResult


def _plan(recipe: Recipe) -> list[str]:
    d, layout = recipe.data, RunLayout.from_recipe(recipe)
    lines = [
        f"source {s.name}: {s.type} {s.path or '(interpreter stdlib)'} licence {s.license} weight {s.weight}"
        for s in d.sources
    ]
    lines.append(
        "steps: read → normalize → langid → quality → dedup_exact → dedup_fuzzy → pii → decontaminate "
        f"({len(d.decontaminate)} eval set(s)); val fraction {d.val_fraction}; {d.workers} worker(s)"
    )
    tk = stage_tokenizer(recipe, layout)
    lines.append(
        f"tokenizer: {'reuse ' + tk.path if tk.path else f'byte-level BPE, vocab {tk.vocab_size}'} → {layout.tokenizer}"
    )
    lines.append(f"shards of {d.shard_tokens:,} tokens → {layout.data}")
    if d.executor not in (None, "inprocess"):
        lines.append(
            f"executor: datatrove {d.executor}, {d.tasks or d.workers} task(s), work folder {layout.root}/.scale/"
        )
    return lines


def stage_tokenizer(recipe: Recipe, layout: RunLayout):
    """The [tokenizer] section the data stage runs with: an adapt recipe (`[adapt] base`) with no tokenizer.path
    reuses the imported base's tokenizer (`layout.base`), so the shards are in the vocabulary the base was trained
    with; otherwise the recipe's section as it is."""
    import dataclasses

    if not recipe.adapt.enabled or recipe.tokenizer.path:
        return recipe.tokenizer
    return dataclasses.replace(recipe.tokenizer, path=str(layout.base / "tokenizer"))


def stage_configs(data_cfg, tok_cfg, resolve_path: Callable[[str], Path]):
    """The data stage's inputs as it uses them: the [data] section with its paths resolved against the recipe,
    and the [tokenizer] section with `path` (a reused tokenizer) resolved the same way."""
    import dataclasses

    tok = dataclasses.replace(tok_cfg, path=str(resolve_path(tok_cfg.path))) if tok_cfg.path else tok_cfg
    return data_cfg.resolved(resolve_path), tok


def data_inputs(data_cfg, tok_cfg, seed: int, resolve_path: Callable[[str], Path]) -> str:
    """The fingerprint of everything the data stage's output depends on (what `moxin build` compares)."""
    from moxin.data.pipeline import inputs_fingerprint

    cfg, tok = stage_configs(data_cfg, tok_cfg, resolve_path)
    return inputs_fingerprint(cfg, tok, seed)[0]


def run_data(
    data_cfg,
    tok_cfg,
    layout: RunLayout,
    seed: int,
    resolve_path: Callable[[str], Path],
    force: bool = False,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> StageResult:
    """The data stage: sources → cleaned, deduplicated, tokenized shards in `layout.data`, tokenizer in
    `layout.tokenizer`. Skipped (reason given) when the inputs' fingerprint matches the existing manifest."""
    import time

    from moxin.data.pipeline import run_data_stage
    from moxin.errors import DataError

    cfg, tok = stage_configs(data_cfg, tok_cfg, resolve_path)
    if not cfg.sources:
        raise DataError("data.sources is empty; add at least one [[data.sources]] table to the recipe")
    old = _manifest_fingerprint(layout)
    if cfg.executor == "slurm":
        return _submit_slurm(cfg, tok, seed, layout, old, force, log)
    t0 = time.perf_counter()
    m = run_data_stage(cfg, tok, seed, layout.root, force=force, progress=progress)
    outputs = (layout.data, layout.tokenizer)
    if not force and old is not None and old == m.get("inputs_fingerprint"):
        return StageResult.skipped(
            "data", f"inputs unchanged since {layout.rel(layout.data / 'manifest.json')}", outputs
        )
    log(
        f"data: {sum(s['docs_kept'] for s in m['sources']):,} documents kept of "
        f"{sum(s['docs_in'] for s in m['sources']):,}; {m['tokens']['train_tokens']:,} train + "
        f"{m['tokens']['val_tokens']:,} val tokens → {layout.data} ({time.perf_counter() - t0:.1f} s)"
    )
    if m["errors"].get("rejected"):
        log(
            f"data: {m['errors']['rejected']:,} record(s) could not be read; each is listed (file, line, reason) "
            f"in {layout.data / m['errors']['rejects_file']}"
        )
    return StageResult.done("data", outputs)


def _submit_slurm(cfg, tok, seed: int, layout: RunLayout, old: str | None, force: bool, log) -> StageResult:
    """`data.executor = "slurm"`: submit the analysis array and the merge job; `data/` appears when they end."""
    from moxin.data.executors import submit_slurm
    from moxin.data.pipeline import inputs_fingerprint

    fp, process_fp, _ = inputs_fingerprint(cfg, tok, seed)
    if not force and old == fp and (layout.data / "tokens.json").is_file():
        return StageResult.skipped(
            "data", f"inputs unchanged since {layout.rel(layout.data / 'manifest.json')}", (layout.data,)
        )
    calls = submit_slurm(cfg, tok, seed, layout.root, process_fp)
    ids = ", ".join(a[-1] for _, a in calls if a and a[-1].startswith("--dependency")) or "none"
    log(f"data: submitted {len(calls)} Slurm job(s) (dependencies: {ids}); work folder {layout.root}/.scale/")
    return StageResult.failed(
        "data",
        f"submitted to Slurm; {layout.rel(layout.data)} is written by the merge job (moxin-data-merge): run the "
        f"next stage once it has finished",
        (layout.data,),
    )


def print_slurm_dry_run(recipe: Recipe) -> None:
    """The sbatch scripts `moxin data --executor slurm` would submit, and the arguments of each `sbatch` call."""
    from moxin.data.executors import submit_slurm
    from moxin.data.pipeline import inputs_fingerprint

    layout = RunLayout.from_recipe(recipe)
    cfg, tok = stage_configs(recipe.data, recipe.tokenizer, recipe.resolve_path)
    _, process_fp, _ = inputs_fingerprint(cfg, tok, recipe.run.seed)
    for i, (script, args) in enumerate(submit_slurm(cfg, tok, recipe.run.seed, layout.root, process_fp, True)):
        print(f"# sbatch job {i + 1}: {' '.join(['sbatch', *args, '<script>'])}")
        print(script.rstrip("\n"))


def _manifest_fingerprint(layout: RunLayout) -> str | None:
    try:
        return json.loads((layout.data / "manifest.json").read_text("utf-8")).get("inputs_fingerprint")
    except (OSError, ValueError, AttributeError):
        return None


def data(
    recipe: Recipe,
    force: bool = False,
    dry_run: bool = False,
    executor: Literal["inprocess", "local", "ray", "slurm"] | None = None,
    tasks: int | None = None,
    workers: int | None = None,
) -> None:
    """Run the data stage: read the recipe's sources, clean, deduplicate, mask PII, decontaminate, train the
    tokenizer on a sample (unless an up-to-date one exists) and write token shards, manifest and data card.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        force: re-run even if the inputs' fingerprint matches the existing <run>/data/manifest.json
        dry_run: print the resolved config and the plan, then exit (with slurm: also the sbatch scripts)
        executor: where the cleaning pass runs (data.executor): inprocess, or datatrove's local, ray or slurm
        tasks: datatrove tasks, i.e. shards of the input files (data.tasks; default: workers)
        workers: parallel processes, Ray tasks at once, or none for slurm (data.workers)
    """
    from moxin.commands import print_dry_run

    recipe = _with_execution(recipe, executor, tasks, workers)
    if dry_run:
        print_dry_run(recipe, _plan(recipe))
        if recipe.data.executor == "slurm":
            print_slurm_dry_run(recipe)
        return
    layout = RunLayout.from_recipe(recipe)
    tok = stage_tokenizer(recipe, layout)
    res = run_data(recipe.data, tok, layout, recipe.run.seed, recipe.resolve_path, force=force)
    if res.status != "done":
        print(res.line())


def _with_execution(recipe: Recipe, executor: str | None, tasks: int | None, workers: int | None) -> Recipe:
    """The recipe with --executor/--tasks/--workers applied to [data] (validated like the recipe's own keys)."""
    import dataclasses

    if executor is None and tasks is None and workers is None:
        return recipe
    d = dataclasses.replace(recipe.data)
    if executor is not None:
        d.executor = executor  # type: ignore[assignment]  # the CLI checked it against the Literal
    d.tasks = tasks if tasks is not None else d.tasks
    d.workers = workers if workers is not None else d.workers
    d.validate(where="the command line (--executor/--tasks/--workers)", prefix="data.")
    recipe.data = d  # in place: the recipe keeps its source_path (recipe-relative paths)
    return recipe


def tokenizer(recipe: Recipe, dry_run: bool = False) -> None:
    """Train the tokenizer (byte-level BPE) on a sample of the processed data → <run>/tokenizer/.

    Uses <run>/data/processed when the data stage already ran; otherwise processes the sources first (into a
    temporary folder). Saved so transformers.AutoTokenizer.from_pretrained loads it offline.

    Args:
        recipe: recipe TOML file, or the name of a shipped recipe (e.g. tiny)
        dry_run: print the resolved config and the plan, then exit
    """
    from moxin.commands import print_dry_run

    if dry_run:
        print_dry_run(recipe, _plan(recipe)[:-1])
        return
    from moxin.data.pipeline import train_tokenizer_stage

    layout = RunLayout.from_recipe(recipe)
    cfg, tok = stage_configs(recipe.data, recipe.tokenizer, recipe.resolve_path)
    m = train_tokenizer_stage(cfg, tok, recipe.run.seed, layout.root)
    print(f"tokenizer: vocab {m['vocab_size']}, sha256 {m['tokenizer_sha256'][:16]}… → {layout.tokenizer}")


def inspect(dir: Path) -> None:
    """Print a summary of a data folder: sources, keep rates, languages, drop reasons, decontamination, tokens,
    and whether every shard still matches its SHA-256.

    Args:
        dir: a data folder (<run>/data) or a run folder
    """
    from moxin.data.tokens import TokenData
    from moxin.data.trace import data_folder
    from moxin.errors import DataError

    folder = data_folder(dir)
    try:
        m = json.loads((folder / "manifest.json").read_text("utf-8"))
    except (FileNotFoundError, ValueError) as e:
        raise DataError(f"{folder / 'manifest.json'} is missing or unreadable ({e}); re-run `moxin data`") from None
    print(f"data folder {folder}  (inputs fingerprint {m['inputs_fingerprint'][:16]}, seed {m['seed']})")
    print(
        f"{'source':<16}{'type':<14}{'licence':<14}{'docs in':>9}{'kept':>9}{'keep':>8}{'train tok':>12}"
        f"{'val tok':>10}  languages"
    )
    for s in m["sources"]:
        langs = ", ".join(f"{k} {v}" for k, v in sorted(s["languages"].items(), key=lambda kv: -kv[1]))
        print(
            f"{s['name']:<16}{s['type']:<14}{s['license']:<14}{s['docs_in']:>9,}{s['docs_kept']:>9,}"
            f"{s['keep_rate']:>8.1%}{s['tokens'].get('train', 0):>12,}{s['tokens'].get('val', 0):>10,}  {langs}"
        )
    for st in m["steps"]:
        extra = ", ".join(f"-{k} {v}" for k, v in st["dropped"].items())
        extra += (", " if extra and st["modified"] else "") + ", ".join(f"~{k} {v}" for k, v in st["modified"].items())
        print(f"  {st['step']:<14}{st['docs_in']:>9,} → {st['docs_out']:>9,}  {extra}")
    for name, d in m["decontamination"].items():
        print(
            f"decontamination {name}: {d['items_found']} of {d['items']} items found; documents by source "
            f"{d['docs_by_source'] or 'none'}"
        )
    print(f"read errors: {m['errors']['count']}" + "".join(f"\n  {e}" for e in m["errors"]["examples"][:10]))
    problems = TokenData(folder).verify()
    print(
        f"tokenizer sha256 {m['tokenizer']['tokenizer_sha256'][:16]}…, vocab {m['tokenizer']['vocab_size']}; "
        f"shards: {len(m['tokens']['shards'])}, "
        + ("all SHA-256 match" if not problems else f"{len(problems)} problem(s): {problems[:3]}")
    )


def trace(
    dir: Path, token: int | None = None, source: str | None = None, split: str = "train", chars: int = 400
) -> int:
    """Print the document a token came from, and check that re-tokenizing it gives the token at that position.

    Token addressing: without --source, --token is a global index over the train split of every source in sorted
    source-name order; with --source, it is the offset within that source's --split.

    Args:
        dir: a data folder (<run>/data) or a run folder
        token: token index (global over train splits, or within --source)
        source: address tokens within this source only
        split: split of --source (train or val)
        chars: characters of the document to print
    """
    from moxin.data.trace import trace_token
    from moxin.errors import DataError

    if token is None:
        raise DataError("moxin data trace needs --token N (a global train-token index, or an offset with --source)")
    t = trace_token(dir, token, source, split)
    print(
        f"token {token} → {t.source}/{t.split} offset {t.offset}: id {t.token_id} {t.piece!r}"
        f"{' (EOS)' if t.is_eos else ''}"
    )
    print(
        f"document {t.doc_id} (#{t.doc_index} of {t.source}/{t.split}, lang {t.lang}) from {t.where}; "
        f"token position {t.position}"
    )
    print(f"re-tokenized document has this token at position {t.position}: {'yes' if t.verified else 'NO'}")
    print("-" * 60)
    print(t.text[:chars] + ("…" if len(t.text) > chars else ""))
    return 0 if t.verified else 1
