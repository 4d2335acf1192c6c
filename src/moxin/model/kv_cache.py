"""Key/value cache. For a sliding-window model it is a rolling buffer of W slots (Moxin's memory saving): the
token at padded index t lives in slot t mod W, so a decode step overwrites exactly the key that left the window.

Each slot remembers the RoPE position of its token (-1: empty or padding), so one mask rule (causal, window,
padding) serves prefill, chunked prefill and decode alike. Softmax does not care about slot order."""

from __future__ import annotations

import torch

from moxin.errors import ModelError


class KVCache:
    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_kv_heads: int,
        head_dim: int,
        max_len: int,
        window: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        self.rolling = window is not None and window < max_len
        self.size: int = window if window is not None and window < max_len else max_len  # S slots
        self.max_len = max_len
        shape = (n_layers, batch, n_kv_heads, self.size, head_dim)
        self.k = torch.zeros(shape, device=device, dtype=dtype)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.slot_pos = torch.full((batch, self.size), -1, dtype=torch.long, device=device)
        self.written = 0  # tokens (padding included) written so far
        self._pending: tuple | None = None  # the plan of `prepare` for `update`/`commit`

    @classmethod
    def for_model(cls, model, batch: int, max_len: int | None = None, dtype: torch.dtype | None = None) -> KVCache:
        cfg = model.cfg
        max_len = max_len or cfg.max_seq_len
        p = model.embed.weight
        return cls(cfg.n_layers, batch, cfg.n_kv_heads, cfg.hd, max_len, cfg.sliding_window, p.device, dtype or p.dtype)

    @property
    def next_position(self) -> int:
        return self.written

    def memory_bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    # ----------------------------------------------------------------------------------------------- batch rows
    def blank(self, batch: int, max_len: int) -> KVCache:
        """An empty cache without rolling buffer of this one's geometry, device and dtype (prefill of newcomers)."""
        L, _, K, _, D = self.k.shape
        return KVCache(L, batch, K, D, max_len, None, self.k.device, self.k.dtype)

    def select_rows(self, idx: torch.Tensor) -> None:
        """Keep batch rows `idx` in that order (finished rows leave; a repeated index copies a row)."""
        idx = idx.to(self.k.device)
        self.k = self.k.index_select(1, idx)
        self.v = self.v.index_select(1, idx)
        self.slot_pos = self.slot_pos.index_select(0, idx.to(self.slot_pos.device))

    def append_row(self, fresh: KVCache, row: int, n: int) -> None:
        """Add row `row` of `fresh` (a cache without rolling buffer, left-padded, whose row holds n real tokens at
        positions 0..n-1) as a new last row, laid out as if it had been left-padded to this batch: token j at padded
        index written - n + j, in slot index mod S. Needs n <= written."""
        if fresh.rolling or n > self.written or n > fresh.written:
            raise ModelError(
                f"cannot append a row of {n} tokens to a cache with {self.written} written "
                f"(from a {'rolling' if fresh.rolling else 'plain'} cache with {fresh.written})"
            )
        S, W0, T = self.size, self.written, fresh.written
        idx = torch.arange(W0 - n, W0)  # padded indices of the new tokens here
        j = torch.arange(n)[idx >= W0 - S]  # a rolling buffer keeps only the last S
        slots, src = idx[j] % S, T - n + j  # where they go, where they are in `fresh`
        shape = (self.k.shape[0], 1, *self.k.shape[2:])  # (layers, 1, K, S, D)
        k, v = self.k.new_zeros(shape), self.v.new_zeros(shape)
        k[:, :, :, slots] = fresh.k[:, row : row + 1, :, src]
        v[:, :, :, slots] = fresh.v[:, row : row + 1, :, src]
        pos = torch.full((1, S), -1, dtype=self.slot_pos.dtype, device=self.slot_pos.device)
        pos[0, slots] = j.to(pos.device)
        self.k = torch.cat([self.k, k], 1)
        self.v = torch.cat([self.v, v], 1)
        self.slot_pos = torch.cat([self.slot_pos, pos], 0)

    # ----------------------------------------------------------------------------------------------- one forward
    def prepare(self, positions: torch.Tensor, window: int | None) -> torch.Tensor | None:
        """Plan where the T new tokens go and build the mask all layers share. positions (B, T)."""
        from moxin.model.layers import attention_mask

        T = positions.shape[1]
        if not self.rolling and self.written + T > self.size:
            raise ModelError(
                f"KV cache holds {self.size} tokens; {self.written} used and {T} more asked. "
                f"Create the cache with a larger max_len (at most the model's max_seq_len)"
            )
        n_old = min(self.written, self.size)
        idx = torch.arange(self.written, self.written + T, device=positions.device)
        if T == 1:
            # Decode: write first, then attend over the filled slots (the new token included).
            slot = int(idx[0] % self.size)
            new_pos = self.slot_pos.clone()
            new_pos[:, slot] = positions[:, 0]
            n = min(self.written + 1, self.size)
            self._pending = ("decode", slot, new_pos, n)
            mask = attention_mask(positions, new_pos[:, :n], window)
            return None if bool(mask.all()) else mask
        keep = min(T, self.size)  # only the last S new tokens survive in the buffer
        slots = idx[T - keep :] % self.size
        k_pos = torch.cat([self.slot_pos[:, :n_old], positions], dim=1)
        self._pending = ("prefill", slots, keep, n_old)
        return attention_mask(positions, k_pos, window)

    def decode_slot(self) -> tuple[int, int]:
        """After `prepare` of one new token: (the slot it is written to, how many leading slots it attends over)."""
        plan = self._plan("decode_slot")
        if plan[0] != "decode":
            raise ModelError("KVCache.decode_slot() needs a prepare() of exactly one new token per row")
        return plan[1], plan[3]

    def _plan(self, what: str) -> tuple:
        if self._pending is None:
            raise ModelError(
                f"KVCache.{what}() called without a prepare() before it; call prepare(positions, "
                f"window) once per forward, then update() per layer, then commit()"
            )
        return self._pending

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this layer's new keys/values (B, K, T, D); return all keys/values to attend over."""
        plan = self._plan("update")
        if plan[0] == "decode":
            _, slot, _, n = plan
            self.k[layer, :, :, slot] = k[:, :, 0]
            self.v[layer, :, :, slot] = v[:, :, 0]
            return self.k[layer, :, :, :n], self.v[layer, :, :, :n]
        _, slots, keep, n_old = plan
        keys = torch.cat([self.k[layer, :, :, :n_old], k], dim=2)
        values = torch.cat([self.v[layer, :, :, :n_old], v], dim=2)
        self.k[layer].index_copy_(2, slots, k[:, :, -keep:])
        self.v[layer].index_copy_(2, slots, v[:, :, -keep:])
        return keys, values

    def commit(self, positions: torch.Tensor) -> None:
        """After all layers ran: record the new tokens' positions and advance."""
        T = positions.shape[1]
        plan = self._plan("commit")
        if plan[0] == "decode":
            self.slot_pos = plan[2]
        else:
            _, slots, keep, _ = plan
            self.slot_pos.index_copy_(1, slots, positions[:, -keep:])
        self.written += T
        self._pending = None
