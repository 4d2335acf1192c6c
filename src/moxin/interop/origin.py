"""`origin.json`: where an imported base model came from, under which licence, and how open its producer made it.

A derived model's openness cannot exceed its base's: a release built on a base whose training data was never
published cannot offer that data. So every imported model folder records, besides the source file's last path part
and SHA-256 (never an absolute path), the licence with where it was read (`gguf:general.license`, a Hugging Face
README's front matter, `--license`) and the openness facts: from the shipped table `bases.toml` for known bases,
from the user's declaration (`--data-open`, `--code-open`, `--url`), else "not declared", which counts as closed.
Fine-tunes copy the record into `lineage.base.origin`, so a release finds the root without the imported folder.

No torch here: lineage and release read origins."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from moxin.errors import CheckpointError, InteropError

ORIGIN_NAME = "origin.json"
FORMAT_VERSION = 1
FACTS = ("data", "code")
NOT_DECLARED = "not declared"


def slug(text: str) -> str:
    """'SmolLM2-135M-Instruct.Q4_1' → 'smollm2-135m-instruct-q4-1': how names are compared with the table."""
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def bases() -> dict[str, dict[str, Any]]:
    """The shipped openness table (`moxin/interop/bases.toml`), by key."""
    import tomllib
    from importlib.resources import files

    return tomllib.loads(files("moxin.interop").joinpath("bases.toml").read_text("utf-8"))


def match_base(names: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The table entry whose `match` prefixes the slug of one of `names` (the longest prefix wins)."""
    best: tuple[int, str, dict[str, Any]] | None = None
    for key, entry in bases().items():
        for prefix in entry.get("match", []):
            hit = any(slug(n.rsplit("/", 1)[-1]).startswith(prefix) for n in names if n)  # 'org/name' → name
            if hit and (best is None or len(prefix) > best[0]):
                best = (len(prefix), key, entry)
    return (best[1], best[2]) if best else None


# ------------------------------------------------------------------------------------------------ source facts
def gguf_facts(path: Path) -> dict[str, Any]:
    """Names to match and the licence a GGUF file's metadata states."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        f = reader.fields.get(key)
        return None if f is None else f.contents()

    base, size = field("general.basename"), field("general.size_label")
    names = [n for n in (field("general.name"), f"{base}-{size}" if base and size else base, path.stem) if n]
    lic = field("general.license")
    return {"names": [str(n) for n in names], "license": lic, "license_source": "gguf:general.license"}


def readme_licence(folder: Path) -> str | None:
    """`license:` in a Hugging Face README's YAML front matter (the model card header), else None."""
    readme = folder / "README.md"
    if not readme.is_file():
        return None
    m = re.match(r"---\s*\n(.*?)\n---", readme.read_text("utf-8", errors="replace"), re.DOTALL)
    found = re.search(r"^license:\s*['\"]?([^'\"\n#]+?)['\"]?\s*(?:#.*)?$", m.group(1), re.MULTILINE) if m else None
    return found.group(1).strip() if found else None


def hf_facts(folder: Path) -> dict[str, Any]:
    """Names to match and the licence a Hugging Face folder states (config.json `license`, README front matter)."""
    try:
        cfg = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, ValueError):
        cfg = {}
    names = [str(cfg.get("_name_or_path") or ""), folder.name]
    if isinstance(cfg.get("license"), str) and cfg["license"].strip():
        return {"names": names, "license": cfg["license"], "license_source": "hf:config.json license"}
    return {"names": names, "license": readme_licence(folder), "license_source": "hf:README.md license"}


# ------------------------------------------------------------------------------------------------ building
def openness(
    table: tuple[str, dict[str, Any]] | None,
    declared: dict[str, bool | None],
    urls: dict[str, str],
) -> dict[str, Any]:
    """The openness facts: the table's for a known base, each overridden by a flag the user gave; a fact neither
    states is false ("not declared"). `sources` says where each fact came from."""
    key, entry = table if table else ("", {})
    out: dict[str, Any] = {"weights": True, "urls": dict(entry.get("urls", {})), "notes": {}, "sources": {}}
    for fact in FACTS:
        if declared.get(fact) is not None:
            out[fact], out["sources"][fact] = bool(declared[fact]), f"--{fact}-open"
        elif entry:
            out[fact], out["sources"][fact] = bool(entry.get(fact, False)), f"table:{key}"
            if entry.get(f"{fact}_note"):
                out["notes"][fact] = entry[f"{fact}_note"]
        else:
            out[fact], out["sources"][fact] = False, NOT_DECLARED
    out["urls"].update(urls)
    flagged = any(declared.get(f) is not None for f in FACTS) or bool(urls)
    out["source"] = "declared" if flagged else (f"table:{key}" if entry else NOT_DECLARED)
    return out


