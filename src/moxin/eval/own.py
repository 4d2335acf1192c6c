"""Your own evaluation set without YAML: a JSONL file of one kind becomes the lm-eval task `own_<name>`.

Kinds and records (extra fields are ignored):
- `choice`: `{"question", "choices": [...], "answer": index or the answer's text}` → multiple choice, acc/acc_norm;
- `exact`: `{"question", "answer": text or [texts]}` → greedy generation up to the first newline, exact match after
  `normalize_answer` (NFKC, so full-width and half-width forms meet, case-folded, trailing 。、！？.,!? cut);
- `perplexity`: `{"text"}` documents → rolling log-likelihood: word_perplexity, byte_perplexity, bits_per_byte.

Every record is checked before any model is loaded; a bad one is a one-line `DataError` naming `file:line`. The
generated folder holds, per task, `own_<name>.yaml` and `items.jsonl` (the checked, normalised records); the YAML's
metadata records the SHA-256 of the user's file, so every result says exactly which file it scored. A run keeps
the folder in `<run>/eval/own/`; a model outside a run gets one in the private per-user task cache."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moxin.errors import DataError, EvalError

KINDS = ("choice", "exact", "perplexity")
TASK_PREFIX = "own_"
PROMPT = "Question: {{question}}\nAnswer:"
# Cut from the end of an answer (after NFKC, which turns ！？．， into !?.,): sentence punctuation only, so that
# "50%" or "C#" keep their last character.
TRAILING = ".,!?;:。、｡､…‥"
PERPLEXITY_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte")
MAX_GEN_TOKS = 128  # generation budget cap; below it, the longest answer's UTF-8 bytes (+8) bound the tokens needed


# ------------------------------------------------------------------------------------------------ scoring
def normalize_answer(text: str) -> str:
    """What exact match compares: NFKC (full-width ＡＢＣ１２３ → ABC123, half-width ｶﾀｶﾅ → カタカナ), whitespace
    collapsed, case-folded, trailing sentence punctuation (ASCII and Japanese 。、) and spaces removed."""
    t = " ".join(unicodedata.normalize("NFKC", text).split()).casefold()
    return t.rstrip(TRAILING + " ").strip()


def exact_match_results(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval process_results of an `exact` task: 1.0 when the generation equals any accepted answer."""
    got = normalize_answer(results[0])  # one generation per document (repeats: 1)
    return {"exact_match": float(any(got == normalize_answer(a) for a in doc["answers"]))}


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class OwnSet:
    """One checked file: its task name, kind, SHA-256 and normalised records (first `limit` only)."""

    name: str
    kind: str
    path: Path
    sha256: str
    records: tuple[dict[str, Any], ...]
    total: int  # records in the file
    limit: int | None = None
    license: str = ""  # SPDX id of the file's contents, written into the task folder's SOURCE.md (releases audit it)

    @property
    def task(self) -> str:
        return TASK_PREFIX + self.name


def only_own(tasks: Sequence[str]) -> bool:
    """Whether a task list (as `--tasks` items) names own tasks only."""
    from moxin.eval.catalog import parse_tasks

    names = [name for name, _ in parse_tasks(list(tasks))]
    return bool(names) and all(n.startswith(TASK_PREFIX) for n in names)


def default_name(path: str | Path) -> str:
    """The task name of a file without an explicit one: its stem, with characters other than letters, digits, '_'
    and '-' replaced by '_' (`qa.v2.jsonl` → `qa_v2`)."""
    stem = Path(path).name.split(".")[0] or "own"
    return re.sub(r"[^\w-]", "_", stem).lstrip("-") or "own"


def parse_spec(spec: str) -> tuple[Path, str]:
    """`--own PATH:KIND` → (path, kind)."""
    path, sep, kind = spec.rpartition(":")
    if not sep or not path:
        raise EvalError(f"--own {spec!r} has no kind; write PATH:KIND, e.g. --own qa.jsonl:choice ({', '.join(KINDS)})")
    if kind not in KINDS:
        raise EvalError(f"--own {spec!r}: kind {kind!r} is not one of {', '.join(KINDS)}; e.g. --own {path}:{KINDS[0]}")
    return Path(path).expanduser(), kind


