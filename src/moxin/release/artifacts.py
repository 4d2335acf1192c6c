"""The files a release derives from the run: moxin's code and pinned libraries, the paper, sample outputs, the
Hugging Face export, licence texts and plots (`moxin.release.bundle` assembles them; `moxin.release.chain`
re-derives them to verify)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moxin.errors import ReleaseError
from moxin.provenance import atomic_write_json, atomic_write_text
from moxin.release.config import ReleaseConfig
from moxin.release.runs import eval_results

if TYPE_CHECKING:
    from moxin.release.bundle import Copier

CODE_SUFFIXES = {".py", ".toml", ".jinja", ".json", ".md", ".txt"}


LIBRARIES = (
    "torch",
    "numpy",
    "safetensors",
    "tokenizers",
    "transformers",
    "gguf",
    "rich",
    "matplotlib",
    "pyyaml",
    "lm_eval",
    "peft",
    "datasketch",
    "zstandard",
    "pyarrow",
    "fastapi",
    "uvicorn",
)


def copy_code(out: Path, cp: Copier) -> dict[str, Any]:
    """moxin's source (the code that built this model), its version, and the pinned libraries with licences."""
    import moxin
    from moxin.provenance import code_version

    pkg = Path(moxin.__file__).resolve().parent
    cp.tree(
        pkg, out / "code" / "src" / "moxin", skip=lambda p: p.suffix not in CODE_SUFFIXES or "__pycache__" in p.parts
    )
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
        raise ReleaseError(
            f"release.research_paper = {cfg.research_paper!r}: file {src} not found; give a PDF or "
            "Markdown file, 'builtin' for moxin's method paper, or '' for none"
        )
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
        rows.append(
            {
                "prompt": prompt,
                "output": tok.decode(gen[0, ids.shape[1] :].tolist(), skip_special_tokens=True),
                "max_new_tokens": cfg.sample_max_new_tokens,
                "decoding": "greedy",
            }
        )
    import json

    atomic_write_text(
        out / "samples" / "outputs.jsonl",
        "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in rows),
    )
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
    series = {
        stage: [r for r in read_jsonl(layout.metrics(stage)) if "loss" in r and "step" in r]
        for stage in layout.training_stages()
        if layout.metrics(stage).is_file()
    }
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
