"""`moxin build`: data → tokenizer → pretrain (phases) → fine-tune → eval over all checkpoints → release → verify.
A recipe with `[adapt] base` runs import → data (the base's tokenizer) → adapt → fine-tune → eval (base and
adapted) → release → verify instead.

Each stage is skipped when the fingerprint of its inputs is unchanged (`moxin.build.stages`), so an interrupted
build, even one killed with SIGKILL, resumes where it stopped; pretraining and fine-tuning resume from their last
checkpoint bit-exactly, so the release comes out byte-identical to an uninterrupted build's."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.build.stages import Outcome, Stage, output_fingerprint, run_stages
from moxin.config import to_dict
from moxin.errors import ConfigError
from moxin.layout import FINETUNE_MODES, RunLayout, finetune_name
from moxin.provenance import atomic_write_text, fingerprint
from moxin.recipe import Recipe
from moxin.stage import StageResult

# Rough share of a tiny build's time per stage: the ETA of the whole build before per-stage timings exist.
WEIGHTS = {"import": 0.5, "data": 2, "selfdata": 0.5, "pretrain": 6, "adapt": 6, "finetune": 1.5, "eval": 3,
           "release": 0.5, "verify": 1.5}  # fmt: skip


@dataclass
class BuildContext:
    recipe: Recipe
    layout: RunLayout
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.layout.build_state

    def section(self, name: str) -> Any:
        return to_dict(getattr(self.recipe, name))

    def finetune_run_json(self, mode: str) -> Path:
        """`finetune/<name>/run.json` of a mode (the folder the stage writes: `layout.finetune_name`)."""
        return self.layout.run_json(f"finetune/{finetune_name(self.recipe.finetune, mode)}")

    def finish(self, res: StageResult) -> StageResult:
        """Keep the stage's notes for the build summary."""
        self.notes += list(res.notes)
        return res


# ------------------------------------------------------------------------------------------------ stages
def import_stage(ctx: BuildContext) -> Stage:
    from moxin.adapt.base import base_inputs, run_import

    r, lay = ctx.recipe, ctx.layout
    return Stage(
        "import",
        lambda: {"base": base_inputs(r.adapt, r.resolve_path)},
        lambda: run_import(r.adapt, lay, r.resolve_path, log=ctx.log),
        [lay.base],
        f"the base model ({r.adapt.base}) → base/",
    )


def data_stage(ctx: BuildContext) -> Stage:
    from moxin.data.commands import data_inputs, run_data, stage_tokenizer

    r, lay = ctx.recipe, ctx.layout
    if not r.data.sources:
        raise ConfigError(f"[data] in {r.source_path} has no sources; add a [[data.sources]] table")
    tok = stage_tokenizer(r, lay)  # an adapt recipe: the imported base's tokenizer, none trained
    return Stage(
        "data",
        lambda: {"inputs": data_inputs(r.data, tok, r.run.seed, r.resolve_path)},
        lambda: run_data(r.data, tok, lay, r.run.seed, r.resolve_path, log=ctx.log),
        [lay.data, lay.tokenizer],
        "clean, deduplicate, tokenize",
    )


def selfdata_stage(ctx: BuildContext) -> Stage:
    from moxin.build.selfdata import run_selfdata

    r, lay = ctx.recipe, ctx.layout
    return Stage(
        "selfdata",
        lambda: {"data": output_fingerprint(lay.data), "seed": r.run.seed, "source": r.build.selfdata_source},
        lambda: run_selfdata(r.data.sources, r.build.selfdata_source, lay, r.run.seed, str(r.source_path), ctx.log),
        [lay.selfdata],
        "docstring → function pairs, code-completion task",
    )


def heldout_stage(ctx: BuildContext) -> Stage:
    """An adapt build's selfdata: only the held-out documents, bounded in number and length."""
    from moxin.adapt.heldout import run_heldout

    r, lay = ctx.recipe, ctx.layout
    a = r.adapt
    return Stage(
        "selfdata",
        lambda: {"data": output_fingerprint(lay.data), "docs": a.heldout_docs, "chars": a.heldout_chars},
        lambda: run_heldout(a, r.data.sources, lay, ctx.log),
        [lay.selfdata],
        "held-out documents → moxin_heldout (bits per byte)",
    )


