"""Event handlers of the web app: thin generators over Engine.stream (no decoding logic here).

One `Handlers` object is shared by every browser session; it holds only the loaded engine, which is
read-only at inference. Everything a session owns (its recorded events, its last Race numbers) travels
in gr.State values passed in and out, and every run builds its own cache and torch.Generator inside
the sampler, so concurrent users cannot see each other's runs. This module holds the Playground's
handlers; the measuring panels' (Race, audit) are in ui/panel_handlers.py, the Sweep's in ui/sweep_panel.py,
Cost's and Model's in ui/cost_model_panel.py; saving and opening a run in ui/saved_runs.py.
"""

from __future__ import annotations

import gradio as gr

from twotower.engine import normalise_mode
from twotower.token_healing import completion_text
from twotower.trace import MODE_SETTINGS
from twotower.validation import check_int

from .board import FRAME_KINDS, Board, count_frames, fold_event
from .board_note import BoardNote
from .components import from_api, refused as refused_error, say_refused
from .panel_common import HEAL_LABEL, FramePacer, run_settings, switch, unavailable, whole
from .panel_handlers import PanelHandlers
from .playground_common import board_prompt, recorded_board, replay_scrubber, run_caption
from .render import board_html, error_html, note_html, stats_html
from .run_tracker import Stopped
from .saved_runs import OPENED_NOTE, SavedRuns

LIVE_NOTE = ("Times include drawing the board live (at most 25 frames a second; the scrubber has every step); "
             "the Race panel times without rendering.")


