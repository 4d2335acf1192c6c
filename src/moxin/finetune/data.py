"""Fine-tuning data: readers for the usual formats, normalised to conversations, with every dropped record counted
by reason and located by file:line, exact-duplicate removal, 13-gram decontamination against the eval sets, a
deterministic held-out split, and the data manifest (licence, SHA-256 of inputs, counts in/kept/dropped).

Formats (detected from a file's first record unless `format` is given):
- chat: `{"messages": [{"role": "system"|"user"|"assistant", "content": str}, ...]}`
- instruction (Alpaca/Dolly): `{"instruction", "input"?, "output"}`; `context` is taken as the input too
- prompt-response: `{"prompt", "response"|"completion"}`
- preference: `{"prompt"?, "chosen", "rejected"}` with strings, message lists (chat-style, full conversations
  sharing a prefix) or HH-RLHF dialogues (`\\n\\nHuman: … \\n\\nAssistant: …`); `{"instruction", "input"?, "chosen",
  "rejected"}` as in rasbt's preference set
- math (GSM8K): `{"question", "answer"}` whose answer ends with `#### <number>`

Normalised examples (JSON-able): `{"messages": [...]}` (SFT), `{"prompt": [...], "chosen": [...],
"rejected": [...]}` (DPO), `{"prompt": [...], "answer": "72", "solution": "..."}` (GRPO); each carries
`"src": "file:line"`."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moxin.errors import ConfigError, DataError
from moxin.finetune.config import DatasetConfig
from moxin.io import open_compressed, parse_json_line, strip_compression

ROLES = ("system", "user", "assistant")
MODE_FORMATS = {
    "sft": ("chat", "instruction", "prompt-response", "math", "preference"),
    "dpo": ("preference",),
    "grpo": ("math",),
}
_HH_TURN = re.compile(r"\n\n(Human|Assistant): ")
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


class BadRecord(Exception):
    """A record that cannot become an example; `reason` is the counted drop reason."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


# ------------------------------------------------------------------------------------------------ ledger
@dataclass
class DatasetCount:
    name: str
    path: str
    license: str
    format: str = ""
    sha256: str = ""
    records_in: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)  # "file:line: reason: detail", the first few per reason

    def drop(self, reason: str, where: str, detail: str = "", keep: int = 5) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if self.dropped[reason] <= keep:
            self.examples.append(f"{where}: {reason}" + (f": {detail}" if detail else ""))

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "license": self.license,
            "format": self.format,
            "sha256": self.sha256,
            "records_in": self.records_in,
            "kept": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "examples": self.examples,
        }


class Ledger:
    """Counts per dataset; a drop found later (e.g. too long once tokenized) is booked by the example's `src`."""

    def __init__(self) -> None:
        self.sets: dict[str, DatasetCount] = {}

    def add(self, c: DatasetCount) -> DatasetCount:
        self.sets[c.name] = c
        return c

    def drop_example(self, ex: dict[str, Any], reason: str, detail: str = "") -> None:
        c = self.sets[ex["dataset"]]
        c.kept -= 1
        c.drop(reason, ex["src"], detail)

    def summary(self) -> str:
        parts = []
        for c in self.sets.values():
            drops = ", ".join(f"{k} {v}" for k, v in sorted(c.dropped.items())) or "none"
            parts.append(f"{c.name}: {c.records_in} in, {c.kept} kept, dropped: {drops}")
        return "; ".join(parts)


