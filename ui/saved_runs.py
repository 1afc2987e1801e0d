"""The Playground's saved runs: "Save this run (JSON)" writes the run's trace (twotower/trace.py), "Open a saved
run (JSON)" puts one back on the board (this app's, or `generate --trace`'s of another checkpoint, drawn with the
file's own token pieces). A mixin of ui.handlers.Handlers, whose board drawing (_view), refusal (_refusal),
completion (_completion), Stop and download helpers it uses."""

from __future__ import annotations

import gradio as gr

from .board import count_frames
from .panel_common import run_settings
from .playground_common import board_prompt, recorded_board, replay_scrubber, run_caption
from .render import stats_html
from .render_panels import MODE_LABELS

NOTHING_TO_SAVE = "Nothing to save yet: generate first, then save the run."
OPENED_NOTE = ("A saved run, opened from its file: its times are those it ran in, on the machine it ran on; the "
               "prompt and settings are the file's (Generate runs the panel's own).")


class SavedRuns:
    """Save and open a Playground run (see the module's docstring)."""

    def save_trace(self, record):
        """The Playground's last run as a JSON trace (twotower/trace.py, as `generate --trace` writes) for download.
        With no run recorded, or a disk that cannot take the file, a warning says so and the file box stays."""
        from twotower.trace import ran_settings, run_trace, trace_json

        if not record or not record.get("events") or "prompt_ids" not in record:
            gr.Warning(NOTHING_TO_SAVE)
            return gr.skip()
        if record.get("trace") is not None:  # a saved run opened here: saved again as it was read
            return self._download("trace-", "twotower-run.json", trace_json(record["trace"]),
                                  "the board and its recording stay")
        config = self.engine.model.config
        trace = run_trace(record["events"], prompt=record["prompt"], prompt_ids=record["prompt_ids"],
                          healed=record.get("healed", ""),
                          mode=record["mode"], settings=ran_settings(record["mode"], config, record["settings"]),
                          tokenizer=self.engine.tokenizer, mask_token_id=config.mask_token_id,
                          engine=self.engine.describe())
        return self._download("trace-", "twotower-run.json", trace_json(trace), "the board and its recording stay")

    def open_pressed(self, request: gr.Request = None):
        """The Open button's file chosen (queue-free, before open_trace runs): as Stop, the session's run going
        stops at its next step and one still waiting in the queue never starts, so none draws over the opened run
        (supersede, as at Generate, let a queued Generate start after the open and replace it). The note over the
        board goes too (its output): none until the opened run is on the board (ui/board_note.py)."""
        self.stop_playground(request)
        self.board_started_over(getattr(request, "session_hash", None))
        return ""

    def open_trace(self, path, prompt=None, mode=None, gamma=None, block_size=None, steps_per_block=None,
                   max_new_tokens=None, temperature=None, seed=None, colour_by="step", anchor_first=False,
                   previous=None, heal=True, top_k=None, top_p=None, request: gr.Request = None):
        """A saved run (a trace: "Save this run", `generate --trace`, run_trace) opened on the Playground's board:
        every step replays on the scrubber, drawn with the file's own token pieces (its model may be another than
        the one loaded here). The panel's inputs (the Playground's, as Generate reads them) are kept with it: a
        slider released without a change leaves it, one that moves a setting runs the panel's prompt anew.
        Yields (view, statistics, completion, recorded run, scrubber, saved-trace file box). A file that is no trace
        is refused in words over the last board, which stays with its saved file."""
        from pathlib import Path

        from twotower.trace import TRACE_LIMIT_BYTES, read_trace, trace_events

        name = Path(str(path or "")).name
        try:
            if not path:
                raise ValueError("no file was given")
            if Path(path).stat().st_size > TRACE_LIMIT_BYTES:
                raise ValueError(f"the file is over {TRACE_LIMIT_BYTES // 2**20} MB: not a run's trace")
            trace = read_trace(Path(path).read_bytes())
            events = trace_events(trace)
            record = self._opened_record(trace, events, name)
            record["panel"] = self._panel_key(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens,
                                              temperature, seed, anchor_first, heal, top_k, top_p)
            board = recorded_board(record)
            view = self._view(board, board_prompt(record), colour_by, record["steps_per_block"], record["healed"],
                              record)
            stats = stats_html(board, OPENED_NOTE, status="stopped", run=record["caption"])  # (finished: "done")
        except (OSError, ValueError, TypeError, IndexError, OverflowError, KeyError) as exc:
            # (a hand-edited file the checks missed fails in drawing: said as a file that cannot be read)
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            message = f"Not opened: {name or 'the file'}: {reason}."
            gr.Warning(message)
            yield *self._refusal(message, previous, colour_by), gr.skip()
            return
        yield (view, stats, self._completion([], record), record, replay_scrubber(count_frames(events)),
               gr.File(value=None, visible=False))  # the last run's saved file goes: it is not this run's

    @staticmethod
    def _panel_key(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                   anchor_first, heal, top_k, top_p):
        """What a slider release compares an opened run against: the Playground's inputs when it was opened (None
        where they cannot be read: any release then runs the panel's prompt)."""
        try:
            settings = run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, top_k,
                                    top_p)
        except (TypeError, ValueError):
            return None
        return [prompt, mode, {**settings, "anchor_first": anchor_first}, bool(heal)]

    @staticmethod
    def _opened_record(trace: dict, events: list, name: str) -> dict:
        """The Playground's recording of a run read from a trace (read_trace, trace_events): what a live run
        records, plus the file's token pieces (the board draws with them) and the trace itself (saved again as
        read). A setting of the wrong kind in a hand-edited file reads as unknown in the caption."""
        settings = trace["settings"]
        steps = settings.get("steps_per_block")
        record = {"prompt": trace["prompt"], "steps_per_block": steps if isinstance(steps, int) else None,
                  "events": events, "mode": trace["mode"], "settings": settings, "prompt_ids": trace["prompt_ids"],
                  "healed": trace["healed"], "heal": bool(trace["healed"]), "pieces": trace["pieces"],
                  "trace": trace, "stopped": events[-1].kind != "done",  # (what the events say, not "finished")
                  # one piece function per opened file, kept with it: cell_html caches its cells by it (a new
                  # function at every redraw missed that cache, and filled it)
                  "piece": lambda i, pieces=trace["pieces"]: pieces.get(str(i), f"<id {i}: no piece>")}
        try:
            caption = run_caption(trace["mode"], settings, settings.get("anchor_first") is True,
                                  settings.get("draft_steps"), trace["healed"])
        except (KeyError, TypeError, ValueError):  # a setting missing or of another kind: the mode alone
            caption = MODE_LABELS.get(trace["mode"], trace["mode"])
        model = (trace.get("engine") or {}).get("checkpoint") if isinstance(trace.get("engine"), dict) else None
        record["caption"] = f"{caption} · opened from {name}" + (f" (a run of {model})" if model else "")
        return record

    @staticmethod
    def drop_trace(tab):
        """A new Playground run takes the saved trace's file away (save again for the new run); a slider released on
        another tab re-runs nothing there, so the file stays."""
        return gr.File(value=None, visible=False) if tab == "playground" else gr.skip()
