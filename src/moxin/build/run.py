"""`moxin build`: data → tokenizer → pretrain (phases) → fine-tune → eval over all checkpoints → release → verify.

Each stage is skipped when the fingerprint of its inputs is unchanged (`moxin.build.stages`), so an interrupted
build, even one killed with SIGKILL, resumes where it stopped; pretraining and fine-tuning resume from their last
checkpoint bit-exactly, so the release comes out byte-identical to an uninterrupted build's."""

from __future__ import annotations

import csv
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from moxin.build import selfdata
from moxin.build.stages import Stage, output_fingerprint, run_stages
from moxin.config import to_dict
from moxin.errors import ConfigError
from moxin.provenance import atomic_dir, atomic_write_text, fingerprint, write_manifest
from moxin.recipe import Recipe

# Rough share of a tiny build's time per stage: the ETA of the whole build before per-stage timings exist.
WEIGHTS = {"data": 2, "selfdata": 0.5, "pretrain": 6, "finetune": 1.5, "eval": 3, "release": 0.5, "verify": 1.5}

CODECOMP_YAML = """task: moxin_codecomp
dataset_path: json
dataset_kwargs:
  data_files:
    test: codecomp.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: context
doc_to_choice: choices
doc_to_target: label
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""

HELDOUT_YAML = """task: moxin_heldout
dataset_path: json
dataset_kwargs:
  data_files:
    test: heldout.jsonl
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: text
should_decontaminate: false
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
"""


SELFDATA_SOURCE = """# Data generated from the corpus itself by `moxin build`

## Origin
Source `{source}` of this run's data stage, read back from its token shards: `sft.jsonl` (docstring → function
pairs from the train split), `codecomp.jsonl` (next-line multiple choice from held-out functions) and
`heldout.jsonl` (held-out documents for perplexity).