# ------------------------------------------------------------------------------------------------ reading
def read_records(path: Path, count: DatasetCount) -> Iterator[tuple[str, Any]]:
    """(where, parsed record) for every record of a JSONL file or a JSON array; unreadable ones are counted."""
    stem = strip_compression(path.name)
    try:
        with open_compressed(path, "rt") as fh:
            if stem.endswith(".json"):
                try:
                    data = json.load(fh)
                except json.JSONDecodeError as e:
                    raise DataError(
                        f"{path}:{e.lineno}: not valid JSON ({e.msg}); a .json file must hold one "
                        f"JSON array of records (or rename it .jsonl for one record per line)"
                    ) from None
                except (RecursionError, ValueError) as e:  # nesting too deep; an integer over 4300 digits
                    raise DataError(
                        f"{path}: cannot be parsed ({type(e).__name__}: {str(e)[:80]}); remove the "
                        f"deeply nested value or over-long number"
                    ) from None
                if not isinstance(data, list):
                    raise DataError(f"{path}: a .json data file must hold a JSON array, got {type(data).__name__}")
                for i, rec in enumerate(data):
                    yield f"{path.name}[{i}]", rec
                return
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                rec = parse_json_line(line, want_object=False)
                if rec.reason:
                    count.records_in += 1
                    count.drop(rec.reason.replace("-", "_"), f"{path.name}:{lineno}", rec.detail)
                    continue
                yield f"{path.name}:{lineno}", rec.value
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); convert it to UTF-8") from None


def _text(rec: dict, key: str, required: bool = True) -> str:
    v = rec.get(key)
    if v is None:
        if required:
            raise BadRecord(f"missing_field:{key}", f"no {key!r} in keys {sorted(rec)[:6]}")
        return ""
    if not isinstance(v, str):
        raise BadRecord(f"bad_type:{key}", f"{key!r} is {type(v).__name__}, expected a string")
    return v


