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


# ------------------------------------------------------------------------------ bounded rendering (issue 15 item 11)
ATTACKS = {
    "string repeat": "{{ ('a'*300000000) }}",
    "nested loops, no output": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "nested loops with output": "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
    "doubling": "{% set ns = namespace(s='a') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
    "padding": "{{ 'a'.ljust(300000000) }}{{ 'a'|center(300000000) }}",
    "set block": "{% set x %}{% for i in range(100000) %}{{ 'a'*1000000 }}{% endfor %}{% endset %}{{ x|length }}",
    "replace": "{{ ('a'*3000000)|replace('', 'bbbbbbbbbbbbbbbb') }}",
}


def test_template_attacks_fail_fast_with_one_line(tok):
    import time
    import tracemalloc

    import pytest

    from moxin.errors import TemplateLimitError
    from moxin.tokenizer.template import render_chat

    for what, source in ATTACKS.items():
        tracemalloc.start()
        t0 = time.perf_counter()
        with pytest.raises(TemplateLimitError) as e:
            render_chat(tok, CONV, template=source, name="finetune.chat_template")
        took = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        msg = str(e.value)
        assert took < 2.0, (what, took)
        assert peak < 200_000_000, (what, peak)  # bytes: nothing near the 300 MB string the attack asks for
        assert msg.startswith("finetune.chat_template: rendering stopped") and "\n" not in msg, (what, msg)


def test_template_limit_stops_finetune_render_but_rejection_drops_record(tok):
    import pytest

    from moxin.errors import TemplateLimitError
    from moxin.finetune.data import BadRecord

    old = tok.chat_template
    try:
        tok.chat_template = ATTACKS["string repeat"]
        with pytest.raises(TemplateLimitError, match=r"chat template of .*: rendering stopped: '\*' would build"):
            render(tok, CONV)
        tok.chat_template = "{{ raise_exception('roles must alternate') }}"
        with pytest.raises(BadRecord, match="roles must alternate"):
            render(tok, CONV)
    finally:
        tok.chat_template = old


def test_bounded_render_matches_transformers_for_chatml(tok):
    from moxin.tokenizer.config import CHATML_TEMPLATE
    from moxin.tokenizer.template import render_chat

    assert tok.chat_template == CHATML_TEMPLATE
    long_conv = CONV + [{"role": "user", "content": "ünïcödé 日本語 " * 500}]
    for conv in (CONV, CONV[:2], long_conv):
        for gen in (False, True):
            assert render_chat(tok, conv, gen) == tok.apply_chat_template(conv, tokenize=False,
                                                                           add_generation_prompt=gen)
    # a template using the special tokens, loop controls, namespaces and tojson renders like transformers, too
    fancy = ("{{ bos_token or '' }}{% set ns = namespace(n=0) %}{% for m in messages %}{% if m.role == 'system' %}"
             "{% continue %}{% endif %}{% set ns.n = ns.n + 1 %}[{{ ns.n }}|{{ m.role|upper }}]{{ m.content|tojson }}"
             "{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}>{% endif %}")
    old = tok.chat_template
    try:
        tok.chat_template = fancy
        assert render_chat(tok, CONV, True) == tok.apply_chat_template(CONV, tokenize=False, add_generation_prompt=True)
    finally:
        tok.chat_template = old
