"""Acceptance 4 of [6/8]: `moxin chat` driven by a scripted stdin holds a two-turn conversation with the chat
template applied, and /reset forgets it."""

import io
import subprocess
import sys
from pathlib import Path

from serve_toy import toy, toy_ckpt  # noqa: F401  (fixtures)

from moxin.serve.chat import ChatSession, repl
from moxin.serve.engine import Engine, SamplingParams
from moxin.serve.text import end_of_turn_ids

REPO = Path(__file__).resolve().parents[2]


def _expected_replies(toy, turns: list[str], max_tokens: int) -> list[str]:
    """Greedy replies computed directly: template over the growing history, generation, append the reply."""
    model, tok = toy
    engine = Engine(model, tok, max_batch=1)
    history, replies = [], []
    try:
        for t in turns:
            history.append({"role": "user", "content": t})
            ids = tok.encode(tok.apply_chat_template(history, add_generation_prompt=True, tokenize=False),
                             add_special_tokens=False)
            r = engine.generate(ids, SamplingParams(max_tokens=max_tokens, stop_token_ids=end_of_turn_ids(tok)))
            replies.append(r.text)
            history.append({"role": "assistant", "content": r.text})
    finally:
        engine.close()
    return replies


def test_chat_cli_two_turns_from_scripted_stdin(toy, toy_ckpt):
    first, second = _expected_replies(toy, ["hello moxin", "and 東京?"], 12)
    fresh = _expected_replies(toy, ["and 東京?"], 12)[0]
    assert second != fresh  # the second turn really depends on the first
    script = "hello moxin\nand 東京?\n/reset\nand 東京?\n/exit\nnever read\n"
    proc = subprocess.run([sys.executable, "-m", "moxin.cli", "chat", str(toy_ckpt), "--temperature", "0",
                           "--max-tokens", "12"], input=script, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("assistant: ")]
    assert lines == [f"assistant: {first}", f"assistant: {second}", f"assistant: {fresh}"], proc.stdout
    assert "(conversation cleared)" in proc.stdout


def test_history_is_trimmed_to_fit_the_context(toy):
    model, tok = toy
    engine = Engine(model, tok, max_batch=1)
    try:
        session = ChatSession(engine, tok, SamplingParams(max_tokens=40, temperature=0), system="short")
        out = io.StringIO()
        for i in range(12):  # each exchange is ~60 tokens; the context is 256
            session.reply(f"turn {i} " + "data " * 10, out)
        assert session.history[-2]["content"].startswith("turn 11")
        assert len(session.history) < 24 and session.history[0]["role"] == "user"
        repl(session, io.StringIO("/help\n\n/exit\n"), out)
        assert "unknown command '/help'" in out.getvalue()
    finally:
        engine.close()


def test_chat_int8_and_bf16_run_in_process(toy_ckpt, monkeypatch, capsys):
    from moxin.cli import main

    for flags in (["--int8"], ["--dtype", "bfloat16"]):
        monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n/exit\n"))
        assert main(["chat", str(toy_ckpt), "--temperature", "0", "--max-tokens", "5", *flags]) == 0
        out = capsys.readouterr().out
        assert out.count("assistant: ") == 1 and len(out.split("assistant: ")[1].strip()) > 0


def test_chat_without_a_chat_template_is_a_clear_error(toy_ckpt, tmp_path):
    import json
    import shutil

    from moxintest import run_cli

    ckpt = tmp_path / "ckpt"
    shutil.copytree(toy_ckpt, ckpt)
    (ckpt / "tokenizer" / "chat_template.jinja").unlink(missing_ok=True)
    cfg_path = ckpt / "tokenizer" / "tokenizer_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg.pop("chat_template", None)
    cfg_path.write_text(json.dumps(cfg))
    code, _, err = run_cli("chat", str(ckpt))
    assert code == 2 and "has no chat template" in err and "moxin generate" in err
