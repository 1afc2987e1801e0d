"""Handlers of the measuring panels: the Race here; the audit's, the Sweep's, Cost's and Model's are inherited
(ui/audit_panel.py, ui/sweep_panel.py, ui/cost_model_panel.py). Thin generators over the engine, twotower.bench and
twotower.sweep (no decoding logic of their own; the Race's timing is bench's, see `_timed`);
`ui.handlers.Handlers` adds the Playground's on top of them.

Like the Playground's, they keep nothing per session (a Race's numbers travel in a gr.State) but the run going in
each session's Race, audit and Sweep, for their Stop (ui/run_tracker.StopRequests), while it runs.
"""

from __future__ import annotations

import functools
import statistics
import time

import gradio as gr

from twotower.engine import check_decoding_settings
from twotower.metrics import token_agreement
from twotower.token_healing import stream_keywords
from twotower.validation import check_int

from .components import from_api, say_refused
from .plots import race_bars
from .panel_common import (FRAME_INTERVAL_S, HEAL_LABEL, given, stopped_before_start, stopped_note, switch, unavailable,
                           whole)
from .render import error_html, note_html
from .race_csv import race_csv_text, race_rows
from .render_panels import healed_sentence, race_html, stale_note
from .run_tracker import RunTracker, StopRequests, Stopped, TrackedEngine
from .audit_panel import AuditPanel
from .cost_model_panel import CostModelPanel
from .sweep_panel import SweepPanel

STOP_WAIT_S = 10.0  # a Stop waits this long at most for its run's next decoding step
RACE_MODES = ("diffusion", "diffusion_anchored", "speculative", "mock_ar")  # raced against AR, in this order
# contestants that are a mode with a setting: (engine mode, extra settings)
RACE_VARIANTS = {"diffusion_anchored": ("diffusion", {"anchor_first": True})}
RACE_STOPPED = "Stopped: the modes above were timed before Stop; race again for the rest."
RACE_STOPPED_EMPTY = "Stopped before any mode was timed; race again."


