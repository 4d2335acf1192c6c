"""SFTTask is LMTask's dict path: packed rows hand positions and segment ids to the model, the loss is the summed
cross-entropy over labelled tokens, and the count needs the labels only."""

import torch
import torch.nn.functional as F
from torch import nn

from moxin.finetune.tasks import SFTTask
from moxin.train import IGNORE
from moxin.train.tasks import LMTask


class Recorder(nn.Module):
    """Logits from a fixed table, remembering the keyword arguments of each call."""

    def __init__(self, vocab: int = 7) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))
        self.calls: list[dict] = []

    def forward(self, ids, **kw):
        self.calls.append(kw)
        return self.table[ids].to(torch.bfloat16)  # the task must compute the softmax in fp32


def test_sft_loss_is_the_summed_cross_entropy_of_labelled_tokens_with_packing_passed_on():
    ids = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    labels = torch.tensor([[IGNORE, 3, 4, IGNORE], [6, IGNORE, IGNORE, IGNORE]])
    positions, segments = torch.tensor([[0, 1, 0, 1], [0, 1, 2, 3]]), torch.tensor([[0, 0, 1, 1], [0, 0, 0, 0]])
    model = Recorder()
    task = SFTTask()
    loss, metrics = task.loss(model, {"input_ids": ids, "labels": labels, "positions": positions,
                                      "segment_ids": segments})
    assert set(model.calls[0]) == {"positions", "segment_ids"} and torch.equal(model.calls[0]["segment_ids"], segments)
    logits = model.table[ids].to(torch.bfloat16).float()
    keep = labels != IGNORE
    want = -torch.log_softmax(logits[keep], -1).gather(1, labels[keep][:, None]).sum()
    torch.testing.assert_close(loss, want)
    assert metrics == {} and task.count({"labels": labels}) == 3


def test_lm_task_on_token_rows_calls_the_model_plainly_and_matches_cross_entropy():
    rows = torch.tensor([[1, 2, 3, 4, 5]])
    model = Recorder()
    loss, _ = LMTask().loss(model, rows)
    assert model.calls == [{}]
    logits = model.table[rows[:, :-1]].to(torch.bfloat16).float()
    torch.testing.assert_close(loss, F.cross_entropy(logits[0], rows[0, 1:], reduction="sum"))
    assert LMTask().count(rows) == 4
