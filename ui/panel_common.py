"""What every panel's handlers share (ui.panel_handlers, ui.sweep_panel, ui.handlers): reading the widgets'
values as the engine expects them, and the messages of a stopped or unavailable run."""

from __future__ import annotations

import re
import time

import gradio as gr

from twotower.validation import check_flag, check_sampling

from .render import PROGRESS_CLASS, note_html

MAX_NEW_TOKENS = 512  # the max new tokens slider's end (ui/app.py), what the memory plan's context allows for
# the top-k slider's end; 0 (every token) is its other end, so no filter is out of reach (the engine takes any k)
TOP_K_MAX = 500
# Live views send a frame at most this often. Every frame is a whole board drawn, sent and laid out by the
# browser, on the cores the model decodes on: a 512-token AR run sent 512 frames and reached the finished board
# in 17.7-23.6 s, against 14.1-17.1 s paced (benchmarks/ui_frames/run.txt). 25 frames a second is smooth to the
# eye; the recording keeps every step for the scrubber.
FRAME_INTERVAL_S = 0.04


HEAL_LABEL = "heal the prompt's last token"  # each panel's healing checkbox, and the name a bad value is refused by


def whole(value):
    """Sliders send floats; integral ones become ints, anything else goes to the engine to be refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def switch(name: str, value) -> bool:
    """A checkbox's value: a box Gradio sends no value for is off; anything but a boolean (an API caller's "no",
    which bool() read as on) is refused by name, as the engine refuses it."""
    return check_flag(name, False if value is None else value)


def run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, top_k=None,
                 top_p=None) -> dict:
    """The sliders' values as Engine.stream's keywords. top_k / top_p are checked at any temperature, as the engine
    and the CLI check them, by the sliders' names; they filter a sampled draw only, so greedy (temperature 0) and
    their "every token" ends (top-k 0, top-p 1) record None: a board and its saved trace name no filter that did
    nothing (`generate --trace` records the flags as typed)."""
    _, top_k, top_p = check_sampling(0.0, whole(top_k), top_p, names=("temperature", "top-k", "top-p"))
    sampled = temperature not in (0, None)
    return dict(gamma=gamma, block_size=whole(block_size), steps_per_block=whole(steps_per_block),
                max_new_tokens=whole(max_new_tokens), temperature=temperature,
                seed=None if seed in (None, "") else whole(seed),
                top_k=top_k if sampled else None, top_p=top_p if sampled and top_p != 1.0 else None)


def unavailable(what: str, exc: Exception) -> str:
    return f"{what} is not available in this build yet ({exc})."


def given(**settings) -> dict:
    """The settings a caller passed (None: a component the caller does not wire)."""
    return {key: value for key, value in settings.items() if value is not None}


def stopped_note(html, message: str):
    """`html` with its progress line (note_html(..., progress=True)) replaced by `message`; unchanged (a skip)
    when it has none: the run had finished, or Stop was pressed with nothing running."""
    if not html or PROGRESS_CLASS not in html:
        return gr.skip()
    return re.sub(rf'<div class="tt-note {PROGRESS_CLASS}">.*?</div>', lambda _: note_html(message), html, flags=re.S)


def stopped_before_start(run: str, results: str) -> str:
    """What a run stopped while it waited in the queue says: it drew nothing, and the panel had already let go of
    the note that its results were measured at other settings (the button's queue-free listener runs first)."""
    return note_html(f"Stopped before it started (Stop came while it waited in the queue): the {results} here, if "
                     f"any, are the last {run}'s, measured at its own settings.")


class FramePacer:
    """Whether a live view's next frame is due: the first always, later ones once FRAME_INTERVAL_S has passed
    since the last frame sent. A step that takes longer than that is always drawn, so only runs faster than
    the eye skip frames (the last frame, drawn after the run, shows the whole of it)."""

    def __init__(self, interval_s: float = FRAME_INTERVAL_S, clock=time.monotonic):
        self.interval_s, self.clock = interval_s, clock
        self.last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self.last is not None and now - self.last < self.interval_s:
            return False
        self.last = now
        return True