def pretrain_stage(ctx: BuildContext) -> Stage:
    from moxin.train.commands import run_pretrain

    r, lay = ctx.recipe, ctx.layout
    return Stage(
        "pretrain",
        lambda: {
            "model": ctx.section("model"),
            "pretrain": ctx.section("pretrain"),
            "seed": r.run.seed,
            "data": output_fingerprint(lay.data),
        },
        lambda: run_pretrain(r, lay, resume="auto", progress=True, log=ctx.log),
        [lay.run_json("pretrain")],
        "phases, intermediate checkpoints",
    )


def adapt_stage(ctx: BuildContext) -> Stage:
    from moxin.adapt.commands import run_adapt

    r, lay = ctx.recipe, ctx.layout
    return Stage(
        "adapt",
        lambda: {
            "adapt": {k: v for k, v in ctx.section("adapt").items() if not k.startswith("heldout")},  # eval only
            "seed": r.run.seed,
            "base": output_fingerprint(lay.base),
            "data": output_fingerprint(lay.data),
        },
        lambda: run_adapt(r, lay, resume="auto", progress=True, log=ctx.log),
        [lay.run_json("adapt")],
        "continued pretraining of the base on the documents" + (" (LoRA)" if r.adapt.lora.rank else ""),
    )


def finetune_modes(recipe: Recipe) -> list[str]:
    return [m for m in FINETUNE_MODES if recipe.finetune.mode(m).data]


def finetune_stage(ctx: BuildContext, mode: str) -> Stage:
    from moxin.finetune.commands import run_finetune

    r, lay = ctx.recipe, ctx.layout
    modes = finetune_modes(r)

    def inputs():
        return {
            "finetune": ctx.section("finetune"),
            "seed": r.run.seed,
            "pretrain": output_fingerprint(lay.run_json("pretrain")),
            "adapt": output_fingerprint(lay.run_json("adapt")),
            "selfdata": output_fingerprint(lay.selfdata),
            "before": [output_fingerprint(ctx.finetune_run_json(m)) for m in modes[: modes.index(mode)]],
        }

    return Stage(
        f"finetune-{mode}",
        inputs,
        lambda: run_finetune(r, lay, mode, resume="auto", log=ctx.log),
        [ctx.finetune_run_json(mode)],
        f"{mode.upper()}",
    )


def eval_stage(ctx: BuildContext) -> Stage:
    from moxin.build.selfdata import available_tasks
    from moxin.eval.commands import run_eval
    from moxin.eval.own import source_digests

    r, lay = ctx.recipe, ctx.layout

    def run() -> StageResult:
        tasks, notes = available_tasks(lay.selfdata)
        ctx.notes += [n for n in notes if not r.adapt.enabled]  # an adapt build writes held-out documents only
        models = adapt_eval_models(ctx) if r.adapt.enabled else None
        cfg = with_generated_own(r.eval, lay, r.data.sources) if r.adapt.enabled else r.eval
        return ctx.finish(run_eval(cfg, lay, r.resolve_path, tasks, [lay.selfdata], models=models))

    def inputs():
        return {
            "eval": ctx.section("eval"),
            "own": source_digests(r.eval.own, r.resolve_path),  # [[eval.own]] files: an edited one is scored again
            "selfdata": output_fingerprint(lay.selfdata),
            "pretrain": output_fingerprint(lay.run_json("pretrain")),
            "base": output_fingerprint(lay.base),
            "adapt": output_fingerprint(lay.run_json("adapt")),
            "finetune": [output_fingerprint(ctx.finetune_run_json(m)) for m in finetune_modes(r)],
        }

    return Stage(
        "eval",
        inputs,
        run,
        [lay.eval / "table.csv"],
        "every checkpoint: held-out perplexity, code completion, benchmarks",
    )


def with_generated_own(cfg, lay: RunLayout, sources):
    """An adapt build's [eval] plus the own-eval set it generated from the held-out documents (selfdata/cloze.jsonl,
    kind "choice", task own_cloze), when there is one."""
    from dataclasses import replace

    from moxin.adapt.heldout import CLOZE
    from moxin.eval.config import OwnEvalConfig

    path = lay.selfdata / CLOZE
    if not path.is_file() or not path.stat().st_size:
        return cfg
    licences = sorted({s.license for s in sources})  # the held-out documents' licences (selfdata/SOURCE.md)
    own = OwnEvalConfig(path=str(path), kind="choice", name="cloze", license=" AND ".join(licences))
    return replace(cfg, own=[*cfg.own, own])


