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
from pathlib import Path
from typing import Any, Callable

from moxin.provenance import atomic_dir, atomic_write_json, atomic_write_text, sha256_file
from moxin.release.config import ReleaseConfig
from moxin.release.runs import (Checkpoint, ReleaseError, all_checkpoints, data_dir_of, eval_results,
                                final_checkpoint, recorded_recipe)

CODE_SUFFIXES = {".py", ".toml", ".jinja", ".json", ".md", ".txt"}
LIBRARIES = ("torch", "numpy", "safetensors", "tokenizers", "transformers", "gguf", "rich", "matplotlib", "pyyaml",
             "lm_eval", "peft", "datasketch", "zstandard", "pyarrow", "fastapi", "uvicorn")


# ------------------------------------------------------------------------------------------------ copying
# Wall-clock measurements differ between any two runs of the same build; the release leaves them out of the stage
# logs it ships (they stay in the run folder), so a rebuilt or resumed build gives the same release bytes.
WALL_CLOCK_KEYS = frozenset({"created", "time_s", "step_time", "tokens_per_s", "flops_per_s", "mfu", "resumed_from",
                             "seconds", "elapsed_s"})


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
        raise ReleaseError(f"{len(found)} sharded checkpoint(s) in {run} have no model/ folder ({names}); run "
                           f"`moxin checkpoint consolidate {run}` first, then release again")


def copy_stages(run: Path, cks: list[Checkpoint], final: Checkpoint, out: Path, cfg: ReleaseConfig,
                cp: Copier) -> list[str]:
    """Each stage folder as in the run (checkpoints/, metrics.jsonl, run.json, plots, a fine-tune's data/ and
    tokenizer/), with all checkpoints or only the final one; returns the files left out on purpose."""
    from moxin.layout import RunLayout

    refuse_sharded(run)
    dropped = {c.path.resolve() for c in cks if not cfg.intermediate_checkpoints and c is not final}
    omitted = sorted(f"{c.path.relative_to(run).as_posix()}/optimizer.safetensors" for c in cks
                     if c.path.resolve() not in dropped and not cfg.optimizer_state
                     and (c.path / "optimizer.safetensors").is_file())

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
    """Find an evaluation data file the results name: absolute, in the run, or under a data folder; the recorded
    SHA-256 must match (a different file of the same name is not the data that was evaluated)."""
    p = Path(rel)
    candidates = [p] if p.is_absolute() else [run / p, *[d / p for d in data_dirs]]
    for c in candidates:
        if c.is_file():
            if sha and sha256_file(c) != sha:
                raise ReleaseError(f"{where} records {rel} with SHA-256 {sha[:12]}…, but {c} differs; pass "
                                   "--eval-data-dir with the data that was evaluated")
            return c
    return None


def copy_eval(run: Path, out: Path, cp: Copier, data_dirs: list[Path]) -> list[str]:
    """Results, tables and plots, and the evaluation data files the results name (laid out as in the data folder,
    with each folder's SOURCE.md and licence). Returns the files that could not be found."""
    from moxin.release.licences import licence_from_source_md, normalise

    ev = run / "eval"
    if not ev.is_dir():
        return []
    # table.csv/table.md carry each evaluation's wall time: the card renders its table from results/ instead.
    cp.tree(ev, out / "eval", skip=lambda p: "data" in p.relative_to(ev).parts[:1]
            or p.name in ("table.csv", "table.md", "manifest.json"))
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
            entry = sources.setdefault(folder, {"name": folder, "license": None, "origin": origin,
                                                "tasks": [], "files": []})
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


def copy_code(out: Path, cp: Copier) -> dict[str, Any]:
    """moxin's source (the code that built this model), its version, and the pinned libraries with licences."""
    import moxin
    from moxin.provenance import code_version

    pkg = Path(moxin.__file__).resolve().parent
    cp.tree(pkg, out / "code" / "src" / "moxin",
            skip=lambda p: p.suffix not in CODE_SUFFIXES or "__pycache__" in p.parts)
    repo = pkg.parent.parent
    for name in ("pyproject.toml", "LICENSE", "README.md"):
        if (repo / name).is_file() and (repo / "src" / "moxin").resolve() == pkg:
            cp.file(repo / name, out / "code" / name)
    version = code_version()
    atomic_write_json(out / "code" / "VERSION.json", version)
    atomic_write_text(out / "code" / "requirements.txt", requirements())
    return version


def _dist_licence(dist) -> str:
    from moxin.release.licences import OSI, first_licence_in, normalise

    meta = dist.metadata
    expr = meta.get("License-Expression")
    if expr:
        return expr.strip()
    lic = (meta.get("License") or "").strip()
    spdx = normalise(lic) if lic and len(lic) < 60 else None
    if spdx is not None and spdx in OSI:
        return spdx
    classifiers = " ".join(c for c in meta.get_all("Classifier") or [] if c.startswith("License ::"))
    text = classifiers.replace("Apache Software License", "Apache-2.0").replace("MIT License", "MIT")
    text = text.replace("BSD License", "BSD-3-Clause").replace("Python Software Foundation License", "PSF-2.0")
    return first_licence_in(text) or first_licence_in(lic[:200]) or ""