def read_own(
    path: Path, kind: str, name: str | None = None, limit: int | None = None, where: str = "--own", license: str = ""
) -> OwnSet:
    """Check every record of `path` as `kind`; a problem raises a one-line DataError naming `file:line`."""
    from moxin.io import read_jsonl
    from moxin.provenance import sha256_file

    if kind not in KINDS:
        raise EvalError(f"{where} {path}: kind {kind!r} is not one of {', '.join(KINDS)}")
    if not path.is_file():
        raise DataError(f"{where} {path}: file not found; give a JSONL file of {kind} records")
    check = _CHECKS[kind]
    records = [check(obj, f"{path}:{n}") | {"line": n} for n, obj in read_jsonl(path, DataError)]
    if not records:
        raise DataError(f"{path} has no records; add one JSON object per line ({_FIELDS[kind]})")
    kept = tuple(records[:limit] if limit else records)
    return OwnSet(name or default_name(path), kind, path, sha256_file(path), kept, len(records), limit, license)


_FIELDS = {
    "choice": '{"question": ..., "choices": [...], "answer": index or text}',
    "exact": '{"question": ..., "answer": text}',
    "perplexity": '{"text": ...}',
}


def _text(obj: dict[str, Any], key: str, w: str, kind: str) -> str:
    if key not in obj:
        present = ", ".join(sorted(obj)) or "none"
        raise DataError(f"{w}: field {key!r} missing (fields present: {present}); a {kind} record is {_FIELDS[kind]}")
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise DataError(
            f"{w}: field {key!r} must be a non-empty string, got {json.dumps(value, ensure_ascii=False):.60}"
        )
    return value


def _choice(obj: dict[str, Any], w: str) -> dict[str, Any]:
    question = _text(obj, "question", w, "choice")
    choices = obj.get("choices")
    if not isinstance(choices, list) or len(choices) < 2:
        got = json.dumps(choices, ensure_ascii=False) if "choices" in obj else "missing"
        raise DataError(f"{w}: field 'choices' must be a list of at least 2 strings, got {got:.60}")
    for i, c in enumerate(choices):
        if not isinstance(c, str) or not c.strip():
            raise DataError(
                f"{w}: choices[{i}] must be a non-empty string, got {json.dumps(c, ensure_ascii=False):.60}"
            )
    twice = next((c for i, c in enumerate(choices) if c in choices[:i]), None)
    if twice is not None:
        raise DataError(f"{w}: choices hold {twice!r} twice; every choice must differ")
    return {"question": question, "choices": choices, "answer": _answer_index(obj, choices, w)}


def _answer_index(obj: dict[str, Any], choices: list[str], w: str) -> int:
    if "answer" not in obj:
        raise DataError(f"{w}: field 'answer' missing; give the index of the right choice (0..{len(choices) - 1})")
    answer = obj["answer"]
    if isinstance(answer, int) and not isinstance(answer, bool):
        if not 0 <= answer < len(choices):
            raise DataError(
                f"{w}: answer {answer} is out of range for {len(choices)} choices; give an index 0..{len(choices) - 1}"
            )
        return answer
    if isinstance(answer, str):
        if answer not in choices:
            raise DataError(f"{w}: answer {answer!r} is not among the choices; give one of them exactly, or its index")
        return choices.index(answer)
    raise DataError(f"{w}: answer must be a choice index or a choice's text, got {json.dumps(answer):.60}")


def _exact(obj: dict[str, Any], w: str) -> dict[str, Any]:
    question = _text(obj, "question", w, "exact")
    raw = obj.get("answer")
    answers = raw if isinstance(raw, list) and raw else [_text(obj, "answer", w, "exact")]
    for a in answers:
        if not isinstance(a, str) or not normalize_answer(a):
            shown = json.dumps(a, ensure_ascii=False)
            raise DataError(f"{w}: answer {shown:.60} is empty after normalisation; give the expected text")
    return {"question": question, "answer": answers[0], "answers": answers}


def _perplexity(obj: dict[str, Any], w: str) -> dict[str, Any]:
    return {"text": _text(obj, "text", w, "perplexity")}


_CHECKS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "choice": _choice,
    "exact": _exact,
    "perplexity": _perplexity,
}


