"""GRPO (Shao et al. 2024, DeepSeekMath): per prompt, G completions sampled from the current policy, a verifiable
reward, advantages normalised within the group, the clipped surrogate and a KL penalty to the reference.

The rollouts happen in the batch source: `GRPOBatches.batch(step)` samples with a seed derived from (seed, step,
prompt), so a step's rollouts are a pure function of the weights at that step and the step itself, and a resumed
run re-creates them bit for bit. One optimisation step per batch (μ = 1): the "old" policy is the sampling policy,
whose log-probs are recorded with the batch, so the ratio starts at 1 and the clipped objective is exact.

Also here: the rewards (numeric / exact match) and a toy arithmetic task in GSM8K format for quick CPU runs."""

from __future__ import annotations

import contextlib
import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch
from torch import nn

from moxin.errors import TrainingError
from moxin.finetune.batches import StepOrder, fingerprint_arrays
from moxin.finetune.losses import IGNORE, group_advantages, grpo_loss, token_logps
from moxin.finetune.tasks import forward
from moxin.finetune.template import pad_rows

if TYPE_CHECKING:
    from moxin.model.transformer import Transformer

_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


# ------------------------------------------------------------------------------------------------ rewards
def last_number(text: str) -> str | None:
    """The last number in a text (after '####' when present), commas removed."""
    if "####" in text:
        text = text.rsplit("####", 1)[1]
    found = _NUM.findall(text)
    return found[-1].replace(",", "").rstrip(".") if found else None


def numeric_reward(completion: str, answer: str) -> float:
    """1.0 when the completion's last number equals the answer numerically, else 0.0."""
    got = last_number(completion)
    if got is None:
        return 0.0
    try:
        return float(abs(float(got) - float(answer)) < 1e-6)
    except ValueError:
        return 0.0


def exact_reward(completion: str, answer: str) -> float:
    return float(completion.strip() == answer.strip())


REWARDS: dict[str, Callable[[str, str], float]] = {"numeric": numeric_reward, "exact": exact_reward}


def arithmetic_task(path: Path, n: int, seed: int = 0, max_operand: int = 9, total: int | None = None) -> Path:
    """Write n toy problems "What is a + b?" in GSM8K format (the answer is the line '#### a+b'),
    deterministically; with `total`, only pairs summing to it (the easiest verifiable task: a policy gets there
    by learning one answer). Duplicates are possible (the data step removes them)."""
    from moxin.provenance import atomic_write_text

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        a = rng.randint(0, max_operand if total is None else total)
        b = rng.randint(0, max_operand) if total is None else total - a
        lines.append(json.dumps({"question": f"What is {a} + {b}?", "answer": f"#### {a + b}"}))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return Path(path)


# ------------------------------------------------------------------------------------------------ rollouts
@contextlib.contextmanager
def adapters_off(model: nn.Module) -> Iterator[None]:
    """The LoRA policy with every adapter scaled to 0 is exactly the parent: the reference, without a copy."""
    from moxin.finetune.lora import LoRALinear

    layers = [m for m in model.modules() if isinstance(m, LoRALinear)]
    saved = [m.scale for m in layers]
    for m in layers:
        m.scale = 0.0
    try:
        yield
    finally:
        for m, s in zip(layers, saved):
            m.scale = s


def sample_group(
    model: nn.Module, prompt: np.ndarray, G: int, max_new: int, sampling: Any, eot: int, fixed_length: bool
) -> list[np.ndarray]:
    """G completions of one prompt, each cut after its first end-of-turn token (kept: stopping is learned)."""
    from moxin.model.generate import generate
    from moxin.parallel import unwrap

    net = cast("Transformer", unwrap(model))
    x = torch.from_numpy(np.repeat(prompt[None], G, axis=0)).to(next(net.parameters()).device)  # (G, Tp)
    max_new = min(max_new, net.cfg.max_seq_len - x.shape[1])
    out = generate(net, x, max_new, sampling, eos_id=None if fixed_length else eot)[:, x.shape[1] :].cpu().numpy()
    comps: list[np.ndarray] = []
    for row in out:
        hit = np.nonzero(row == eot)[0]
        comps.append(row[: hit[0] + 1] if len(hit) else row)
    return comps


