"""The generation engine: one scheduler thread owns the model; requests from any thread are queued, grouped into a
batch (up to `max_batch`), prefilled together with left padding, decoded together, and each row finishes on its own
(EOS, stop sequence, max tokens, cancel). Finished rows leave the batch and their KV rows are dropped.

Requests arriving while a batch decodes join it between steps (continuous batching): the newcomer is prefilled
alone, and its keys/values are placed in the batch cache as if it had been left-padded from the start (its token j
at padded index written - L + j, slot index mod S). That needs L <= tokens written so far, and, for a cache without
rolling buffer, room for its max_tokens; a request that does not fit waits for the next batch.

Each request owns its sampling state (temperature, top-k, top-p, repetition/frequency/presence penalties, a seeded
generator), so its tokens do not depend on which other requests shared its batch. A failure while sampling or
decoding one row (its parameters, its sink) ends that request alone: its sink gets the exception, and the other rows
keep decoding exactly as they would have without it."""

from __future__ import annotations

import collections
import contextlib
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch

from moxin.errors import ServeError
from moxin.model.generate import Sampling, left_pad, next_token
from moxin.model.kv_cache import KVCache
from moxin.serve.text import TextTracker


@dataclass
class SamplingParams:
    max_tokens: int = 64
    temperature: float = 0.0  # 0 → greedy
    top_k: int | None = None
    top_p: float | None = None
    repetition_penalty: float = 1.0  # CTRL/transformers-style: divides positive logits of seen tokens
    frequency_penalty: float = 0.0  # OpenAI-style: subtract count × penalty
    presence_penalty: float = 0.0  # OpenAI-style: subtract penalty once a token was seen
    seed: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)  # besides the engine's EOS ids
    ignore_eos: bool = False  # benchmarks: always generate max_tokens


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    prompt_tokens: int
    finish_reason: str  # "stop" (EOS or stop sequence), "length", or "cancelled"
    seconds: float = 0.0  # from submission to the last token

    @property
    def completion_tokens(self) -> int:
        return len(self.token_ids)


# What a request's sink receives: text deltas (str), then exactly one Completion, or one exception instead.
Event = str | Completion | BaseException


@dataclass
class Request:
    prompt: list[int]
    params: SamplingParams
    sink: Callable[[Event], None]
    cancelled: bool = False
    done: bool = False
    submitted: float = field(default_factory=time.perf_counter)

    def cancel(self) -> None:
        self.cancelled = True


class _Row:
    """Decoding state of one request inside a batch."""

    def __init__(self, req: Request, tokenizer, vocab: int, eos: set[int]) -> None:
        p = req.params
        self.req, self.p = req, p
        self.text = TextTracker(tokenizer, p.stop)
        self.stop_ids = set(p.stop_token_ids) | (set() if p.ignore_eos else eos)
        self.sampling = Sampling(p.temperature, p.top_k, p.top_p)
        self.gen = torch.Generator().manual_seed(p.seed) if p.seed is not None else None
        if p.temperature > 0 and self.gen is None:
            self.gen = torch.Generator().manual_seed(int.from_bytes(os.urandom(8), "little") >> 1)
        penalised = p.repetition_penalty != 1.0 or p.frequency_penalty or p.presence_penalty
        self.counts = None
        if penalised:  # (V,) how often each token occurred; the prompt counts for the repetition penalty
            self.counts = torch.zeros(vocab, dtype=torch.float32)
            self.prompt_seen = torch.zeros(vocab, dtype=torch.bool)
            self.prompt_seen[torch.tensor(req.prompt)] = True

    def adjust(self, logits: torch.Tensor) -> torch.Tensor:
        """logits (V,) fp32 → logits with this request's penalties applied."""
        if self.counts is None:
            return logits
        p = self.p
        if p.repetition_penalty != 1.0:
            seen = self.prompt_seen | (self.counts > 0)
            pen = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
            logits = torch.where(seen, pen, logits)
        if p.frequency_penalty or p.presence_penalty:
            logits = logits - p.frequency_penalty * self.counts - p.presence_penalty * (self.counts > 0).float()
        return logits

    def pick(self, logits: torch.Tensor) -> int:
        """logits (V,) fp32 → the next token id."""
        return int(next_token(self.adjust(logits)[None], self.sampling, self.gen)[0])

    def advance(self, token: int) -> str | None:
        """Record a sampled token → None while generating, else the finish reason."""
        if self.req.cancelled:
            return "cancelled"
        if token in self.stop_ids:
            return "stop"
        if self.counts is not None:
            self.counts[token] += 1
        delta, stopped = self.text.push(token)
        if delta:
            self.req.sink(delta)
        if stopped:
            return "stop"
        return "length" if len(self.text.ids) >= self.p.max_tokens else None

    def finish(self, reason: str) -> None:
        self.req.done = True
        rest = self.text.flush()
        if rest and reason != "cancelled":
            self.req.sink(rest)
        self.req.sink(
            Completion(
                self.text.text,
                list(self.text.ids),
                len(self.req.prompt),
                reason,
                time.perf_counter() - self.req.submitted,
            )
        )