class PanelHandlers(AuditPanel, CostModelPanel, SweepPanel):
    """The measuring panels' handlers; one object serves every browser session (it holds the read-only engine)."""

    frame_interval_s = FRAME_INTERVAL_S  # live views (Playground, audit) send a frame at most this often

    def __init__(self, engine):
        # every panel's runs count in one tracker: a timing can then tell whether another run shared the machine
        self.engine = TrackedEngine(engine, RunTracker())
        self._stops = StopRequests()  # each panel's run going in each session, for its Stop and for a newer run
        # session -> the inputs of its refused audit press, said in the audit's note box while an audit went on:
        # Gradio runs that press's audit once the other has ended (trigger_mode always_last), reading the inputs
        # then: with the same ones it says nothing more; with others (typed since) it runs as any press does
        self._audit_refusal_said: dict[str, tuple] = {}
        # (session, panel) -> what the panel's last run showed: the audit's summary, the Cost table, the Sweep's
        # notes; a refused run's message goes over it (_over_shown)
        self._shown: dict[tuple[str, str], str] = {}
        # a token's piece is fixed for the loaded model; boards and audits look up the same few hundred again
        self.piece = functools.lru_cache(maxsize=None)(engine.tokenizer.piece)

    def _prompt(self, prompt: str, heal: bool = True) -> tuple[list[int], str, dict]:
        """Validate the prompt and heal it unless `heal` is off (twotower/token_healing.py; on by default in every
        panel, as in the CLI; the Playground, the Race and the audit have a checkbox, the Sweep always heals): (the
        ids the run reads, the healed prefix or "", the stream's healing keyword)."""
        ids, healing = self.engine.ids_to_run(prompt, heal)
        return ids, healing.prefix if healing else "", stream_keywords(healing)

    def _stream(self, mode: str, prompt: str, settings: dict, engine=None, heal: bool = True):
        """Validate and heal the prompt (`_prompt`) and open the sampler (on `engine`, by default the app's):
        (ids, healed prefix, events). ValueError / ImportError carry the user's message."""
        ids, healed, healing = self._prompt(prompt, heal)
        return ids, healed, (engine or self.engine).stream(mode, ids, **settings, **healing)

    # A panel's Stop (queue-free; Gradio's cancel is not used, see ui/run_tracker.py): that panel's run in this
    # session ends at its next decoding step and shows itself stopped. The listener returns once the run has
    # ended (at most STOP_WAIT_S), so that the "stopped" line drawn next is over the run's last view.
    def stop_race(self, request: gr.Request = None):
        self._stops.request(getattr(request, "session_hash", None), "race", wait_s=STOP_WAIT_S)

    def stop_sweep(self, request: gr.Request = None):
        self._stops.request(getattr(request, "session_hash", None), "sweep", wait_s=STOP_WAIT_S)

    def stop_audit(self, request: gr.Request = None):
        self._stops.request(getattr(request, "session_hash", None), "audit", wait_s=STOP_WAIT_S)

    # The panel's button pressed (queue-free, before its run is queued; race_start and sweep_start for the Race
    # and the Sweep): a Stop pressed earlier is not for the new run, and a run its inputs accept replaces the
    # session's run going, which stops at its next step (pressed during a Sweep, a new grid waited for the whole
    # old one, unannounced). A run its inputs refuse stops nothing: its message is all it costs.
    def _pressed(self, request, panel: str, accepted: bool) -> None:
        self._stops.pressed(getattr(request, "session_hash", None), panel, stop_going=accepted)

    def _refused_note(self, request, panel: str, name: str, exc: Exception):
        """A refused press's note for the panel's stale-note box (its start listener's output), while the panel's
        run goes on: the press itself waits for that run's end before its run says why it was refused (a Sweep's
        minutes later). With no run going the refusal is said at once by the run, and this is left alone."""
        if not self._stops.going(getattr(request, "session_hash", None), panel):
            return gr.skip()
        return error_html(f"Not run: {exc}. The {name} going runs on.")

    def _keep_shown(self, session, panel: str, html: str) -> None:
        """What the panel's run showed, for a refused run of the session to keep under its message (a caller
        without a session keeps nothing: it would show another caller's)."""
        if session is not None:
            self._shown[(session, panel)] = html

    def _over_shown(self, session, panel: str, exc: Exception, below: str, first=None) -> str:
        """A refused run's message, over what the panel's last run of the session showed (its `below` label first);
        where there is none, over `first()`, what the page showed before any run (None: the message alone)."""
        shown = self._shown.get((session, panel))
        if shown is None and first is not None:
            shown = first()
        return error_html(str(exc)) + ("" if shown is None else note_html(below) + shown)

    def race_stopped(self, view: str):
        """Stop during a Race: the cards timed so far stay; the "timing …" line says the Race was stopped (and,
        stopped while AR was being timed, that no card is there, instead of "the modes above")."""
        return stopped_note(view, RACE_STOPPED if 'class="tt-card"' in (view or "") else RACE_STOPPED_EMPTY)

    # ---------------------------------------------------------------- stale results
    # Race and Sweep read the shared sliders when their button is pressed; what they read is kept per session so
    # that moving a slider afterwards can say the results on screen were measured at other values.
    @staticmethod
    def race_settings(gamma, block_size, steps_per_block, max_new_tokens, prompt=None, heal=None):
        """At a Race's start: (the settings it reads, no stale note). Its contestants and timed runs are not
        among them: each card names its mode and shows its runs' spread."""
        return given(gamma=gamma, block_size=whole(block_size), steps_per_block=whole(steps_per_block),
                      max_new_tokens=whole(max_new_tokens), prompt=prompt, heal=heal), ""

    @staticmethod
    def race_staleness(used, *current):
        return stale_note(used, PanelHandlers.race_settings(*current)[0], "Race")

    # ---------------------------------------------------------------- Race
    def _timed(self, mode: str, ids, max_new_tokens: int, settings: dict, repeats: int, engine=None):
        """twotower.bench's method: an untimed warm-up, then `repeats` timed drains (nothing drawn); the median
        run, one that happened (its tokens are the card's): of an even count the faster middle one, where bench
        takes the mean of the middle two rounds' speeds (the same figure for the default 3 runs).
        A generator: None before each timed run (where Gradio can close the Race if its page went away; Stop
        ends a run at any step through the engine's watch), then
        the result, `disturbed` when another run of the app was going during a timed run. engine: the caller's
        own TrackedEngine (a Race's, whose runs do not disturb each other); by default a fresh one."""
        from twotower.bench import timed_generation

        engine = engine or self.engine.own()
        timed_generation(engine, mode, ids, max_new_tokens, settings)
        runs, disturbed = [], False
        for _ in range(repeats):
            yield None
            before = engine.others()
            runs.append(timed_generation(engine, mode, ids, max_new_tokens, settings))
            disturbed = disturbed or engine.disturbed(before)
        seconds = [r["seconds"] for r in runs]
        run = runs[seconds.index(statistics.median_low(seconds))]
        # the tokens that were timed (EOS ignored): the count, the text, the diff and the agreement all read
        # the same tokens as the speed (they once read the text cut at EOS: "1 tokens" at 115 tokens/s)
        tokens = run["rows"][0]
        eos = self.engine.eos_token_id
        yield {"mode": mode, "tokens": tokens, "eos_at": tokens.index(eos) if eos in tokens else None,
                "tokens_per_s": run["new_tokens"] / run["seconds"] if run["seconds"] > 0 else None,
                "total_s": run["seconds"], "nfe": run["nfe"], "ttft_s": run["ttft_s"],
                # the spread of the timed runs: one run's speed alone can be any of them on a busy host
                "tokens_per_s_range": (run["new_tokens"] / max(seconds), run["new_tokens"] / min(seconds))
                if repeats > 1 and min(seconds) > 0 else None,
                "mean_acceptance_length": run.get("mean_acceptance_length"),  # speculative only
                "disturbed": disturbed}

    def _race_inputs(self, prompt, modes, gamma, block_size, steps_per_block, max_new_tokens, repeats, heal=True):
        """(prompt ids, modes in racing order, their settings, max new tokens, timed runs per mode, (the healing
        checkbox, checked, the healed prefix or "", the healing keyword every mode's stream takes)), or the
        ValueError a Race is refused with."""
        order = ["ar"] + [m for m in RACE_MODES if m in (modes or [])]
        settings = {"gamma": gamma, "block_size": whole(block_size), "steps_per_block": whole(steps_per_block)}
        max_new_tokens = whole(max_new_tokens)
        # healed as the Playground's prompt (its checkbox on): the same first token
        heal = switch(HEAL_LABEL, heal)
        ids, healed, healing = self._prompt(prompt, heal)
        repeats = check_int("timed runs per mode", 1 if repeats is None else whole(repeats))
        # every setting before AR's timing: a bad γ once came back only after AR had been timed
        check_int("max_new_tokens", max_new_tokens)  # the engine's name for it, as every other panel says
        if len(order) > 1:  # AR alone reads no diffusion setting
            check_decoding_settings(**settings)
        return ids, order, settings, max_new_tokens, repeats, (heal, healed, healing)

    def race_start(self, modes, repeats, gamma, block_size, steps_per_block, max_new_tokens, prompt=None, heal=True,
                   request: gr.Request = None):
        """The Race button: race_settings for a Race that will run; a Race its inputs refuse leaves the settings
        of the Race on screen, and its stale note, as they were (they were replaced by the refused ones, so
        putting a value back read as "settings moved"). See _pressed for the run going."""
        try:
            *_, (heal_on, healed, _) = self._race_inputs(prompt, modes, gamma, block_size, steps_per_block,
                                                         max_new_tokens, repeats, heal)
            # a prompt with nothing to heal runs the same either way: the checkbox moved is then no setting moved
            # (as the Playground's board stays)
            heals = bool(healed) if heal_on else bool(self._prompt(prompt)[1])
        except ValueError as exc:
            self._pressed(request, "race", accepted=False)
            return gr.skip(), self._refused_note(request, "race", "Race", exc)
        self._pressed(request, "race", accepted=True)
        return self.race_settings(gamma, block_size, steps_per_block, max_new_tokens, prompt, heal if heals else None)

    def race(self, prompt, modes, gamma, block_size, steps_per_block, max_new_tokens, repeats=1, previous=None,
             heal=True, request: gr.Request = None):
        """Each mode against AR, one after the other, same settings, greedy with EOS ignored (every mode
        writes the same number of tokens). Yields (cards, bar chart, measured numbers for the Cost panel).
        previous: the session's earlier measurements; a mode this Race does not time keeps its number and the
        label of the Race that measured it. They also hold the cards on screen ("view"), which a refused Race
        shows again under its message: a bad prompt or setting costs no earlier result.
        heal: token healing of the prompt's last token, in every mode; False races the prompt as typed."""
        results, watch, view = [], None, None
        try:
            ids, order, settings, max_new_tokens, repeats, (heal, healed, healing) = self._race_inputs(
                prompt, modes, gamma, block_size, steps_per_block, max_new_tokens, repeats, heal)
            # AR alone reads (and checks) no diffusion setting, so its label quotes none ("γ = nan" was quoted)
            read = (f"γ = {gamma}, S = {settings['block_size']}, {settings['steps_per_block']} steps per block, "
                    if len(order) > 1 else "")
            typed = len(ids) + bool(healed)  # the prompt's tokens as typed (healing took its last one back)
            label = (f"measured on this machine by the Race at {time.strftime('%H:%M:%S')} ({typed}-token prompt, "
                     f"{max_new_tokens} new tokens, {read}{self.engine.model.ctx_device})")
            # Stopped here if its Stop came while it waited in the queue
            measured, watch = previous, self._stops.begin(getattr(request, "session_hash", None), "race")
            engine = self.engine.own(watch)  # its own tally, and its Stop (or a newer Race) ends it at a step
            for mode in order:
                view = race_html(results, self.engine.decode, f"timing {mode}…", progress=True, healed=healed)
                if measured is not previous:  # what a Stop during this mode leaves on screen
                    measured["view"] = stopped_note(view, RACE_STOPPED)
                # no chart until a mode is timed (an empty one drew axes of mode -1 … 6 and 0–4 tokens/s)
                chart = race_bars(results) if any(r.get("tokens_per_s") for r in results) else None
                yield view, chart, measured if measured is not previous else gr.skip()
                engine_mode, extra = RACE_VARIANTS.get(mode, (mode, {}))
                try:
                    own = {**settings, **extra} if mode != "ar" else {}
                    for timed in self._timed(engine_mode, ids, max_new_tokens, {**own, **healing}, repeats, engine):
                        if timed is None:  # between two runs: nothing to redraw (Gradio may close a Race here)
                            yield gr.skip(), gr.skip(), gr.skip()
                    results.append({**timed, "mode": mode})  # the contestant's name: cards, bars, Cost
                    # each mode's number reaches the Cost panel as soon as it is timed: a Stop keeps it (and
                    # the rows of this Race's CSV)
                    measured = self._measured(previous, results, label)
                    measured["race"] = race_rows(results, label, heal, healed)
                except ImportError as exc:
                    results.append({"mode": mode, "tokens": [], "error": unavailable(f"{mode} mode", exc)})
        except Stopped:  # its Stop, or a newer Race of the session: the cards timed so far, marked stopped
            if watch is None:  # stopped in the queue: the last Race's cards, said to be theirs
                yield stopped_before_start("Race", "cards") + ((previous or {}).get("view") or ""), gr.skip(), gr.skip()
                return
            yield self.race_stopped(view), gr.skip(), gr.skip()
            return
        except ValueError as exc:  # refused before anything was timed: the message over the last Race's cards
            say_refused(str(exc), from_api(request))
            yield error_html(str(exc)) + ((previous or {}).get("view") or ""), gr.skip(), gr.skip()
            return
        finally:
            if watch is not None:
                watch.end()
        ref = results[0]["tokens"]
        for r in results[1:]:
            if not r.get("error"):
                r["agreement"] = token_agreement(r["tokens"], ref)
        note = (f"Greedy, EOS ignored while timing; an untimed warm-up, then {repeats} timed run(s) per mode "
                f"(median; of an even count the faster middle run), one mode at a time; agreement: the share of "
                f"positions holding AR's token; {label}."
                + ("" if len(results) > 1 else " AR alone: tick a contestant to race it against AR.")
                + (f" {healed_sentence(healed)}" if healed else ""))
        view = race_html(results, self.engine.decode, note, healed=healed)
        measured = self._measured(previous, results, label)
        measured["view"], measured["race"] = view, race_rows(results, label, heal, healed)
        yield view, race_bars(results), measured

    def race_csv(self, measured):
        """The session's last Race (the modes it timed, Stop or not) as a CSV for download; with none, a warning
        and the file box stays."""
        rows = (measured or {}).get("race")
        if not rows:
            gr.Warning("No Race run yet in this session: race first, then download its numbers.")
            return gr.skip()
        return self._download("race-", "race.csv", race_csv_text(rows), "the cards stay; copy them instead")

    def _measured(self, previous, results, label: str) -> dict:
        """The session's Race numbers for the Cost panel: `previous` with each mode timed in `results` replaced."""
        measured = {key: dict((previous or {}).get(key) or {}) for key in ("tokens_per_s", "labels", "devices")}
        for r in results:
            if r.get("tokens_per_s"):
                measured["tokens_per_s"][r["mode"]], measured["labels"][r["mode"]] = r["tokens_per_s"], label
                # a mode that runs the denoiser too is a CPU figure if either tower ran on the CPU
                model = self.engine.model
                towers = {model.ctx_device.type} if r["mode"] == "ar" else {model.ctx_device.type, model.den_device.type}
                measured["devices"][r["mode"]] = "cpu" if "cpu" in towers else model.ctx_device.type
        return measured
