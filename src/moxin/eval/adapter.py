"""The moxin model as an lm-evaluation-harness `LM` (registered as `--model moxin`).

Tokenization follows lm-eval's `HFLM` exactly (same `_encode_pair`, same BOS rule, same left truncation), so the
per-item log-likelihoods equal `lm_eval --model hf` on an exported copy. What differs is the work done
(see `moxin.eval.scoring`):

- every distinct token prefix runs once: requests are sorted by their input tokens and packed into rows as token
  trees (a HellaSwag item's context once, then its four endings), attention following the tree;
- rows are filled end to end, so there is no padding between requests;
- the output head and log-softmax run only at the tree nodes that predict a continuation token.
"""

from __future__ import annotations

import contextlib
import os
from collections import defaultdict
from typing import Any

import torch
from lm_eval import utils as lm_utils
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import model_registry

from moxin.errors import EvalError
from moxin.model import fast


def _progress(total: int, what: str):
    from moxin.eval.progress import progress_bar

    return progress_bar(total, what)


class MoxinLM(TemplateLM):
    """lm-eval model backed by moxin's own transformer (any path `moxin.interop.load_model` accepts).

    batch_size: rows per forward pass; a row packs token trees of up to `row_tokens` tokens (a longer request gets
    a row of its own); `max_batch_tokens` caps rows × the batch's widest row."""

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
        row_tokens: int = 256,
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
        # Scoring's fp32 linears take oneDNN (`_scoring`) where its packed copy of the weights fits; others keep
        # their path.
        self._onednn = self._device.type == "cpu" and fast.supported() and fast.fp32_copy_fits(self.model)
        if self._onednn:
            fast.enable(self.model)
        self.tokenizer = tokenizer
        self.dtype = str(dtype)
        self.batch_rows = _int_batch(batch_size)
        self.max_batch_tokens = int(max_batch_tokens)
        self.row_tokens = int(row_tokens)
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
        from moxin.eval.scoring import plan_rows

        L = self.max_length
        seqs, conts = [], []
        for i, (_, ctx, cont) in enumerate(requests):
            if not cont:
                raise EvalError(f"request {i} has an empty continuation; the task's doc_to_choice/target is empty")
            if len(cont) > L:
                raise EvalError(f"a continuation of {len(cont)} tokens exceeds max_length {L}; raise max_length")
            if not ctx:
                raise EvalError(f"request {i} has an empty context; lm-eval passes at least the prefix token")
            full = (list(ctx) + list(cont))[-(L + 1) :]  # HFLM's left truncation
            seqs.append(tuple(full[:-1]))  # the model's input; its last len(cont) positions predict cont
            conts.append(list(cont))
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        rows = plan_rows(seqs, self.row_tokens) if seqs else []
        with _progress(len(requests), "scoring") if self.show_progress else _null() as bar:
            for batch in self._batches(rows):
                for i, res in self._score_batch(batch, conts):
                    results[i] = res
                    if self.cache_hook is not None and requests[i][0] is not None:
                        self.cache_hook.add_partial("loglikelihood", requests[i][0], res)
                bar.advance(sum(len(row.requests) for row in batch))
        return results  # type: ignore[return-value]

    def _batches(self, rows):
        """Rows, longest first → batches of at most `batch_size` rows within the token budget (a lone row fits)."""
        batch: list = []
        for row in sorted(rows, key=lambda r: -len(r.tokens)):
            width = len(batch[0].tokens) if batch else len(row.tokens)  # the first (longest) row pads the batch
            if batch and (len(batch) >= self.batch_rows or (len(batch) + 1) * width > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(row)
        if batch:
            yield batch

    def _scoring(self):
        return fast.onednn_fp32() if self._onednn else contextlib.nullcontext()

    @torch.inference_mode()
    def _score_batch(self, batch, conts) -> list[tuple[int, tuple[float, bool]]]:
        """Packed token trees → (request index, (log-likelihood, greedy)) for every request of the batch's rows."""
        from moxin.eval.scoring import batch_arrays, tree_hidden

        dev = self._device
        tokens, pos, mask = batch_arrays(batch, self.model.cfg.sliding_window)
        T = tokens.shape[1]
        with self._scoring():
            h = tree_hidden(self.model, *(torch.from_numpy(a).to(dev) for a in (tokens, pos, mask)))
        nodes: list[int] = []
        targets: list[int] = []
        owner: list[int] = []
        for b, row in enumerate(batch):
            for i, path in row.requests:
                c = conts[i]
                nodes.extend(b * T + n for n in path[len(path) - len(c) :])  # the last ctx node predicts c[0]
                targets.extend(c)
                owner.extend([i] * len(c))
        return self._pick(h.reshape(-1, h.shape[-1]), nodes, targets, owner)

    def _pick(self, hidden, nodes, targets, owner) -> list[tuple[int, tuple[float, bool]]]:
        """Per scored token (flat node, target, request) → per request (summed log-probability, all greedy)."""
        import numpy as np

        from moxin.eval.scoring import score_entries

        with self._scoring():
            lp, hit = score_entries(
                hidden, self.model.output_weight, np.asarray(nodes), np.asarray(targets), head=self.model.logits
            )
        req, own = np.unique(np.asarray(owner), return_inverse=True)
        own_t = torch.from_numpy(own)
        total = torch.zeros(len(req), dtype=torch.float64).index_add_(0, own_t, lp).tolist()
        misses = torch.zeros(len(req), dtype=torch.float64).index_add_(0, own_t, (~hit).double()).tolist()
        return [(int(i), (total[r], misses[r] == 0)) for r, i in enumerate(req)]

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