def adapt_eval_models(ctx: BuildContext) -> list[tuple[str, Path]]:
    """What an adapt build evaluates: the base, the adapted model (a LoRA run's merged final/) and each fine-tune's
    result, so the table shows base against adapted on the same tasks."""
    from moxin.adapt.run import result
    from moxin.finetune.lineage import mode_result

    lay = ctx.layout
    out: list[tuple[str, Path]] = [("base", lay.base)]
    adapted = result(lay)
    out += [("adapt", adapted)] if adapted is not None else []
    for m in finetune_modes(ctx.recipe) if ctx.recipe.build.finetune else []:
        name = finetune_name(ctx.recipe.finetune, m)
        found = mode_result(lay.root, name)
        out += [(f"finetune/{name}", found)] if found is not None else []
    return out


def compare_stage(ctx: BuildContext) -> Stage:
    """An adapt build's `moxin compare` of the imported base against the adapted model into `<run>/compare/`:
    what differs, the evaluation deltas with paired-bootstrap intervals (the eval stage's results, reused), held-out
    bits per byte per source, the same prompts side by side and a summary derived from those numbers."""
    from moxin.stage import StageResult

    lay = ctx.layout

    def run() -> StageResult:
        from moxin.adapt.run import result
        from moxin.compare.run import compare

        adapted = result(lay)
        if adapted is None:
            return StageResult.failed("compare", "no adapted model in adapt/; run the adapt stage first")
        doc = compare(lay.base, adapted, lay.compare, results=[lay.eval_results], log=ctx.log)
        ctx.notes += [f"compare: {line}" for line in doc["summary"]]
        return StageResult.done("compare", (lay.compare,))

    return Stage(
        "compare",
        lambda: {
            "eval": output_fingerprint(lay.eval / "table.csv"),
            "adapt": output_fingerprint(lay.run_json("adapt")),
        },
        run,
        [lay.compare / "compare.json"],
        "base against adapted: what differs, what it did (intervals), what it says",
    )


def release_stage(ctx: BuildContext) -> Stage:
    from moxin.release.stage import run_release

    r, lay = ctx.recipe, ctx.layout

    def run():
        data_dir = r.resolve_path(r.eval.data_dir) if r.eval.data_dir else None
        return ctx.finish(
            run_release(lay, replace=True, recipe_path=r.source_path, eval_data_dir=data_dir, log=ctx.log)
        )

    return Stage(
        "release",
        lambda: {"release": ctx.section("release"), "upstream": _upstream(ctx)},
        run,
        [lay.release / "SHA256SUMS"],
        "MOF release with licences and checksums",
    )


def _upstream(ctx: BuildContext) -> list[str | None]:
    lay = ctx.layout
    paths = [lay.data, lay.run_json("pretrain"), lay.base, lay.run_json("adapt"), lay.eval / "table.csv"]
    paths += [ctx.finetune_run_json(m) for m in finetune_modes(ctx.recipe)]
    return [output_fingerprint(p) for p in paths]


def verify_stage(ctx: BuildContext) -> Stage:
    from moxin.release.stage import reproduce_range, run_verify

    report = ctx.state / "verify.txt"
    release = ctx.layout.release

    def run() -> StageResult:
        lines: list[str] = []

        def log(line: str) -> None:
            lines.append(line)
            ctx.log(line)

        res = run_verify(release, reproduce_range(RunLayout(release), ctx.recipe.build.reproduce), log=log)
        if res.ok:
            atomic_write_text(report, "\n".join(lines) + "\n")
        return res

    return Stage(
        "verify",
        lambda: {"release": output_fingerprint(release / "SHA256SUMS"), "reproduce": ctx.recipe.build.reproduce},
        run,
        [report],
        "checksums, MOF class, re-run training and compare bytes",
    )


def stages(ctx: BuildContext) -> list[Stage]:
    b = ctx.recipe.build
    if ctx.recipe.adapt.enabled:
        out = [import_stage(ctx), data_stage(ctx), heldout_stage(ctx), adapt_stage(ctx)]
    else:
        out = [data_stage(ctx), selfdata_stage(ctx), pretrain_stage(ctx)]
    if b.finetune:
        out += [finetune_stage(ctx, m) for m in finetune_modes(ctx.recipe)]
    if b.evaluate:
        out.append(eval_stage(ctx))
        if ctx.recipe.adapt.enabled:
            out.append(compare_stage(ctx))
    if b.release:
        out.append(release_stage(ctx))
        if b.verify:
            out.append(verify_stage(ctx))
    return out


