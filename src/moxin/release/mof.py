"""The Model Openness Framework (MOF v1.0) computed from a release's files.

Each of the 17 components is found (or not) in the release folder by the files it needs, not by a declaration; its
licence comes from the release's own records (release.json for what the run produced, data/manifest.json for the
training data, eval/data/sources.json for the evaluation data) and is audited for the component's kind. Classes are
cumulative: Class III (open model) needs its required components present and not failing, Class II (open tooling)
adds its own, Class I (open science) adds the rest. Optional components are reported but never block a class.

A release derived from an imported base cannot be more open than the base: when the base's producer did not release
its training data, "Datasets" is capped (at most Class II); when it did not release its training code, "Training
code" is capped (at most Class III). The rule, its MOF reasoning and the wording are in `moxin.release.basecap`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from moxin.layout import RunLayout
from moxin.release.basecap import apply_caps, base_origins, base_report
from moxin.release.licences import Audit, Kind, audit, combine, licence_filename
from moxin.release.runs import data_sources, finetune_datasets, read_json

FRAMEWORK = {"name": "Model Openness Framework", "version": "1.0", "date": "2024-12-15"}
CLASS_NAMES = {"III": "Open Model", "II": "Open Tooling", "I": "Open Science"}


def _glob(pattern: str) -> Callable[[Path], list[str]]:
    def find(root: Path) -> list[str]:
        return sorted(p.relative_to(root).as_posix() for p in root.glob(pattern) if p.is_file() and p.stat().st_size)

    return find


def _all(*finders: Callable[[Path], list[str]]) -> Callable[[Path], list[str]]:
    """Present only when every finder finds something (e.g. code AND its config)."""

    def find(root: Path) -> list[str]:
        found = [f(root) for f in finders]
        return sorted(p for ps in found for p in ps) if all(found) else []

    return find


def _train_states(root: Path) -> list[str]:
    """Every checkpoint's train_state.json (training configuration, data position, RNG state)."""
    found = [ck.path / "train_state.json" for ck in RunLayout(root).all_checkpoints()]
    return sorted(p.relative_to(root).as_posix() for p in found if p.is_file() and p.stat().st_size)


def _intermediate(root: Path) -> list[str]:
    """Checkpoint weights other than the final model's (the final one is model/, and its own checkpoint)."""
    final = _final_weights_sha(root)
    out = []
    for ck in RunLayout(root).all_checkpoints():
        p = ck.path / "model" / "model.safetensors"
        if p.is_file() and (final is None or _sha(p) != final):
            out.append(p.relative_to(root).as_posix())
    return sorted(out)


def _sha(p: Path) -> str:
    from moxin.provenance import sha256_file

    return sha256_file(p)


def _final_weights_sha(root: Path) -> str | None:
    p = root / "model" / "model.safetensors"
    return _sha(p) if p.is_file() else None


def _datasets(root: Path) -> list[str]:
    """The tokenized training data: tokens.json and every shard it lists."""
    meta = root / "data" / "tokens.json"
    if not meta.is_file():
        return []
    shards = sorted(p for p in (root / "data" / "tokens").rglob("*.bin")) if (root / "data" / "tokens").is_dir() else []
    return ["data/tokens.json", *[p.relative_to(root).as_posix() for p in shards]] if shards else []


@dataclass(frozen=True)
class Component:
    name: str
    description: str  # the Model Openness Tool's wording
    mof_class: str  # 'I', 'II', 'III'
    optional: bool
    kind: Kind  # licence type it needs
    licence_key: str  # which recorded licence applies (see `licences_of`)
    find: Callable[[Path], list[str]]


