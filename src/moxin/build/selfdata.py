"""Instruction and evaluation data generated from the corpus itself, so the embedded default build needs nothing
beyond the install.

- SFT pairs (docstring → function) from the *train* split: instruction = "Write a Python function `sig` that ...
  <docstring summary>", output = the function's source with the docstring removed.
- A code-completion task from the *held-out* (`val`) split: for a function, the context is its source up to a
  line; the choices are the true next line and three lines from other held-out functions; scored like lm-eval's
  multiple-choice tasks (accuracy by log-likelihood).

Both read the documents back from the token shards (decoded), so they use exactly the text the model was trained
on and the split the data stage made. Order and choices are deterministic.
"""

from __future__ import annotations

import ast
import hashlib
import json
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from moxin.provenance import atomic_write_text


@dataclass(frozen=True)
class Function:
    doc_id: str
    name: str
    signature: str  # "name(a, b=1)"
    summary: str  # first paragraph of the docstring, one line
    source: str  # the def with its docstring removed, dedented
    lines: tuple[str, ...]  # source lines of the whole def (docstring kept), dedented


def _summary(doc: str) -> str:
    first = doc.strip().split("\n\n")[0]
    return " ".join(first.split())


def _strip_docstring(node: ast.FunctionDef, lines: list[str]) -> str:
    body0 = node.body[0]
    start, end = node.lineno - 1, node.end_lineno
    if node.decorator_list:
        start = node.decorator_list[0].lineno - 1
    kept = lines[start:body0.lineno - 1] + lines[body0.end_lineno:end]
    return textwrap.dedent("\n".join(kept)).rstrip() + "\n"


def functions_in(doc_id: str, text: str, max_lines: int = 24) -> Iterator[Function]:
    """Top-level and method functions with a docstring and a body of 1..max_lines lines after it."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return
    lines = text.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or not node.body:
            continue
        doc = ast.get_docstring(node)
        if not doc or len(node.body) < 2 or node.name.startswith("__"):
            continue
        body_lines = node.end_lineno - node.body[0].end_lineno
        summary = _summary(doc)
        if not 1 <= body_lines <= max_lines or not 10 <= len(summary) <= 300:
            continue
        source = _strip_docstring(node, lines)
        whole = textwrap.dedent("\n".join(lines[node.lineno - 1:node.end_lineno])).splitlines()
        yield Function(doc_id, node.name, f"{node.name}({ast.unparse(node.args)})", summary, source, tuple(whole))


def sft_records(functions: list[Function]) -> list[dict]:
    return [{"instruction": f"Write a Python function `{f.signature}` that does the following: {f.summary}",
             "input": "", "output": f.source.rstrip("\n"), "source_doc": f.doc_id} for f in functions]


def _rank(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x00".join(parts).encode()).digest()[:8], "big")


def completion_items(functions: list[Function], n_choices: int = 4, seed: int = 0) -> list[dict]:
    """Next-line multiple choice from held-out functions (context: the def up to a line after the docstring)."""
    pool = sorted({ln.strip() for f in functions for ln in f.lines if len(ln.strip()) >= 8})
    items = []
    for f in functions:
        body = [i for i, ln in enumerate(f.lines) if len(ln.strip()) >= 8 and i >= 2]
        if not body or len(pool) < n_choices:
            continue
        cut = body[_rank(str(seed), f.doc_id, f.name) % len(body)]
        answer = f.lines[cut].strip()
        indent = f.lines[cut][: len(f.lines[cut]) - len(f.lines[cut].lstrip())]
        others = sorted((p for p in pool if p != answer), key=lambda p: _rank(str(seed), f.name, p))[: n_choices - 1]
        choices = sorted([answer, *others], key=lambda p: _rank(str(seed), f.doc_id, p))
        context = "\n".join(f.lines[:cut]) + "\n" + indent
        items.append({"id": f"{f.doc_id}::{f.name}", "context": context, "choices": choices,
                      "label": choices.index(answer)})
    return items


def collect(docs: Iterator[tuple[str, str]], limit: int | None = None) -> list[Function]:
    """Functions from (doc_id, text) pairs, deduplicated by source, in document order."""
    seen, out = set(), []
    for doc_id, text in docs:
        for f in functions_in(doc_id, text):
            if f.source not in seen:
                seen.add(f.source)
                out.append(f)
                if limit and len(out) >= limit:
                    return out
    return out


def documents(token_data, source: str, split: str, decode: Callable[[list[int]], str]) -> Iterator[tuple[str, str]]:
    """(doc_id, text) of every document of a source split, decoded from the token shards (EOS dropped)."""
    docs = token_data.documents(source, split)
    ids = token_data.doc_ids(source, split)
    for (start, length), doc_id in zip(docs.tolist(), ids):
        yield doc_id, decode(token_data.read(source, start, length - 1, split).tolist())


def write_jsonl(path: Path, records: list[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records))


# ------------------------------------------------------------------------------------------------ the stage
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

TASKS = {"moxin_heldout": "heldout.jsonl", "moxin_codecomp": "codecomp.jsonl"}  # eval task → its items


def available_tasks(folder: Path) -> tuple[list[str], list[str]]:
    """(the selfdata eval tasks that have items, notes on those that have none): a small corpus can leave no
    held-out function to complete, and lm-eval fails on an empty data file."""
    tasks, notes = [], []
    for task, name in TASKS.items():
        items = folder / name
        if items.is_file() and items.read_text("utf-8").strip():
            tasks.append(task)
        else:
            notes.append(f"{task} skipped: {name} in {folder.name}/ has no items (too few held-out documents; raise "
                         f"data.val_fraction or add data)")
    return tasks, notes

SELFDATA_SOURCE = """# Data generated from the corpus itself by `moxin build`

