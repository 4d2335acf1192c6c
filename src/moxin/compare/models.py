"""The parts of a comparison that run the models: held-out bits per byte on each data source's val split, and the
same prompts generated greedily by both. Each model is loaded once and does both.

Held-out text comes from the sides' tokenized data (the first side that has a source provides it). When both
models share the tokenizer that wrote the data, they score the stored token ids; otherwise each scores the decoded
text with its own tokenizer. Either way the unit is bits per UTF-8 byte of the same text, so the numbers compare."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from moxin.compare.resolve import Side
from moxin.compare.stats import paired_bootstrap
from moxin.errors import CompareError

# The built-in prompts: short completions a base and an instruction-tuned model both continue; two in Japanese.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village,",
    "To make a cup of tea, first",
    "def fibonacci(n):",
    "The three primary colors are",
    "A good way to learn a new language is",
    "日本の首都は",
    "昔々、ある村に",
]


@dataclass
class HeldOut:
    """One source's held-out documents: the token ids as stored (with the tokenizer that wrote them) and the text."""

    source: str
    ids: list[list[int]]
    texts: list[str]
    vocab_sha256: str | None


def read_prompts(path: Path | None) -> list[str]:
    """The built-in prompts, or one prompt per non-empty line of `path`."""
    if path is None:
        return list(PROMPTS)
    try:
        lines = [ln.strip() for ln in Path(path).read_text("utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
        raise CompareError(
            f"--prompts {path}: cannot read it ({e}); give a UTF-8 text file, one prompt a line"
        ) from None
    prompts = [ln for ln in lines if ln]
    if not prompts:
        raise CompareError(f"--prompts {path} holds no prompt; write one prompt a line")
    return prompts


def held_out(sides: list[Side], max_tokens: int, items: int = 16) -> list[HeldOut]:
    """Up to `max_tokens` tokens of each source's val split, by source name: the first `max_tokens // items` tokens
    of each document, so that the paired bootstrap has up to `items` documents to resample (one long document would
    otherwise fill the budget and give no interval)."""
    from moxin.data.tokens import TokenData
    from moxin.interop.tokenizer import load_tokenizer

    out: dict[str, HeldOut] = {}
    for side in sides:
        if side.data_dir is None:
            continue
        data, tok = TokenData(side.data_dir), load_tokenizer(side.model)
        for source in data.sources:
            if source in out or data.length(source, "val") == 0:
                continue
            ids: list[list[int]] = []
            left, per_doc = max_tokens, max(64, max_tokens // items)
            for start, n in data.documents(source, "val"):
                if left <= 0:
                    break
                doc = data.read(source, int(start), int(min(n, left, per_doc)), "val").tolist()
                doc = [t for t in doc if t != data.eos_id]
                if doc:
                    ids.append(doc)
                    left -= len(doc)
            out[source] = HeldOut(source, ids, [tok.decode(d) for d in ids], side.tokenizer.get("vocab_sha256"))
    return [out[k] for k in sorted(out)]


def doc_loglik(model, ids: list[int], prefix: int | None) -> float:
    """Sum of log p(token | earlier tokens) over `ids`, in windows of the model's context (the first token is
    predicted from `prefix`, the BOS/EOS token, when there is one)."""
    import torch

    seq = ([prefix] if prefix is not None else []) + list(ids)
    window = max(2, min(int(model.cfg.max_seq_len), 512))
    total = 0.0
    with torch.inference_mode():
        for start in range(0, len(seq) - 1, window):
            x = torch.tensor(seq[start : start + window + 1], dtype=torch.long)[None]
            logp = model(x[:, :-1]).float().log_softmax(-1)  # (1, T, V)
            total += float(logp.gather(-1, x[:, 1:, None]).sum())
    return total


def _score(model, tok, side: Side, docs: list[HeldOut]) -> dict[str, list[list[float]]]:
    """source → per document [loglikelihood (nats), UTF-8 bytes]."""
    prefix = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
    out = {}
    for h in docs:
        same = h.vocab_sha256 is not None and h.vocab_sha256 == side.tokenizer.get("vocab_sha256")
        rows = []
        for ids, text in zip(h.ids, h.texts):
            use = ids if same else tok.encode(text, add_special_tokens=False)
            rows.append([doc_loglik(model, use, prefix), float(len(text.encode("utf-8")))])
        out[h.source] = rows
    return out


def _generate(model, tok, prompts: list[str], max_new_tokens: int) -> list[str]:
    import torch

    from moxin.model.generate import Sampling, generate

    texts = []
    for prompt in prompts:
        ids = tok.encode(prompt)
        room = max(0, int(model.cfg.max_seq_len) - len(ids))
        out = generate(model, torch.tensor([ids]), min(max_new_tokens, room), Sampling(), eos_id=tok.eos_token_id)
        texts.append(tok.decode(out[0, len(ids) :].tolist(), skip_special_tokens=True))
    return texts


def run_models(a: Side, b: Side, docs: list[HeldOut], prompts: list[str], max_new_tokens: int,
               log: Callable[[str], None] = print) -> dict[str, Any]:  # fmt: skip
    """Load each model once: score the held-out documents and generate the prompts. Returns the held-out rows
    (with paired-bootstrap intervals over documents) and the generations side by side."""
    from moxin.interop import load_model
    from moxin.interop.tokenizer import load_tokenizer

    scores, gens = [], []
    for side in (a, b):
        log(f"loading {side.label} [{side.sha256[:12]}]")
        model, tok = load_model(side.model).eval(), load_tokenizer(side.model)
        scores.append(_score(model, tok, side, docs))
        gens.append(_generate(model, tok, prompts, max_new_tokens) if max_new_tokens > 0 else [])
        del model
    rows = []
    for h in docs:
        d = paired_bootstrap("bits_per_byte", scores[0][h.source], scores[1][h.source])
        tokens = sum(len(i) for i in h.ids)
        rows.append({"source": h.source, "documents": len(h.ids), "tokens": tokens, **d.record()})
    prompts_out = [{"prompt": p, "a": x, "b": y} for p, x, y in zip(prompts, *gens)] if max_new_tokens > 0 else []
    return {"heldout": rows, "prompts": prompts_out}
