"""Token ids → text for streaming: stop sequences and multi-byte characters.

A byte-level BPE token can end in the middle of a UTF-8 character; decoding such a prefix yields U+FFFD. So the
tracker decodes the whole generated suffix each step (prefix-stable for byte-level BPE) and only releases text that
can no longer change: never a trailing U+FFFD, never the start of what might become a stop sequence."""

from __future__ import annotations

from moxin.tokenizer.template import render_chat  # noqa: F401 - chat prompts render with size and time limits

REPLACEMENT = "\ufffd"


class TextTracker:
    """Accumulates generated token ids of one request; `push` returns the newly safe text and whether a stop
    sequence ended the generation. `text` is the final text (stop sequence excluded) once finished."""

    def __init__(self, tokenizer, stop: list[str] | None = None) -> None:
        self.tok = tokenizer
        self.stop = [s for s in (stop or []) if s]
        self.ids: list[int] = []
        self.emitted = 0  # characters of the decoded text already released
        self.text = ""
        self.stopped = False

    def _decode(self) -> str:
        if self.tok is None:
            return ""
        return self.tok.decode(self.ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def push(self, token_id: int) -> tuple[str, bool]:
        """Add one generated token → (text safe to release now, stop sequence hit)."""
        self.ids.append(int(token_id))
        text = self._decode()
        cut = self._find_stop(text)
        if cut is not None:
            self.text, self.stopped = text[:cut], True
            return self._release(len(self.text)), True
        self.text = text
        return self._release(self._safe_end(text)), False

    def flush(self) -> str:
        """At the end of generation: release everything still held back (an unfinished character included)."""
        return self._release(len(self.text))

    def _release(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        delta = self.text[self.emitted : end]
        self.emitted = end
        return delta

    def _find_stop(self, text: str) -> int | None:
        # A stop sequence can only newly appear near the end: search from just before the released text.
        hits = []
        for s in self.stop:
            i = text.find(s, max(0, self.emitted - len(s)))
            if i >= 0:
                hits.append(i)
        return min(hits) if hits else None

    def _safe_end(self, text: str) -> int:
        end = len(text.rstrip(REPLACEMENT))
        held = 0
        for s in self.stop:  # hold back the longest suffix that is a proper prefix of a stop sequence
            for k in range(min(len(s) - 1, end), held, -1):
                if text.endswith(s[:k], 0, end):
                    held = k
                    break
        return end - held


# Special tokens that end an assistant turn in common chat templates (ChatML, Llama 3, Gemma, Phi, Mistral).
END_OF_TURN = ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>", "</s>", "<|endoftext|>", "<|eom_id|>")


def end_of_turn_ids(tokenizer) -> list[int]:
    """Ids that end a chat reply: the tokenizer's EOS plus the end-of-turn tokens its vocabulary has."""
    if tokenizer is None:
        return []
    vocab = tokenizer.get_vocab()
    ids = {vocab[t] for t in END_OF_TURN if t in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return sorted(ids)
