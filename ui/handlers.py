"""Event handlers of the web app: thin generators over Engine.stream (no decoding logic here).

One `Handlers` object is shared by every browser session; it holds only the loaded engine, which is
read-only at inference. Everything a session owns (its recorded events, its last Race numbers) travels
in gr.State values passed in and out, and every run builds its own cache and torch.Generator inside
the sampler, so concurrent users cannot see each other's runs.
"""

from __future__ import annotations

import itertools
import re
import statistics
import tempfile
import threading
import time
from pathlib import Path

import gradio as gr

from twotower.engine import LAYER_KEY
from twotower.metrics import token_agreement
from twotower.validation import check_int

from .board import FRAME_KINDS, Board, count_frames, fold, fold_event, verify_rounds
from .cost import cost_table
from .examples import EXAMPLE_PROMPTS
from .plots import acceptance_histogram, cost_bars, race_bars
from .render import PROGRESS_CLASS, board_html, error_html, esc, kv_table_html, note_html, stats_html
from .render_panels import MODE_LABELS, acceptance_summary_html, audit_html, cost_html, race_html

RACE_MODES = ("diffusion", "diffusion_anchored", "speculative", "mock_ar")  # raced against AR, in this order
# contestants that are a mode with a setting: (engine mode, extra settings)
RACE_VARIANTS = {"diffusion_anchored": ("diffusion", {"anchor_first": True})}
MAX_NEW_TOKENS = 512  # the max new tokens slider's end (ui/app.py), what the memory plan's context allows for
LIVE_NOTE = "Times include drawing every step live; the Race panel times without rendering."