## License
{licence}
"""


def _licence_of(ctx: "BuildContext", source: str) -> str:
    return next(s.license for s in ctx.recipe.data.sources if s.name == source)


@dataclass
class BuildContext:
    recipe: Recipe
    run_dir: Path
    log: Callable[[str], None] = print
    notes: list[str] = field(default_factory=list)

    @property
    def state(self) -> Path:
        return self.run_dir / ".build"

    def section(self, name: str) -> Any:
        return to_dict(getattr(self.recipe, name))


def run_dir(recipe: Recipe, out: Path | None = None) -> Path:
    base = Path(out) if out else Path(recipe.run.out_dir)
    return base.expanduser().resolve() / recipe.run.name


# ------------------------------------------------------------------------------------------------ stages
def data_stage(ctx: BuildContext) -> Stage:
    from moxin.data.pipeline import inputs_fingerprint

    r = ctx.recipe
    data_cfg = r.data.resolved(r.resolve_path)
    if not data_cfg.sources:
        raise ConfigError(f"[data] in {r.source_path} has no sources; add a [[data.sources]] table")

    def run():
        from moxin.data.pipeline import run_data_stage

        run_data_stage(data_cfg, r.tokenizer, r.run.seed, ctx.run_dir)

    return Stage("data", lambda: {"inputs": inputs_fingerprint(data_cfg, r.tokenizer, r.run.seed)[0]}, run,
                 [ctx.run_dir / "data", ctx.run_dir / "tokenizer"], "clean, deduplicate, tokenize")


def _selfdata_source(ctx: BuildContext) -> str:
    wanted = ctx.recipe.build.selfdata_source
    names = [s.name for s in ctx.recipe.data.sources]
    if wanted and wanted not in names:
        raise ConfigError(f"build.selfdata_source {wanted!r} in {ctx.recipe.source_path} is not a data source; "
                          f"choose one of {names}")
    code = [s.name for s in ctx.recipe.data.sources if s.type == "python-stdlib" or s.kind == "code"]
    return wanted or (code[0] if code else names[0])


def selfdata_stage(ctx: BuildContext) -> Stage:
    out = ctx.run_dir / "selfdata"

    def run():
        from moxin.data.tokens import TokenData
        from moxin.interop.tokenizer import load_tokenizer

        source = _selfdata_source(ctx)
        td = TokenData(ctx.run_dir / "data")
        tok = load_tokenizer(ctx.run_dir / "tokenizer")
        decode = lambda ids: tok.decode(ids, skip_special_tokens=False)  # noqa: E731
        train = selfdata.collect(selfdata.documents(td, source, "train", decode))
        held = [(d, t) for d, t in selfdata.documents(td, source, "val", decode)]
        held_fns = selfdata.collect(iter(held))
        with atomic_dir(out, overwrite=True) as tmp:
            selfdata.write_jsonl(tmp / "sft.jsonl", selfdata.sft_records(train))
            selfdata.write_jsonl(tmp / "codecomp.jsonl", selfdata.completion_items(held_fns, seed=ctx.recipe.run.seed))
            selfdata.write_jsonl(tmp / "heldout.jsonl", [{"id": d, "text": t[:4000]} for d, t in held[:64] if t.strip()])
            atomic_write_text(tmp / "SOURCE.md", SELFDATA_SOURCE.format(source=source, licence=_licence_of(ctx, source)))
            atomic_write_text(tmp / "moxin_codecomp.yaml", CODECOMP_YAML)
            atomic_write_text(tmp / "moxin_heldout.yaml", HELDOUT_YAML)
            write_manifest(tmp, {"stage": "selfdata", "source": source, "data": output_fingerprint(ctx.run_dir / "data"),
                                 "sft_pairs": len(train), "codecomp_items": len(held_fns),
                                 "license": _licence_of(ctx, source)})
        ctx.log(f"selfdata: {len(train)} SFT pairs from {source}/train, code-completion from {len(held_fns)} "
                f"held-out functions")

    return Stage("selfdata", lambda: {"data": output_fingerprint(ctx.run_dir / "data"), "seed": ctx.recipe.run.seed,
                                      "source": ctx.recipe.build.selfdata_source}, run, [out],
                 "docstring → function pairs, code-completion task")


def pretrain_stage(ctx: BuildContext) -> Stage:
    def run():
        from moxin.train.pretrain import run as pretrain

        status = pretrain(ctx.recipe, resume="auto", progress=True, log=ctx.log)
        if status != "done":
            raise KeyboardInterrupt  # a checkpoint was written; the next build resumes from it

    return Stage("pretrain", lambda: {"model": ctx.section("model"), "pretrain": ctx.section("pretrain"),
                                      "seed": ctx.recipe.run.seed, "data": output_fingerprint(ctx.run_dir / "data")},
                 run, [ctx.run_dir / "pretrain" / "run.json"], "phases, intermediate checkpoints")


def finetune_modes(recipe: Recipe) -> list[str]:
    return [m for m in ("sft", "dpo", "grpo") if recipe.finetune.mode(m).data]


def finetune_stage(ctx: BuildContext, mode: str) -> Stage:
    name = ctx.recipe.finetune.mode(mode).name or mode

    def run():
        from moxin.finetune.run import run as finetune

        summary = finetune(ctx.recipe, mode, resume="auto", progress=True, log=ctx.log)
        if summary.get("status") != "done":
            raise KeyboardInterrupt

    def inputs():
        return {"finetune": ctx.section("finetune"), "seed": ctx.recipe.run.seed,
                "pretrain": output_fingerprint(ctx.run_dir / "pretrain" / "run.json"),
                "selfdata": output_fingerprint(ctx.run_dir / "selfdata"),
                "before": [output_fingerprint(ctx.run_dir / "finetune" / m / "run.json")
                           for m in finetune_modes(ctx.recipe)[:finetune_modes(ctx.recipe).index(mode)]]}

    return Stage(f"finetune-{mode}", inputs, run, [ctx.run_dir / "finetune" / name / "run.json"], f"{mode.upper()}")


def eval_stage(ctx: BuildContext) -> Stage:
    out = ctx.run_dir / "eval"

    def settings():
        from moxin.eval.runner import Settings, hf_reachable

        cfg = ctx.recipe.eval
        data_dir = ctx.recipe.resolve_path(cfg.data_dir) if cfg.data_dir else None
        tasks = ["moxin_heldout", "moxin_codecomp"]
        if data_dir is not None or hf_reachable():
            tasks += list(cfg.tasks)
        else:
            ctx.notes.append(f"standard benchmarks ({', '.join(cfg.tasks)}) skipped: no eval.data_dir and Hugging "
                             f"Face is unreachable; give --set eval.data_dir=../shared/data to run them")
        return Settings(tasks=tasks, data_dir=data_dir, limit=cfg.limit, batch_size=cfg.batch_size, dtype=cfg.dtype,
                        num_fewshot=cfg.num_fewshot, apply_chat_template=cfg.apply_chat_template,
                        include_path=[ctx.run_dir / "selfdata"])

    def run():
        from moxin.eval.commands import _evaluate_run
        from moxin.eval.identity import checkpoints_of

        ckpts = checkpoints_of(ctx.run_dir)
        _evaluate_run(ctx.run_dir, ckpts if ctx.recipe.eval.all_checkpoints else ckpts[-1:], settings(), out)

    def inputs():
        return {"eval": ctx.section("eval"), "selfdata": output_fingerprint(ctx.run_dir / "selfdata"),
                "pretrain": output_fingerprint(ctx.run_dir / "pretrain" / "run.json"),
                "finetune": [output_fingerprint(ctx.run_dir / "finetune" / (ctx.recipe.finetune.mode(m).name or m)
                                                / "run.json") for m in finetune_modes(ctx.recipe)]}

    return Stage("eval", inputs, run, [out / "table.csv"], "every checkpoint: held-out perplexity, code completion, "
                 "benchmarks")


def release_stage(ctx: BuildContext) -> Stage:
    out = ctx.run_dir / "release"

    def run():
        from moxin.release.bundle import build_release

        if out.exists():
            shutil.rmtree(out)
        data_dir = ctx.recipe.eval.data_dir
        rep = build_release(ctx.run_dir, out, progress=True, recipe_path=ctx.recipe.source_path,
                            eval_data_dir=ctx.recipe.resolve_path(data_dir) if data_dir else None)
        ctx.log(f"release: MOF Class {rep['class']} ({rep['class_name']})")

    def inputs():
        return {"release": ctx.section("release"), "upstream": [r for r in _upstream(ctx)]}

    return Stage("release", inputs, run, [out / "SHA256SUMS"], "MOF release with licences and checksums")


def _upstream(ctx: BuildContext) -> list[str | None]:
    paths = [ctx.run_dir / "data", ctx.run_dir / "pretrain" / "run.json", ctx.run_dir / "eval" / "table.csv"]
    paths += [ctx.run_dir / "finetune" / (ctx.recipe.finetune.mode(m).name or m) / "run.json"
              for m in finetune_modes(ctx.recipe)]
    return [output_fingerprint(p) for p in paths]


def reproduce_range(recipe: Recipe, release: Path) -> str | None:
    """build.reproduce, or the last two pretraining checkpoints in the release."""
    if recipe.build.reproduce:
        return recipe.build.reproduce
    steps = sorted(int(p.name.split("-")[1]) for p in (release / "pretrain" / "checkpoints").glob("step-*"))
    return f"{steps[-2]}..{steps[-1]}" if len(steps) >= 2 else None


def verify_stage(ctx: BuildContext) -> Stage:
    report = ctx.state / "verify.txt"

    def run():
        from moxin.errors import MoxinError
        from moxin.release.verify import verify_release

        release = ctx.run_dir / "release"
        span = reproduce_range(ctx.recipe, release)
        checks = verify_release(release, span, None, progress=True)
        lines = [f"{'ok' if c.ok else 'FAIL'} {c.name}: {c.summary}" for c in checks]
        for line in lines:
            ctx.log(line)
        bad = [p for c in checks for p in c.problems]
        if bad:
            raise MoxinError(f"verify failed for {release}: {bad[0]}")
        atomic_write_text(report, "\n".join(lines) + "\n")

    return Stage("verify", lambda: {"release": output_fingerprint(ctx.run_dir / "release" / "SHA256SUMS"),
                                    "reproduce": ctx.recipe.build.reproduce}, run, [report],
                 "checksums, MOF class, re-run training and compare bytes")


def stages(ctx: BuildContext) -> list[Stage]:
    b = ctx.recipe.build
    out = [data_stage(ctx), selfdata_stage(ctx), pretrain_stage(ctx)]
    if b.finetune:
        out += [finetune_stage(ctx, m) for m in finetune_modes(ctx.recipe)]
    if b.evaluate:
        out.append(eval_stage(ctx))
    if b.release:
        out.append(release_stage(ctx))
        if b.verify:
            out.append(verify_stage(ctx))
    return out


# ------------------------------------------------------------------------------------------------ the build
def build(recipe: Recipe, out: Path | None = None, force: bool = False) -> dict[str, Any]:
    from rich.console import Console

    console = Console(highlight=False)
    recipe.run.out_dir = str(Path(out).expanduser().resolve()) if out else recipe.run.out_dir
    rdir = run_dir(recipe)
    ctx = BuildContext(recipe, rdir, log=lambda m: console.print(m, markup=False, highlight=False))
    rdir.mkdir(parents=True, exist_ok=True)
    _record_recipe(recipe, rdir)
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


def _record_recipe(recipe: Recipe, rdir: Path) -> None:
    """The recipe the run was built with, resolved, beside the run (the release copies it)."""
    from moxin.config import to_toml

    text = to_toml(to_dict(recipe))
    path = rdir / "recipe.toml"
    if not path.is_file() or path.read_text("utf-8") != text:
        atomic_write_text(path, text)


def key_metrics(run: Path) -> list[str]:
    table = run / "eval" / "table.csv"
    if not table.is_file():
        return []
    with open(table, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return []
    last_model = rows[-1].get("model")
    return [f"{r.get('task')} {r.get('metric')}: {float(r['value']):.4f}" for r in rows
            if r.get("model") == last_model and r.get("value") not in (None, "", "nan")][:8]


def summarize(ctx: BuildContext, results, seconds: float) -> dict[str, Any]:
    import json

    release = ctx.run_dir / "release"
    mof = {}
    if (release / "mof.json").is_file():
        mof = json.loads((release / "mof.json").read_text("utf-8"))
    model = release / "model" if (release / "model").is_dir() else ctx.run_dir
    lines = [f"build finished in {seconds / 60:.1f} min: " +
             ", ".join(f"{r.name} {'skipped' if r.skipped else f'{r.seconds:.0f}s'}" for r in results)]
    if mof:
        lines.append(f"release: {release}  MOF Class {mof.get('class')} ({mof.get('class_name')})")
        for k, reasons in (mof.get("reasons") or {}).items():
            lines.append(f"  Class {k} not met: " + "; ".join(reasons))
    lines += [f"  {m}" for m in key_metrics(ctx.run_dir)]
    lines += [f"note: {n}" for n in ctx.notes]
    lines += [f"chat with it:   moxin chat {model}", f"serve it:       moxin serve {model}",
              f"verify it:      moxin verify {release}"]
    return {"run": str(ctx.run_dir), "release": str(release), "mof_class": mof.get("class"), "lines": lines,
            "stages": [{"name": r.name, "skipped": r.skipped, "seconds": r.seconds} for r in results],
            "fingerprint": fingerprint([r.fingerprint for r in results])}