# ------------------------------------------------------------------------------------------------ task files
def task_yaml(s: OwnSet) -> str:
    """The lm-eval task of one set, reading `items.jsonl` beside it."""
    from moxin.eval.includes import dump_yaml, function_tag

    cfg: dict[str, Any] = {
        "task": s.task,
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": "items.jsonl"}},
        "test_split": "test",
    }
    if s.kind == "choice":
        cfg |= {"output_type": "multiple_choice", "doc_to_text": PROMPT, "doc_to_choice": "choices",
                "doc_to_target": "answer", "metric_list": [_metric("acc"), _metric("acc_norm")]}  # fmt: skip
    elif s.kind == "exact":
        longest = max(len(a.encode("utf-8")) for r in s.records for a in r["answers"])
        cfg |= {"output_type": "generate_until", "doc_to_text": PROMPT, "doc_to_target": "answer",
                "process_results": function_tag("moxin.eval.own.exact_match_results"),
                "metric_list": [_metric("exact_match")],
                "generation_kwargs": {"until": ["\n"], "do_sample": False, "temperature": 0.0,
                                      "max_gen_toks": min(MAX_GEN_TOKS, longest + 8)}}  # fmt: skip
    else:
        cfg |= {"output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "text",
                "should_decontaminate": False, "metric_list": [{"metric": m} for m in PERPLEXITY_METRICS]}  # fmt: skip
    cfg["metadata"] = {"version": 1.0, "kind": s.kind, "source_file": s.path.name, "source_sha256": s.sha256,
                       "source_records": s.total, "limit": s.limit}  # fmt: skip
    return dump_yaml(cfg)


def _metric(name: str) -> dict[str, Any]:
    return {"metric": name, "aggregation": "mean", "higher_is_better": True}


def folder_content(sets: Sequence[OwnSet]) -> dict[str, bytes]:
    """The generated folder: `<name>/own_<name>.yaml` and `<name>/items.jsonl` per set."""
    out: dict[str, bytes] = {}
    for s in sets:
        items = "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in s.records)
        out[f"{s.name}/{s.task}.yaml"] = task_yaml(s).encode("utf-8")
        out[f"{s.name}/items.jsonl"] = items.encode("utf-8")
        if s.license:
            out[f"{s.name}/SOURCE.md"] = SOURCE_MD.format(file=s.path.name, sha=s.sha256, license=s.license).encode()
    return out


SOURCE_MD = """# Own evaluation set, generated by moxin

## Origin
`{file}` (SHA-256 {sha}), its records checked and copied to items.jsonl.

## License
{license}
"""


def write_tasks(sets: Sequence[OwnSet], folder: Path) -> Path:
    """Write the generated task folder (replacing an older one); returns it. Unchanged content is left alone."""
    from moxin.provenance import atomic_dir

    names = [s.name for s in sets]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise EvalError(f"two own evaluation files are both named {twice!r}; rename one file (the task is own_<stem>)")
    content = folder_content(sets)
    if _holds(folder, content):
        return folder
    with atomic_dir(folder, overwrite=True) as tmp:
        for rel, data in content.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)
    from moxin.eval.runner import task_manager

    task_manager.cache_clear()  # a task index built in this process would still point at the old tasks
    return folder


def _holds(folder: Path, content: dict[str, bytes]) -> bool:
    if not folder.is_dir():
        return False
    have = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    return have == set(content) and all((folder / rel).read_bytes() == data for rel, data in content.items())


def private_folder(sets: Sequence[OwnSet]) -> Path:
    """Where the tasks of a model outside any run go: the per-user task cache, named by the generated content."""
    from moxin.eval.includes import cache_root

    digest = hashlib.sha256()
    for rel, data in sorted(folder_content(sets).items()):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
    return cache_root() / f"own-{digest.hexdigest()[:16]}"


# ------------------------------------------------------------------------------------------------ entry points
def from_specs(specs: Iterable[str], home: Path | None) -> tuple[list[str], list[Path]]:
    """`moxin eval --own PATH:KIND ...` → (task names, [generated folder]) in `<home>/eval/own/` for a run (home),
    else in the private cache."""
    from moxin.layout import RunLayout

    sets = [read_own(path, kind) for path, kind in (parse_spec(s) for s in specs)]
    if not sets:
        return [], []
    folder = RunLayout(home).eval / "own" if home is not None else private_folder(sets)
    return [s.task for s in sets], [write_tasks(sets, folder)]


def from_config(own: Sequence[Any], resolve_path: Callable[[str], Path], folder: Path) -> tuple[list[str], list[Path]]:
    """A recipe's `[[eval.own]]` entries (`OwnEvalConfig`, paths relative to the recipe) → (task names, [folder])."""
    sets = [
        read_own(resolve_path(o.path), o.kind, o.name, o.limit, f"eval.own[{i}].path", o.license)
        for i, o in enumerate(own)
    ]
    if not sets:
        return [], []
    return [s.task for s in sets], [write_tasks(sets, folder)]


def source_digests(own: Sequence[Any], resolve_path: Callable[[str], Path]) -> list[str | None]:
    """The SHA-256 of each `[[eval.own]]` file (None when absent): part of the eval stage's inputs in `moxin build`,
    so that an edited file is scored again."""
    from moxin.provenance import sha256_file

    paths = [resolve_path(o.path) for o in own]
    return [sha256_file(p) if p.is_file() else None for p in paths]