def _whole(value):
    """Sliders send floats; integral ones become ints, anything else goes to the engine to be refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed) -> dict:
    return dict(gamma=gamma, block_size=_whole(block_size), steps_per_block=_whole(steps_per_block),
                max_new_tokens=_whole(max_new_tokens), temperature=temperature,
                seed=None if seed in (None, "") else _whole(seed))


def run_caption(mode: str, settings: dict, anchor_first: bool = False, draft_steps: int | None = None) -> str:
    """The settings a Playground run used, for its statistics: the board stays after the sliders move on."""
    from twotower.engine import normalise_mode

    try:
        mode = normalise_mode(mode)
    except ValueError:
        return str(mode)
    parts = [MODE_LABELS.get(mode, mode)]
    if mode == "diffusion":
        parts += [f"γ {settings['gamma']}", f"S {settings['block_size']}", f"{settings['steps_per_block']} steps per block"]
        parts += ["anchored"] if anchor_first else []
    elif mode == "speculative":  # drafts with the model's passes (the steps slider is diffusion's); γ acts on >1
        parts += [f"S {settings['block_size']}"]
        if draft_steps is not None:
            parts += [f"{draft_steps} draft pass{'' if draft_steps == 1 else 'es'}"]
            parts += [f"draft γ {settings['gamma']}"] if draft_steps > 1 else []
    temperature = settings.get("temperature") or 0
    parts += [f"temperature {temperature}, seed {settings.get('seed')}"] if temperature else ["greedy"]
    return " · ".join(parts)


def unavailable(what: str, exc: Exception) -> str:
    return f"{what} is not available in this build yet ({exc})."


class Handlers:
    def __init__(self, engine):
        self.engine = engine
        self.piece = engine.tokenizer.piece
        # One live Playground run per browser session: a newer run (Generate, or a slider release while
        # a run is going) supersedes the older one, which stops at its next step.
        self._live_run: dict[str, int] = {}
        self._runs = itertools.count(1)
        self._lock = threading.Lock()

    def _claim(self, session: str | None) -> int:
        with self._lock:
            run_id = next(self._runs)
            if session is not None:
                self._live_run[session] = run_id
            return run_id

    def _superseded(self, session: str | None, run_id: int) -> bool:
        return session is not None and self._live_run.get(session) != run_id

    def _release(self, session: str | None, run_id: int) -> None:
        with self._lock:
            if session is not None and self._live_run.get(session) == run_id:
                del self._live_run[session]

    def _view(self, board: Board, prompt: str, colour_by: str, steps_per_block) -> str:
        return board_html(board, self.piece, self.engine.eos_token_id, colour_by=colour_by,
                          steps_per_block=_whole(steps_per_block), prompt=prompt)

    def _stream(self, mode: str, prompt: str, settings: dict):
        """Validate the prompt and open the sampler; ValueError / ImportError carry the user's message."""
        ids = self.engine.encode_prompt(prompt)
        return ids, self.engine.stream(mode, ids, **settings)

    # ---------------------------------------------------------------- Playground
    def generate(self, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                 colour_by="step", anchor_first=False, request: gr.Request = None):
        """Stream one generation: yields (view, statistics, completion, recorded run, scrubber) per step.
        anchor_first: diffusion's variant whose blocks start with the context tower's own next token."""
        session = getattr(request, "session_hash", None)
        run_id = self._claim(session)
        try:
            yield from self._generate(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens,
                                      temperature, seed, colour_by, session, run_id, bool(anchor_first))
        finally:
            self._release(session, run_id)

    def supersede(self, tab, request: gr.Request = None):
        """A setting released on the Playground tab: this session's run in flight stops at its next step (the
        re-run that follows takes its place). On another tab nothing is stopped, as nothing is re-run."""
        if tab == "playground":
            self._claim(getattr(request, "session_hash", None))

    def race_stopped(self, view: str):
        """Stop during a Race: the cards timed so far stay; the "timing …" line says the Race was stopped."""
        return stopped_note(view, "Stopped: the modes above were timed before Stop; race again for the rest.")

    def sweep_stopped(self, message: str):
        """Stop during a Sweep: the points drawn (and their CSV) stay; the progress line says it was stopped."""
        return stopped_note(message, "Stopped: the grid points above were measured before Stop (the CSV holds "
                                     "them; the Pareto flags are those of these points).")

    def rerun(self, tab, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
              colour_by="step", anchor_first=False, request: gr.Request = None):
        """A slider release re-runs the Playground's prompt only while its tab is open: from the Race or the
        Sweep (whose own runs read the same sliders) a hidden run would share the CPU with their timings."""
        if tab != "playground":
            yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        yield from self.generate(prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                                 colour_by, anchor_first, request)

    def _generate(self, prompt, mode, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                  colour_by, session, run_id, anchor_first=False):
        record = {"prompt": prompt, "steps_per_block": steps_per_block, "events": []}
        board = Board()
        try:
            settings = run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed)
            _, events = self._stream(mode, prompt, {**settings, "anchor_first": anchor_first})
            record["caption"] = run_caption(mode, settings, anchor_first, self.engine.model.config.default_draft_steps)
            for event in events:  # the sampler runs one step per iteration: nothing is precomputed
                if self._superseded(session, run_id):
                    return  # this session started a newer run; stop within a step
                record["events"].append(event)
                fold_event(board, event)
                if event.kind in FRAME_KINDS:
                    # the previous run's scrubber goes away while this one runs
                    scrubber = gr.Slider(visible=False) if board.frames == 1 else gr.skip()
                    yield (self._view(board, prompt, colour_by, steps_per_block),
                           stats_html(board, run=record["caption"]),
                           self.engine.decode(board.finished_tokens()), record, scrubber)
        except (ImportError, ValueError) as exc:
            # bad input: the message in the view; the previous run's completion, statistics, recording and
            # scrubber stay as they were (nothing of it is lost)
            message = unavailable(f"{mode} mode", exc) if isinstance(exc, ImportError) else str(exc)
            gr.Warning(message)
            yield error_html(message), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            return
        scrubber = replay_scrubber(count_frames(record["events"]))
        yield (self._view(board, prompt, colour_by, steps_per_block), stats_html(board, LIVE_NOTE, run=record["caption"]),
               self.engine.decode(board.new_tokens or []), record, scrubber)

    def replay(self, record, frame, colour_by="step"):
        """Redraw the recorded run as it was after its `frame`-th step (from gr.State, no model call)."""
        if not record or not record.get("events"):
            return note_html("Nothing recorded yet: generate first, then drag the step slider.")
        frames = count_frames(record["events"])
        upto = None if frame is None or int(frame) >= frames else max(int(frame), 1)
        view = self._view(recorded_board(record, upto), record["prompt"], colour_by, record.get("steps_per_block"))
        if upto is None:
            return view
        # the statistics beside the board stay the whole run's: say which step the board shows
        return note_html(f"Replaying step {upto} of {frames}; the statistics beside it are those of the whole run.") + view

    def recolour(self, record, frame, colour_by="step"):
        """The colour radio changed: redraw the recorded run in the new colours; with no run recorded the
        view keeps what it shows (an error message from a refused Generate stays readable)."""
        if not record or not record.get("events"):
            return gr.skip()
        return self.replay(record, frame, colour_by)

    def after_stop(self, record, colour_by="step"):
        """Stop was pressed: redraw the board with its unfinished block marked stopped, freeze the statistics
        and offer the scrubber over what was recorded. The record keeps `stopped`, so a redraw of its last step
        (colour radio, scrubber) marks the block the same way."""
        events = (record or {}).get("events") or []
        if not events or events[-1].kind == "done":
            # nothing ran, or the run had finished (Stop was for another panel, or late): keep the view
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        record = {**record, "stopped": True}
        board = recorded_board(record)
        view = self._view(board, record["prompt"], colour_by, record.get("steps_per_block"))
        stats = stats_html(board, "Stopped; the app is ready for the next run.", status="stopped",
                           run=record.get("caption"))
        return view, replay_scrubber(count_frames(events)), stats, record

    # ---------------------------------------------------------------- Race
    def _timed(self, mode: str, ids, max_new_tokens: int, settings: dict, repeats: int):
        """twotower.bench's method: an untimed warm-up, then `repeats` timed drains (nothing drawn); the median.
        A generator: None before each timed run (a point where Stop lands, not only after the whole mode), then
        the result."""
        from twotower.bench import timed_generation

        timed_generation(self.engine, mode, ids, max_new_tokens, settings)
        runs = []
        for _ in range(repeats):
            yield None
            runs.append(timed_generation(self.engine, mode, ids, max_new_tokens, settings))
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
                "mean_acceptance_length": run.get("mean_acceptance_length")}  # speculative only

    def race(self, prompt, modes, gamma, block_size, steps_per_block, max_new_tokens, repeats=1, previous=None):
        """Each mode against AR, one after the other, same settings, greedy with EOS ignored (every mode
        writes the same number of tokens). Yields (cards, bar chart, measured numbers for the Cost panel).
        previous: the session's earlier measurements; a mode this Race does not time keeps its number and the
        label of the Race that measured it."""
        order = ["ar"] + [m for m in RACE_MODES if m in (modes or [])]
        settings = {"gamma": gamma, "block_size": _whole(block_size), "steps_per_block": _whole(steps_per_block)}
        max_new_tokens, results = _whole(max_new_tokens), []
        try:
            ids = self.engine.encode_prompt(prompt)
            repeats = check_int("timed runs per mode", _whole(repeats or 1))
            for mode in order:
                yield (race_html(results, self.engine.decode, f"timing {mode}…", progress=True),
                       race_bars(results), gr.skip())
                engine_mode, extra = RACE_VARIANTS.get(mode, (mode, {}))
                try:
                    for timed in self._timed(engine_mode, ids, max_new_tokens,
                                             {**settings, **extra} if mode != "ar" else {}, repeats):
                        if timed is None:  # between two runs: nothing to redraw, but Stop can end the Race here
                            yield gr.skip(), gr.skip(), gr.skip()
                    results.append({**timed, "mode": mode})  # the contestant's name: cards, bars, Cost
                except ImportError as exc:
                    results.append({"mode": mode, "tokens": [], "error": unavailable(f"{mode} mode", exc)})
        except ValueError as exc:
            gr.Warning(str(exc))
            yield error_html(str(exc)), None, gr.skip()
            return
        ref = results[0]["tokens"]
        for r in results[1:]:
            if not r.get("error"):
                r["agreement"] = token_agreement(r["tokens"], ref)
        label = (f"measured on this machine by the Race at {time.strftime('%H:%M:%S')} ({len(ids)}-token prompt, "
                 f"{max_new_tokens} new tokens, γ = {gamma}, S = {settings['block_size']}, "
                 f"{settings['steps_per_block']} steps per block, {self.engine.model.ctx_device})")
        measured = {key: dict((previous or {}).get(key) or {}) for key in ("tokens_per_s", "labels", "devices")}
        for r in results:
            if r.get("tokens_per_s"):
                measured["tokens_per_s"][r["mode"]], measured["labels"][r["mode"]] = r["tokens_per_s"], label
                measured["devices"][r["mode"]] = self.engine.model.ctx_device.type
        note = (f"Greedy, EOS ignored while timing; an untimed warm-up, then {repeats} timed run(s) per mode "
                f"(median; of an even count the faster middle run), one mode at a time; agreement: the share of "
                f"positions holding AR's token; {label}."
                + ("" if len(results) > 1 else " AR alone: tick a contestant to race it against AR."))
        yield race_html(results, self.engine.decode, note), race_bars(results), measured

    # ---------------------------------------------------------------- Speculative audit
    def speculative_audit(self, prompt, gamma, block_size, steps_per_block, max_new_tokens, temperature, seed,
                          adaptive=False, min_draft_confidence=None):
        """Per verification round: draft, accepted prefix, first rejection. Yields (table, histogram, summary).

        adaptive / min_draft_confidence: the draft-length variants (None: the model's default cut)."""
        rounds, stats = [], None
        try:
            settings = run_settings(gamma, block_size, steps_per_block, max_new_tokens, temperature, seed)
            settings.update(adaptive=bool(adaptive), min_draft_confidence=min_draft_confidence)
            _, events = self._stream("speculative", prompt, settings)
            for event in events:
                if event.kind == "verify":
                    rounds.extend(verify_rounds([event]))
                    yield audit_html(rounds, self.piece), gr.skip(), acceptance_summary_html(None, rounds)
                elif event.kind == "block" and rounds:  # what the round emitted: the budget or EOS may cut it
                    rounds[-1]["emitted"] = int(event.tokens.shape[1])
                elif event.kind == "done":
                    stats = event.stats
        except ImportError as exc:
            message = unavailable("Speculative decoding", exc)
            yield error_html(message), None, ""
            return
        except ValueError as exc:
            gr.Warning(str(exc))
            yield error_html(str(exc)), None, ""
            return
        lengths = list((stats or {}).get("acceptance_lengths") or [r["accepted"] + 1 for r in rounds])
        figure = acceptance_histogram(lengths, _whole(block_size))
        yield audit_html(rounds, self.piece), figure, acceptance_summary_html(stats, rounds)

    # ---------------------------------------------------------------- Sweep
    def sweep(self, example_names, extra_prompt, gammas, block_sizes, steps_per_block, max_new_tokens,
              anchor_first=False):
        """γ × S grid through twotower.sweep (its code, its figure, its CSV). Yields (scatter, table, CSV, message)
        after every grid point, so the plot fills in as it goes and Stop ends the sweep between two points
        (the points measured stay on screen). anchor_first: every point runs anchored diffusion."""
        try:
            from twotower import sweep
        except ImportError as exc:
            yield None, None, None, error_html(unavailable("The sweep (twotower.sweep)", exc))
            return
        points = []
        try:
            prompts = [EXAMPLE_PROMPTS[name] for name in (example_names or [])]
            if extra_prompt and extra_prompt.strip():
                prompts.append(extra_prompt)
            if not prompts:
                raise ValueError("the prompt set is empty: tick an example or type a prompt")
            for text in prompts:
                self.engine.encode_prompt(text)  # the prompt checks and messages of every other panel
            grid_gammas = sweep.parse_list(gammas, float, "γ values")
            grid_sizes = sweep.parse_list(block_sizes, int, "block sizes")
            n = len(sweep.sweep_grid(grid_gammas, grid_sizes, _whole(steps_per_block)))
            # the previous sweep's plot, table and CSV go: they would sit beside this one's progress
            yield None, None, None, note_html(f"Warm-up, then {n} grid point(s), each timed beside AR …", progress=True)
            csv_dir = Path(tempfile.mkdtemp(prefix="twotower-sweep-"))
            for point in sweep.iter_sweep(self.engine, prompts, grid_gammas, grid_sizes, steps=_whole(steps_per_block),
                                          max_new_tokens=_whole(max_new_tokens), anchor_first=bool(anchor_first),
                                          max_prompt_tokens=self.engine.max_prompt_tokens):  # as every other panel
                points.append(point)
                if len(points) < n:  # the last point's view is the final one below, with the final flags
                    shown = with_front(points)
                    path, _ = save_csv(csv_dir, shown)  # what Stop keeps can be downloaded too
                    yield (sweep.sweep_figure(shown), sweep_table(shown), path,
                           note_html(f"{len(points)} of {n} grid points measured (γ = {point['gamma']}, S = "
                                     f"{point['block_size']}) …", progress=True))
        except ValueError as exc:
            gr.Warning(str(exc))
            yield gr.skip(), gr.skip(), gr.skip(), error_html(str(exc))
            return
        path, unsaved = save_csv(csv_dir, points)
        message = note_html(f"{len(points)} grid point{'' if len(points) == 1 else 's'} over {len(prompts)} prompt(s)"
                            f"{', anchored diffusion' if anchor_first else ''}; "
                            f"{sum(bool(p.get('pareto')) for p in points)} on the Pareto frontier.{unsaved}")
        yield sweep.sweep_figure(points), sweep_table(points), path, message

    # ---------------------------------------------------------------- Cost
    def cost(self, usd_per_gpu_hour, gpus, utilisation_pct, tps_ar, tps_diffusion, tps_speculative,
             api_usd_per_million, measured=None):
        """Monthly cost and $/M output tokens per mode. Returns (table, bar chart).

        `measured` is the session's last Race result: a throughput equal to the one it measured is labelled
        as measured on this machine, any other number as typed by the user.
        """
        throughputs = {"ar": tps_ar, "diffusion": tps_diffusion, "speculative": tps_speculative}
        try:
            try:
                util = None if utilisation_pct is None else float(utilisation_pct) / 100.0
            except (TypeError, ValueError):
                raise ValueError(f"utilisation must be a number of percent, got {utilisation_pct!r}") from None
            lines = cost_table(throughputs, usd_per_gpu_hour, gpus, util, api_usd_per_million)
        except ValueError as exc:
            return error_html(str(exc)), None
        labels = provenance(measured, throughputs)
        # a Race on this CPU gives a machine's throughput, which the fields price per GPU-hour: say so
        on_cpu = any((measured or {}).get("devices", {}).get(mode) == "cpu" for mode in labels)
        return cost_html(lines, labels, api_usd_per_million, on_cpu), cost_bars(lines, api_usd_per_million)

    def use_race_numbers(self, measured):
        """Copy the session's Race measurements (each mode's latest) into the Cost inputs."""
        if not measured or not measured.get("tokens_per_s"):
            gr.Warning("No Race run yet in this session: run the Race panel first, or type throughputs.")
            return gr.skip(), gr.skip(), gr.skip()
        tps = measured["tokens_per_s"]  # a mode no Race of this session timed keeps what the user typed
        # two decimals, as a person would type them (provenance still recognises them as measured)
        return tuple(round(tps[mode], 2) if mode in tps else gr.skip() for mode in ("ar", "diffusion", "speculative"))

    # ---------------------------------------------------------------- Model
    def model_info(self, block_size=None):
        """What is loaded (Engine.describe) and, when twotower.memory_plan exists, its plan for this config at
        block size S (None: the model's)."""
        info = self.engine.describe()
        html = kv_table_html({MODEL_LABELS.get(k, k): v for k, v in info.items()}, "Loaded model")
        try:
            from twotower.memory_plan import format_memory_plan, plan_memory
        except ImportError as exc:
            return html + note_html(unavailable("The memory plan (twotower.memory_plan)", exc))
        model = self.engine.model
        try:
            # the longest context this app decodes: its longest prompt and the max new tokens slider's end
            plan = plan_memory(model.config, ctx_device=str(model.ctx_device), den_device=str(model.den_device),
                               dtype=model.context_lm_head.weight.dtype, den_dtype=model.lm_head.weight.dtype,
                               context_length=self.engine.max_prompt_tokens + MAX_NEW_TOKENS,
                               block_size=None if block_size is None else _whole(block_size))
        except ValueError as exc:
            return html + note_html(f"No memory plan for this configuration: {exc}")
        text = esc(format_memory_plan(plan, "a CPU's memory is not asked; `twotower plan --device-memory-gb` takes it"))
        return html + f'<h4>Memory plan per device</h4><pre class="tt-text">{text}</pre>'


