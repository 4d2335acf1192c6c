"""Verify every derived file of a release against what it was derived from, not only against SHA256SUMS.

SHA256SUMS proves that no byte changed since it was written; anyone who edits a file can write it again. These
checks recompute each derived file from its sources inside the release (or from moxin's own code and data) and
compare, so an edit must be repeated consistently along the whole chain to pass:

    final checkpoint ── model/ (byte for byte) ── hf/ (tensor by tensor after the key map; config) ── *.gguf
                    └── tokenizer/ (byte for byte, chat template included) ── hf/ tokenizer files
    checkpoint sha ── eval/results/*.json (each result's model.sha256) ── cards (scores)
    files + recorded licences ── mof.json, mof.yml (regenerated) ── LICENSES/ (texts recomputed)
    config/ (the recipe's [release]) ── release.json licences
    code/VERSION.json commit ── code/ (`git archive` of that commit in the checkout moxin runs from)
    data/processed/ text ── re-tokenized with tokenizer/ ── data/tokens/ shards
    every file ── README.md, DATA_CARD.md, TECHNICAL_REPORT.md (regenerated in memory)

Each problem is one line naming the file and the link that broke. A check that cannot run here says so in its
summary (`skipped`), never passes silently. docs/VERIFY.md says what each check does and does not protect against.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from moxin.release.runs import Checkpoint, all_checkpoints, read_json
from moxin.release.verify import Check

HF_MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")
MAX_DOCS_PER_SOURCE = 4096  # documents re-tokenized per source and split; all of them when there are fewer


def _rel(root: Path, p: Path) -> str:
    return p.relative_to(root).as_posix()


def final_of(root: Path, cks: list[Checkpoint]) -> Checkpoint | None:
    """The checkpoint release.json names as final (check_manifests reports a missing one)."""
    rel = read_json(root / "release.json", "release record") if (root / "release.json").is_file() else {}
    name = (rel.get("final_checkpoint") or {}).get("name")
    from moxin.release.runs import with_merged

    return next((c for c in with_merged(cks) if c.name == name), None)


def first_difference(a: Any, b: Any, where: str = "") -> str | None:
    """The first path at which two JSON-like values differ, as 'path: stored → expected', else None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b), key=str):
            d = first_difference(a.get(k, "<absent>"), b.get(k, "<absent>"), f"{where}.{k}" if where else str(k))
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return next((d for i, (x, y) in enumerate(zip(a, b)) if (d := first_difference(x, y, f"{where}[{i}]"))), None)
    return None if a == b else f"{where or '$'}: {str(a)[:60]!r} → {str(b)[:60]!r}"


def first_line_difference(stored: str, expected: str) -> str:
    s, e = stored.splitlines(), expected.splitlines()
    for i, (x, y) in enumerate(zip(s, e), 1):
        if x != y:
            return f"line {i}: {x[:70]!r}, regenerated {y[:70]!r}"
    return f"{len(s)} lines, regenerated {len(e)} lines"


# ------------------------------------------------------------------------------------------------ final model
def _same_files(root: Path, src: Path, dst: Path, skip: set[str], what: str) -> list[str]:
    """Every file of `src` (but `skip`) is in `dst` with the same bytes; `dst` holds nothing else but `skip`."""
    probs = []
    want = {p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file()} - skip
    have = {p.relative_to(dst).as_posix() for p in dst.rglob("*") if p.is_file()} - skip if dst.is_dir() else set()
    for name in sorted(want | have):
        a, b = src / name, dst / name
        if name not in have:
            probs.append(f"{_rel(root, b)}: missing; the final checkpoint's {what} has {_rel(root, a)}")
        elif name not in want:
            probs.append(f"{_rel(root, b)}: not in the final checkpoint's {what} ({_rel(root, src)}/)")
        elif a.read_bytes() != b.read_bytes():
            probs.append(f"{_rel(root, b)} differs from the final checkpoint's {_rel(root, a)}")
    return probs