def requirements() -> str:
    """`name==version  # license: SPDX` for moxin's libraries that are installed."""
    from importlib import metadata

    lines = ["# Libraries this release was built with (installed versions) and their declared licences."]
    for name in LIBRARIES:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        lines.append(f"{dist.metadata['Name']}=={dist.version}  # license: {_dist_licence(dist)}")
    return "\n".join(lines) + "\n"


def write_paper(out: Path, cfg: ReleaseConfig, recipe_dir: Path | None) -> bool:
    if not cfg.research_paper:
        return False
    if cfg.research_paper == "builtin":
        from moxin.release.paper import PAPER, PAPER_NAME

        atomic_write_text(out / "paper" / PAPER_NAME, PAPER)
        return True
    src = Path(cfg.research_paper).expanduser()
    if not src.is_absolute() and recipe_dir is not None:
        src = recipe_dir / src
    if not src.is_file():
        raise ReleaseError(f"release.research_paper = {cfg.research_paper!r}: file {src} not found; give a PDF or "
                           "Markdown file, 'builtin' for moxin's method paper, or '' for none")
    (out / "paper").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / "paper" / src.name)
    return True


def write_samples(out: Path, cfg: ReleaseConfig) -> int:
    """Greedy continuations of the configured prompts by the final model (deterministic)."""
    import torch

    from moxin.interop import load_model
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.model.generate import Sampling, generate

    if not cfg.sample_prompts or cfg.sample_max_new_tokens == 0:
        return 0
    tok = load_tokenizer(out)
    model = load_model(out / "model").eval()
    rows = []
    for prompt in cfg.sample_prompts:
        ids = torch.tensor([tok.encode(prompt)])
        gen = generate(model, ids, cfg.sample_max_new_tokens, Sampling(0.0), eos_id=tok.eos_token_id)
        rows.append({"prompt": prompt, "output": tok.decode(gen[0, ids.shape[1]:].tolist(), skip_special_tokens=True),
                     "max_new_tokens": cfg.sample_max_new_tokens, "decoding": "greedy"})
    import json

    atomic_write_text(out / "samples" / "outputs.jsonl",
                      "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows))
    return len(rows)


def write_hf(out: Path) -> None:
    from moxin.interop import load_model
    from moxin.interop.hf import to_hf

    model = load_model(out / "model")
    tok_dir = out / "tokenizer"
    eos = bos = None
    if (tok_dir / "tokenizer.json").is_file():
        from moxin.interop.tokenizer import load_tokenizer

        tok = load_tokenizer(out)
        eos, bos = tok.eos_token_id, tok.bos_token_id
    to_hf(model, out / "hf", bos_id=bos, eos_id=eos)
    for p in sorted(tok_dir.iterdir()) if tok_dir.is_dir() else []:
        if p.is_file() and p.name != "manifest.json":
            shutil.copyfile(p, out / "hf" / p.name)


def write_licences(out: Path, licences: dict[str, str | None]) -> None:
    """LICENSES/<id>.txt for every licence in the release, and per-source lists for data, eval data, libraries."""
    for rel, text in licence_files(out, licences).items():
        atomic_write_text(out / rel, text)


def licence_files(out: Path, licences: dict[str, str | None]) -> dict[str, str]:
    """{LICENSES/...: text} for a release folder (what write_licences writes; verify recomputes it)."""
    from moxin.release.licences import licence_filename, licence_text, terms
    from moxin.release.mof import licences_of

    files: dict[str, str] = {}
    ids: set[str] = {v for v in licences.values() if v}
    recorded = licences_of(out)
    for key in ("datasets", "eval_data", "libraries"):
        entries = recorded.get(key) or []
        if not entries:
            continue
        lines = [f"# Licences of {key.replace('_', ' ')}", "", "| source | licence | file |", "|---|---|---|"]
        for name, lic in entries:
            ids_here = [t.split(" WITH ")[0] for t in terms(lic)]
            ids.update(ids_here)
            names = ", ".join(licence_filename(t) for t in ids_here)
            lines.append(f"| {name} | `{lic or 'none stated'}` | {names} |")
        files[f"LICENSES/{key}.md"] = "\n".join(lines) + "\n"
    for spdx in sorted(ids):
        files[licence_filename(spdx)] = licence_text(spdx)
    return files


def write_plots(out: Path) -> None:
    """plots/loss.png (every stage's loss by step) and plots/eval.png (each task metric by checkpoint step)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from moxin.layout import RunLayout
    from moxin.release.runs import read_jsonl

    layout = RunLayout(out)
    series = {stage: [r for r in read_jsonl(layout.metrics(stage)) if "loss" in r and "step" in r]
              for stage in layout.training_stages() if layout.metrics(stage).is_file()}
    if any(series.values()):
        fig, ax = plt.subplots(figsize=(7, 4))
        for stage, rows in series.items():
            ax.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=stage)
        ax.set(xlabel="step", ylabel="training loss", title="Training loss")
        ax.legend()
        _save(fig, out / "plots" / "loss.png")
    points: dict[str, list[tuple[int, float]]] = {}
    for r in eval_results(out / "eval"):
        for task, metrics in r.metrics.items():
            for metric, v in metrics.items():
                if r.step is not None:
                    points.setdefault(f"{task} {metric}", []).append((int(r.step), v))
    if points:
        fig, ax = plt.subplots(figsize=(7, 4))
        for label, pts in sorted(points.items()):
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
        ax.set(xlabel="checkpoint step", ylabel="score", title="Evaluation over checkpoints")
        ax.legend(fontsize="small")
        _save(fig, out / "plots" / "eval.png")


def _save(fig, path: Path) -> None:
    import io

    import matplotlib.pyplot as plt

    from moxin.provenance import atomic_write_bytes

    buf = io.BytesIO()
    # Fixed metadata keeps the PNG bytes identical from one release of the same run to the next.
    fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


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
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def _facts(run: Path, cks: list[Checkpoint], final: Checkpoint, cfg: ReleaseConfig, recipe: dict[str, Any],
           code: dict[str, Any], omitted: list[str]) -> dict[str, Any]:
    from moxin.interop.native import read_model_config
    from moxin.model.config import num_params
    from moxin.provenance import environment

    mcfg = read_model_config(final.path / "model")
    pkg_licence = _package_licence()
    return {
        "name": cfg.name or (recipe.get("run") or {}).get("name") or run.name, "version": cfg.version,
        "date": _release_date(final), "treatment": _treatment(cks), "origin": cfg.origin,
        "producer": cfg.producer, "contact": cfg.contact,
        "licenses": {"code": cfg.code_license or pkg_licence, "model": cfg.model_license,
                     "document": cfg.document_license,
                     "paper": cfg.research_paper_license if cfg.research_paper else None},
        "parameters": num_params(mcfg), "parameters_without_embeddings": num_params(mcfg, include_embeddings=False),
        "final_checkpoint": {"name": final.name, "step": final.step, "sha256": final.sha},
        "checkpoints": [{"name": c.name, "step": c.step, "sha256": c.sha} for c in cks
                        if cfg.intermediate_checkpoints or c is final],
        "omitted": omitted, "code": code, "environment": environment(), "verify": VERIFY_HOWTO,
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


def build_release(run: Path, out: Path, overrides: list[str] | None = None, progress: bool = True,
                  eval_data_dir: Path | None = None, recipe_path: Path | None = None) -> dict[str, Any]:
    """Bundle RUN into OUT (written atomically). Returns the MOF audit (mof.json's content) plus 'notes'.

    `eval_data_dir` is where the evaluation data named in the results lives (default: $MOXIN_EVAL_DATA_DIR);
    `recipe_path` the recipe the run was built with when the run does not hold it."""
    from moxin.release import cards
    from moxin.release.mof import write_mof

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
    with atomic_dir(out) as tmp, (prog or _nullcontext()):
        cp = Copier(tree_size(*[c.path for c in cks], data_dir_of(run), run / "eval", run / "tokenizer"), prog)
        parts = _steps(cks, final, cfg, run, tmp, cp, data_dirs)
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
        write_checksums(tmp)
    notes = [f"evaluation data not found (pass --eval-data-dir): {', '.join(parts['eval_missing'])}"] \
        if parts["eval_missing"] else []
    if meta["code"].get("git_dirty"):
        notes.append(f"the moxin source tree had uncommitted changes (commit {meta['code'].get('git_commit')}); "
                     "code/ holds the code as it was, and the cards say so")
    return {**rep, "notes": notes}


def write_config(out: Path, recipe: dict[str, Any], where: str) -> None:
    """config/recipe.toml when the recipe is known (with where it came from), else config/run.json (the resolved
    configuration the trainer recorded)."""
    import json

    from moxin.config import to_toml

    if where.endswith(".toml") and recipe:
        # The header names no file: the release's bytes must not depend on what the recipe file was called.
        atomic_write_text(out / "config" / "recipe.toml", "# the resolved recipe this release was built with\n"
                          + to_toml(recipe))
    elif recipe:
        atomic_write_text(out / "config" / "run.json", json.dumps(recipe, indent=2, sort_keys=True) + "\n")


def _progress():
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), transient=True)


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False