def _messages(value: Any, key: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRecord(f"bad_type:{key}", f"{key!r} must be a non-empty list of {{role, content}} objects")
    out = []
    for i, m in enumerate(value):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not isinstance(m.get("role"), str):
            raise BadRecord("malformed_message", f"{key}[{i}] needs a string 'role' and a string 'content'")
        role = {"human": "user", "gpt": "assistant", "bot": "assistant"}.get(m["role"], m["role"])
        if role not in ROLES:
            raise BadRecord(f"unknown_role:{m['role']}", f"{key}[{i}] role {m['role']!r}; use system, user, assistant")
        out.append({"role": role, "content": m["content"]})
    return out


def _instruction_prompt(rec: dict) -> list[dict[str, str]]:
    instr = _text(rec, "instruction")
    extra = _text(rec, "input", False) or _text(rec, "context", False)
    return [{"role": "user", "content": f"{instr}\n\n{extra}" if extra.strip() else instr}]


def _hh_dialogue(text: str, key: str) -> list[dict[str, str]]:
    parts = _HH_TURN.split(text)
    if len(parts) < 3 or parts[0].strip():
        raise BadRecord(f"bad_dialogue:{key}", f"{key!r} is not a '\\n\\nHuman: … \\n\\nAssistant: …' dialogue")
    return [
        {"role": "user" if who == "Human" else "assistant", "content": said}
        for who, said in zip(parts[1::2], parts[2::2])
    ]


def _split_common(chosen: list[dict], rejected: list[dict]) -> tuple[list, list, list]:
    """Full conversations that share a prefix → (prompt, chosen tail, rejected tail); tails start at an
    assistant turn."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    while n > 0 and chosen[n]["role"] != "assistant":
        n -= 1
    return chosen[:n], chosen[n:], rejected[n:]


def _side(rec: dict, key: str) -> list[dict[str, str]] | str:
    v = rec.get(key)
    if v is None:
        raise BadRecord(f"missing_field:{key}", f"a preference record needs {key!r}")
    if isinstance(v, str):
        return v
    return _messages(v, key)


def _preference(rec: dict) -> dict[str, Any]:
    chosen, rejected = _side(rec, "chosen"), _side(rec, "rejected")
    if "instruction" in rec:
        prompt = _instruction_prompt(rec)
    elif isinstance(rec.get("prompt"), str):
        prompt = [{"role": "user", "content": rec["prompt"]}]
    elif "prompt" in rec:
        prompt = _messages(rec["prompt"], "prompt")
    else:
        prompt = None
    if isinstance(chosen, str) and isinstance(rejected, str):
        if prompt is None:  # HH-RLHF: two full dialogues
            prompt, chosen, rejected = _split_common(_hh_dialogue(chosen, "chosen"), _hh_dialogue(rejected, "rejected"))
        else:
            chosen, rejected = [{"role": "assistant", "content": chosen}], [{"role": "assistant", "content": rejected}]
    elif isinstance(chosen, list) and isinstance(rejected, list):
        if prompt is None:
            prompt, chosen, rejected = _split_common(chosen, rejected)
    else:
        raise BadRecord("bad_type:chosen", "chosen and rejected must both be strings or both message lists")
    if (
        not prompt
        or not chosen
        or not rejected
        or chosen[0]["role"] != "assistant"
        or rejected[0]["role"] != "assistant"
    ):
        raise BadRecord("no_assistant_turn", "chosen/rejected must continue the prompt with an assistant turn")
    if chosen == rejected:
        raise BadRecord("chosen_equals_rejected")
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def gsm8k_answer(text: str) -> str | None:
    """The number after '####' (commas removed), or None."""
    if "####" not in text:
        return None
    m = _NUMBER.search(text.rsplit("####", 1)[1])
    return m.group(0).replace(",", "") if m else None


def normalise(rec: Any, fmt: str) -> dict[str, Any]:
    """One parsed record in format `fmt` → a normalised example (see the module docstring)."""
    if not isinstance(rec, dict):
        raise BadRecord("not_an_object", f"got {type(rec).__name__}")
    if fmt == "chat":
        if "messages" not in rec:
            raise BadRecord("missing_field:messages", "a chat record needs 'messages'")
        return {"messages": _messages(rec["messages"], "messages")}
    if fmt == "instruction":
        return {"messages": [*_instruction_prompt(rec), {"role": "assistant", "content": _text(rec, "output")}]}
    if fmt == "prompt-response":
        resp = _text(rec, "response", False) or _text(rec, "completion")
        return {"messages": [{"role": "user", "content": _text(rec, "prompt")}, {"role": "assistant", "content": resp}]}
    if fmt == "preference":
        return _preference(rec)
    if fmt == "math":
        q, a = _text(rec, "question"), _text(rec, "answer")
        gold = gsm8k_answer(a) or (a.strip() if _NUMBER.fullmatch(a.strip().replace(",", "")) else None)
        if gold is None:
            raise BadRecord("no_checkable_answer", "answer has no '#### <number>' line")
        return {"prompt": [{"role": "user", "content": q}], "answer": gold.replace(",", ""), "solution": a}
    raise ConfigError(f"unknown data format {fmt!r}")


def detect_format(rec: Any) -> str | None:
    if not isinstance(rec, dict):
        return None
    if "messages" in rec:
        return "chat"
    if "chosen" in rec or "rejected" in rec:
        return "preference"
    if "question" in rec and "answer" in rec:
        return "math"
    if "instruction" in rec:
        return "instruction"
    if "prompt" in rec:
        return "prompt-response"
    return None


def validate_example(ex: dict[str, Any], system_prompt: str) -> dict[str, Any]:
    """Check turn structure and content; add the system prompt when the example has none."""
    convs = [ex["messages"]] if "messages" in ex else [ex["prompt"]]
    for conv in convs:
        for m in conv:
            if not m["content"].strip():
                raise BadRecord("empty_content", f"an empty {m['role']} turn")
    if "messages" in ex and not any(m["role"] == "assistant" for m in ex["messages"]):
        raise BadRecord("no_assistant_turn", "nothing to learn: the conversation has no assistant turn")
    if system_prompt:
        for key in ("messages", "prompt"):
            if key in ex and ex[key][0]["role"] != "system":
                ex[key] = [{"role": "system", "content": system_prompt}, *ex[key]]
    return ex


def to_mode(ex: dict[str, Any], mode: str) -> dict[str, Any]:
    """SFT also trains on a preference pair's chosen answer and on a math problem's worked solution."""
    if mode == "sft" and "chosen" in ex:
        return {"messages": ex["prompt"] + ex["chosen"]}
    if mode == "sft" and "solution" in ex:
        return {"messages": ex["prompt"] + [{"role": "assistant", "content": ex["solution"]}]}
    return ex


# ------------------------------------------------------------------------------------------------ pipeline
def load_dataset(
    cfg: DatasetConfig, mode: str, resolve: Callable[[str], Path], system_prompt: str, strict: bool, ledger: Ledger
) -> list[dict[str, Any]]:
    """Read, normalise and check one dataset; returns its kept examples (with `src` and `dataset`)."""
    from moxin.provenance import sha256_file

    path = resolve(cfg.path)
    if not path.is_file():
        raise DataError(f"finetune data file not found: {path} (path {cfg.path!r}); fix the path")
    name = cfg.name or re.sub(r"(\.jsonl|\.json)?$", "", strip_compression(path.name))
    count = ledger.add(DatasetCount(name, cfg.path, cfg.license, sha256=sha256_file(path)))  # as written + SHA
    fmt: str | None = None if cfg.format == "auto" else cfg.format
    out = []
    for where, rec in read_records(path, count):
        if cfg.max_records and count.records_in >= cfg.max_records:
            break
        count.records_in += 1
        fmt = fmt or detect_format(rec)
        if fmt is not None and fmt not in MODE_FORMATS[mode]:
            raise ConfigError(
                f"dataset {name!r} ({path}) is in {fmt!r} format, which `finetune {mode}` cannot use; "
                f"it needs {' or '.join(MODE_FORMATS[mode])}"
            )
        try:
            if fmt is None:
                raise BadRecord(
                    "unknown_format",
                    f"cannot tell the format from keys {sorted(rec)[:6]}"
                    if isinstance(rec, dict)
                    else f"got {type(rec).__name__}",
                )
            ex = validate_example(to_mode(normalise(rec, fmt), mode), system_prompt)
        except BadRecord as e:
            if strict:
                msg = f"{path.parent / where}: {e.reason}" + (f" ({e.detail})" if e.detail else "")
                raise DataError(
                    msg + '; fix the record, or set on_bad_record = "skip" to count and skip such records'
                ) from None
            count.drop(e.reason, where, e.detail)
            continue
        ex["src"], ex["dataset"] = where, name
        out.append(ex)
    count.format, count.kept = fmt or "unknown", len(out)
    if strict and count.dropped:  # malformed JSON lines are counted while reading
        raise DataError(f'{path}: {count.examples[0]}; fix the record, or set on_bad_record = "skip"')
    return out


def content_key(ex: dict[str, Any]) -> str:
    body = {k: v for k, v in ex.items() if k not in ("src", "dataset")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def dedup(examples: list[dict[str, Any]], ledger: Ledger) -> list[dict[str, Any]]:
    seen: dict[str, str] = {}
    out = []
    for ex in examples:
        k = content_key(ex)
        if k in seen:
            ledger.drop_example(ex, "duplicate", f"same as {seen[k]}")
            continue
        seen[k] = ex["src"]
        out.append(ex)
    return out


def example_text(ex: dict[str, Any]) -> str:
    convs = [ex.get("messages") or [], ex.get("prompt") or [], ex.get("chosen") or [], ex.get("rejected") or []]
    return "\n".join(m["content"] for conv in convs for m in conv if m["role"] != "system")


def split(examples: list[dict[str, Any]], val_fraction: float, val_max: int) -> tuple[list, list]:
    """Held-out examples: those whose content hash falls below val_fraction, at most val_max (smallest hashes)."""
    keyed = [(int(content_key(ex)[:15], 16) / 16**15, i) for i, ex in enumerate(examples)]
    val_idx = {i for u, i in sorted(keyed)[:val_max] if u < val_fraction}
    return (
        [ex for i, ex in enumerate(examples) if i not in val_idx],
        [ex for i, ex in enumerate(examples) if i in val_idx],
    )
