"""Assistant-only masks from the chat template, and packing that keeps examples apart."""

import numpy as np
import torch
from ft_helpers import tok, tok_dir  # noqa: F401 (fixtures)

from moxin.finetune.template import (
    IGNORE,
    encode_chat,
    encode_prompt,
    end_of_turn_id,
    pack,
    render,
    shift_labels,
)

CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Spell freind."},
        {"role": "assistant", "content": "friend"}, {"role": "user", "content": "And recieve?"},
        {"role": "assistant", "content": "receive"}]


def test_only_assistant_turns_carry_loss(tok):
    ids, mask = encode_chat(tok, CONV)
    assert tok.decode(ids.tolist()) == render(tok, CONV)
    assert tok.decode(ids[mask].tolist()) == "friend<|im_end|>receive<|im_end|>"
    labels = shift_labels(ids, mask)
    # every label is the next token and that token is an assistant token; no prompt token is a target
    targets = np.nonzero(labels != IGNORE)[0]
    assert len(targets) == int(mask.sum())
    assert (labels[targets] == ids[targets + 1]).all() and mask[targets + 1].all()
    prompt_positions = np.nonzero(~mask)[0]
    assert not np.isin(prompt_positions - 1, targets).any()
    # the system and user text never appears among the targets
    assert "Spell" not in tok.decode(labels[targets].tolist())


def test_mask_from_a_later_turn_only(tok):
    ids, mask = encode_chat(tok, CONV, from_turn=3)
    assert tok.decode(ids[mask].tolist()) == "receive<|im_end|>"


def test_generation_prompt_and_end_of_turn(tok):
    p = encode_prompt(tok, CONV[:2])
    assert tok.decode(p.tolist()).endswith("<|im_start|>assistant\n")
    assert end_of_turn_id(tok) == tok.convert_tokens_to_ids("<|im_end|>")


def test_packed_rows_give_the_same_logits_as_separate_examples(tok):
    from moxin.model import build, preset

    model = build(preset("llama-tiny"), seed=1).eval()  # full attention: packing must separate documents itself
    convs = [[{"role": "user", "content": f"Question {i} " * (i + 1)},
              {"role": "assistant", "content": f"Answer {i} " * (3 - i % 3)}] for i in range(5)]
    seqs = [encode_chat(tok, c) for c in convs]
    examples = [(ids, shift_labels(ids, m)) for ids, m in seqs]
    packed = pack(examples, 96, tok.pad_token_id, np.arange(5))
    assert len(packed.rows_of) < 5  # something was actually packed together
    with torch.no_grad():
        rows = model(torch.from_numpy(packed.input_ids), positions=torch.from_numpy(packed.positions),
                     segment_ids=torch.from_numpy(packed.segment_ids))
        for r, members in enumerate(packed.rows_of):
            at = 0
            for i in members:
                ids = examples[i][0]
                alone = model(torch.from_numpy(ids)[None])[0]
                assert torch.allclose(rows[r, at:at + len(ids)], alone, atol=1e-5)
                assert (packed.labels[r, at:at + len(ids)] == examples[i][1]).all()
                at += len(ids)
            assert (packed.labels[r, at:] == IGNORE).all()