COMPONENTS: list[Component] = [
    Component(
        "Model architecture",
        "Well commented code for the model's architecture",
        "III",
        False,
        "code",
        "code",
        _all(_glob("code/src/moxin/model/transformer.py"), _glob("model/model_config.json")),
    ),
    Component(
        "Model parameters (Final)",
        "Trained model parameters, weights and biases",
        "III",
        False,
        "data",
        "model",
        _glob("model/model.safetensors"),
    ),
    Component(
        "Technical report",
        "Technical report detailing capabilities and usage instructions for the model",
        "III",
        False,
        "document",
        "document",
        _glob("TECHNICAL_REPORT.md"),
    ),
    Component(
        "Evaluation results",
        "The results from evaluating the model",
        "III",
        False,
        "document",
        "document",
        _glob("eval/results/*.json"),
    ),
    Component(
        "Model card",
        "Model details including performance metrics, intended use, and limitations",
        "III",
        False,
        "document",
        "document",
        _glob("README.md"),
    ),
    Component(
        "Data card",
        "Documentation for datasets including source, characteristics, and preprocessing details",
        "III",
        False,
        "document",
        "document",
        _glob("DATA_CARD.md"),
    ),
    Component(
        "Sample model outputs",
        "Examples of outputs generated by the model",
        "III",
        True,
        "data",
        "model",
        _glob("samples/*.jsonl"),
    ),
    Component(
        "Training code",
        "Code used for training the model",
        "II",
        False,
        "code",
        "code",
        _glob("code/src/moxin/train/*.py"),
    ),
    Component(
        "Inference code",
        "Code used for running the model to make predictions",
        "II",
        False,
        "code",
        "code",
        _glob("code/src/moxin/model/generate.py"),
    ),
    Component(
        "Evaluation code",
        "Code used for evaluating the model",
        "II",
        False,
        "code",
        "code",
        _glob("code/src/moxin/eval/*.py"),
    ),
    Component(
        "Evaluation data",
        "Data used for evaluating the model",
        "II",
        False,
        "data",
        "eval_data",
        _all(_glob("eval/data/sources.json"), _glob("eval/data/*/**/*")),
    ),
    Component(
        "Supporting libraries and tools",
        "Libraries and tools used in the model's development",
        "II",
        True,
        "code",
        "libraries",
        _glob("code/requirements.txt"),
    ),
    Component(
        "Research paper",
        "Research paper detailing the development and capabilities of the model",
        "I",
        False,
        "document",
        "paper",
        _glob("paper/*"),
    ),
    Component(
        "Datasets",
        "Training, validation and testing datasets used for the model",
        "I",
        False,
        "data",
        "datasets",
        _all(_datasets, _glob("data/manifest.json")),
    ),
    Component(
        "Data preprocessing code",
        "Code for data cleansing, normalization, and augmentation",
        "I",
        False,
        "code",
        "code",
        _glob("code/src/moxin/data/*.py"),
    ),
    Component(
        "Model parameters (Intermediate)",
        "Trained model parameters, weights and biases",
        "I",
        False,
        "data",
        "model",
        _intermediate,
    ),
    Component(
        "Model metadata",
        "Any model metadata including training configuration and optimizer states",
        "I",
        True,
        "data",
        "model",
        _all(_glob("config/*"), _train_states),
    ),
]
assert len(COMPONENTS) == 17


# ------------------------------------------------------------------------------------------------ licences
def _source_audits(sources: list[tuple[str, str | None]], kind: Kind) -> tuple[str | None, Audit]:
    """Audit every source; the component takes the worst verdict, with the failing (or warned) sources named."""
    if not sources:
        return None, audit(None, kind)
    audits = [(name, audit(lic, kind)) for name, lic in sources]
    expr = combine([a.licence or "NOASSERTION" for _, a in audits])
    for verdict in ("fail", "warning"):
        bad = [(n, a) for n, a in audits if a.verdict == verdict]
        if bad:
            reason = "; ".join(f"source '{n}': {a.reason}" for n, a in bad)
            return expr, Audit(expr, verdict, reason)
    return expr, Audit(expr, "open", f"all {len(audits)} sources under open data licences")


def licences_of(root: Path) -> dict[str, list[tuple[str, str | None]]]:
    """Recorded licences by key, each as [(what, SPDX)]: one entry for the run's own outputs, one per data source."""
    rel = read_json(root / "release.json", "release record") if (root / "release.json").is_file() else {}
    lic = rel.get("licenses") or {}
    out: dict[str, list[tuple[str, str | None]]] = {
        k: [(k, lic.get(k))] for k in ("code", "model", "document", "paper")
    }
    if (root / "data" / "manifest.json").is_file():
        srcs = data_sources(read_json(root / "data" / "manifest.json")) + finetune_datasets(root)
        out["datasets"] = [(s.name, s.license) for s in srcs]
    if (root / "eval" / "data" / "sources.json").is_file():
        out["eval_data"] = [(s["name"], s.get("license")) for s in read_json(root / "eval" / "data" / "sources.json")]
    if (root / "code" / "requirements.txt").is_file():
        out["libraries"] = _requirement_licences(root / "code" / "requirements.txt")
    return out


def _requirement_licences(path: Path) -> list[tuple[str, str | None]]:
    """`name==version  # license: SPDX` lines, as written by the bundle."""
    out = []
    for line in path.read_text("utf-8").splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==\S+\s*#\s*license:\s*(.*)$", line.strip())
        if m:
            out.append((m.group(1), m.group(2).strip() or None))
    return out


# ------------------------------------------------------------------------------------------------ assessment
@dataclass
class Result:
    name: str
    mof_class: str
    optional: bool
    kind: str
    present: bool
    files: int
    examples: list[str]
    licence: str | None
    licence_path: str
    verdict: str  # 'open', 'warning', 'fail', 'missing', 'capped' (the base did not release its part)
    reason: str

    @property
    def blocks(self) -> bool:
        return not self.optional and self.verdict in ("fail", "missing", "capped")


