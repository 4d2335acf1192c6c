"""The data manifest's content and the Markdown data card generated from it."""

from __future__ import annotations

from moxin.data.config import DataConfig, recorded_name
from moxin.data.document import REJECTS_FILE
from moxin.data.process import ProcessResult
from moxin.provenance import fingerprint
from moxin.tokenizer.config import TokenizerConfig


def _source_record(s, L, per_source: dict, meta: dict) -> dict:
    """One source's row of the manifest: licence, input fingerprint, documents and bytes in and kept, tokens."""
    steps = L.source_steps(s.name)
    read_in, kept = steps[0]["docs_in"], steps[-1]["docs_out"]
    tokens = meta["sources"].get(s.name, {})
    return {
        "name": s.name, "type": s.type, "license": s.license, "weight": s.weight, "epochs": s.epochs,
        "path": recorded_name(s.path) or ("<stdlib>" if s.type == "python-stdlib" else ""),
        "input": per_source[s.name],
        "docs_in": read_in, "docs_kept": kept, "keep_rate": round(kept / read_in, 6) if read_in else 0.0,
        "bytes_in": steps[0]["bytes_in"], "bytes_kept": steps[-1]["bytes_out"],
        "docs": {sp: int(v.get("documents", 0)) for sp, v in tokens.items()},
        "tokens": {sp: int(v.get("tokens", 0)) for sp, v in tokens.items()},
        "languages": dict(sorted(L.languages.get(s.name, {}).items())),
        "read_errors": dict(sorted(L.errors.get(s.name, {}).items())),
        "steps": steps,
    }  # fmt: skip


def _tokens_record(meta: dict) -> dict:
    """The token shards: dtype, vocabulary, counts per split and the SHA-256 of every shard."""
    srcs = meta["sources"]
    return {
        "fingerprint_file": "tokens.json", "dtype": meta["dtype"], "vocab_size": meta["vocab_size"],
        "eos_id": meta["eos_id"], "shard_tokens": meta["shard_tokens"],
        "train_tokens": sum(v.get("train", {}).get("tokens", 0) for v in srcs.values()),
        "val_tokens": sum(v.get("val", {}).get("tokens", 0) for v in srcs.values()),
        "shards": {f"{src}/{sp}/{sh['file']}": sh["sha256"] for src, v in sorted(srcs.items())
                   for sp, info in sorted(v.items()) for sh in info["shards"]},
    }  # fmt: skip


def build_manifest(data_cfg: DataConfig, tok_cfg: TokenizerConfig, seed: int, fp: str, per_source: dict,
                   res: ProcessResult, splits: dict, meta: dict, tok_manifest: dict, code: dict,
                   env: dict) -> dict:  # fmt: skip
    L = res.ledger
    languages: dict[str, int] = {}
    for per in L.languages.values():
        for k, v in per.items():
            languages[k] = languages.get(k, 0) + v
    portable = data_cfg.record()
    tok_keys = ("kind", "vocab_size", "eos_id", "tokenizer_sha256", "reused_from")
    return {
        "stage": "data", "format": 1, "seed": seed, "inputs_fingerprint": fp,
        "config": portable, "config_hash": fingerprint(portable),
        "tokenizer_config_hash": fingerprint(tok_cfg.record()), "code": code, "environment": env,
        "sources": [_source_record(s, L, per_source, meta) for s in data_cfg.sources],
        "steps": L.step_table([s.name for s in data_cfg.sources]),
        "languages": dict(sorted(languages.items())),
        "errors": {"count": sum(sum(v.values()) for v in L.errors.values()), "examples": L.error_lines,
                   "rejected": len(L.rejects), "rejects_file": REJECTS_FILE,
                   "truncated": [r for r in L.rejects if "byte_offset" in r]},
        "decontamination": res.decontam,
        "tokenizer": {k: tok_manifest.get(k) for k in tok_keys} | {"path": "../tokenizer"},
        "tokens": _tokens_record(meta),
        "trace_order": "global token N counts over the train split of each source in sorted source-name order",
    }  # fmt: skip


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def _read_errors(e: dict) -> list[str]:
    """The card's read-error section: counts, where every rejected record is listed, and broken-off streams."""
    out = ["", "## Read errors", "", f"{e['count']} record(s) could not be read as given"]
    if "rejects_file" in e:
        out[-1] += f"; all {e['rejected']} rejected record(s) are listed in `{e['rejects_file']}` (file, line, reason, "
        out[-1] += "first bytes)"
    for t in e.get("truncated", []):
        out.append(
            f"- **{t['source']}/{t['file']} breaks off after byte {t['byte_offset']} (line {t['line']})**: "
            f"{t['error']}; the rest of that file was not read"
        )
    out += ["", "First ones:", ""] + ([f"- `{x}`" for x in e["examples"][:20]] or ["- none"])
    return out