class Engine:
    """Batched generation on one model. Thread-safe `submit`; `generate` and `stream` are blocking helpers.

    Args (constructor):
        model: a moxin Transformer (any dtype); put in eval mode here
        tokenizer: a transformers tokenizer (None: token ids only, no text, no stop sequences)
        max_batch: the most requests decoded together
        eos_ids: token ids that end a generation (default: the tokenizer's EOS)
        gather_s: after the first waiting request, wait this long for others to join its batch
        join_headroom: extra cache slots (without a rolling buffer) so later requests can join a running batch
        head: output projection applied to the model's final hidden states instead of the model's own (the int8
            head of `moxin.serve.quant.quantize_int8`)
        fast_decode: run decode steps of a bf16 or int8 model on CPU through `moxin.model.fast.Decoder` (one C++
            call per step, compiled on first use); prefill and every other model take the eager path
    """

    def __init__(
        self,
        model,
        tokenizer=None,
        max_batch: int = 8,
        eos_ids: list[int] | None = None,
        gather_s: float = 0.002,
        head=None,
        join_headroom: int = 256,
        fast_decode: bool = True,
    ) -> None:
        self.model = model.eval()
        self.head = head
        self.decoder = None
        if fast_decode:
            from moxin.model.fast import Decoder

            self.decoder = Decoder.build(model, head)
        self.tok = tokenizer
        self.max_batch = max_batch
        self.gather_s = gather_s
        if eos_ids is None:
            eos_ids = [tokenizer.eos_token_id] if tokenizer is not None and tokenizer.eos_token_id is not None else []
        self.eos = set(eos_ids)
        self.context = model.cfg.max_seq_len
        self.vocab = model.cfg.vocab_size
        self.join_headroom = join_headroom
        self.batches: list[int] = []  # the most rows each batch decoded at once (tests and stats read it)
        self.joined = 0  # requests that joined a running batch
        self.finished: collections.Counter[str] = collections.Counter()  # finish reasons, "error" for failed rows
        self._running = 0  # rows in the batch being decoded
        self._queue: queue.Queue[Request | None] = queue.Queue()
        self._deferred: collections.deque[Request] = collections.deque()  # did not fit the running batch
        self._closing = False
        self._in_flight: list[Request] = []
        self._thread = threading.Thread(target=self._loop, name="moxin-engine", daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------------------------------ public API
    def check(self, prompt: list[int], params: SamplingParams) -> None:
        """Raise ServeError when the request cannot run (the server maps it to HTTP 400)."""
        if not prompt:
            raise ServeError("the prompt is empty after tokenization; send at least one token")
        if params.max_tokens < 1:
            raise ServeError(f"max_tokens must be at least 1, got {params.max_tokens}")
        if len(prompt) + params.max_tokens > self.context:
            raise ServeError(
                f"this model's maximum context length is {self.context} tokens, but the prompt has "
                f"{len(prompt)} tokens and max_tokens is {params.max_tokens}; shorten the prompt or "
                f"lower max_tokens"
            )
        bad = [t for t in prompt if not 0 <= t < self.vocab]
        if bad:
            raise ServeError(f"token id {bad[0]} is outside the vocabulary (0..{self.vocab - 1})")
        if params.temperature < 0 or (params.top_p is not None and not 0 < params.top_p <= 1):
            raise ServeError(f"temperature must be >= 0 and top_p in (0, 1]; got {params.temperature}, {params.top_p}")
        if params.repetition_penalty <= 0:
            raise ServeError(f"repetition_penalty must be > 0, got {params.repetition_penalty}")
        if params.seed is not None and not -(2**63) <= params.seed < 2**64:
            raise ServeError(f"seed must fit in 64 bits (-2**63 .. 2**64-1), got {params.seed}")

    def submit(self, prompt: list[int], params: SamplingParams, sink: Callable[[Event], None]) -> Request:
        """Queue a request; `sink` is called from the engine thread with text deltas, then a Completion."""
        self.check(prompt, params)
        req = Request(list(prompt), params, sink)
        self._queue.put(req)
        return req

    def stream(self, prompt: list[int], params: SamplingParams) -> Iterator[str | Completion]:
        """Blocking iterator over text deltas, ending with the Completion. Closing it early cancels the request."""
        q: queue.Queue[Event] = queue.Queue()
        req = self.submit(prompt, params, q.put)
        try:
            while True:
                ev = q.get()
                if isinstance(ev, BaseException):
                    raise ev
                yield ev
                if isinstance(ev, Completion):
                    return
        finally:
            req.cancel()

    def generate(self, prompt: list[int], params: SamplingParams) -> Completion:
        for ev in self.stream(prompt, params):
            if isinstance(ev, Completion):
                return ev
        raise RuntimeError("engine stream ended without a completion")  # unreachable: stream always ends with one

    def load(self) -> dict[str, int]:
        """{running: rows decoding now, waiting: requests queued}: the server's /health reports it."""
        return {"running": self._running, "waiting": self._queue.qsize() + len(self._deferred)}

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------------------------------ scheduler
    def _next(self, timeout: float | None) -> Request | None:
        """The next waiting request (deferred ones first); None when there is none in time or the engine closes."""
        if self._deferred:
            return self._deferred.popleft()
        if self._closing:
            return None
        try:
            req = self._queue.get(timeout=timeout) if timeout is None or timeout > 0 else self._queue.get_nowait()
        except queue.Empty:
            return None
        if req is None:
            self._closing = True
        return req

    def _loop(self) -> None:
        while True:
            first = self._next(None)
            if first is None:
                return
            batch = [first]
            deadline = time.perf_counter() + self.gather_s
            while len(batch) < self.max_batch:
                nxt = self._next(max(0.0, deadline - time.perf_counter()))
                if nxt is None:
                    break
                batch.append(nxt)
            self.finished["cancelled"] += sum(r.cancelled for r in batch)  # hung up while waiting
            batch = [r for r in batch if not r.cancelled]
            if not batch:
                continue
            self._in_flight = list(batch)
            try:
                self._run(batch)
            except Exception as e:  # the model step failed: report to every waiting caller
                for r in self._in_flight:
                    if not r.done:
                        self._fail(r, e)
            finally:
                self._running = 0

    # ------------------------------------------------------------------------------------------ per-row isolation
    def _fail(self, req: Request, e: BaseException) -> None:
        """End one request with an error; its sink failing too (a closed client loop) harms nobody else."""
        req.done = True
        self.finished["error"] += 1
        with contextlib.suppress(Exception):  # nobody is left to tell
            req.sink(e)

    def _new_row(self, req: Request) -> _Row | None:
        try:
            return _Row(req, self.tok, self.vocab, self.eos)
        except Exception as e:  # e.g. a seed torch cannot take: this request only
            self._fail(req, e)
            return None

    def _pick(self, row: _Row, logits: torch.Tensor) -> int | None:
        try:
            return row.pick(logits)
        except Exception as e:  # e.g. probabilities that are not finite: this row only
            self._fail(row.req, e)
            return None

    def _advance(self, row: _Row, token: int | None) -> bool:
        """Record `token` → True while the row keeps decoding (False: finished, or failed and reported)."""
        if token is None:
            return False
        try:
            reason = row.advance(token)
            if reason is None:
                return True
            row.finish(reason)
            self.finished[reason] += 1
        except Exception as e:  # decoding or delivering this row's text failed: this row only
            if not row.req.done:
                self._fail(row.req, e)
        return False

    @torch.inference_mode()
    def _run(self, reqs: list[Request]) -> None:
        self.batches.append(len(reqs))
        made = [self._new_row(r) for r in reqs]
        rows = [row for row in made if row is not None]
        if not rows:
            return
        reqs = [row.req for row in rows]
        self._running = len(rows)
        B, T = len(reqs), max(len(r.prompt) for r in reqs)
        tokens, positions = left_pad([r.prompt for r in reqs], T)
        max_new = max(r.params.max_tokens for r in reqs)
        cache = KVCache.for_model(self.model, B, max_len=T + max_new + self.join_headroom)
        logits = self._logits(tokens, positions, cache)  # (B, V)
        next_pos = positions[:, -1] + 1  # (B,)
        while True:
            picked = [self._pick(row, logits[i]) for i, row in enumerate(rows)]
            keep = [i for i, (row, tok) in enumerate(zip(rows, picked)) if self._advance(row, tok)]
            self._running = len(keep)
            if not keep:
                return
            if len(keep) < len(rows):
                idx = torch.tensor(keep)
                cache.select_rows(idx)
                rows, next_pos = [rows[i] for i in keep], next_pos[idx]
                picked = [picked[i] for i in keep]
            for row, tok in self._admit(cache, len(rows)):
                rows.append(row)
                picked.append(tok)
                next_pos = torch.cat([next_pos, torch.tensor([len(row.req.prompt)])])
            self.batches[-1] = max(self.batches[-1], len(rows))
            self._running = len(rows)
            step = torch.tensor(picked)[:, None]  # (B', 1)
            logits = self._logits(step, next_pos[:, None], cache)
            next_pos = next_pos + 1

    def _admit(self, cache: KVCache, active: int) -> list[tuple[_Row, int]]:
        """Prefill (together) the waiting requests that fit into the running batch; their rows and first tokens."""
        reqs: list[Request] = []
        while active + len(reqs) < self.max_batch:
            req = self._next(0)
            if req is None:
                break
            if req.cancelled:
                self.finished["cancelled"] += 1
                continue
            L = len(req.prompt)
            if cache.written < L or (not cache.rolling and cache.written + req.params.max_tokens > cache.size):
                self._deferred.appendleft(req)  # keeps its place in line for the next batch
                break
            reqs.append(req)
        if not reqs:
            return []
        self._in_flight.extend(reqs)
        T = max(len(r.prompt) for r in reqs)
        tokens, positions = left_pad([r.prompt for r in reqs], T)
        fresh = cache.blank(len(reqs), T)
        logits = self._logits(tokens, positions, fresh)  # (n, V)
        out: list[tuple[_Row, int]] = []
        for i, req in enumerate(reqs):
            row = self._new_row(req)
            if row is None:
                continue
            tok = self._pick(row, logits[i])
            if tok is None or not self._advance(row, tok):  # None: the pick failed and was reported
                continue
            cache.append_row(fresh, i, len(req.prompt))
            self.joined += 1
            out.append((row, tok))
        return out

    def _logits(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """tokens, positions (B, T) → fp32 logits (B, V) of each row's last token."""
        if self.decoder is not None and tokens.shape[1] == 1 and self.decoder.fits(cache):
            return self.decoder.step(tokens, positions, cache)
        if self.head is None:
            return self.model(tokens, positions=positions, cache=cache, last_only=True)[:, -1].float()
        hidden = self.model(tokens, positions=positions, cache=cache, last_only=True, return_hidden=True)
        return self.head(hidden)[:, -1].float()
