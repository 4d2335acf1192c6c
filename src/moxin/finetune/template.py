"""Chat templates (Jinja, stored with the tokenizer, rendered by transformers' `apply_chat_template`), assistant-only
loss masks, and packing with segment ids.

The mask works for any prefix-stable template: the characters an assistant turn adds are those between rendering
the conversation up to it with the generation prompt and rendering it including the turn (trailing whitespace
excluded, so ChatML's `<|im_end|>` is learned but the newline after it is not). Tokens whose first character
falls in such a span carry loss; everything else (system, user, the template's own markup) carries none."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from moxin.errors import DataError, TemplateError, TemplateLimitError
from moxin.finetune.data import BadRecord
from moxin.tokenizer.config import CHATML_TEMPLATE
from moxin.train import IGNORE

CHATML = CHATML_TEMPLATE  # what moxin's own tokenizers carry


def ensure_chat_template(tok: Any, template: str = "") -> str:
    """Set the recipe's template, or ChatML when the tokenizer has none; returns where it came from."""
    if template:
        tok.chat_template = template
        return "recipe"
    if getattr(tok, "chat_template", None):
        return "tokenizer"
    tok.chat_template = CHATML
    return "chatml (default)"


def render(tok: Any, messages: list[dict[str, str]], generation_prompt: bool = False) -> str:
    """The conversation as text, rendered with size and time limits (moxin.tokenizer.template). A template that
    rejects this conversation drops the record; one that exceeds its limits stops the run (TemplateLimitError)."""
    from moxin.tokenizer.template import render_chat

    try:
        return render_chat(tok, messages, add_generation_prompt=generation_prompt)
    except TemplateLimitError:
        raise
    except TemplateError as e:
        raise BadRecord("template_error", f"the chat template rejected the conversation: {e}") from None


def assistant_spans(tok: Any, messages: list[dict[str, str]], from_turn: int = 0) -> tuple[str, list[tuple[int, int]]]:
    """(full text, character spans of the assistant turns at index >= from_turn)."""
    full = render(tok, messages)
    spans = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant" or i < from_turn:
            continue
        pre, upto = render(tok, messages[:i], True), render(tok, messages[: i + 1])
        if not (upto.startswith(pre) and full.startswith(upto)):
            raise DataError(
                "the chat template is not prefix-stable (rendering a conversation up to an assistant "
                "turn does not start the full rendering), so assistant-only masks cannot be derived; "
                "set finetune.chat_template to a template that renders turns independently"
            )
        spans.append((len(pre), len(upto.rstrip())))
    return full, spans


def encode_chat(tok: Any, messages: list[dict[str, str]], from_turn: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Token ids (L,) int64 and loss mask (L,) bool: True on the assistant turns at index >= from_turn."""
    full, spans = assistant_spans(tok, messages, from_turn)
    enc = tok(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)
    starts = np.asarray([s for s, _ in enc["offset_mapping"]], dtype=np.int64)
    mask = np.zeros(len(ids), dtype=bool)
    for a, b in spans:
        mask |= (starts >= a) & (starts < b)
    return ids, mask


def encode_prompt(tok: Any, messages: list[dict[str, str]]) -> np.ndarray:
    """The prompt with the generation prompt opened: what a sampled completion continues."""
    enc = tok(render(tok, messages, True), add_special_tokens=False)
    return np.asarray(enc["input_ids"], dtype=np.int64)


def end_of_turn_id(tok: Any) -> int:
    """The token that closes an assistant turn (ChatML: <|im_end|>); generation stops there."""
    probe = "Zq9"
    full = render(tok, [{"role": "user", "content": "x"}, {"role": "assistant", "content": probe}])
    suffix = full[full.rindex(probe) + len(probe) :].strip()
    if suffix:
        ids = tok(suffix, add_special_tokens=False)["input_ids"]
        if ids:
            return int(ids[0])
    if tok.eos_token_id is None:
        raise DataError(
            "the tokenizer has no EOS token and its chat template no end-of-turn marker; "
            "set finetune.chat_template to one that closes assistant turns"
        )
    return int(tok.eos_token_id)


# ------------------------------------------------------------------------------------------------ rows
def shift_labels(ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """labels (L,) aligned to the inputs: label[j] = ids[j+1] where token j+1 carries loss, else IGNORE."""
    labels = np.full(len(ids), IGNORE, dtype=np.int64)
    labels[:-1] = np.where(mask[1:], ids[1:], IGNORE)
    return labels


def fit_length(ids: np.ndarray, mask: np.ndarray, seq_len: int, too_long: str) -> tuple[np.ndarray, np.ndarray]:
    if len(ids) <= seq_len:
        return ids, mask
    if too_long == "drop":
        raise BadRecord("too_long", f"{len(ids)} tokens > seq_len={seq_len}")
    ids, mask = ids[:seq_len], mask[:seq_len]
    if not mask[1:].any():
        raise BadRecord("too_long", f"no assistant token left within seq_len={seq_len}")
    return ids, mask


@dataclass
class Packed:
    """Rows of packed examples: every array (R, T)."""

    input_ids: np.ndarray
    labels: np.ndarray
    positions: np.ndarray
    segment_ids: np.ndarray
    rows_of: list[list[int]]  # example indices in each row


def pack(examples: list[tuple[np.ndarray, np.ndarray]], seq_len: int, pad_id: int, order: np.ndarray) -> Packed:
    """First-fit packing of (ids, labels) pairs in `order` into rows of seq_len tokens. Positions restart at 0 and
    segment ids (1, 2, ...) change at every example, so attention never crosses examples; padding has segment 0
    and no loss."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        n = len(examples[i][0])
        r = next((k for k, free in enumerate(room) if free >= n), None)
        if r is None:
            rows.append([])
            room.append(seq_len)
            r = len(rows) - 1
        rows[r].append(int(i))
        room[r] -= n
    R = len(rows)
    out = Packed(
        np.full((R, seq_len), pad_id, np.int64),
        np.full((R, seq_len), IGNORE, np.int64),
        np.zeros((R, seq_len), np.int64),
        np.zeros((R, seq_len), np.int64),
        rows,
    )
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(members, 1):
            ids, labels = examples[i]
            n = len(ids)
            out.input_ids[r, at : at + n], out.labels[r, at : at + n] = ids, labels
            out.positions[r, at : at + n], out.segment_ids[r, at : at + n] = np.arange(n), seg
            at += n
        out.positions[r, at:] = np.arange(seq_len - at)  # padding: its own segment 0, positions from 0
    return out


def pad_rows(seqs: list[np.ndarray], fill: int, length: int | None = None) -> np.ndarray:
    """Right-pad 1-D arrays to one length: (N, T)."""
    T = length or max(len(s) for s in seqs)
    out = np.full((len(seqs), T), fill, dtype=np.int64)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out
