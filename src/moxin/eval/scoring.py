"""Prefix-tree scoring of log-likelihood requests: every distinct token prefix runs through the model once.

A request's model input is `context + continuation[:-1]` (after HFLM's left truncation). Sorted by these token
sequences, neighbouring requests share prefixes: the four endings of a HellaSwag item share their context, items
cut from the same video share its first sentence. Requests are laid into fixed-width rows in that order; a request
adds only the tokens past its longest common prefix with the previous request of the row, so each row holds a token
tree (a trie). Attention follows the tree: a token sees exactly its ancestors, at RoPE position = its depth, which is
what it would see alone in its own sequence. Rows have no padding between requests, and the output head runs only
at the tree nodes that predict a continuation token (once per node, however many requests score from it).

Compared with comparing strings, comparing tokens is exact: lm-eval encodes context and continuation separately
(`_encode_pair`), so two requests share a node only where their actual inputs agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Row:
    """One model row: tree nodes in insertion order (a parent always precedes its children)."""

    tokens: list[int] = field(default_factory=list)
    depth: list[int] = field(default_factory=list)
    parent: list[int] = field(default_factory=list)  # -1 for a root
    requests: list[tuple[int, list[int]]] = field(default_factory=list)  # (request index, its path of node ids)
    last: list[int] = field(default_factory=list)  # the path of the row's latest request (prefix sharing)
    last_seq: tuple[int, ...] = ()


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_rows(seqs: list[tuple[int, ...]], width: int) -> list[Row]:
    """Model inputs (one per request) → rows of at most `width` nodes (a longer input gets a row of its own size).

    Requests go in lexicographic token order, so the prefix shared with the previous request of the row is the
    longest one available in that row."""
    order = sorted(range(len(seqs)), key=lambda i: seqs[i])
    rows: list[Row] = []
    row = Row()
    for i in order:
        seq = seqs[i]
        shared = _common_prefix(seq, row.last_seq)
        if row.tokens and len(row.tokens) + len(seq) - shared > width:
            rows.append(row)
            row, shared = Row(), 0
        path = row.last[:shared]
        for d in range(shared, len(seq)):
            row.parent.append(path[-1] if path else -1)
            path.append(len(row.tokens))
            row.tokens.append(seq[d])
            row.depth.append(d)
        row.requests.append((i, path))
        row.last, row.last_seq = path, seq
    if row.tokens:
        rows.append(row)
    return rows


def batch_arrays(rows: list[Row], window: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows → tokens (B, T), positions (B, T) and the tree mask (B, 1, T, T) with T the longest row.

    A node sees itself and its ancestors (its parent's row of the mask plus itself); padding nodes see only
    themselves, so no query row is empty."""
    B, T = len(rows), max(len(r.tokens) for r in rows)
    tokens = np.zeros((B, T), dtype=np.int64)
    pos = np.zeros((B, T), dtype=np.int64)
    mask = np.zeros((B, 1, T, T), dtype=bool)
    for b, row in enumerate(rows):
        n = len(row.tokens)
        tokens[b, :n] = row.tokens
        pos[b, :n] = row.depth
        m = mask[b, 0]
        for i, p in enumerate(row.parent):
            if p >= 0:
                m[i] = m[p]
            m[i, i] = True
        idx = np.arange(n, T)
        m[idx, idx] = True
    if window is not None:
        mask &= (pos[:, None, :, None] - pos[:, None, None, :]) < window
    return tokens, pos, mask


# Largest activation of one forward piece. glibc serves blocks over 32 MiB with a fresh mmap whose every page faults
# on first touch; at SmolLM2's 32 rows × 256 nodes an FFN activation is 50 MB, and those faults cost ~20% of the
# forward (measured: 2.4 M page faults and 9.9 s per batch as one piece, ~4 k and 7.8 s in pieces of 8 rows).
PIECE_BYTES = 16 << 20
HEAD_BYTES = 24 << 20  # the same for one chunk of head logits (chunk × vocabulary)


def tree_hidden(model, tokens, positions, mask):
    """Final hidden states (B, T, dim) of packed token trees: the model's own layers under the tree mask.

    Rows are independent, so on the CPU they run in pieces whose widest activation stays under PIECE_BYTES."""
    import torch

    B, T = tokens.shape
    widest = T * max(model.cfg.ffn_dim, model.cfg.dim) * model.embed.weight.element_size()
    rows = max(1, PIECE_BYTES // widest)
    if rows >= B or tokens.device.type != "cpu":
        return _tree_hidden(model, tokens, positions, mask)
    return torch.cat(
        [
            _tree_hidden(model, tokens[s : s + rows], positions[s : s + rows], mask[s : s + rows])
            for s in range(0, B, rows)
        ]
    )


def _tree_hidden(model, tokens, positions, mask):
    """Mirrors `Transformer.forward` (embedding, RoPE at the given positions, blocks, final norm) with an explicit
    attention mask, which its public signature does not take."""
    from moxin.model.layers import AttnContext

    x = model.embed(tokens)
    cos = model.rope_cos[positions].unsqueeze(1).to(x.dtype)  # (B, 1, T, D)
    sin = model.rope_sin[positions].unsqueeze(1).to(x.dtype)
    ctx = AttnContext(mask, False)
    for layer in model.layers:
        x = layer(x, cos, sin, ctx)
    return model.norm(x)


def score_entries(hidden, weight, nodes: np.ndarray, targets: np.ndarray, chunk: int | None = None, head=None):
    """Log-probability and greedy flag of `targets[e]` predicted at flat node `nodes[e]` of `hidden` (N, dim).

    The head (vocabulary × dim, most of a small model's FLOPs per position) runs once per distinct node, in
    chunks so the fp32 log-probabilities of a big batch never sit in memory at once (default: HEAD_BYTES of
    logits per chunk, 16 to 1024 nodes). `head` (default: a plain linear with `weight`) maps hidden states to
    logits, e.g. the model's own `logits`."""
    import torch
    import torch.nn.functional as F

    if chunk is None:
        chunk = max(16, min(1024, HEAD_BYTES // (weight.shape[0] * 4)))
    uniq, inv = np.unique(nodes, return_inverse=True)
    h = hidden[torch.from_numpy(uniq).to(hidden.device)]
    order = np.argsort(inv, kind="stable")
    bounds = np.searchsorted(inv[order], np.arange(0, len(uniq) + chunk, chunk))
    lp = torch.empty(len(nodes), dtype=torch.float64)
    hit = torch.empty(len(nodes), dtype=torch.bool)
    for n, s in enumerate(range(0, len(uniq), chunk)):
        x = h[s : s + chunk]
        logp = F.log_softmax((F.linear(x, weight) if head is None else head(x)).float(), dim=-1)
        sel = order[bounds[n] : bounds[n + 1]]
        rows = torch.from_numpy(inv[sel] - s).to(logp.device)
        tgt = torch.from_numpy(targets[sel]).to(logp.device)
        idx = torch.from_numpy(sel)
        lp[idx] = logp[rows, tgt].double().cpu()
        hit[idx] = (logp.argmax(-1)[rows] == tgt).cpu()
    return lp, hit