def assess(root: Path) -> list[Result]:
    """Find each component in the release folder and audit its licence."""
    root = Path(root)
    lic = licences_of(root)
    results = []
    for c in COMPONENTS:
        found = c.find(root)
        entries = lic.get(c.licence_key) or []
        multi = c.licence_key in ("datasets", "eval_data", "libraries")
        expr, a = (
            _source_audits(entries, c.kind)
            if multi
            else (entries[0][1] if entries else None, audit(entries[0][1] if entries else None, c.kind))
        )
        lpath = (f"LICENSES/{c.licence_key}.md" if multi else licence_filename(expr)) if expr else ""
        if not found:
            verdict, reason = "missing", _missing_reason(c)
        else:
            verdict, reason = a.verdict, a.reason
        results.append(
            Result(
                c.name,
                c.mof_class,
                c.optional,
                c.kind,
                bool(found),
                len(found),
                found[:3],
                expr,
                lpath,
                verdict,
                reason,
            )
        )
    apply_caps(results, base_origins(root))
    return results


def _missing_reason(c: Component) -> str:
    hints = {
        "Model parameters (Intermediate)": "no intermediate checkpoint in <stage>/checkpoints/ (release with "
        "release.intermediate_checkpoints = true)",
        "Research paper": "no file in paper/ (set release.research_paper to a file)",
        "Evaluation data": "no evaluation data in eval/data/ (run `moxin eval` with local task data)",
        "Evaluation results": "no eval/results/*.json (run `moxin eval`)",
        "Datasets": "no tokenized data (data/tokens.json + shards) or data/manifest.json",
        "Training code": "no code/src/moxin/train/ in the release",
        "Evaluation code": "no code/src/moxin/eval/ in the release",
    }
    return hints.get(c.name, "not found in the release")


def classify(results: list[Result]) -> tuple[str, dict[str, list[str]]]:
    """(class achieved: 'I', 'II', 'III' or 'none', {class: reasons it is not met}). Classes are cumulative."""
    reasons = {
        k: [f"{r.name}: {r.reason}" for r in results if r.mof_class == k and r.blocks] for k in ("III", "II", "I")
    }
    achieved = "none"
    for k in ("III", "II", "I"):
        if reasons[k]:
            break
        achieved = k
    return achieved, reasons


def report(root: Path) -> dict[str, Any]:
    """The full assessment as JSON (what `mof.json` holds and `verify` recomputes)."""
    results = assess(root)
    cls, reasons = classify(results)
    bases = base_report(base_origins(root))
    return {
        "framework": FRAMEWORK,
        "class": cls,
        "class_name": CLASS_NAMES.get(cls, "none"),
        "reasons": {k: v for k, v in reasons.items() if v},
        "components": [asdict(r) for r in results],
        **({"bases": bases} if bases else {}),
    }


# ------------------------------------------------------------------------------------------------ mof.yml
def mot_document(root: Path, rep: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any]:
    """The Model Openness Tool's `mof.yml` structure: framework + release (licences, the components present)."""
    lic = meta.get("licenses") or {}

    def ref(spdx: str | None) -> dict[str, str]:
        return {"name": spdx or "", "path": licence_filename(spdx) if spdx else ""}

    ds = next(r for r in rep["components"] if r["name"] == "Datasets")
    components = []
    for r in rep["components"]:
        if not r["present"]:
            continue
        item = {
            "name": r["name"],
            "description": next(c.description for c in COMPONENTS if c.name == r["name"]),
            "license": r["licence"] or "unlicensed",
            "license_path": r["licence_path"],
            "component_path": _component_path(r),
        }
        components.append(item)
    return {
        "framework": dict(FRAMEWORK),
        "release": {
            "name": meta["name"],
            "version": meta.get("version", ""),
            "date": meta["date"],
            "type": "language",
            "architecture": "transformer decoder",
            "treatment": meta.get("treatment", "pre-trained"),
            "origin": meta.get("origin") or ", ".join(str(b["name"]) for b in rep.get("bases", [])),
            "producer": meta.get("producer", ""),
            "contact": meta.get("contact", ""),
            "license": {
                "distribution": ref(lic.get("model")),
                "code": ref(lic.get("code")),
                "data": {"name": ds["licence"] or "", "path": ds["licence_path"]},
                "document": ref(lic.get("document")),
            },
            "components": components,
        },
    }


def _component_path(r: dict[str, Any]) -> str:
    ex = r["examples"]
    if not ex:
        return ""
    if len(ex) == 1 and r["files"] == 1:
        return ex[0]
    parts = [e.split("/") for e in ex]
    common = []
    for segs in zip(*parts):
        if len(set(segs)) > 1:
            break
        common.append(segs[0])
    return "/".join(common) + "/" if common else ex[0]


