"""Deterministic batch sources for the shared Trainer (`moxin.train.trainer.Batches`): the global batch of step t
is a pure function of (data fingerprint, seed, t), so resuming or changing the world size never changes a step.

Sample order: epoch e visits the samples in the permutation numpy's PCG64 draws from seed (seed, e); step t takes
global positions [t·B, (t+1)·B) of the concatenated epochs. Rank r of W takes the r-th contiguous slice."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from moxin.errors import ConfigError
from moxin.finetune.template import IGNORE, Packed, pad_rows


def fingerprint_arrays(*parts: Any) -> str:
    h = hashlib.sha256()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.dtype).encode() + str(p.shape).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        elif isinstance(p, (list, tuple)):
            h.update(fingerprint_arrays(*p).encode())
        else:
            h.update(repr(p).encode())
    return h.hexdigest()


class StepOrder:
    def __init__(self, n: int, global_batch: int, seed: int) -> None:
        if n <= 0:
            raise ConfigError("no training examples are left after filtering (see the data manifest's drop reasons)")
        self.n, self.B, self.seed = n, global_batch, seed
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms = {epoch: np.random.default_rng([self.seed, epoch, 0x6D6F78]).permutation(self.n)}
        return self._perms[epoch]

    def indices(self, step: int, rank: int = 0, world: int = 1) -> list[int]:
        if self.B % world:
            raise ConfigError(
                f"global_batch={self.B} is not divisible by the {world} processes; set the mode's "
                f"global_batch to a multiple of the world size"
            )
        per = self.B // world
        j = step * self.B + rank * per + np.arange(per)
        return [int(self._perm(int(x // self.n))[x % self.n]) for x in j]

    def steps_per_epoch(self) -> float:
        return self.n / self.B


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


class SFTBatches:
    """Rows of (input_ids, labels[, positions, segment_ids]): packed rows, or one example per row right-padded to
    the longest row of the rank's batch."""

    def __init__(
        self,
        seqs: list[tuple[np.ndarray, np.ndarray]] | None,
        packed: Packed | None,
        global_batch: int,
        seed: int,
        pad_id: int,
    ) -> None:
        if (seqs is None) == (packed is None):
            raise ValueError("SFTBatches takes either seqs or packed rows")  # a programming error, not a user's
        self.seqs: list[tuple[np.ndarray, np.ndarray]] = seqs or []
        self.packed, self.pad_id = packed, pad_id
        n = len(packed.input_ids) if packed is not None else len(self.seqs)
        self.order = StepOrder(n, global_batch, seed)
        body = (
            (packed.input_ids, packed.labels, packed.segment_ids)
            if packed is not None
            else [a for s in self.seqs for a in s]
        )
        self.fingerprint = fingerprint_arrays("sft", seed, global_batch, body)

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        idx = self.order.indices(step, rank, world)
        if self.packed is not None:
            p = self.packed
            return {
                "input_ids": _t(p.input_ids[idx]),
                "labels": _t(p.labels[idx]),
                "positions": _t(p.positions[idx]),
                "segment_ids": _t(p.segment_ids[idx]),
            }
        ids = pad_rows([self.seqs[i][0] for i in idx], self.pad_id)
        labels = pad_rows([self.seqs[i][1] for i in idx], IGNORE, ids.shape[1])
        pos = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
        return {"input_ids": _t(ids), "labels": _t(labels), "positions": _t(pos)}


class PreferenceBatches:
    """Pairs: chosen and rejected (ids, labels) right-padded to one length, with the reference log-probs."""

    def __init__(
        self, pairs: list[dict[str, np.ndarray]], ref: np.ndarray, global_batch: int, seed: int, pad_id: int
    ) -> None:
        self.pairs, self.ref, self.pad_id = pairs, ref, pad_id  # ref (N, 2): chosen, rejected
        self.order = StepOrder(len(pairs), global_batch, seed)
        body = [p[k] for p in pairs for k in ("chosen_ids", "chosen_labels", "rejected_ids", "rejected_labels")]
        self.fingerprint = fingerprint_arrays("dpo", seed, global_batch, body, ref)

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        return self.collate(self.order.indices(step, rank, world))

    def collate(self, idx: list[int]) -> dict[str, torch.Tensor]:
        T = max(max(len(self.pairs[i]["chosen_ids"]), len(self.pairs[i]["rejected_ids"])) for i in idx)
        out = {}
        for side in ("chosen", "rejected"):
            out[f"{side}_ids"] = _t(pad_rows([self.pairs[i][f"{side}_ids"] for i in idx], self.pad_id, T))
            out[f"{side}_labels"] = _t(pad_rows([self.pairs[i][f"{side}_labels"] for i in idx], IGNORE, T))
        out["ref_chosen"] = _t(self.ref[idx, 0].astype(np.float64))
        out["ref_rejected"] = _t(self.ref[idx, 1].astype(np.float64))
        return out
