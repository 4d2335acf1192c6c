"""`moxin release RUN OUT`: bundle a run into a release folder whose MOF class is computed from its contents.

Layout of a release::

    README.md  DATA_CARD.md  TECHNICAL_REPORT.md     model card, data card, technical report
    mof.yml  mof.json                                 Model Openness Tool file; moxin's full audit
    release.json                                      facts the cards state, licences, code version
    model/  tokenizer/  hf/                           final model (moxin), its tokenizer, Hugging Face export
    pretrain/ finetune/<name>/                        as in the run: checkpoints/step-XXXXXXXX/ (weights,
                                                      optimizer, train state, manifest), metrics.jsonl, run.json
    data/                                             data manifest, tokenized data (tokens.json + tokens/)
    config/recipe.toml                                the recorded recipe
    eval/results/ eval/plots/ eval/data/              evaluation results, plots and the evaluation data used
    plots/                                            loss and evaluation curves
    samples/outputs.jsonl                             sample outputs of the final model
    code/                                             moxin's source, VERSION.json, requirements.txt
    paper/                                            the research paper
    LICENSES/                                         licence texts (or references) per licence used
    SHA256SUMS                                        `sha256sum -c` format, over every other file
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moxin.provenance import atomic_dir, atomic_write_json, atomic_write_text, sha256_file
from moxin.release.artifacts import copy_code, write_hf, write_licences, write_paper, write_plots, write_samples
from moxin.release.config import ReleaseConfig
from moxin.release.runs import (
    Checkpoint,
    ReleaseError,
    all_checkpoints,
    data_dir_of,
    eval_results,
    final_checkpoint,
    recorded_recipe,
)

# ------------------------------------------------------------------------------------------------ copying
# Wall-clock measurements differ between any two runs of the same build; the release leaves them out of the stage
# logs it ships (they stay in the run folder), so a rebuilt or resumed build gives the same release bytes.
WALL_CLOCK_KEYS = frozenset(
    {"created", "time_s", "step_time", "tokens_per_s", "flops_per_s", "mfu", "resumed_from", "seconds", "elapsed_s"}
)


def _is_log(src: Path) -> bool:
    """Stage logs and eval results; never files inside a checkpoint (their manifest lists their hashes)."""
    parts = src.parts
    if "checkpoints" in parts or "final" in parts:
        return False
    return src.name in ("metrics.jsonl", "run.json") or (src.suffix == ".json" and "results" in parts[-2:-1])


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in WALL_CLOCK_KEYS}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def without_wall_clock(text: str, suffix: str) -> str:
    if suffix == ".jsonl":
        rows = [json.loads(line) for line in text.splitlines() if line.strip()]
        return "".join(json.dumps(_strip(r), sort_keys=True) + "\n" for r in rows)
    return json.dumps(_strip(json.loads(text)), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


class Copier:
    """Copies files with one progress bar over bytes (rate and ETA)."""

    def __init__(self, total: int, progress) -> None:
        self.progress = progress
        self.task = progress.add_task("copying", total=total) if progress else None

    def file(self, src: Path, dst: Path) -> None:
        dst.parent.mkdir(parents=True, exist_ok=True)
        if _is_log(src):
            atomic_write_text(dst, without_wall_clock(src.read_text("utf-8"), src.suffix))
        else:
            shutil.copyfile(src, dst)
        if self.progress:
            self.progress.advance(self.task, src.stat().st_size)

    def tree(self, src: Path, dst: Path, skip: Callable[[Path], bool] = lambda p: False) -> None:
        for p in sorted(src.rglob("*")):
            rel = p.relative_to(src)
            if p.is_file() and not skip(p) and not any(part.startswith(".") for part in rel.parts):
                self.file(p, dst / rel)


def tree_size(*folders: Path) -> int:
    return sum(p.stat().st_size for f in folders if f.is_dir() for p in f.rglob("*") if p.is_file())


# ------------------------------------------------------------------------------------------------ parts
def release_config(recipe: dict[str, Any], where: str, overrides: list[str] | None) -> ReleaseConfig:
    from moxin.config import from_dict
    from moxin.recipe import apply_overrides

    data = apply_overrides({"release": dict(recipe.get("release") or {})}, list(overrides or []))
    where = (where or "the run's recorded recipe") + (" (with --set overrides)" if overrides else "")
    return from_dict(ReleaseConfig, data["release"], where, prefix="release.")


def refuse_sharded(run: Path) -> None:
    """A release holds single-file checkpoints only: sharded (DCP) ones, which have no model/ folder, would be
    left out of the listing, the MOF audit and verify. Refuse, naming them and the command that consolidates."""
    from moxin.train.ckpt_commands import sharded_checkpoints

    found = sharded_checkpoints(run)
    if found:
        names = ", ".join(p.relative_to(run).as_posix() for p in found[:5]) + (" ..." if len(found) > 5 else "")
        raise ReleaseError(
            f"{len(found)} sharded checkpoint(s) in {run} have no model/ folder ({names}); run "
            f"`moxin checkpoint consolidate {run}` first, then release again"
        )


def copy_stages(
    run: Path, cks: list[Checkpoint], final: Checkpoint, out: Path, cfg: ReleaseConfig, cp: Copier
) -> list[str]:
    """Each stage folder as in the run (checkpoints/, metrics.jsonl, run.json, plots, a fine-tune's data/ and
    tokenizer/), with all checkpoints or only the final one; returns the files left out on purpose."""
    from moxin.layout import RunLayout

    refuse_sharded(run)
    dropped = {c.path.resolve() for c in cks if not cfg.intermediate_checkpoints and c is not final}
    omitted = sorted(
        f"{c.path.relative_to(run).as_posix()}/optimizer.safetensors"
        for c in cks
        if c.path.resolve() not in dropped and not cfg.optimizer_state and (c.path / "optimizer.safetensors").is_file()
    )

    layout = RunLayout(run)
    # A stage folder's own manifest.json hashes its logs with their wall-clock times, which the release strips.
    stage_manifests = {layout.stage_dir(s) / "manifest.json" for s in layout.training_stages()}

    def skip(p: Path) -> bool:
        if p in stage_manifests or any(d in p.resolve().parents for d in dropped):
            return True
        return not cfg.optimizer_state and p.name == "optimizer.safetensors"

    for stage in layout.training_stages():
        cp.tree(layout.stage_dir(stage), out / stage, skip)
    return omitted


def _eval_file(rel: str, sha: str | None, run: Path, data_dirs: list[Path], where: Path) -> Path | None:
    """Find an evaluation data file the results name: absolute, in the run (or its eval/), or under a data folder; the
    recorded SHA-256 must match (a different file of the same name is not the data that was evaluated)."""
    p = Path(rel)
    # own evaluation sets (`[[eval.own]]`) name their checked copy relative to the run's eval/ folder
    candidates = [p] if p.is_absolute() else [run / p, run / "eval" / p, *[d / p for d in data_dirs]]
    for c in candidates:
        if c.is_file():
            if sha and sha256_file(c) != sha:
                raise ReleaseError(
                    f"{where} records {rel} with SHA-256 {sha[:12]}…, but {c} differs; pass "
                    "--eval-data-dir with the data that was evaluated"
                )
            return c
    return None


# The evaluation files that stay in the run: the tables (the card renders its own from results/), the stage manifest,
# and timings.jsonl (when each result was computed and how long it took: wall clock, different on every run).
LEFT_IN_RUN = ("table.csv", "table.md", "manifest.json", "timings.jsonl")


def copy_eval(run: Path, out: Path, cp: Copier, data_dirs: list[Path]) -> list[str]:
    """Results, tables and plots, and the evaluation data files the results name (laid out as in the data folder,
    with each folder's SOURCE.md and licence). Returns the files that could not be found."""
    from moxin.release.licences import licence_from_source_md, normalise

    ev = run / "eval"
    if not ev.is_dir():
        return []
    cp.tree(
        ev,
        out / "eval",
        skip=lambda p: "data" in p.relative_to(ev).parts[:1] or p.name in LEFT_IN_RUN,
    )
    sources: dict[str, dict[str, Any]] = {}
    missing = []
    for r in eval_results(ev):
        for d in r.data:
            src = _eval_file(str(d["path"]), d.get("sha256"), run, data_dirs, r.file)
            if src is None:
                missing.append(str(d["path"]))
                continue
            rel = Path(d["path"]) if not Path(d["path"]).is_absolute() else Path(src.parent.name) / src.name
            folder = rel.parts[0] if len(rel.parts) > 1 else str(d.get("task"))
            origin = rel.parent.as_posix() if len(rel.parts) > 1 else folder  # never the absolute source folder
            entry = sources.setdefault(
                folder, {"name": folder, "license": None, "origin": origin, "tasks": [], "files": []}
            )
            entry["license"] = entry["license"] or normalise(d.get("license")) or licence_from_source_md(src.parent)
            task = str(d.get("task") or folder)
            if task not in entry["tasks"]:
                entry["tasks"].append(task)
            dst = f"eval/data/{folder}/{rel.name}" if len(rel.parts) <= 2 else f"eval/data/{rel.as_posix()}"
            if dst not in entry["files"]:
                cp.file(src, out / dst)
                entry["files"].append(dst)
                if (src.parent / "SOURCE.md").is_file() and not (out / "eval" / "data" / folder / "SOURCE.md").exists():
                    cp.file(src.parent / "SOURCE.md", out / "eval" / "data" / folder / "SOURCE.md")
    if sources:
        atomic_write_json(out / "eval" / "data" / "sources.json", [sources[k] for k in sorted(sources)])
    return sorted(set(missing))


def write_checksums(out: Path) -> int:
    """SHA256SUMS in `sha256sum` format (hash, two spaces, path) over every file but itself and its signature."""
    outside = {out / "SHA256SUMS", out / "SHA256SUMS.sig"}
    files = sorted(p for p in out.rglob("*") if p.is_file() and p not in outside)
    lines = [f"{sha256_file(p)}  {p.relative_to(out).as_posix()}" for p in files]
    atomic_write_text(out / "SHA256SUMS", "\n".join(lines) + "\n")
    return len(files)


# ------------------------------------------------------------------------------------------------ the release
def _treatment(cks: list[Checkpoint]) -> str:
    stages = {c.stage for c in cks if c.stage != "pretrain"}
    if any(w in s for s in stages for w in ("dpo", "grpo", "chat")):
        return "chat fine-tuned"
    return "instruct fine-tuned" if stages else "pre-trained"


def _release_date(final: Checkpoint) -> str:
    """The final checkpoint's date (UTC): the same run gives the same release bytes on any day."""
    import datetime as dt

    t = (final.path / "manifest.json").stat().st_mtime if (final.path / "manifest.json").is_file() else 0
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d")


def _facts(
    run: Path,
    cks: list[Checkpoint],
    final: Checkpoint,
    cfg: ReleaseConfig,
    recipe: dict[str, Any],
    code: dict[str, Any],
    omitted: list[str],
) -> dict[str, Any]:
    from moxin.interop.native import read_model_config
    from moxin.model.config import num_params
    from moxin.provenance import environment

    mcfg = read_model_config(final.path / "model")
    pkg_licence = _package_licence()
    return {
        "name": cfg.name or (recipe.get("run") or {}).get("name") or run.name,
        "version": cfg.version,
        "date": _release_date(final),
        "treatment": _treatment(cks),
        "origin": cfg.origin,
        "producer": cfg.producer,
        "contact": cfg.contact,
        "licenses": {
            "code": cfg.code_license or pkg_licence,
            "model": cfg.model_license,
            "document": cfg.document_license,
            "paper": cfg.research_paper_license if cfg.research_paper else None,
        },
        "parameters": num_params(mcfg),
        "parameters_without_embeddings": num_params(mcfg, include_embeddings=False),
        "final_checkpoint": {"name": final.name, "step": final.step, "sha256": final.sha},
        "checkpoints": [
            {"name": c.name, "step": c.step, "sha256": c.sha} for c in cks if cfg.intermediate_checkpoints or c is final
        ],
        "omitted": omitted,
        "code": code,
        "environment": environment(),
        "verify": VERIFY_HOWTO,
    }


# release.json cannot hold its own digest (it is inside SHA256SUMS): it says how to check the published one.
VERIFY_HOWTO = {
    "digest": "The release digest is the SHA-256 of SHA256SUMS (`sha256sum SHA256SUMS`, printed by `moxin release` "
    "and `moxin verify`). Compare it with the value the producer published outside the release: "
    "`moxin verify . --digest HEX` fails unless they match.",
    "signature": "When SHA256SUMS.sig is present (the one file SHA256SUMS does not list), it is the producer's "
    "Ed25519 signature of SHA256SUMS: `moxin verify . --key PRODUCER_KEY.pub` checks it.",
    "checks": "`moxin verify .` checks every file against SHA256SUMS and every derived file against what it was "
    "derived from (docs/VERIFY.md in moxin's source).",
}


def _package_licence() -> str:
    from importlib import metadata

    try:
        meta = metadata.metadata("moxin")
    except metadata.PackageNotFoundError:
        return "Apache-2.0"
    # PackageMetadata declares get() only from Python 3.12; the first value of get_all is what get() returns
    expr, lic = ((meta.get_all(key) or [""])[0] for key in ("License-Expression", "License"))
    return (expr or lic or "Apache-2.0").strip()


def _steps(cks, final, cfg, run, out, cp, data_dirs) -> dict[str, Any]:
    data = data_dir_of(run)
    omitted = copy_stages(run, cks, final, out, cfg, cp)
    cp.tree(final.path / "model", out / "model")
    tok = final.path / "tokenizer" if (final.path / "tokenizer").is_dir() else run / "tokenizer"
    if tok.is_dir():
        cp.tree(tok, out / "tokenizer")
    cp.tree(data, out / "data")
    return {"omitted": omitted, "eval_missing": copy_eval(run, out, cp, data_dirs)}


def _write_derived(tmp: Path, run: Path, cks: list[Checkpoint], final: Checkpoint, cfg: ReleaseConfig,
                   recipe_where: tuple[dict[str, Any], str], overrides: list[str] | None, parts: dict[str, Any],
                   cp: Copier) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    """Everything the release derives besides the copied stages: config/, code/, paper/, release.json, hf/,
    samples, plots, licences, the MOF files, the cards and index.html. Returns (release.json, the MOF audit)."""
    from moxin.release import cards
    from moxin.release.mof import write_mof
    from moxin.report.commands import release_page

    recipe, where = recipe_where
    write_config(tmp, recipe, where)
    code = copy_code(tmp, cp)
    write_paper(tmp, cfg, Path(where).parent if where else None)
    meta = _facts(run, cks, final, cfg, recipe, code, parts["omitted"])
    meta["release_overrides"] = list(overrides or [])  # --set values: verify re-applies them to config/
    atomic_write_json(tmp / "release.json", meta)
    if cfg.hf_export:
        write_hf(tmp)
    if (tmp / "tokenizer").is_dir():
        write_samples(tmp, cfg)
    write_plots(tmp)
    write_licences(tmp, meta["licenses"])
    rep = write_mof(tmp, meta)
    for _ in range(2):  # the cards show the class, and the class depends on the cards being there
        atomic_write_text(tmp / "README.md", cards.model_card(tmp))
        atomic_write_text(tmp / "DATA_CARD.md", cards.data_card(tmp))
        atomic_write_text(tmp / "TECHNICAL_REPORT.md", cards.technical_report(tmp))
        rep = write_mof(tmp, meta)
    atomic_write_text(tmp / "index.html", release_page(tmp))  # the report page, covered by SHA256SUMS
    return meta, rep


def build_release(
    run: Path,
    out: Path,
    overrides: list[str] | None = None,
    progress: bool = True,
    eval_data_dir: Path | None = None,
    recipe_path: Path | None = None,
) -> dict[str, Any]:
    """Bundle RUN into OUT (written atomically). Returns the MOF audit (mof.json's content) plus 'notes'.

    `eval_data_dir` is where the evaluation data named in the results lives (default: $MOXIN_EVAL_DATA_DIR);
    `recipe_path` the recipe the run was built with when the run does not hold it."""
    run, out = Path(run), Path(out)
    if not run.is_dir():
        raise ReleaseError(f"run folder not found: {run}; give the run's output folder (<run.out_dir>/<run.name>)")
    if out.exists():
        raise ReleaseError(f"output {out} already exists; choose a new folder or remove it")
    refuse_sharded(run)  # before listing: all_checkpoints does not see them
    cks = all_checkpoints(run)
    final = final_checkpoint(cks)
    if recipe_path is not None:
        from moxin.recipe import read_toml

        recipe, where = read_toml(Path(recipe_path)), str(recipe_path)
    else:
        recipe, where = recorded_recipe(run, final)
    cfg = release_config(recipe, where, overrides)
    data_dir_of(run)  # fail before copying anything when the data cannot be found
    env_dir = os.environ.get("MOXIN_EVAL_DATA_DIR")
    data_dirs = [Path(p) for p in (eval_data_dir, env_dir) if p]
    prog = _progress() if progress else None
    with atomic_dir(out) as tmp, prog or _nullcontext():
        cp = Copier(tree_size(*[c.path for c in cks], data_dir_of(run), run / "eval", run / "tokenizer"), prog)
        parts = _steps(cks, final, cfg, run, tmp, cp, data_dirs)
        meta, rep = _write_derived(tmp, run, cks, final, cfg, (recipe, where), overrides, parts, cp)
        write_checksums(tmp)
    notes = (
        [f"evaluation data not found (pass --eval-data-dir): {', '.join(parts['eval_missing'])}"]
        if parts["eval_missing"]
        else []
    )
    if meta["code"].get("git_dirty"):
        notes.append(
            f"the moxin source tree had uncommitted changes (commit {meta['code'].get('git_commit')}); "
            "code/ holds the code as it was, and the cards say so"
        )
    return {**rep, "notes": notes}


def write_config(out: Path, recipe: dict[str, Any], where: str) -> None:
    """config/recipe.toml when the recipe is known (with where it came from), else config/run.json (the resolved
    configuration the trainer recorded)."""
    import json

    from moxin.config import to_toml

    if where.endswith(".toml") and recipe:
        # The header names no file: the release's bytes must not depend on what the recipe file was called.
        atomic_write_text(
            out / "config" / "recipe.toml", "# the resolved recipe this release was built with\n" + to_toml(recipe)
        )
    elif recipe:
        atomic_write_text(out / "config" / "run.json", json.dumps(recipe, indent=2, sort_keys=True) + "\n")


def _progress():
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        transient=True,
    )


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
