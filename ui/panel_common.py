"""What every panel's handlers share (ui.panel_handlers, ui.sweep_panel, ui.handlers): reading the widgets'
values as the engine expects them, and the messages of a stopped or unavailable run."""

from __future__ import annotations

import re

import gradio as gr

from twotower.validation import check_flag

from .render import PROGRESS_CLASS, note_html

MAX_NEW_TOKENS = 512  # the max new tokens slider's end (ui/app.py), what the memory plan's context allows for


def whole(value):
    """Sliders send floats; integral ones become ints, anything else goes to the engine to be refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def switch(name: str, value) -> bool:
    """A checkbox's value: a box Gradio sends no value for is off; anything but a boolean (an API caller's "no",
    which bool() read as on) is refused by name, as the engine refuses it."""
    return check_flag(name, False if value is None else value)


def run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed) -> dict:
    return dict(gamma=gamma, block_size=whole(block_size), steps_per_block=whole(steps_per_block),
                max_new_tokens=whole(max_new_tokens), temperature=temperature,
                seed=None if seed in (None, "") else whole(seed))


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