def check_final_model(root: Path, final: Checkpoint | None) -> Check:
    """model/ and tokenizer/ equal the final checkpoint's; hf/'s tokenizer files (chat template included) equal
    the final checkpoint's tokenizer."""
    c = Check("final model")
    if final is None:
        c.skipped = "release.json names no final checkpoint present in the release (see manifests)"
        return c
    c.problems += _same_files(root, final.path / "model", root / "model", set(), "model")
    tok = final.path / "tokenizer"
    if tok.is_dir():
        c.problems += _same_files(root, tok, root / "tokenizer", {"manifest.json"}, "tokenizer")
        if (root / "hf").is_dir():
            c.problems += _same_files(root, tok, root / "hf", {"manifest.json", *HF_MODEL_FILES}, "tokenizer")
    c.summary = f"model/, tokenizer/ and hf/ tokenizer files = {final.name}"
    return c


# ------------------------------------------------------------------------------------------------ hf / gguf
def _bos_eos(root: Path) -> tuple[int | None, int | None]:
    if not (root / "tokenizer" / "tokenizer.json").is_file():
        return None, None
    from moxin.interop.tokenizer import load_tokenizer

    tok = load_tokenizer(root)
    return tok.bos_token_id, tok.eos_token_id


def _hf_tensor_problems(root: Path, ours: dict, theirs: dict, kmap: dict[str, str]) -> list[str]:
    import torch

    probs = []
    for o, t in kmap.items():
        if t not in theirs:
            probs.append(f"hf/: tensor {t} missing (model/ has {o})")
        elif theirs[t].shape != ours[o].shape or not torch.equal(theirs[t], ours[o].to(theirs[t].dtype)):
            probs.append(f"hf/ tensor {t} differs from model/ tensor {o} (key map moxin.interop.hf.KEY_MAP)")
    extra = sorted(set(theirs) - set(kmap.values()))
    probs += [f"hf/ tensor {t}: not a tensor of model/ under the key map" for t in extra[:5]]
    return probs


def check_hf(root: Path) -> Check:
    """hf/ weights equal model/ tensor by tensor after the key map, and hf/config.json is the config `to_hf` writes."""
    c = Check("hf export")
    if not (root / "hf").is_dir():
        c.skipped = "no hf/ in the release (release.hf_export = false)"
        return c
    from moxin.errors import MoxinError
    from moxin.interop.hf import config_to_hf, expanded_key_map
    from moxin.interop.native import read_model_config
    from moxin.interop.safetensors_io import read_safetensors, read_weights_dir

    try:
        cfg = read_model_config(root / "model")
        ours = read_safetensors(root / "model" / "model.safetensors")
        theirs = read_weights_dir(root / "hf")
    except MoxinError as e:
        c.problems.append(f"hf/ cannot be compared with model/: {e}")
        return c
    c.problems += _hf_tensor_problems(root, ours, theirs, expanded_key_map(cfg))
    dtype = next(iter(theirs.values())).dtype if theirs else None
    stored = (
        read_json(root / "hf" / "config.json", "Hugging Face config")
        if (root / "hf" / "config.json").is_file()
        else None
    )
    if dtype is not None and stored is not None:
        bos, eos = _bos_eos(root)
        d = first_difference(stored, json.loads(json.dumps(config_to_hf(cfg, dtype, bos, eos))))
        if d:
            c.problems.append(f"hf/config.json differs from the config of model/model_config.json ({d})")
    c.summary = f"{len(theirs)} tensors = model/ after the key map"
    return c


def _gguf_problems(root: Path, path: Path, ours: dict) -> list[str]:
    import torch

    from moxin.errors import MoxinError
    from moxin.interop.gguf import from_gguf

    try:
        sd = from_gguf(path).state_dict()
    except MoxinError as e:
        return [f"{_rel(root, path)}: cannot be read to compare with model/ ({e})"]
    probs = []
    for name, t in sd.items():
        o = ours.get(name)
        if o is None or o.shape != t.shape:
            probs.append(f"{_rel(root, path)}: tensor {name} has no counterpart of that shape in model/")
        elif not any(torch.equal(t, o.to(dt).to(t.dtype)) for dt in (torch.float32, torch.float16, torch.bfloat16)):
            probs.append(
                f"{_rel(root, path)}: tensor {name} differs from model/ beyond float rounding (a quantized "
                "GGUF cannot be checked bit for bit: ship it beside the release, not in it)"
            )
    return probs


