"""Fast CPU inference: bf16 linear layers through oneDNN with weights pre-packed once.

Batch-1 decoding is a chain of matrix-vector products bound by memory bandwidth. A plain bf16 `F.linear` on CPU
reaches ~25 GB/s here; the same product with the weight reordered once into oneDNN's blocked layout reaches
~40-46 GB/s and gives bit-identical results (measured in tests/model/test_fast.py). The packed copy is rebuilt
whenever the weight changes (tracked by its version counter), and training or autograd always take the plain path.

`Decoder` goes further for decode steps: one compiled C++ call per step (`moxin.model.decode_kernels`), with bf16
or int8 weights, bf16 activations and fp32 logits. `benchmarks/serve.py` measures it against llama.cpp and compares
every engine's greedy text with the fp32 model's.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import time
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from moxin.model.transformer import Transformer


def supported() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


_fp32 = threading.local()  # .on: fp32 linears of this thread also take the oneDNN path (see `onednn_fp32`)


# fp32 weights are packed in blocks of this many input features, and the blocks' products summed. oneDNN keeps one
# running total per output over all of K; MKL adds partial sums of ~192 terms (the same error as K_BLOCK = 192 here on
# random matrices), which halves the rounding error at K = 1536. With one block per K, HellaSwag log-likelihoods moved
# up to 1.4e-4 from lm-eval's fp32 reference; with blocks they stay within MKL's own distance.
K_BLOCK = 192


@contextlib.contextmanager
def onednn_fp32():
    """Within this block (in this thread), fp32 linears of an `enable`d model also run through oneDNN with packed
    weights.

    The arithmetic stays IEEE fp32 (oneDNN's default fpmath mode is strict), summed in K_BLOCK pieces; only the order
    of the sums differs from the plain path, so results differ in the last bits. The reason is speed where MKL's fp32
    GEMM is slow: on AMD EPYC (Zen 5) MKL's sgemm runs at 100-180 GFLOP/s on 2 cores where oneDNN reaches 210-410 at
    SmolLM2's shapes (benchmarks/eval_throughput.py shows the effect). Evaluation scoring uses it; serving and
    training do not."""
    before = getattr(_fp32, "on", False)
    _fp32.on = True
    try:
        yield
    finally:
        _fp32.on = before


def fp32_copy_fits(model: nn.Module, share: float = 0.25) -> bool:
    """Whether a packed copy of `model`'s fp32 linear weights (as many bytes again) stays within `share` of the
    machine's RAM. Total RAM, not free memory, so the choice (and the last bits of the scores) is the same every run
    on a machine."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return False
    need = sum(m.weight.numel() * 4 for m in model.modules() if isinstance(m, nn.Linear))
    if getattr(model, "head", 1) is None and hasattr(model, "embed"):
        need += cast(Any, model).embed.weight.numel() * 4  # the tied head's copy
    return need <= share * ram


def _pack(w: torch.Tensor, rows: int) -> tuple[int, tuple[torch.Tensor, ...]]:
    """(block, the weight's column blocks of `block` input features in oneDNN's layout): one block of all of them
    for bf16 (bit-identical to the plain path), K_BLOCK for fp32."""
    reorder = torch.ops.mkldnn._reorder_linear_weight
    K = w.shape[1]
    block = min(K_BLOCK, K) if w.dtype == torch.float32 else K
    return block, tuple(reorder(w[:, s : s + block].contiguous(), rows) for s in range(0, K, block))


def _packed_forward(self: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    w = self.weight
    if (
        self.training
        or torch.is_grad_enabled()
        or x.dtype != w.dtype
        or not (x.dtype == torch.bfloat16 or (x.dtype == torch.float32 and getattr(_fp32, "on", False)))
        or x.device.type != "cpu"
        or self.bias is not None
    ):
        return F.linear(x, w, self.bias)
    key = (w.data_ptr(), w._version)
    if getattr(self, "_moxin_pack_key", None) != key:
        self._moxin_packed = _pack(w.detach(), x.shape[0] if x.dim() == 2 else 1)
        self._moxin_pack_key = key
    block, packs = self._moxin_packed
    shape = x.shape
    x2 = x.reshape(-1, shape[-1])
    out = torch.ops.mkldnn._linear_pointwise(x2[:, :block], packs[0], None, "none", [], "")
    for i, packed in enumerate(packs[1:], 1):
        out.add_(torch.ops.mkldnn._linear_pointwise(x2[:, i * block : (i + 1) * block], packed, None, "none", [], ""))
    return out.reshape(*shape[:-1], out.shape[-1])


def enable(model: Transformer) -> Transformer:
    """Route every bias-free Linear of `model` through the packed bf16 path (a no-op for other dtypes)."""
    if not supported():
        return model
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and not hasattr(mod, "_moxin_pack_key"):
            _patch(mod)
    if getattr(model, "head", 1) is None and hasattr(model, "embed") and "_tied_head" not in model.__dict__:
        # A tied output head: a Linear view sharing the embedding's Parameter, kept out of the module tree so the
        # state dict and parameter list are unchanged.
        tied = nn.Linear(model.embed.weight.shape[1], model.embed.weight.shape[0], bias=False, device="meta")
        tied.weight = model.embed.weight
        tied.train(False)
        model.__dict__["_tied_head"] = _patch(tied)
    return model


def _patch(mod: nn.Linear) -> nn.Linear:
    mod.__dict__["_moxin_pack_key"] = None
    mod.forward = types.MethodType(_packed_forward, mod)  # type: ignore[method-assign]
    return mod


def disable(model: nn.Module) -> nn.Module:
    model.__dict__.pop("_tied_head", None)
    for mod in model.modules():
        if isinstance(mod, nn.Linear) and hasattr(mod, "_moxin_pack_key"):
            del mod.forward, mod._moxin_pack_key
            if hasattr(mod, "_moxin_packed"):
                del mod._moxin_packed
    return model


# ------------------------------------------------------------------------------------------------ fused decode step
_ISA = ("avx512f", "avx512bw", "avx512vl", "avx512_bf16")
_kernels: dict[str, object] = {}  # "ext": the compiled module, or "error": why there is none
_build_lock = threading.Lock()


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
    return set(line.split(":", 1)[-1].split())


def kernel_cache_dir() -> Path:
    """Per-user build folder of the compiled kernels (MOXIN_KERNEL_CACHE, else the XDG cache)."""
    root = os.environ.get("MOXIN_KERNEL_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return Path(root) / "moxin" / "kernels"


def kernels():
    """The compiled decode-step extension, or None when this CPU lacks AVX512_BF16 or compilation failed (the reason
    is in `kernels_error()`); built once per source, torch version and user, then loaded from the cache."""
    with _build_lock:
        if "ext" in _kernels or "error" in _kernels:
            return _kernels.get("ext")
        missing = [f for f in _ISA if f not in _cpu_flags()]
        if missing:
            _kernels["error"] = f"this CPU lacks {', '.join(missing)}"
            return None
        from moxin.model.decode_kernels import SOURCE

        digest = hashlib.sha256(f"{SOURCE}|{torch.__version__}".encode()).hexdigest()[:16]
        name = f"moxin_decode_{digest}"
        folder = kernel_cache_dir() / name
        try:
            from torch.utils.cpp_extension import load_inline

            folder.mkdir(parents=True, exist_ok=True)
            flags = ["-O3", "-fopenmp", *(f"-m{f.replace('_', '')}" for f in _ISA)]
            _kernels["ext"] = load_inline(
                name,
                cpp_sources=[SOURCE],
                functions=["decode_step"],
                extra_cflags=flags,
                extra_ldflags=["-fopenmp"],
                build_directory=str(folder),
                verbose=False,
            )
        except Exception as e:  # no compiler, no ninja, a failed build: the eager path serves instead
            _kernels["error"] = f"compiling the decode kernels failed: {type(e).__name__}: {str(e)[-300:]}"
        return _kernels.get("ext")


def kernels_error() -> str | None:
    return _kernels.get("error")  # type: ignore[return-value]


def _linear_tensors(mod: nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(weight, scales) of a bias-free bf16 Linear (empty scales) or an Int8Linear; None for anything else."""
    from moxin.serve.quant import Int8Linear

    if isinstance(mod, nn.Linear) and mod.bias is None and mod.weight.dtype == torch.bfloat16:
        return mod.weight.detach().contiguous(), torch.empty(0, dtype=torch.bfloat16)
    if isinstance(mod, Int8Linear) and mod.scales.dtype == torch.bfloat16:
        return mod.qweight.contiguous(), mod.scales.contiguous()
    return None


class Decoder:
    """Decode steps (one new token per row) of a bf16 model, or of `moxin.serve.quant.quantize_int8`'s int8 model
    and head, in one C++ call each. `build` returns None where it cannot run; prefill stays on the eager model.

    It keeps references to the model's own tensors (no copy), so it follows in-place weight updates."""

    def __init__(self, model: Transformer, head: nn.Module | None, ext) -> None:
        self.model, self.ext = model, ext
        self.weights: list[torch.Tensor] = []
        self.scales: list[torch.Tensor] = []
        for block in cast(list[Any], model.layers):
            lins = [
                block.attn.q,
                block.attn.k,
                block.attn.v,
                block.attn.o,
                block.mlp.gate,
                block.mlp.up,
                block.mlp.down,
            ]
            pairs = [_linear_tensors(m) for m in lins]
            if any(p is None for p in pairs):
                raise ValueError("unsupported linear layer")
            w = [p[0] for p in pairs if p is not None]
            self.weights += [block.attn_norm.weight.detach(), *w[:4], block.mlp_norm.weight.detach(), *w[4:]]
            self.scales += [p[1] for p in pairs if p is not None]
        proj = getattr(head, "proj", None)
        out = _linear_tensors(proj) if isinstance(proj, nn.Module) else None
        if head is not None and out is None:
            raise ValueError("unsupported output head")
        self.head, self.head_scales = out or (model.output_weight.detach(), torch.empty(0, dtype=torch.bfloat16))
        self.steps = 0
        self.step_s: dict[tuple[int, int], float] = {}  # (batch, threads) → moving average of seconds per step

    def threads(self, batch: int) -> int:
        """The thread count for the next step: all of torch's threads, or one where that has been faster lately.

        Each step meets at 5 barriers per layer; when other processes keep the cores busy, a barrier waits for a
        descheduled thread and one thread runs ~5x faster than two (measured on a machine with a load of 12 on 2
        cores), while on a quiet machine two are faster. So both are timed, and the slower one is retried every
        EXPLORE steps in case the load changed."""
        full = torch.get_num_threads()
        if full == 1:
            return 1
        known = {t: self.step_s.get((batch, t)) for t in (full, 1)}
        untried = [t for t, v in known.items() if v is None]
        if untried:
            return untried[0]
        best = min(known, key=lambda t: known[t] or 0.0)
        return (1 if best == full else full) if self.steps % self.EXPLORE == 0 else best

    @classmethod
    def build(cls, model: Transformer, head: nn.Module | None = None) -> Decoder | None:
        """A Decoder for `model` (+ int8 `head`), or None: not bf16 on CPU, an unsupported layer, no kernels."""
        from moxin.model.transformer import Transformer

        if not isinstance(model, Transformer):  # a wrapper (tests slow a model down this way): the eager path
            return None
        cfg = model.cfg
        p = model.embed.weight
        if p.dtype != torch.bfloat16 or p.device.type != "cpu" or cfg.hd > 512 or model.training:
            return None
        if any(t.dtype != torch.bfloat16 for n, t in model.named_parameters() if "norm" in n):
            return None
        if model.head is not None and head is None and model.head.weight.dtype != torch.bfloat16:
            return None
        ext = kernels()
        if ext is None:
            return None
        try:
            return cls(model, head, ext)
        except ValueError:
            return None

    EXPLORE = 64

    def fits(self, cache) -> bool:
        return cache.k.dtype == torch.bfloat16 and cache.k.is_contiguous() and cache.v.is_contiguous()

    def step(self, tokens: torch.Tensor, positions: torch.Tensor, cache) -> torch.Tensor:
        """tokens, positions (B, 1) → fp32 logits (B, V); writes the new keys/values into `cache` and commits it."""
        m = self.model
        mask = cache.prepare(positions, m.cfg.sliding_window)
        slot, n = cache.decode_slot()
        B = tokens.shape[0]
        mask = torch.ones(B, n, dtype=torch.bool) if mask is None else mask.reshape(B, n).contiguous()
        pos = positions[:, 0].clamp(min=0)
        x = m.embed.weight[tokens[:, 0]].contiguous()
        cos = m.rope_cos[pos].to(torch.bfloat16).contiguous()
        sin = m.rope_sin[pos].to(torch.bfloat16).contiguous()
        threads = self.threads(B)
        t0 = time.perf_counter()
        logits = self.ext.decode_step(
            x,
            cos,
            sin,
            self.weights,
            self.scales,
            m.norm.weight.detach(),
            self.head,
            self.head_scales,
            cache.k,
            cache.v,
            slot,
            mask,
            m.cfg.norm_eps,
            m.cfg.n_heads,
            m.cfg.n_kv_heads,
            threads,
        )
        took = time.perf_counter() - t0
        old = self.step_s.get((B, threads))
        self.step_s[(B, threads)] = took if old is None else 0.7 * old + 0.3 * took
        self.steps += 1
        cache.commit(positions)
        return logits