# Engine.describe's keys, as the Model tab shows them (the API's /model_info returns the same table)
MODEL_LABELS = {
    "checkpoint": "checkpoint", "params_context": "context tower parameters", "params_denoiser": "denoiser parameters",
    "layer_pattern": f"layer pattern ({LAYER_KEY})", "hidden_size": "hidden size",
    "vocab_size": "vocabulary size", "ctx_device": "context tower device", "den_device": "denoiser device",
    "dtype": "context tower dtype", "den_dtype": "denoiser dtype", "compiled": "decode passes compiled (torch.compile)",
    "input_major_weights": "weights stored input-major (faster CPU matmuls)",
}


def recorded_board(record: dict, upto: int | None = None) -> Board:
    """The recorded run folded up to its `upto`-th step (None: all of it). A stopped run's last step shows the
    block Stop left unfinished as stopped; an earlier step shows it as it was then, being denoised."""
    board = fold(record["events"], upto)
    board.stopped = upto is None and bool(record.get("stopped"))
    return board


def replay_scrubber(frames: int):
    """The step slider over a finished run; hidden when there is nothing to scrub (a run of 0 or 1 steps, e.g.
    one token, or a whole block committed in one pass), where Gradio refuses a slider whose ends meet."""
    if frames < 2:
        return gr.Slider(visible=False)
    return gr.Slider(minimum=1, maximum=frames, value=frames, step=1, visible=True, interactive=True,
                     label=f"Replay step (1–{frames})")