def check_gguf(root: Path) -> Check | None:
    files = sorted(p for p in root.rglob("*.gguf") if p.is_file())
    if not files:
        return None
    from moxin.interop.safetensors_io import read_safetensors

    c = Check("gguf")
    ours = read_safetensors(root / "model" / "model.safetensors")
    for p in files:
        c.problems += _gguf_problems(root, p, ours)
    c.summary = f"{len(files)} GGUF file(s) = model/"
    return c


# ------------------------------------------------------------------------------------------------ eval results
def check_eval_links(root: Path, cks: list[Checkpoint]) -> Check:
    """Each eval result names (model.sha256, and its file name starts with) a checkpoint present with that hash."""
    from moxin.release.runs import read_eval_result, with_merged

    c = Check("eval results")
    cks = with_merged(cks)  # a LoRA stage's merged final/ is what its results score
    by_name = {ck.name: ck for ck in cks}
    by_sha = {ck.sha: ck for ck in cks}
    files = sorted((root / "eval" / "results").glob("*.json"))
    unshipped = []
    for p in files:
        rel, r = _rel(root, p), read_eval_result(p)
        sha = str(
            ((read_json(p).get("model") or {}) if isinstance(read_json(p).get("model"), dict) else {}).get("sha256")
            or ""
        )
        ck = by_name.get(r.checkpoint)
        if not sha:
            c.problems.append(f"{rel}: names no checkpoint hash (model.sha256); a result must name what it scored")
        elif ck is not None and ck.sha != sha:
            c.problems.append(
                f"{rel}: scores checkpoint {ck.name} with sha {sha[:12]}…, but "
                f"{_rel(root, ck.path)}/manifest.json has sha {ck.sha[:12]}…"
            )
        elif ck is None and sha not in by_sha:
            unshipped.append(rel)
        if sha and not p.name.startswith(sha):
            c.problems.append(f"{rel}: the file name does not start with the scored checkpoint's sha {sha[:12]}…")
    c.summary = f"{len(files) - len(unshipped)} results linked to checkpoints by sha"
    if unshipped:
        c.summary += (
            f"; {len(unshipped)} name checkpoints not shipped (release.intermediate_checkpoints = false?), "
            "so their scores cannot be linked"
        )
    return c


# ------------------------------------------------------------------------------------------------ MOF, licences
def check_mof_files(root: Path) -> Check:
    """mof.json and mof.yml equal the audit and the Model Openness Tool file regenerated from the files."""
    import yaml

    from moxin.release.mof import mot_document, report

    c = Check("MOF files")
    rep = report(root)
    if (root / "mof.json").is_file():
        d = first_difference(read_json(root / "mof.json", "MOF audit"), json.loads(json.dumps(rep)))
        if d:
            c.problems.append(f"mof.json differs from the licence audit recomputed from the files ({d})")
    meta = read_json(root / "release.json", "release record") if (root / "release.json").is_file() else {}
    if (root / "mof.yml").is_file() and meta:
        try:
            stored = yaml.safe_load((root / "mof.yml").read_text("utf-8"))
        except yaml.YAMLError as e:
            stored = f"<unreadable: {e}>"
        d = first_difference(stored, mot_document(root, rep, meta))
        if d:
            c.problems.append(
                f"mof.yml differs from the file regenerated from release.json and the licence audit ({d})"
            )
    c.summary = f"Class {rep['class']}, mof.json and mof.yml regenerated"
    return c


def _recipe_release(root: Path) -> tuple[dict[str, Any], str] | None:
    import tomllib

    toml, run_json = root / "config" / "recipe.toml", root / "config" / "run.json"
    if toml.is_file():
        return tomllib.loads(toml.read_text("utf-8")), "config/recipe.toml"
    if run_json.is_file():
        return read_json(run_json, "recorded configuration"), "config/run.json"
    return None


def _code_licence(root: Path) -> str | None:
    import tomllib

    p = root / "code" / "pyproject.toml"
    if not p.is_file():
        return None
    lic = (tomllib.loads(p.read_text("utf-8")).get("project") or {}).get("license")
    return lic if isinstance(lic, str) else (lic or {}).get("text") if isinstance(lic, dict) else None