## Origin
Source `{source}` of this run's data stage, read back from its token shards: `sft.jsonl` (docstring → function
pairs from the train split), `codecomp.jsonl` (next-line multiple choice from held-out functions) and
`heldout.jsonl` (held-out documents for perplexity).

## License
{licence}
"""


def selfdata_source(sources, wanted: str | None, where: str) -> str:
    """build.selfdata_source, else the first code source (python-stdlib or kind "code"), else the first source."""
    from moxin.errors import ConfigError

    names = [s.name for s in sources]
    if wanted and wanted not in names:
        raise ConfigError(f"build.selfdata_source {wanted!r} in {where} is not a data source; choose one of {names}")
    code = [s.name for s in sources if s.type == "python-stdlib" or s.kind == "code"]
    return wanted or (code[0] if code else names[0])


def run_selfdata(sources, wanted: str | None, layout, seed: int, where: str = "the recipe",
                 log: Callable[[str], None] = print):
    """The selfdata stage: SFT pairs, the code-completion task and held-out documents from the data stage's
    shards (`layout.data`, decoded with `layout.tokenizer`) into `layout.selfdata`. `sources`: the recipe's
    [[data.sources]]; `wanted`: build.selfdata_source."""
    from moxin.build.stages import output_fingerprint
    from moxin.data.tokens import TokenData
    from moxin.interop.tokenizer import load_tokenizer
    from moxin.provenance import atomic_dir, write_manifest
    from moxin.stage import StageResult

    source = selfdata_source(sources, wanted, where)
    licence = next(s.license for s in sources if s.name == source)
    td, tok = TokenData(layout.data), load_tokenizer(layout.tokenizer)
    decode = lambda ids: tok.decode(ids, skip_special_tokens=False)  # noqa: E731
    train = collect(documents(td, source, "train", decode))
    held = list(documents(td, source, "val", decode))
    held_fns = collect(iter(held))
    with atomic_dir(layout.selfdata, overwrite=True) as tmp:
        write_jsonl(tmp / "sft.jsonl", sft_records(train))
        write_jsonl(tmp / "codecomp.jsonl", completion_items(held_fns, seed=seed))
        write_jsonl(tmp / "heldout.jsonl", [{"id": d, "text": t[:4000]} for d, t in held[:64] if t.strip()])
        atomic_write_text(tmp / "SOURCE.md", SELFDATA_SOURCE.format(source=source, licence=licence))
        atomic_write_text(tmp / "moxin_codecomp.yaml", CODECOMP_YAML)
        atomic_write_text(tmp / "moxin_heldout.yaml", HELDOUT_YAML)
        write_manifest(tmp, {"stage": "selfdata", "source": source, "data": output_fingerprint(layout.data),
                             "sft_pairs": len(train), "codecomp_items": len(held_fns), "license": licence})
    log(f"selfdata: {len(train)} SFT pairs from {source}/train, code-completion from {len(held_fns)} held-out "
        f"functions")
    return StageResult.done("selfdata", (layout.selfdata,))