def plan_names(recipe: Recipe) -> list[str]:
    """The stage names a build of `recipe` runs, in order (what --dry-run shows)."""
    b = recipe.build
    first = ["import", "data", "selfdata", "adapt"] if recipe.adapt.enabled else ["data", "selfdata", "pretrain"]
    names = first + ([f"finetune-{m}" for m in finetune_modes(recipe)] if b.finetune else [])
    if b.evaluate:
        names += ["eval", "compare"] if recipe.adapt.enabled else ["eval"]
    if b.release:
        names += ["release", "verify"] if b.verify else ["release"]
    return names


# ------------------------------------------------------------------------------------------------ the build
def build(recipe: Recipe, out: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Run the build; the summary's "ok" is False when a stage failed (its "failed" says which and why)."""
    from rich.console import Console

    console = Console(highlight=False)
    layout = RunLayout.from_recipe(recipe, out)
    ctx = BuildContext(recipe, layout, log=lambda m: console.print(m, markup=False, highlight=False))
    layout.root.mkdir(parents=True, exist_ok=True)
    _record_recipe(recipe, layout)
    plan = stages(ctx)
    total = sum(WEIGHTS.get(s.name.split("-")[0], 1) for s in plan)
    t0 = time.perf_counter()
    done_weight = [0.0]

    def on_start(i: int, stage: Stage, skipped: bool) -> None:
        elapsed = time.perf_counter() - t0
        eta = ""
        if done_weight[0] > 0 and elapsed > 5:
            eta = f", build ETA ~{elapsed / done_weight[0] * (total - done_weight[0]) / 60:.1f} min"
        state = "up to date, skipped" if skipped else stage.describe
        console.rule(f"[{i + 1}/{len(plan)}] {stage.name}: {state} (elapsed {elapsed / 60:.1f} min{eta})")
        done_weight[0] += WEIGHTS.get(stage.name.split("-")[0], 1)

    results = run_stages(plan, ctx.state, on_start, force=force)
    summary = summarize(ctx, results, time.perf_counter() - t0)
    for line in summary["lines"]:
        console.print(line, markup=False, highlight=False)
    return summary


def _record_recipe(recipe: Recipe, layout: RunLayout) -> None:
    """The recipe the run was built with, resolved, beside the run (`moxin release RUN` reads it). run.out_dir is
    kept as written: the run's bytes do not depend on where it was built."""
    from moxin.config import to_toml

    text = to_toml(to_dict(recipe))
    path = layout.recipe_file
    if not path.is_file() or path.read_text("utf-8") != text:
        atomic_write_text(path, text)


def key_metrics(layout: RunLayout) -> list[str]:
    table = layout.eval / "table.csv"
    if not table.is_file():
        return []
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    last_model = rows[-1].get("model")
    return [
        f"{r.get('task')} {r.get('metric')}: {float(r['value']):.4f}"
        for r in rows
        if r.get("model") == last_model and r.get("value") not in (None, "", "nan")
    ][:8]


def summarize(ctx: BuildContext, results: list[Outcome], seconds: float) -> dict[str, Any]:
    import json

    lay = ctx.layout
    failed = next((r for r in results if r.status == "failed"), None)
    took = ", ".join(f"{r.name} {r.status if r.status != 'done' else f'{r.seconds:.0f}s'}" for r in results)
    if failed is not None:
        lines = [
            f"build stopped after {seconds / 60:.1f} min ({took})",
            f"build stopped at stage {failed.name}: {failed.reason}",
        ]
        return {
            "run": str(lay.root),
            "ok": False,
            "failed": {"stage": failed.name, "reason": failed.reason},
            "lines": lines,
            "stages": [r.as_dict() for r in results],
        }
    release = lay.release
    mof = json.loads((release / "mof.json").read_text("utf-8")) if (release / "mof.json").is_file() else {}
    model = release / "model" if (release / "model").is_dir() else lay.root
    lines = [f"build finished in {seconds / 60:.1f} min: {took}"]
    if mof:
        lines.append(f"release: {release}  MOF Class {mof.get('class')} ({mof.get('class_name')})")
        for k, reasons in (mof.get("reasons") or {}).items():
            lines.append(f"  Class {k} not met: " + "; ".join(reasons))
    lines += [f"  {m}" for m in key_metrics(lay)]
    lines += [f"note: {n}" for n in ctx.notes]
    lines += [
        f"chat with it:   moxin chat {model}",
        f"serve it:       moxin serve {model}",
        f"verify it:      moxin verify {release}",
    ]
    return {
        "run": str(lay.root),
        "ok": True,
        "release": str(release),
        "mof_class": mof.get("class"),
        "lines": lines,
        "stages": [r.as_dict() for r in results],
        "fingerprint": fingerprint([r.fingerprint for r in results]),
    }