def check_licences(root: Path) -> Check:
    """release.json's licences are the recipe's [release] ones with the recorded `--set` overrides (the code's:
    code/pyproject.toml's), and LICENSES/ holds exactly the texts moxin writes for the licences in the release."""
    from moxin.release.artifacts import licence_files
    from moxin.release.bundle import release_config

    c = Check("licences")
    meta = read_json(root / "release.json", "release record") if (root / "release.json").is_file() else {}
    lic = meta.get("licenses") or {}
    rec = _recipe_release(root)
    if rec is not None:
        cfg = release_config(rec[0], rec[1], list(meta.get("release_overrides") or []))
        want = {
            "model": cfg.model_license,
            "document": cfg.document_license,
            "code": cfg.code_license or _code_licence(root) or lic.get("code"),
            "paper": cfg.research_paper_license if cfg.research_paper else None,
        }
        for k, v in want.items():
            if lic.get(k) != v:
                c.problems.append(
                    f"release.json: licenses.{k} is {lic.get(k)!r}, but the recipe's [release] ({rec[1]}) gives {v!r}"
                )
    else:
        c.skipped = "no config/recipe.toml or config/run.json: the licences in release.json are not linked to a recipe"
    expected = licence_files(root, lic)
    have = (
        {_rel(root, p) for p in (root / "LICENSES").glob("*") if p.is_file()} if (root / "LICENSES").is_dir() else set()
    )
    for rel in sorted(set(expected) | have):
        if rel not in have:
            c.problems.append(f"{rel}: missing; the licences in the release need it")
        elif rel not in expected:
            c.problems.append(f"{rel}: no licence in the release uses it")
        elif (root / rel).read_text("utf-8", errors="replace") != expected[rel]:
            c.problems.append(f"{rel} differs from the text moxin ships for that licence (moxin.release.licences)")
    c.summary = f"{len(expected)} licence files recomputed"
    return c


# ------------------------------------------------------------------------------------------------ cards
def check_cards(root: Path) -> Check:
    """README.md, DATA_CARD.md and TECHNICAL_REPORT.md equal the cards regenerated (in memory) from the files."""
    from moxin.release import cards

    c = Check("cards")
    for name, render in (
        ("README.md", cards.model_card),
        ("DATA_CARD.md", cards.data_card),
        ("TECHNICAL_REPORT.md", cards.technical_report),
    ):
        if not (root / name).is_file():
            continue
        stored, expected = (root / name).read_text("utf-8"), render(root)
        if stored != expected:
            c.problems.append(
                f"{name} differs from the card regenerated from the release's files "
                f"({first_line_difference(stored, expected)})"
            )
    c.summary = "README.md, DATA_CARD.md, TECHNICAL_REPORT.md regenerated"
    if (root / "index.html").is_file():  # the release's report page (moxin.report), regenerated in memory too
        from moxin.report.commands import release_page

        stored, expected = (root / "index.html").read_text("utf-8"), release_page(root)
        if stored != expected:
            c.problems.append(
                "index.html differs from the report page regenerated from the release's files "
                f"({first_line_difference(stored, expected)}); rebuild it with `moxin release`"
            )
        c.summary = "README.md, DATA_CARD.md, TECHNICAL_REPORT.md, index.html regenerated"
    return c


# ------------------------------------------------------------------------------------------------ code
def _checkout() -> Path | None:
    """The git work tree moxin runs from (src/moxin's repository), or None."""
    import subprocess

    import moxin

    pkg = Path(moxin.__file__).resolve().parent
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"], cwd=pkg, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    top = Path(out)
    return top if (top / "src" / "moxin").resolve() == pkg else None