def provenance(measured, throughputs: dict) -> dict[str, str]:
    """Label each typed throughput that equals a Race measurement of this session with that Race's label."""
    if not measured:
        return {}
    labels = {}
    for mode, value in throughputs.items():
        ref = measured.get("tokens_per_s", {}).get(mode)
        if ref and value not in (None, "") and abs(float(value) - ref) <= 0.005 + 1e-9 * abs(ref):  # 2 decimals
            labels[mode] = measured["labels"][mode]  # set with the number, by the Race that measured it
    return labels


def save_csv(folder: Path, points) -> tuple[str | None, str]:
    """(the CSV's path, "") or (None, what to tell the user): a full temp disk costs the download, not the
    measured points on the screen."""
    from twotower import sweep

    try:
        path = folder / "sweep.csv"
        path.write_text(sweep.csv_text(points), encoding="utf-8")
    except OSError as exc:
        return None, f" The CSV could not be saved ({exc.strerror or exc}): copy the table instead."
    return str(path), ""


def stopped_note(html, message: str):
    """`html` with its progress line (note_html(..., progress=True)) replaced by `message`; unchanged (a skip)
    when it has none: the run had finished, or Stop was pressed with nothing running."""
    if not html or PROGRESS_CLASS not in html:
        return gr.skip()
    return re.sub(rf'<div class="tt-note {PROGRESS_CLASS}">.*?</div>', lambda _: note_html(message), html, flags=re.S)


def with_front(points) -> list[dict]:
    """Copies of the points measured so far, each flagged on or off the frontier of those points."""
    from twotower.sweep import front_flags

    return [{**p, "pareto": on} for p, on in zip(points, front_flags(points))]


def sweep_table(points) -> gr.Dataframe:
    """Rounded, short headers for reading; the CSV keeps every digit and the field names."""
    from twotower import sweep

    columns = list(sweep.CSV_FIELDS)
    shown = [[round(v, 3) if isinstance(v, float) else v for v in (p.get(c) for c in columns)] for p in points]
    return gr.Dataframe(value=shown, headers=[sweep.TABLE_HEADERS[c] for c in columns])
