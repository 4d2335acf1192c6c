"""The moxin model as an lm-evaluation-harness `LM` (registered as `--model moxin`).

Tokenization follows lm-eval's `HFLM` exactly (same `_encode_pair`, same BOS rule, same left truncation), so the
per-item log-likelihoods equal `lm_eval --model hf` on an exported copy. What differs is the work done:

- requests are grouped by their (truncated) context: the context runs once through the model into a KV cache, the
  cache is copied per continuation, and all continuations of a batch run together against it;
- batches are length-sorted (longest first) and filled up to a row and token budget;
- the output head and log-softmax are computed only at the positions that score a continuation token.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any

import torch
import torch.nn.functional as F
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import model_registry

from moxin.errors import EvalError


def _progress(total: int, what: str):
    from moxin.eval.progress import progress_bar

    return progress_bar(total, what)


class MoxinLM(TemplateLM):
    """lm-eval model backed by moxin's own transformer (any path `moxin.interop.load_model` accepts)."""

    def __init__(
        self,
        path: str | None = None,
        pretrained: str | None = None,
        batch_size: int | str = 32,
        dtype: str = "float32",
        max_length: int | None = None,
        device: str = "cpu",
        add_bos_token: bool | None = None,
        max_gen_toks: int = 256,
        max_batch_tokens: int = 32768,
        model: Any = None,
        tokenizer: Any = None,
        show_progress: bool = True,
        **_ignored: Any,
    ) -> None:
        super().__init__()
        from moxin.commands import torch_dtype

        path = path or pretrained
        if model is None or tokenizer is None:
            if not path:
                raise EvalError("model_args needs path=<moxin checkpoint, HF directory or .gguf file>")
            from moxin.interop import load_model
            from moxin.interop.tokenizer import load_tokenizer

            tokenizer = tokenizer or load_tokenizer(path)
            model = model or load_model(path, dtype=torch_dtype(str(dtype)))
        self.path = str(path) if path else None
        if str(device or "cpu").startswith("cuda") and not torch.cuda.is_available():
            device = "cpu"  # lm-eval's CLI defaults to cuda; like its `hf` model, fall back to the CPU
        self._device = torch.device(device or "cpu")
        self.model = model.to(self._device).eval()
        self.tokenizer = tokenizer
        self.dtype = str(dtype)
        self.batch_rows = _int_batch(batch_size)
        self.max_batch_tokens = int(max_batch_tokens)
        self._max_length = int(max_length) if max_length else int(model.cfg.max_seq_len)
        self.add_bos_token = _opt_bool(add_bos_token)
        self._max_gen_toks = int(max_gen_toks)
        self.show_progress = _opt_bool(show_progress) is not False

    # ------------------------------------------------------------------------------------------ lm-eval protocol
    @property
    def eot_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def prefix_token_id(self) -> int:
        # HFLM's rule: BOS when the tokenizer has one, else EOS.
        bos = self.tokenizer.bos_token_id
        return bos if bos is not None else self.tokenizer.eos_token_id

    @property
    def max_length(self) -> int:
        return self._max_length

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "moxin")).replace("/", "__")

    def tok_encode(
        self, string: str, add_special_tokens: bool | None = None, left_truncate_len: int | None = None, **kwargs: Any
    ) -> list[int]:
        from lm_eval.models.utils import _add_special_kwargs, has_bos_prefix

        special = _add_special_kwargs(add_special_tokens, self.add_bos_token)
        if add_special_tokens is None and has_bos_prefix(string, self.tokenizer.decode(self.prefix_token_id)):
            special["add_special_tokens"] = False
        enc = self.tokenizer.encode(string, **special)
        return enc[-left_truncate_len:] if left_truncate_len else enc

    def tok_decode(self, tokens: list[int], skip_special_tokens: bool = True) -> str:
        return self.tokenizer.decode(tokens, skip_special_tokens=skip_special_tokens)

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(
            chat_history,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            continue_final_message=not add_generation_prompt,
        )

    def get_model_info(self) -> dict[str, Any]:
        return {
            "model_backend": "moxin",
            "model_path": self.path,
            "model_dtype": self.dtype,
            "max_length": self.max_length,
        }

    # ------------------------------------------------------------------------------------------ scoring
    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        return super().loglikelihood(requests, disable_tqdm=True)  # moxin's own bar shows the scoring

    def _loglikelihood_tokens(self, requests, disable_tqdm: bool = False, **kwargs: Any) -> list[tuple[float, bool]]:
        """requests: [(strings, context tokens, continuation tokens)] → [(log P(continuation), is greedy)]."""
        L = self.max_length
        groups: dict[tuple[int, ...], list[tuple[list[int], int]]] = defaultdict(list)
        for i, (_, ctx, cont) in enumerate(requests):
            if not cont:
                raise EvalError(f"request {i} has an empty continuation; the task's doc_to_choice/target is empty")
            if len(cont) > L:
                raise EvalError(f"a continuation of {len(cont)} tokens exceeds max_length {L}; raise max_length")
            full = (list(ctx) + list(cont))[-(L + 1) :]  # HFLM's left truncation
            groups[tuple(full[: len(full) - len(cont)])].append((list(cont), i))
        order = sorted(groups.items(), key=lambda kv: -(len(kv[0]) + max(len(c) for c, _ in kv[1])))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        with _progress(len(requests), "scoring") if self.show_progress else _null() as bar:
            for batch in self._batches(order):
                for i, res in self._score_batch(batch):
                    results[i] = res
                    if self.cache_hook is not None and requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], res)
                bar.advance(sum(len(conts) for _, conts in batch))
        return results  # type: ignore[return-value]

    def _batches(self, order):
        """Length-sorted groups → batches within the row budget and the token budget (a lone group always fits)."""
        batch, rows, width = [], 0, 0
        for ctx, conts in order:
            width = width or len(ctx) + max(len(c) for c, _ in conts)  # the first (longest) group pads the batch
            if batch and (rows + len(conts) > self.batch_rows or (rows + len(conts)) * width > self.max_batch_tokens):
                yield batch
                batch, rows = [], 0
                width = len(ctx) + max(len(c) for c, _ in conts)
            batch.append((ctx, conts))
            rows += len(conts)
        if batch:
            yield batch

    @torch.inference_mode()
    def _score_batch(self, batch) -> list[tuple[int, tuple[float, bool]]]:
        from moxin.model.generate import left_pad
        from moxin.model.kv_cache import KVCache

        dev = self._device
        G = len(batch)
        Tc = max(len(ctx) for ctx, _ in batch)
        conts = [(g, c, i) for g, (_, cs) in enumerate(batch) for c, i in cs]
        Tn = max(len(c) for _, c, _ in conts) - 1  # continuation inputs: all but the last token
        toks, pos = left_pad([ctx for ctx, _ in batch], Tc)  # contexts (G, Tc); position -1 marks padding
        cache = KVCache.for_model(self.model, G, max_len=Tc + max(Tn, 0) + 1)
        h_last = self.model(toks.to(dev), positions=pos.to(dev), cache=cache, last_only=True, return_hidden=True)[
            :, 0
        ]  # (G, D): predicts each continuation's first token
        rows = [h_last[[g for g, _, _ in conts]]]  # hidden states that score a token, in order
        if Tn > 0:
            cache.select_rows(torch.tensor([g for g, _, _ in conts], device=dev))  # a context row per continuation
            R = len(conts)
            ctoks = torch.zeros(R, Tn, dtype=torch.long)
            cpos = torch.zeros(R, Tn, dtype=torch.long)
            for r, (g, c, _) in enumerate(conts):
                ctoks[r, : len(c) - 1] = torch.tensor(c[:-1])
                cpos[r] = len(batch[g][0]) + torch.arange(Tn)
                cpos[r, len(c) - 1 :] = -1  # right padding: position -1 (never attended, never past max_seq_len)
            h = self.model(ctoks.to(dev), positions=cpos.to(dev), cache=cache, return_hidden=True)  # (R, Tn, D)
            lens = torch.tensor([len(c) - 1 for _, c, _ in conts])
            keep = torch.arange(Tn)[None, :] < lens[:, None]  # (R, Tn)
            rows.append(h[keep.to(dev)])
        return self._pick(rows, conts)

    def _pick(self, rows, conts) -> list[tuple[int, tuple[float, bool]]]:
        """Hidden states (first tokens of all rows, then the rest row by row) → per-request (logprob, greedy).

        One head matmul, one log-softmax, one gather and one argmax for the whole batch: on a busy 2-core machine
        every extra small torch op costs milliseconds of thread wake-up."""
        h = torch.cat(rows) if len(rows) > 1 else rows[0]  # (P, D), P = scored positions
        R = len(conts)
        targets = [c[0] for _, c, _ in conts] + [t for _, c, _ in conts for t in c[1:]]
        owner = list(range(R)) + [r for r, (_, c, _) in enumerate(conts) for _ in c[1:]]
        dev = h.device
        tgt = torch.tensor(targets, device=dev)
        own = torch.tensor(owner, device=dev)
        logp = F.log_softmax(F.linear(h, self.model.output_weight).float(), dim=-1)  # (P, V)
        tok_lp = logp.gather(1, tgt[:, None]).squeeze(1).double()  # (P,)
        miss = (logp.argmax(-1) != tgt).double()  # (P,)
        total = torch.zeros(R, dtype=torch.float64, device=dev).index_add_(0, own, tok_lp).tolist()
        misses = torch.zeros(R, dtype=torch.float64, device=dev).index_add_(0, own, miss).tolist()
        return [(i, (total[r], misses[r] == 0)) for r, (_, _, i) in enumerate(conts)]

    def loglikelihood_rolling(self, requests, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for n, (string,) in enumerate(req.args for req in requests):
            toks = self.tok_encode(string)
            for ctx, cont in map(
                lm_utils.make_disjoint_window,
                lm_utils.get_rolling_token_windows(
                    token_list=toks, prefix_token=self.prefix_token_id, max_seq_len=self.max_length, context_len=1
                ),
            ):
                windows.append((None, ctx, cont))
                owner.append(n)
        scores = self._loglikelihood_tokens(windows, disable_tqdm=disable_tqdm)
        totals = [0.0] * len(requests)
        for n, (lp, _) in zip(owner, scores):
            totals[n] += lp
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    # ------------------------------------------------------------------------------------------ generation
    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        from moxin.eval.generation import generate_batch

        out: list[str | None] = [None] * len(requests)
        by_kwargs: dict[str, list[int]] = defaultdict(list)
        for n, req in enumerate(requests):
            by_kwargs[repr(sorted(req.args[1].items()))].append(n)
        with _progress(len(requests), "generating") if self.show_progress else _null() as bar:
            for idxs in by_kwargs.values():
                idxs.sort(key=lambda n: -len(self.tok_encode(requests[n].args[0])))
                for start in range(0, len(idxs), self.batch_rows):
                    chunk = idxs[start : start + self.batch_rows]
                    texts = generate_batch(self, [requests[n].args[0] for n in chunk], dict(requests[chunk[0]].args[1]))
                    for n, text in zip(chunk, texts):
                        out[n] = text
                        self.cache_hook.add_partial("generate_until", requests[n].args, text)
                    bar.advance(len(chunk))
        return out  # type: ignore[return-value]


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def advance(self, n: int) -> None:
        return None


def _int_batch(value: int | str) -> int:
    text = str(value).split(":")[0]
    if text in ("auto", "", "None"):
        return 32
    try:
        n = int(text)
    except ValueError:
        raise EvalError(f"batch_size {value!r} is not a whole number; pass e.g. batch_size=32") from None
    if n < 1:
        raise EvalError(f"batch_size must be at least 1, got {n}")
    return n


def _opt_bool(value: Any) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


def register() -> None:
    """Make `moxin` a model name lm-eval knows (idempotent)."""
    if "moxin" not in model_registry:
        model_registry.register("moxin", target=MoxinLM)


register()
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