def _archive(top: Path, commit: str) -> dict[str, bytes] | None:
    """{path: bytes} of `git archive <commit>` in `top`, or None when the commit is not there."""
    import io
    import subprocess
    import tarfile

    try:
        subprocess.run(
            ["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=top, capture_output=True, timeout=10, check=True
        )
        tar = subprocess.run(
            ["git", "archive", "--format=tar", commit], cwd=top, capture_output=True, timeout=120, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    out = {}
    with tarfile.open(fileobj=io.BytesIO(tar)) as tf:
        for m in tf.getmembers():
            f = tf.extractfile(m) if m.isfile() else None  # a regular member always has a file object
            if f is not None:
                out[m.name] = f.read()
    return out


def _shipped(rel: str) -> bool:
    """Whether the bundle copies this repository path into code/ (moxin.release.artifacts.copy_code's rule)."""
    from moxin.release.artifacts import CODE_SUFFIXES

    p = Path(rel)
    if len(p.parts) == 1:
        return rel in ("pyproject.toml", "LICENSE", "README.md")
    return (
        p.parts[:2] == ("src", "moxin")
        and p.suffix in CODE_SUFFIXES
        and "__pycache__" not in p.parts
        and not any(part.startswith(".") for part in p.parts)
    )


def _code_diffs(root: Path, top: Path, files: dict[str, bytes]) -> tuple[list[str], list[str]]:
    """(problems, files that differ from the commit but equal the running checkout's working tree)."""
    want = {k: v for k, v in files.items() if _shipped(k)}
    code = root / "code"
    have = {p.relative_to(code).as_posix() for p in code.rglob("*") if p.is_file()} - {
        "VERSION.json",
        "requirements.txt",
    }
    probs, uncommitted = [], []
    for rel in sorted(set(want) | have):
        data = (code / rel).read_bytes() if rel in have else None
        if data == want.get(rel):
            continue
        local = top / rel
        if data is not None and local.is_file() and local.read_bytes() == data:
            uncommitted.append(rel)
        elif data is None:
            probs.append(f"code/{rel}: missing; the recorded commit has {rel}")
        elif rel not in want:
            probs.append(f"code/{rel}: not in the source archive of the recorded commit (nor in {top})")
        else:
            probs.append(f"code/{rel} differs from {rel} at the recorded commit (git archive)")
    return probs, uncommitted


def check_code(root: Path) -> Check:
    """code/ equals `git archive <recorded commit>` of moxin's source in the checkout moxin runs from."""
    c = Check("code")
    version = (
        read_json(root / "code" / "VERSION.json", "code version") if (root / "code" / "VERSION.json").is_file() else {}
    )
    rel = read_json(root / "release.json", "release record") if (root / "release.json").is_file() else {}
    if rel.get("code") is not None and version != rel.get("code"):
        c.problems.append(
            f"code/VERSION.json differs from release.json's code record ({first_difference(version, rel.get('code'))})"
        )
    commit = version.get("git_commit")
    top = _checkout()
    if not commit:
        c.skipped = "NOT CHECKED: the release records no git commit (built outside a git checkout)"
        return c
    files = _archive(top, commit) if top else None
    if top is None or files is None:
        where = f"{top} does not hold commit {commit[:12]}" if top else "moxin does not run from a git checkout"
        c.skipped = f"NOT CHECKED against commit {commit[:12]}: {where}"
        return c
    c.problems, uncommitted = _code_diffs(root, top, files)
    c.summary = f"code/ = git archive {commit[:12]} in {top}"
    if uncommitted:
        c.summary += (
            f"; {len(uncommitted)} file(s) differ from the commit but equal {top}'s uncommitted working "
            f"tree (e.g. {uncommitted[0]})"
        )
    return c


# ------------------------------------------------------------------------------------------------ data text
def _sample(n: int) -> list[int]:
    """Which documents of a split are re-tokenized: all up to MAX_DOCS_PER_SOURCE, else a fixed-seed sample."""
    if n <= MAX_DOCS_PER_SOURCE:
        return list(range(n))
    import numpy as np

    return sorted(int(i) for i in np.random.default_rng(0).choice(n, MAX_DOCS_PER_SOURCE, replace=False))


def _split_problems(data, tok, source: str, split: str, records: list[dict], sample: list[int]) -> list[str]:
    from moxin.data.shard import encode

    docs, ids = data.documents(source, split), data.doc_ids(source, split)
    where = f"data/processed/{source}.jsonl"
    if len(docs) != len(records):
        return [
            (f"{where}: {len(records)} {split} documents, but data/tokens/{source}/{split}-docs.npy has {len(docs)}")
        ]
    probs = []
    encoded = encode(tok, [records[i]["text"] for i in sample])
    for i, want in zip(sample, encoded):
        start, length = int(docs[i, 0]), int(docs[i, 1])
        got = data.read(source, start, length, split)
        rec = records[i]
        if rec.get("id") != ids[i]:
            probs.append(
                f"{where} ({rec.get('where', split)}): {split} document {i} is {rec.get('id')!r}, the shards "
                f"name {ids[i]!r} (data/tokens/{source}/{split}-ids.txt)"
            )
        elif list(got[:-1]) != list(want) or int(got[-1]) != data.eos_id:
            probs.append(
                f"{where}: document {rec.get('id')!r} re-tokenized with tokenizer/ is not the tokens of "
                f"data/tokens/{source}/ at {split} offset {start} ({len(want)} vs {length - 1} tokens)"
            )
        if len(probs) >= 5:
            break
    return probs


def _source_records(root: Path, source: str) -> tuple[dict[str, list[dict]], list[str]]:
    import numpy as np

    from moxin.data.shard import SPLITS

    proc = root / "data" / "processed"
    jsonl, flags = proc / f"{source}.jsonl", proc / f"{source}.split.npy"
    if not jsonl.is_file() or not flags.is_file():
        return {}, [f"data/processed/{source}.jsonl or .split.npy missing, but data/tokens.json has source {source}"]
    lines = [ln for ln in jsonl.read_bytes().splitlines() if ln.strip()]
    split = np.load(flags, allow_pickle=False)
    if len(split) != len(lines):
        return {}, [f"data/processed/{source}.split.npy has {len(split)} rows, {source}.jsonl {len(lines)} documents"]
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for line, flag in zip(lines, split):
        out[SPLITS[int(flag)]].append(json.loads(line))
    return out, []


def check_data_text(root: Path) -> Check:
    """The processed text (data/processed/) re-tokenized with the release's tokenizer gives the token shards."""
    c = Check("data text")
    if not (root / "data" / "processed").is_dir():
        c.skipped = "no data/processed/ in the release: the token shards cannot be traced back to text here"
        return c
    if not (root / "tokenizer" / "tokenizer.json").is_file() or not (root / "data" / "tokens.json").is_file():
        c.problems.append("data/processed/ is shipped but tokenizer/tokenizer.json or data/tokens.json is missing")
        return c
    from moxin.data.shard import load_bpe
    from moxin.data.tokens import TokenData

    data, tok = TokenData(root / "data"), load_bpe(root / "tokenizer")
    checked = 0
    for source in data.sources:
        records, probs = _source_records(root, source)
        c.problems += probs
        for split, recs in records.items():
            if split not in data.splits(source):
                if recs:
                    c.problems.append(f"data/processed/{source}.jsonl: {len(recs)} {split} documents, none in shards")
                continue
            sample = _sample(len(recs))
            c.problems += _split_problems(data, tok, source, split, recs, sample)
            checked += len(sample)
    c.summary = f"{checked} documents re-tokenized = the shards"
    return c


# ------------------------------------------------------------------------------------------------ all
def _guarded(name: str, fn, *args) -> Check | None:
    """A check that crashes on a malformed file fails, naming the error (verify never ends in a traceback)."""
    try:
        return fn(*args)
    except Exception as e:  # any error while re-deriving a file is a broken link, reported as such
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        return Check(name, [f"{name}: the files could not be re-derived ({type(e).__name__}: {msg})"])


def check_chain(root: Path) -> list[Check]:
    """Every chain check, in the order of the module docstring."""
    root = Path(root)
    cks = all_checkpoints(root)
    final = final_of(root, cks)
    checks = [
        _guarded("final model", check_final_model, root, final),
        _guarded("hf export", check_hf, root),
        _guarded("gguf", check_gguf, root),
        _guarded("eval results", check_eval_links, root, cks),
        _guarded("MOF files", check_mof_files, root),
        _guarded("licences", check_licences, root),
        _guarded("code", check_code, root),
        _guarded("cards", check_cards, root),
        _guarded("data text", check_data_text, root),
    ]
    return [c for c in checks if c is not None]