def _decontamination(m: dict) -> list[str]:
    """The languages and decontamination sections of the data card."""
    out: list[str] = []
    out += [
        "",
        "## Languages (kept documents)",
        "",
        ", ".join(f"{k}: {v}" for k, v in m["languages"].items()) or "-",
        "",
        "## Decontamination",
        "",
    ]
    if m["decontamination"]:
        out += [
            "| eval set | items | too short to match | items found in data | documents by source |",
            "|---|---|---|---|---|",
        ]
        for name, d in m["decontamination"].items():
            by = ", ".join(f"{k} {v}" for k, v in sorted(d["docs_by_source"].items())) or "none"
            out.append(f"| {name} | {d['items']} | {d['items_too_short']} | {d['items_found']} | {by} |")
    else:
        out.append("No evaluation sets were given (data.decontaminate).")
    return out


def render_card(m: dict) -> str:
    """Markdown data card: what is in the data, where it came from, what was removed and why."""
    out = [
        "# Data card",
        "",
        f"Generated by moxin {m['code'].get('version')} (commit {m['code'].get('git_commit')}) "
        f"from `manifest.json`; seed {m['seed']}; inputs fingerprint `{m['inputs_fingerprint'][:16]}`.",
        "",
        "## Sources",
        "",
        "| source | type | licence | weight | docs in | kept | keep rate | MB kept | train tokens "
        "| val tokens | languages |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in m["sources"]:
        langs = ", ".join(f"{k} {v}" for k, v in sorted(s["languages"].items(), key=lambda kv: -kv[1]))
        out.append(
            f"| {s['name']} | {s['type']} | {s['license']} | {s['weight']} | {s['docs_in']} | {s['docs_kept']} "
            f"| {s['keep_rate']:.1%} | {s['bytes_kept'] / 1e6:.2f} | {s['tokens'].get('train', 0):,} "
            f"| {s['tokens'].get('val', 0):,} | {langs} |"
        )
    out += [
        "",
        "## Steps (all sources)",
        "",
        "| step | docs in | docs out | MB in | MB out | dropped | modified |",
        "|---|---|---|---|---|---|---|",
    ]
    for st in m["steps"]:
        drops = ", ".join(f"{k} {v}" for k, v in st["dropped"].items()) or "-"
        mods = ", ".join(f"{k} {v}" for k, v in st["modified"].items()) or "-"
        out.append(
            f"| {st['step']} | {st['docs_in']} | {st['docs_out']} | {st['bytes_in'] / 1e6:.2f} "
            f"| {st['bytes_out'] / 1e6:.2f} | {drops} | {mods} |"
        )
    out += _decontamination(m)
    t = m["tokens"]
    out += _read_errors(m["errors"])
    out += [
        "",
        "## Tokens",
        "",
        f"Tokenizer: {m['tokenizer'].get('kind')}, vocab {m['tokenizer']['vocab_size']}, "
        f"sha256 `{m['tokenizer']['tokenizer_sha256']}`.",
        f"Train tokens {t['train_tokens']:,}, val tokens {t['val_tokens']:,}, dtype {t['dtype']}, "
        f"{len(t['shards'])} shard file(s) (SHA-256 in manifest.json).",
        "",
        "Samples of every drop and change reason are in `samples/`; `moxin data trace` maps any token back to "
        "its document.",
        "",
    ]
    return "\n".join(out)