class GRPOBatches:
    """Prompts → the step's rollouts: ids/labels of prompt+completion, advantages, sampling and reference
    log-probs, rewards. dim 0 = completions (global_batch counts completions)."""

    def __init__(
        self, prompts: list[np.ndarray], answers: list[str], tok: Any, cfg: Any, seed: int, eot: int, pad_id: int
    ) -> None:
        self.prompts, self.answers, self.tok, self.cfg = prompts, answers, tok, cfg
        self.G, self.seed, self.eot, self.pad_id = cfg.group_size, seed, eot, pad_id
        self.order = StepOrder(len(prompts), cfg.global_batch // cfg.group_size, seed)
        self.reward_fn = REWARDS[cfg.reward]
        self.policy: nn.Module | None = None
        self.reference: nn.Module | None = None  # None: the policy with its adapters off (LoRA)
        self.fixed_length = False  # True under FSDP: every rank must run the same number of forwards
        self.fingerprint = fingerprint_arrays("grpo", seed, cfg.global_batch, cfg.group_size, prompts, answers)

    def _policy(self) -> nn.Module:
        if self.policy is None:
            raise TrainingError(
                "GRPOBatches.policy is not set; assign the model being trained to it before "
                "asking for rollouts or batches"
            )
        return self.policy

    def rollout(
        self, prompt_idx: list[int], step: int, temperature: float | None = None, group: int | None = None
    ) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
        """(prompt per completion, completions, rewards (P, G))."""
        from moxin.model.generate import Sampling

        c, model = self.cfg, self._policy()
        temp = c.temperature if temperature is None else temperature
        was = model.training
        model.eval()
        G = group or self.G
        prompts: list[np.ndarray] = []
        comps: list[np.ndarray] = []
        rewards = np.zeros((len(prompt_idx), G))
        for p, i in enumerate(prompt_idx):
            s = Sampling(temp, c.top_k, c.top_p, seed=int(self.seed * 1_000_003 + step * 7919 + i) % (2**63))
            drawn = sample_group(model, self.prompts[i], G, c.max_new_tokens, s, self.eot, self.fixed_length)
            for g, comp in enumerate(drawn):
                text = self.tok.decode(comp[comp != self.eot].tolist(), skip_special_tokens=True)
                rewards[p, g] = self.reward_fn(text, self.answers[i])
                prompts.append(self.prompts[i])
                comps.append(comp)
        model.train(was)
        return prompts, comps, rewards

    @torch.no_grad()
    def _logps(self, model: nn.Module, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return token_logps(forward(model, ids), labels)

    def batch(self, step: int, rank: int = 0, world: int = 1) -> dict[str, torch.Tensor]:
        idx = self.order.indices(step, rank, world)
        prompts, comps, rewards = self.rollout(idx, step)
        adv = group_advantages(torch.from_numpy(rewards)).reshape(-1)  # (P*G,)
        ids = torch.from_numpy(pad_rows([np.concatenate([p, c]) for p, c in zip(prompts, comps)], self.pad_id))
        labels = torch.full_like(ids, IGNORE)
        for r, (p, c) in enumerate(zip(prompts, comps)):
            labels[r, len(p) - 1 : len(p) + len(c) - 1] = torch.from_numpy(c)  # position j predicts token j+1
        policy = self._policy()
        dev = next(policy.parameters()).device
        ids_d, labels_d = ids.to(dev), labels.to(dev)
        old = self._logps(policy, ids_d, labels_d).cpu()
        if self.reference is None:
            with adapters_off(policy):
                ref = self._logps(policy, ids_d, labels_d).cpu()
        else:
            ref = self._logps(self.reference, ids_d, labels_d).cpu()
        return {
            "input_ids": ids,
            "labels": labels,
            "advantages": adv.float(),
            "old_logps": old,
            "ref_logps": ref,
            "rewards": torch.from_numpy(rewards.reshape(-1)).float(),
        }


class GRPOTask:
    """The clipped surrogate with KL, per completion (token-averaged); loss units are completions."""

    def __init__(self, clip_eps: float, beta: float) -> None:
        self.clip_eps, self.beta = clip_eps, beta

    def count(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["input_ids"].shape[0])

    def loss(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        labels = batch["labels"]
        logp = token_logps(forward(model, batch["input_ids"]), labels)  # (N, T)
        loss, m = grpo_loss(
            logp,
            batch["old_logps"],
            batch["ref_logps"],
            batch["advantages"],
            labels != IGNORE,
            self.clip_eps,
            self.beta,
        )
        return loss.sum(), {"reward": batch["rewards"].sum(), "kl": m["kl"].sum(), "clip_frac": m["clip_frac"].sum()}


def eval_reward(batches: GRPOBatches, idx: list[int]) -> float:
    """Mean greedy-decoding reward on the given prompts (the held-out measure)."""
    _, _, rewards = batches.rollout(idx, step=0, temperature=0.0, group=1)
    return float(rewards.mean()) if len(idx) else float("nan")