def write_mof(root: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Write mof.json (moxin's full audit) and mof.yml (the Model Openness Tool's format); returns the audit."""
    import yaml

    from moxin.provenance import atomic_write_json, atomic_write_text

    rep = report(root)
    atomic_write_json(root / "mof.json", rep)
    doc = mot_document(root, rep, meta)
    atomic_write_text(root / "mof.yml", yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=120))
    return rep


# ------------------------------------------------------------------------------------------------ MOT schema
COMPONENT_NAMES = [c.name for c in COMPONENTS]
_LICENSE_REF = {
    "type": "object",
    "properties": {"name": {"type": ["string", "null"]}, "path": {"type": ["string", "null"]}},
}
# The Model Openness Tool's schema for model files (schema/mof_schema.json of lfai/model_openness_tool, the revision
# with release.license and per-component license / license_path / component_path), with the component names
# restricted to the 17 the tool's importer knows.
MOT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["framework", "release"],
    "properties": {
        "framework": {
            "type": "object",
            "required": ["name", "version", "date"],
            "properties": {
                "name": {"type": "string", "enum": ["Model Openness Framework"]},
                "version": {"type": "string"},
                "date": {"type": "string", "format": "date"},
            },
        },
        "release": {
            "type": "object",
            "required": ["name", "version", "date", "architecture", "origin", "producer", "contact", "components"],
            "properties": {
                "name": {"type": "string", "minLength": 1},
                "version": {"type": "string"},
                "date": {"type": "string", "format": "date"},
                "type": {
                    "type": "string",
                    "enum": ["", "language", "vision", "image", "audio", "video", "3d", "code", "multimodal", "other"],
                },
                "architecture": {
                    "type": "string",
                    "enum": [
                        "",
                        "transformer",
                        "transformer decoder",
                        "transformer encoder-decoder",
                        "decoder",
                        "encoder",
                        "diffusion",
                        "RNN",
                        "CNN",
                        "LSTM",
                        "NeRF",
                        "hybrid",
                        "undisclosed",
                        "other",
                    ],
                },
                "treatment": {"type": "string", "enum": ["pre-trained", "instruct fine-tuned", "chat fine-tuned"]},
                "origin": {"type": "string"},
                "producer": {"type": "string"},
                "contact": {"type": "string"},
                "license": {
                    "type": "object",
                    "properties": dict.fromkeys(("distribution", "code", "data", "document"), _LICENSE_REF),
                },
                "components": {
                    "type": "array",
                    "maxItems": 17,
                    "items": {
                        "type": "object",
                        "required": ["name", "description"],
                        "properties": {
                            "name": {"type": "string", "enum": COMPONENT_NAMES},
                            "description": {"type": "string"},
                            "license": {"type": "string"},
                            "license_path": {"type": "string"},
                            "component_path": {"type": "string"},
                        },
                    },
                },
            },
        },
    },
}

_TYPES: dict[str, type] = {"object": dict, "array": list, "string": str, "null": type(None)}


def validate_schema(doc: Any, schema: dict[str, Any] = MOT_SCHEMA, where: str = "$") -> list[str]:
    """Errors of `doc` against the JSON-schema subset the MOT schema uses (type, enum, required, properties,
    items, minLength, maxItems, format: date). Empty when valid."""
    types = schema.get("type")
    if types is not None:
        allowed = types if isinstance(types, list) else [types]
        if not any(isinstance(doc, _TYPES[t]) for t in allowed):
            return [f"{where}: expected {' or '.join(allowed)}, got {type(doc).__name__}"]
    errors = []
    if "enum" in schema and doc not in schema["enum"]:
        errors.append(f"{where}: {doc!r} is not one of {schema['enum']}")
    if isinstance(doc, str):
        if len(doc) < schema.get("minLength", 0):
            errors.append(f"{where}: must not be empty")
        if schema.get("format") == "date" and not re.fullmatch(r"\d{4}-\d{2}-\d{2}", doc):
            errors.append(f"{where}: {doc!r} is not a date (YYYY-MM-DD)")
    if isinstance(doc, dict):
        errors += [f"{where}: missing required '{k}'" for k in schema.get("required", []) if k not in doc]
        for k, sub in schema.get("properties", {}).items():
            if k in doc:
                errors += validate_schema(doc[k], sub, f"{where}.{k}")
    if isinstance(doc, list):
        if len(doc) > schema.get("maxItems", len(doc)):
            errors.append(f"{where}: {len(doc)} items, at most {schema['maxItems']} allowed")
        for i, item in enumerate(doc):
            errors += validate_schema(item, schema.get("items", {}), f"{where}[{i}]")
    return errors
