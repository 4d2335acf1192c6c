"""`moxin compare A B [--out DIR]`. Heavy imports stay inside `moxin.compare.run`'s functions."""

from __future__ import annotations

import os
from pathlib import Path

from moxin.errors import CompareError

# Many small forward passes (held-out scoring, evaluation): see moxin/eval/commands.py.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def compare(a: Path, b: Path, out: Path | None = None, eval: list[str] | None = None, data_dir: Path | None = None,
            limit: int | None = None, prompts: Path | None = None, max_new_tokens: int = 32,
            heldout_tokens: int = 4096) -> None:  # fmt: skip
    """Compare two models: what differs, what it did to the numbers, what they say.

    A and B are each a run folder (its final model), a checkpoint folder, a model folder (moxin or Hugging Face), a
    .gguf file or a release. Shown: config keys, data sources (documents, tokens, licence, token share) and lineage
    (the common ancestor and each path from it) that differ, tokenizer and architecture; per-task metric deltas with
    95% intervals from a paired bootstrap over items (results already in the runs' eval/results are reused),
    items won and lost with examples, held-out bits per byte on each data source's val split, bias metrics; the
    same prompts generated greedily by both; and a summary read off those numbers. With --out, compare.json and
    compare.md are written there.

    Args:
        a: the first model (the "before")
        b: the second model (the "after")
        out: folder for compare.json, compare.md and the results --eval computes
        eval: tasks or suites to evaluate where a side has no result yet (as `moxin eval --tasks`)
        data_dir: evaluation data laid out like ../shared/data, for --eval
        limit: evaluate only the first N items of each task, for --eval
        prompts: a UTF-8 text file with one prompt a line (default: 8 built-in prompts, 2 in Japanese)
        max_new_tokens: tokens generated per prompt (0: skip the prompts)
        heldout_tokens: held-out tokens scored per data source (0: skip held-out perplexity)
    """
    from moxin.compare.render import terminal
    from moxin.compare.run import compare as run_compare

    if limit is not None and limit < 1:
        raise CompareError(f"--limit must be at least 1, got {limit}")
    if max_new_tokens < 0 or heldout_tokens < 0:
        raise CompareError(
            f"--max-new-tokens and --heldout-tokens must be 0 or more, got {max_new_tokens} and {heldout_tokens}"
        )
    doc = run_compare(a, b, out, eval, data_dir, limit, prompts, max_new_tokens, heldout_tokens)
    terminal(doc)
    if out is not None:
        print(f"wrote {Path(out) / 'compare.json'} and {Path(out) / 'compare.md'}")