class Handlers(BoardNote, SavedRuns, PanelHandlers):
    """The Playground's handlers (generate, re-run, replay, Stop) beside the measuring panels' it inherits."""

    def __init__(self, engine):
        super().__init__(engine)
        # One live Playground run per browser session, in the StopRequests every panel uses: a newer run
        # (Generate, or a slider release while a run is going) supersedes the older one, which stops at its next
        # step. The colour radio's latest value per session with a live run: the run draws its next frames in it
        # (it kept the colouring it started with, so a change mid-run lasted one frame)
        self._live_colour: dict[str, str] = {}

    def forget_session(self, request: gr.Request = None):
        """A page closed (demo.unload): what the server kept for its session goes, and its runs stop."""
        session = getattr(request, "session_hash", None)
        if session is not None:
            self._stops.forget(session)
            self._live_colour.pop(session, None)
            self._audit_refusal_said.pop(session, None)
            for key in [key for key in self._shown if key[0] == session]:  # every panel's (PanelHandlers._shown)
                self._shown.pop(key, None)
            self.board_started_over(session)

    def _view(self, board: Board, prompt: str, colour_by: str, steps_per_block, healed: str = "",
              record: dict | None = None) -> str:
        """The board drawn with this app's tokenizer, or with the pieces of the saved run `record` was opened from
        (its model's, which may be another than the one loaded here)."""
        piece, eos = self.piece, self.engine.eos_token_id
        pieces = (record or {}).get("pieces")
        if pieces is not None:
            piece = record["piece"]
            # the file's EOS (traces record it since 2026-12-06); an older one's is this tokenizer's where the
            # file's pieces agree there, else unknown (not marked)
            eos = (record.get("trace") or {}).get("eos_token_id")
            if not isinstance(eos, int) or isinstance(eos, bool):
                eos = self.engine.eos_token_id
                eos = eos if pieces.get(str(eos), self.piece(eos)) == self.piece(eos) else None
        return board_html(board, piece, eos, colour_by=colour_by, steps_per_block=whole(steps_per_block),
                          prompt=prompt, healed=healed)

    # ---------------------------------------------------------------- Playground
    def generate(self, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                 colour_by="step", anchor_first=False, previous=None, heal=True, top_k=None, top_p=None,
                 request: gr.Request = None):
        """Stream one generation: yields (view, statistics, completion, recorded run, scrubber) per step.
        anchor_first: diffusion's variant whose blocks start with the context tower's own next token.
        heal: token healing of the prompt's last token (twotower/token_healing.py); False runs the prompt as typed.
        top_k / top_p: the sampled draw's filters (0 and 1, or None: every token), read at temperature > 0.
        previous: the session's recorded run (a gr.State, not an API input), whose board a refusal shows
        again under its message."""
        session = getattr(request, "session_hash", None)
        try:  # supersedes the session's earlier run, which stops at its next step
            stop = self._stops.begin(session, "playground")  # this run's Stop (stop_playground), or a newer run
        except Stopped:  # Stop was pressed while this run waited in the queue: it never starts
            self.board_started_over(session)  # (the board is the last run's)
            yield (gr.skip(),) * 5
            return
        # an earlier run's radio value, written by a recolour that saw that run going as it ended, is not this run's
        self._live_colour.pop(session, None)
        try:
            yield from self._generate(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens,
                                      temperature, seed, colour_by, session, anchor_first, previous, stop, heal,
                                      top_k, top_p, api=from_api(request))
        finally:
            stop.end()
            if not self._stops.going(session, "playground"):  # (a newer run keeps the radio's latest value)
                self._live_colour.pop(session, None)

    def stop_playground(self, request: gr.Request = None):
        """The Playground's Stop, on the server. Gradio's cancel, sent with it, drops the run's stream in the page
        at once, but it missed a run pressed a moment before (a Generate, or a mode changed, then Stop: 1 in 6 to
        15 tries ran on to its end); the session's run now stops at its next step, and one still waiting in the
        queue never starts."""
        self._stops.request(getattr(request, "session_hash", None), "playground")

    def supersede(self, tab, request: gr.Request = None):
        """A setting released on the Playground tab: this session's run in flight stops at its next step (the
        re-run that follows takes its place). On another tab nothing is stopped, as nothing is re-run."""
        if tab == "playground":  # and a Stop pressed before this is not for the new run
            self._stops.pressed(getattr(request, "session_hash", None), "playground", stop_going=True)

    def release_pressed(self, tab, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature,
                        seed, colour_by="step", anchor_first=False, previous=None, heal=True, top_k=None,
                        top_p=None, request: gr.Request = None):
        """A setting released (queue-free, before `rerun`): on the Playground tab the saved trace's file goes and the
        session's run in flight stops (supersede), unless the release changes nothing on a finished board, which
        `rerun` then leaves: its trace file stays, and a run pressed meanwhile (its first frame not yet drawn, so
        the board still the last run's) goes on. Returns the trace file's update."""
        if tab != "playground" or self._board_shows(previous, prompt, mode, gamma, block_size, steps_per_block,
                                                    max_new_tokens, temperature, seed, anchor_first, heal,
                                                    top_k, top_p):
            return gr.skip()
        self.supersede(tab, request)
        return self.drop_trace(tab)

    def rerun(self, tab, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
              colour_by="step", anchor_first=False, previous=None, heal=True, top_k=None, top_p=None,
              request: gr.Request = None):
        """A slider release re-runs the Playground's prompt only while its tab is open: from the Race or the
        Sweep (whose own runs read the same sliders) a hidden run would share the CPU with their timings."""
        if tab != "playground" or self._board_shows(previous, prompt, mode, gamma, block_size, steps_per_block,
                                                    max_new_tokens, temperature, seed, anchor_first, heal,
                                                    top_k, top_p):
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        yield from self.generate(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                                 colour_by, anchor_first, previous, heal, top_k, top_p, request)

    @staticmethod
    def _board_shows(previous, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                     anchor_first, heal=True, top_k=None, top_p=None) -> bool:
        """Whether the board holds a finished run of exactly these inputs. Gradio sends a slider's release when its
        number box loses focus, changed or not: tabbing through the settings re-ran the prompt three times."""
        events = (previous or {}).get("events") or []
        if previous and previous.get("trace") is not None and not previous.get("refused"):  # an opened run stays
            # while the panel's inputs are those it was opened beside (tabbing through them changes nothing)
            return previous.get("panel") is not None and previous["panel"] == Handlers._panel_key(
                prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, anchor_first,
                heal, top_k, top_p)
        if not events or events[-1].kind != "done" or previous.get("stopped") or previous.get("refused"):
            return False  # nothing finished there (a run in flight was superseded by this release: run anew), or
            # a refusal's message over it
        try:
            settings = run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, top_k,
                                    top_p)
            read_nothing_of_diffusion = normalise_mode(mode) in ("ar", "mock_ar")
        except ValueError:  # a refused setting or mode: the run says why
            return False
        asked, shown = {**settings, "anchor_first": anchor_first}, dict(previous.get("settings") or {})
        # the healing checkbox moved: the board is the other setting's run, unless nothing was healed there (the
        # prompt's last token has nothing to heal: the run as typed is the same run). A record from before the
        # checkbox, with no "heal" kept, matches neither setting
        if previous.get("heal") is not bool(heal) and not (previous.get("heal") and previous.get("healed") == ""):
            return False
        if read_nothing_of_diffusion:  # moving γ, S, the steps or the anchor re-ran the same AR text (the board's
            for name in MODE_SETTINGS["diffusion"]:  # caption names none of them)
                asked.pop(name, None)
                shown.pop(name, None)
        return (previous.get("prompt"), previous.get("mode"), shown) == (prompt, mode, asked)

    def _generate(self, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                  colour_by, session, anchor_first=False, previous=None, stopped=lambda: False, heal=True,
                  top_k=None, top_p=None, api=False):
        """generate's run; api: the caller is gradio_client (components.from_api), to whom a refusal is raised and
        a run superseded by its newer call ends on a frame marked stopped (its last frame read as running)."""
        record = {"prompt": prompt, "steps_per_block": steps_per_block, "events": []}
        board = Board()
        try:
            settings = run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed, top_k,
                                    top_p)
            anchor_first = switch("anchor each block's first token", anchor_first)  # its label
            heal = switch(HEAL_LABEL, heal)
            ids, healed, events = self._stream(mode, prompt, {**settings, "anchor_first": anchor_first}, heal=heal)
            record["caption"] = run_caption(mode, settings, anchor_first, self.engine.model.config.default_draft_steps,
                                            healed)
            # what a saved trace says of the run (save_trace): the mode and settings it ran with, its prompt's ids
            # (those the model read: a healed prompt's last token is the completion's first)
            record.update(mode=mode, settings={**settings, "anchor_first": anchor_first}, prompt_ids=ids, healed=healed,
                          heal=heal)
            shown = board_prompt(record)
            pacer = FramePacer(self.frame_interval_s)
            for event in events:  # the sampler runs one step per iteration: nothing is precomputed
                if stopped():  # this session started a newer run, or pressed Stop: stop within a step
                    if api and record["events"]:  # (a page's board is the newer run's by now: left alone)
                        view, scrubber, stats, record, completion = self._stopped(record, colour_by)
                        yield view, stats, completion, record, scrubber
                    return
                record["events"].append(event)
                fold_event(board, event)
                if event.kind in FRAME_KINDS and pacer.due():  # steps faster than the eye are drawn together
                    # the previous run's scrubber goes away while this one runs
                    scrubber = gr.Slider(visible=False) if board.frames == 1 else gr.skip()
                    colour_by = self._live_colour.get(session, colour_by)  # the radio may have moved since
                    yield (self._view(board, shown, colour_by, steps_per_block, healed),
                           stats_html(board, run=record["caption"]),
                           self._completion(board.finished_tokens(), record), record, scrubber)
        except (ImportError, ValueError) as exc:
            # bad input: the message over the previous run's board (drawn again from its recording); its
            # completion and statistics stay as they were, its recording too (marked as under a message) and
            # nothing of it is lost
            message = unavailable(f"{mode} mode", exc) if isinstance(exc, ImportError) else str(exc)
            self.board_started_over(session)
            say_refused(message, api)  # the board is the last run's, under the message
            yield self._refusal(message, previous, colour_by)
            return
        scrubber = replay_scrubber(count_frames(record["events"]))
        colour_by = self._live_colour.get(session, colour_by)
        yield (self._view(board, shown, colour_by, steps_per_block, healed), stats_html(board, LIVE_NOTE, run=record["caption"]),
               self._completion(board.new_tokens or [], record), record, scrubber)

    def _refusal(self, message: str, previous, colour_by: str) -> tuple:
        """(view, statistics, completion, recorded run, scrubber) of a refused Generate or Open: the message over
        the last run's board, drawn again from its recording; its completion and statistics stay, its recording
        too (marked as under a message) and nothing of it is lost."""
        if previous and previous.get("events") and previous["events"][-1].kind != "done":
            # the run this one superseded, cut short (it returned at its next step): drawn as stopped, as
            # Stop draws it (it was left "being denoised", its statistics "running")
            view, scrubber, stats, record, completion = self._stopped(previous, colour_by)
            return error_html(message) + view, stats, completion, record, scrubber
        if previous and previous.get("events"):
            # the board under the message is the whole last run, so the scrubber goes to its last step (it
            # stayed at the step replayed before, under a board that no longer showed that step)
            frames = count_frames(previous["events"])
            scrubber = gr.Slider(value=frames) if frames >= 2 else gr.skip()
            # the same recording, marked: a release that changes nothing then re-runs it, which clears the
            # message (it stayed over the board once the prompt was typed back)
            under_message = {**previous, "refused": True}
            return (error_html(message) + self.replay(previous, None, colour_by), gr.skip(), gr.skip(),
                    under_message, scrubber)
        return error_html(message), gr.skip(), gr.skip(), gr.skip(), gr.skip()

    def replay(self, record, frame, colour_by="step", request: gr.Request = None):
        """Redraw the recorded run as it was after its `frame`-th step (from gr.State, no model call)."""
        if not record or not record.get("events"):
            return note_html("Nothing recorded yet: generate first, then drag the step slider.")
        frames = count_frames(record["events"])
        refused = ""
        try:  # the scrubber sends whole numbers; an API caller's NaN or 1.5 was a ValueError or a silent int()
            frame = None if frame is None else check_int("the replay step", whole(frame), minimum=None)
        except ValueError as exc:  # the whole run stays on screen under the message
            if from_api(request):  # (as every panel's refusal: components.say_refused)
                raise refused_error(str(exc)) from None
            refused, frame = error_html(str(exc)), None
        upto = None if frame is None or frame >= frames else max(frame, 1)
        view = self._view(recorded_board(record, upto), board_prompt(record), colour_by, record.get("steps_per_block"),
                          record.get("healed", ""), record)
        if upto is None:
            return refused + view
        # the statistics beside the board stay the whole run's: say which step the board shows
        return note_html(f"Replaying step {upto} of {frames}; the statistics beside it are those of the whole run.") + view

    def recolour(self, record, frame, colour_by="step", request: gr.Request = None):
        """The colour radio changed: redraw the recorded run in the new colours; with no run recorded the
        view keeps what it shows (an error message from a refused Generate stays readable)."""
        session = getattr(request, "session_hash", None)
        if self._stops.going(session, "playground"):  # a run going: its next frame, and its last, follow the
            self._live_colour[session] = colour_by  # radio (a replay of its record here showed an old scrubber's step)
            return gr.skip()
        if not record or not record.get("events"):
            return gr.skip()
        return self.replay(record, frame, colour_by)

    def after_stop(self, record, colour_by="step"):
        """Stop was pressed: redraw the board with its unfinished block marked stopped, freeze the statistics
        and the completion, and offer the scrubber over what was recorded. Returns (view, scrubber, statistics,
        record, completion). The record keeps `stopped`, so a redraw of its last step (colour radio, scrubber)
        marks the block the same way."""
        events = (record or {}).get("events") or []
        if not events or events[-1].kind == "done" or record.get("trace") is not None:  # (an opened run: none going)
            # nothing ran, or the run had finished (Stop pressed late): keep the view
            return (gr.skip(),) * 5
        # Gradio's cancel is not awaited before this runs: the run may still be in its step, appending to this very
        # record (stop_playground, just before, stops it there); what is drawn here is what the record keeps
        return self._stopped(record, colour_by)

    def _stopped(self, record: dict, colour_by: str):
        """(view, scrubber, statistics, record, completion) of a run that ended before its last step."""
        record = {**record, "events": list(record["events"]), "stopped": True}
        board = recorded_board(record)
        view = self._view(board, board_prompt(record), colour_by, record.get("steps_per_block"),
                          record.get("healed", ""), record)
        note = OPENED_NOTE if record.get("trace") is not None else "Stopped; the app is ready for the next run."
        stats = stats_html(board, note, status="stopped", run=record.get("caption"))
        return (view, replay_scrubber(count_frames(record["events"])), stats, record,
                self._completion(board.finished_tokens(), record))

    def _completion(self, tokens, record: dict) -> str:
        """The completion box: the text after the typed prompt (a healed run's first token re-spells the prompt's
        last, which the box does not repeat)."""
        trace = record.get("trace")
        if trace is not None:  # an opened run: the file's own text (its model's tokenizer, maybe not this one)
            return trace["completion"] if isinstance(trace.get("completion"), str) else ""
        return completion_text(self.engine.decode(tokens), record.get("healed", ""))


