"""The Playground's note over its board once a setting has moved since the board's run (Handlers inherits it).

What the board's run read is kept per session as the run starts (`board_fresh`, queue-free, before the run), not
read from the recording: a recording is the board's only from the run's first frame on, so a change sent between
a release and that frame (a checkbox's `change` comes after its `input`; a number typed past a slider's end comes
clamped after the release) was compared with the run before, and the note named the settings the new run was using.
"""

from __future__ import annotations

import gradio as gr

from .playground_common import board_stale_note
from .render import note_html
from .render_panels import moved_settings


def opened_beside_moved(was, now) -> str:
    """What moved between two of _panel_key's keys ([prompt, mode, settings, heal]), named as the live note names
    it; "" where either cannot be read (inputs no run takes)."""
    if not was or not now:
        return ""
    flat = [{"prompt": key[0], "mode": key[1], **key[2], "heal": key[3]} for key in (was, now)]
    return ", ".join(moved_settings(*flat))


class BoardNote:
    """board_fresh / board_staleness (ui/wiring.py wires them; an opened file clears the note in open_pressed);
    self._board_started: session -> what the Playground's latest run started with (None: the recording says it)."""

    def __init__(self, engine):
        super().__init__(engine)
        self._board_started: dict[str | None, dict] = {}

    def board_fresh(self, tab, prompt=None, mode=None, gamma=None, block_size=None, steps_per_block=None,
                    max_new_tokens=None, temperature=None, seed=None, colour_by="step", anchor_first=False,
                    previous=None, heal=True, top_k=None, top_p=None, request: gr.Request = None):
        """A run starting on the Playground (Generate, a release there): no note, and these inputs are the board's
        from now on (wired with preprocess=False: as sent). On another tab a release runs nothing: skipped."""
        if tab != "playground":
            return gr.skip()
        session = getattr(request, "session_hash", None)
        key = self._panel_key(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                              anchor_first, heal, top_k, top_p)
        if key is None:  # a run these inputs refuse: the board keeps the recording's run
            self._board_started.pop(session, None)
        else:  # (whether the prompt has a token to heal is not known before the run: healed None)
            self._board_started[session] = {"prompt": key[0], "mode": key[1], "settings": key[2], "heal": key[3],
                                            "healed": None}
        return ""

    def board_started_over(self, session) -> None:
        """The board is the recording's run again: a refused run, one stopped in the queue, an opened file."""
        self._board_started.pop(session, None)

    def board_staleness(self, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                        colour_by="step", anchor_first=False, previous=None, heal=True, top_k=None, top_p=None,
                        request: gr.Request = None):
        """The note over the board (queue-free, on every change of an input a run reads; preprocess=False: the
        values as sent, compared only). A slider moved from the keyboard, whose release Gradio sends on mouse-up or
        on leaving its box only, and the settings no release re-runs, left the board unmarked."""
        current = dict(prompt=prompt, mode=mode, gamma=gamma, block_size=block_size, steps_per_block=steps_per_block,
                       max_new_tokens=max_new_tokens, temperature=temperature, seed=seed, top_k=top_k, top_p=top_p,
                       anchor_first=anchor_first, heal=heal)
        draft_steps = self.engine.model.config.default_draft_steps
        started = self._board_started.get(getattr(request, "session_hash", None))
        if started is not None:
            return board_stale_note(started, current, draft_steps)
        if previous and previous.get("trace") is not None:  # an opened run: the inputs it was opened beside
            key = self._panel_key(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                                  anchor_first, heal, top_k, top_p)
            if previous.get("panel") is not None and previous["panel"] == key:
                return ""
            moved = opened_beside_moved(previous.get("panel"), key)
            return note_html(f"Settings moved since this run was opened{f' ({moved})' if moved else ''}: Generate "
                             "runs the prompt with them.")
        if not previous or not previous.get("events"):
            return ""
        return board_stale_note(previous, current, draft_steps)
