"""The terminal chat: reads lines, keeps the conversation, renders it with the tokenizer's chat template, streams
the reply. `/reset` forgets the conversation, `/exit` (or end of input) quits. When the conversation no longer fits
the context, the oldest turns are dropped (the system prompt stays)."""

from __future__ import annotations

import dataclasses
from typing import TextIO

from moxin.serve.engine import Completion, Engine, SamplingParams, ServeError
from moxin.serve.text import end_of_turn_ids, render_chat

HELP = "commands: /reset clears the conversation, /exit quits"


class ChatSession:
    """A conversation with its history; `reply` streams the assistant's answer to `out`."""

    def __init__(self, engine: Engine, tokenizer, params: SamplingParams, system: str | None = None) -> None:
        if not getattr(tokenizer, "chat_template", None):
            raise ServeError(
                "this model's tokenizer has no chat template; use 'moxin generate' for plain text, or "
                "export the checkpoint with a tokenizer that has one"
            )
        self.engine, self.tok, self.system = engine, tokenizer, system
        self.params = dataclasses.replace(params, stop_token_ids=[*params.stop_token_ids, *end_of_turn_ids(tokenizer)])
        self.history: list[dict[str, str]] = []

    def reset(self) -> None:
        self.history = []

    def _prompt(self) -> list[int]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        while True:
            text = render_chat(self.tok, head + self.history, add_generation_prompt=True)
            ids = self.tok.encode(text, add_special_tokens=False)
            if len(ids) + self.params.max_tokens <= self.engine.context or len(self.history) <= 1:
                return ids
            self.history = self.history[2:]  # drop the oldest user/assistant exchange

    def reply(self, message: str, out: TextIO) -> Completion:
        self.history.append({"role": "user", "content": message})
        ids = self._prompt()
        params = dataclasses.replace(
            self.params, max_tokens=min(self.params.max_tokens, self.engine.context - len(ids))
        )
        try:
            done = None
            for ev in self.engine.stream(ids, params):
                if isinstance(ev, Completion):
                    done = ev
                else:
                    out.write(ev)
                    out.flush()
        except BaseException:  # an error or Ctrl-C: the unanswered message leaves the history
            self.history.pop()
            raise
        if done is None:  # the stream ended without its final Completion: the engine stopped under us
            self.history.pop()
            raise ServeError("generation ended without a result; the engine was stopped, start the chat again")
        self.history.append({"role": "assistant", "content": done.text})
        return done


def repl(session: ChatSession, inp: TextIO, out: TextIO, interactive: bool = False) -> None:
    out.write(f"moxin chat ({HELP})\n")
    while True:
        if interactive:
            out.write("> ")
            out.flush()
        line = inp.readline()
        if not line:
            break
        text = line.rstrip("\n")
        cmd = text.strip()
        if not cmd:
            continue
        if cmd in ("/exit", "/quit"):
            break
        if cmd == "/reset":
            session.reset()
            out.write("(conversation cleared)\n")
            continue
        if cmd.startswith("/"):
            out.write(f"unknown command {cmd!r}; {HELP}\n")
            continue
        out.write("assistant: ")
        try:
            session.reply(text, out)
        except ServeError as e:
            out.write(f"\n(error: {e})")
        except KeyboardInterrupt:  # Ctrl-C stops this reply (its request is cancelled), not the chat
            out.write("\n(interrupted)")
        out.write("\n")
        out.flush()