def build_origin(
    source: Path, fmt: str, sha256: str, name: str, licence: str, licence_source: str, facts: dict[str, Any]
) -> dict[str, Any]:
    """The origin.json record (see the module docstring); `source` is named by its last path part only."""
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "source": {"file": source.name, "sha256": sha256, "format": fmt},
        "license": licence,
        "license_source": licence_source,
        "openness": facts,
    }


# ------------------------------------------------------------------------------------------------ reading
def check_origin(doc: Any, where: str) -> dict[str, Any]:
    """`doc` if it is an origin record this moxin reads, else a CheckpointError naming `where`."""
    if not isinstance(doc, dict):
        raise CheckpointError(f"{where}: origin must be a JSON object; re-import the base with `moxin import`")
    missing = [k for k in ("format_version", "name", "source", "license", "openness") if k not in doc]
    if missing:
        raise CheckpointError(f"{where}: origin lacks {missing}; re-import the base with `moxin import`")
    v = doc["format_version"]
    if not isinstance(v, int) or not 1 <= v <= FORMAT_VERSION:
        raise CheckpointError(
            f"{where}: origin format_version is {v!r}; this moxin reads 1..{FORMAT_VERSION}: upgrade moxin"
        )
    return doc


def read_origin(model_path: str | Path, depth: int = 8) -> dict[str, Any] | None:
    """The origin of a model: an imported folder's origin.json, or the origin a checkpoint (or a fine-tune's final/
    folder, or a checkpoint's model/) records in `lineage.base.origin`, following recorded bases that are folders;
    None for a model whose lineage has no imported root (a pretraining run, a bare GGUF or Hugging Face folder)."""
    from moxin.records import STATE_NAME, read_train_state, recorded_path, run_root

    p = Path(model_path).expanduser()
    if not p.is_dir() or depth <= 0:
        return None
    if (p / ORIGIN_NAME).is_file():
        return _read_sealed(p)
    if not (p / STATE_NAME).is_file():
        return read_origin(p.parent, depth - 1) if p.name == "model" else None
    base = read_train_state(p).lineage.base
    if base is None:
        return None
    if base.origin is not None:
        return check_origin(base.origin, str(p / STATE_NAME))
    return read_origin(recorded_path(base.path, run_root(p)), depth - 1)


def _read_sealed(folder: Path) -> dict[str, Any]:
    """origin.json, checked against the folder's manifest.json when that lists it (an edited licence or openness
    fact would otherwise pass into every descendant's lineage)."""
    from moxin.provenance import sha256_bytes

    path = folder / ORIGIN_NAME
    try:
        raw = path.read_bytes()
        listed = json.loads((folder / "manifest.json").read_bytes()) if (folder / "manifest.json").is_file() else {}
        doc = json.loads(raw.decode("utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read ({e}); re-import the base with `moxin import`") from None
    want = (listed.get("files") or {}).get(ORIGIN_NAME) if isinstance(listed, dict) else None
    if want is not None and sha256_bytes(raw) != want:
        raise CheckpointError(
            f"{path} fails its SHA-256 check against {folder / 'manifest.json'} (changed since import); restore it "
            f"or re-import the base with `moxin import`"
        )
    return check_origin(doc, str(path))


def require_licence(found: str | None, flag: str, source: str, where: str) -> tuple[str, str]:
    """(SPDX id, where it came from): `--license` wins over metadata; neither → one-line InteropError."""
    from moxin.data.config import SPDX_RE
    from moxin.release.licences import normalise

    if flag:
        if not SPDX_RE.match(flag):
            raise InteropError(f"--license {flag!r} is not an SPDX id; give e.g. --license Apache-2.0")
        return flag, "--license"
    spdx = normalise(found)
    if not spdx:
        raise InteropError(
            f"{source} states no licence ({where} is absent); pass --license SPDX-ID (e.g. --license Apache-2.0) "
            f"with the licence its producer gives"
        )
    return spdx, where
