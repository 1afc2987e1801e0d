"""The completion's text as the sampler commits it: what `twotower generate` prints while a run goes on.

Text is decoded from every committed id so far (a token's text can depend on its neighbours: sentencepiece's
leading space, a character split over byte tokens), and only what extends the text already shown is shown.
A trailing U+FFFD is held back: it is usually a character whose later bytes are still to come.
"""

from __future__ import annotations

from typing import Callable

from .events import StepEvent, committed_tokens

REPLACEMENT = "\ufffd"


class CompletionStream:
    """Feed it every event (`add`), then the run's final text (`finish`); each returns the text to print next.

    decode: ids -> text (the engine's); eos_token_id: the run's stop token (None: no stop), after which
    committed tokens are not output (a diffusion block is drafted past its EOS)."""

    def __init__(self, decode: Callable[[list[int]], str], eos_token_id: int | None):
        self.decode, self.eos = decode, eos_token_id
        self.ids: list[int] = []
        self.shown = ""
        # the ids up to the last line break shown, and their text: only the ids after them are decoded again (a
        # long AR run decoded every id at every token, ~0.4 ms a token by its 4,000th)
        self.settled, self.settled_text = 0, ""
        self.ended = False  # an EOS was committed: later tokens are not the output's
        self.diverged = False  # a decode did not extend the text shown: nothing more is shown until finish

    def add(self, event: StepEvent) -> str:
        start, tokens = committed_tokens(event)
        if not tokens or self.ended:
            return ""
        del self.ids[start:]  # (each mode emits a position once; a repeat replaces rather than doubles)
        if start < self.settled:
            self.settled, self.settled_text = 0, ""
        for token in tokens:
            self.ids.append(token)
            if token == self.eos:
                self.ended = True
                break
        text = self.settled_text + self.decode(self.ids[self.settled:]).rstrip(REPLACEMENT)
        new = self._extend(text)
        if new.endswith("\n") and not self.diverged:  # a line's text no later id changes
            self.settled, self.settled_text = len(self.ids), self.shown
        return new

    def finish(self, final_text: str) -> str:
        """The rest of the run's text (Engine.decode of its new tokens). If the text shown is not its start (a
        tokenizer whose decode of a prefix is not a prefix of the decode: not this project's three), a line
        break and the whole text instead, so the output still ends with the completion in full."""
        if self.diverged or not final_text.startswith(self.shown):
            return ("\n" if self.shown else "") + final_text
        rest, self.shown = final_text[len(self.shown):], final_text
        return rest

    def _extend(self, text: str) -> str:
        if self.diverged:
            return ""
        if not text.startswith(self.shown):
            self.diverged = True
            return ""
        new, self.shown = text[len(self.shown):], text
        return new
