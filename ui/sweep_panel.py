"""The Sweep panel's handlers: a γ × S grid through twotower.sweep (its code, its figure, its CSV), drawn point by
point, and the per-app folder of the CSVs it offers for download. ui.panel_handlers.PanelHandlers inherits them."""

from __future__ import annotations

import shutil
import tempfile
import time
import weakref
from pathlib import Path

import gradio as gr

from twotower.validation import check_int

from .components import from_api, say_refused
from .examples import EXAMPLE_PROMPTS
from .panel_common import MAX_NEW_TOKENS, given, stopped_before_start, stopped_note, switch, unavailable, whole
from .render import error_html, note_html
from .render_panels import stale_note
from .run_tracker import Stopped

CSV_KEEP_S = 3600  # a download's folder (a Sweep's CSV, a run's trace), idle this long, is removed by the next
                  # download (Gradio serves its own copy)


# A Sweep holds one of the app's engine slots until it ends; a typed 1000 x 512 grid was taken with no word
# (512,000 points, each timed beside AR on every prompt: seconds a point on a CPU, months in all).
MAX_GRID_POINTS = 100
WARM_UP = "Warm-up"  # the progress line before the first point (a Stop there has no point to keep)
# the app's column after twotower.sweep's: whether another run of the app went on while the point was timed
APP_FIELDS = ("disturbed",)


class SweepPanel:
    """Mixed into PanelHandlers, whose `engine` (a TrackedEngine) it uses; the CSV root is made at the first Sweep."""

    _csv_root = None

    def _csv_folder(self, prefix: str = "sweep-") -> Path:
        """A new folder for one download (a Sweep's CSV, a Playground run's trace), under this app's own (removed
        when the app exits). Gradio serves a copy of each file it is given, so the folders that have been written
        nothing for an hour go now: they were never removed, one per Sweep for as long as the app ran."""
        if self._csv_root is None:
            self._csv_root = tempfile.mkdtemp(prefix="twotower-downloads-")
            weakref.finalize(self, shutil.rmtree, self._csv_root, ignore_errors=True)  # at exit too
        # a temp cleaner (systemd-tmpfiles) may remove it under a server that runs for days: made again, or every
        # later Sweep failed with Gradio's bare error
        Path(self._csv_root).mkdir(parents=True, exist_ok=True)
        for old in Path(self._csv_root).iterdir():
            try:  # a running Sweep rewrites its CSV after every point: the newest write of the folder counts
                last_write = max(entry.stat().st_mtime for entry in (old, *old.iterdir()))
            except OSError:  # gone already (another session's Sweep cleared it)
                continue
            if time.time() - last_write > CSV_KEEP_S:
                shutil.rmtree(old, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=prefix, dir=self._csv_root))

    def _download(self, prefix: str, name: str, text: str, kept: str):
        """`text` as the file `name` for download, in a folder of its own (_csv_folder): a gr.File, or, when the
        disk refuses it, a warning that says what stays (`kept`) and no change to the file box."""
        try:
            path, reason = write_download(self._csv_folder(prefix), name, text)
        except OSError as exc:  # the folder itself could not be made
            path, reason = None, exc.strerror or str(exc)
        if path is None:
            gr.Warning(f"The file could not be saved ({reason}): {kept}.")
            return gr.skip()
        return gr.File(value=path, visible=True)

    def sweep_stopped(self, message: str):
        """Stop during a Sweep: the points drawn (and their CSV) stay; the progress line says it was stopped (and,
        stopped in the warm-up, that no point was measured, instead of "the grid points above"). The note on
        points timed beside another run is a line of its own, which stays."""
        if message and WARM_UP in message:
            return stopped_note(message, "Stopped during the warm-up, before any grid point was measured.")
        return stopped_note(message, "Stopped: the grid points above were measured before Stop (the CSV holds "
                                     "them; the Pareto flags are those of these points).")

    # Sweep reads the shared sliders when its button is pressed (see PanelHandlers.race_settings)
    @staticmethod
    def sweep_settings(steps_per_block, max_new_tokens, gammas=None, block_sizes=None, examples=None,
                       extra_prompt=None, anchor_first=None):
        """At a Sweep's start: (the settings it reads, its own grid and prompt set too; no stale note)."""
        return given(steps_per_block=whole(steps_per_block), max_new_tokens=whole(max_new_tokens), gammas=gammas,
                      block_sizes=block_sizes, examples=examples, extra_prompt=extra_prompt,
                      anchor_first=anchor_first), ""

    @staticmethod
    def sweep_staleness(used, *current):
        return stale_note(used, SweepPanel.sweep_settings(*current)[0], "Sweep")

    def _sweep_inputs(self, sweep, example_names, extra_prompt, gammas, block_sizes, steps_per_block, repeats,
                      anchor_first):
        """(prompts, γ values, block sizes, timed runs per point, anchored, grid points), or the ValueError a Sweep
        is refused with. sweep: the twotower.sweep module."""
        prompts = [EXAMPLE_PROMPTS[name] for name in (example_names or [])]
        if extra_prompt and extra_prompt.strip():
            prompts.append(extra_prompt)
        if not prompts:
            raise ValueError("the prompt set is empty: tick an example or type a prompt")
        for text in prompts:
            self.engine.encode_prompt(text)  # the prompt checks and messages of every other panel
        grid_gammas = sweep.parse_list(gammas, float, "γ values")
        grid_sizes = sweep.parse_list(block_sizes, int, "block sizes")
        outside = [size for size in grid_sizes if not 1 <= size <= MAX_NEW_TOKENS]  # (Gradio cannot send back an
        if outside:  # S past 2**63); one range, in one message (S = 0 was refused with the engine's bound, 4096)
            bad = outside[0] if abs(outside[0]) < 10**12 else f"{outside[0]:.3g}"  # 10**30 in 31 digits
            raise ValueError(f"block size {bad} is outside 1 … {MAX_NEW_TOKENS}: give S from 1 to "
                             f"{MAX_NEW_TOKENS} (above {MAX_NEW_TOKENS}, the longest generation the app runs, a block "
                             "decodes as one block of max new tokens)")
        repeats = check_int("timed runs per point", 1 if repeats is None else whole(repeats))
        anchor_first = switch("anchored diffusion", anchor_first)
        n = len(sweep.sweep_grid(grid_gammas, grid_sizes, whole(steps_per_block)))
        if n > MAX_GRID_POINTS:
            raise ValueError(f"the γ values × block sizes make {n:,} grid points; the "
                             f"app's Sweep runs at most {MAX_GRID_POINTS} (each is timed beside AR on every prompt, "
                             "seconds apiece on a CPU): give fewer values, or run `twotower sweep` for a larger grid")
        return prompts, grid_gammas, grid_sizes, repeats, anchor_first, n

    def sweep_start(self, repeats, steps_per_block, max_new_tokens, gammas=None, block_sizes=None, examples=None,
                    extra_prompt=None, anchor_first=None, request: gr.Request = None):
        """The Run sweep button: sweep_settings for a Sweep that will run; a Sweep its inputs refuse leaves the
        settings of the Sweep on screen, and its stale note, as they were (see PanelHandlers.race_start and
        _pressed: an accepted Sweep replaces the session's Sweep going)."""
        try:
            from twotower import sweep

            self._sweep_inputs(sweep, examples, extra_prompt, gammas, block_sizes, steps_per_block, repeats,
                               anchor_first)
        except (ImportError, ValueError) as exc:
            self._pressed(request, "sweep", accepted=False)
            return gr.skip(), self._refused_note(request, "sweep", "Sweep", exc)
        self._pressed(request, "sweep", accepted=True)
        return self.sweep_settings(steps_per_block, max_new_tokens, gammas, block_sizes, examples, extra_prompt,
                                   anchor_first)

    def sweep(self, example_names, extra_prompt, gammas, block_sizes, steps_per_block, max_new_tokens,
              anchor_first=False, repeats=1, request: gr.Request = None):
        """γ × S grid through twotower.sweep (its code, its figure, its CSV). Yields (scatter, table, CSV, message)
        after every grid point, so the plot fills in as it goes; Stop ends the sweep at its next decoding step
        (the points measured stay on screen). anchor_first: every point runs anchored diffusion. repeats: timed
        runs of each point and of its AR (the median, as `twotower sweep --repeats`)."""
        try:
            from twotower import sweep
        except ImportError as exc:
            yield None, None, None, error_html(unavailable("The sweep (twotower.sweep)", exc))
            return
        points, disturbed, watch, message = [], 0, None, None  # disturbed: points timed beside another run of the app
        session = getattr(request, "session_hash", None)
        # the CSV on screen, yielded again where nothing else changes: a gr.skip() to the file box made Gradio keep
        # a session's copy of it, and the CSVs served after it there were never removed by delete_cache (one per
        # point, every Sweep; a refused Sweep still skips it, to keep the last Sweep's CSV)
        served = None
        try:
            prompts, grid_gammas, grid_sizes, repeats, anchor_first, n = self._sweep_inputs(
                sweep, example_names, extra_prompt, gammas, block_sizes, steps_per_block, repeats, anchor_first)
            # checked: it stops the session's earlier Sweep (or, stopped while queued, raises Stopped here), and its
            # own Stop ends it at a step from now on
            watch = self._stops.begin(session, "sweep")
            # the previous sweep's plot, table and CSV go: they would sit beside this one's progress
            message = note_html(f"{WARM_UP}, then {n} grid point(s), each timed beside AR …", progress=True)
            yield None, None, None, message
            csv_dir = self._csv_folder()
            engine = self.engine.own(watch)  # the sweep's own runs do not disturb its timings; everyone else's do
            before = engine.others()
            for point in sweep.iter_sweep(engine, prompts, grid_gammas, grid_sizes, steps=whole(steps_per_block),
                                          max_new_tokens=whole(max_new_tokens), anchor_first=anchor_first,
                                          repeats=repeats, ticks=True, heal=True,  # as the Race by default: the same text
                                          max_prompt_tokens=self.engine.max_prompt_tokens):  # as every other panel
                if point is None:  # before a timed run: nothing to redraw (Gradio may close a Sweep here whose page
                    yield gr.skip(), gr.skip(), served, gr.skip()  # went away: it ran on for a whole point)
                    continue
                point["disturbed"] = engine.disturbed(before)  # which points, in the table and the CSV
                points.append(point)
                disturbed += point["disturbed"]
                if len(points) < n:  # the last point's view is the final one below, with the final flags
                    shown = with_front(points)
                    path, _ = save_csv(csv_dir, shown)  # what Stop keeps can be downloaded too
                    served = path
                    message = note_html(f"{len(points)} of {n} grid points measured (γ = {point['gamma']}, S = "
                                        f"{point['block_size']}) …", progress=True) + shared_html(disturbed, len(points))
                    yield sweep.sweep_figure(shown), sweep_table(shown), path, message
                before = engine.others()  # the time on screen between two points is not timed
        except Stopped:  # its Stop, or a newer Sweep of the session: the points drawn so far, marked stopped
            if watch is None:  # stopped in the queue: the last Sweep's results stay
                yield gr.skip(), gr.skip(), gr.skip(), stopped_before_start("Sweep", "points")
            else:  # the points kept can have run steps as S, and their AR speeds spread, as a whole Sweep's
                stopped = self.sweep_stopped(message)
                if stopped != gr.skip():
                    stopped += self._sweep_notes(sweep, points, steps_per_block)
                    self._keep_shown(session, "sweep", stopped)
                yield gr.skip(), gr.skip(), served, stopped
            return
        except ValueError as exc:
            # the page's toast either way; raised to an API caller only when refused before it began (one that
            # failed on the way returns its points and CSV, as the page keeps them)
            say_refused(str(exc), from_api(request) and watch is None)
            if watch is None:  # refused before it began: the last Sweep's CSV and notes stay under the message
                yield gr.skip(), gr.skip(), gr.skip(), self._over_shown(session, "sweep", exc,
                                                                        "Below: the last Sweep's notes.")
            else:  # failed on the way: its own points and CSV
                yield gr.skip(), gr.skip(), served, error_html(str(exc))
            return
        finally:
            if watch is not None:
                watch.end()
        path, unsaved = save_csv(csv_dir, points)
        message = note_html(f"{len(points)} grid point{'' if len(points) == 1 else 's'} over {len(prompts)} prompt(s)"
                            " (the last token of each healed, as the Race does by default)"
                            f"{', anchored diffusion' if anchor_first else ''}; "
                            f"{sum(bool(p.get('pareto')) for p in points)} on the Pareto frontier; "
                            + (f"the median of {repeats} timed runs per point and per AR beside it."
                               if repeats > 1 else "one timed run per point and per AR beside it: × AR is one sample "
                                                   "of a host's speed (more timed runs give a median).")
                            + shared_note(disturbed, len(points)) + unsaved)
        message += self._sweep_notes(sweep, points, steps_per_block)
        self._keep_shown(session, "sweep", message)  # what a refused Sweep keeps under its message
        yield sweep.sweep_figure(points), sweep_table(points), path, message

    @staticmethod
    def _sweep_notes(sweep, points: list[dict], steps_per_block) -> str:
        """The notes under a Sweep's points (finished or stopped): steps above S ran as S (the table's steps
        column), and AR's speed spread over the points (× AR moved with the host's speed). sweep: its module."""
        notes = ""
        if any(p["steps_per_block"] < whole(steps_per_block) for p in points):
            notes += note_html(f"Steps per block above S run as S (a block of S positions takes at most S passes): "
                               f"the steps column says what ran, not the settings' {whole(steps_per_block)}.")
        spread = sweep.baseline_note(points)
        return notes + (note_html(spread) if spread else "")


def shared_html(disturbed: int, n: int) -> str:
    """shared_note as a note of its own, beside a progress line (which a Stop replaces): "" when none was."""
    return note_html(shared_note(disturbed, n).strip()) if disturbed else ""


def shared_note(disturbed: int, n: int) -> str:
    """What the Sweep's message adds when some points were timed beside another run of the app ("" if none)."""
    if not disturbed:
        return ""
    return (f" ⚠ {disturbed} of {n} point(s) were timed while another run of this app was going (another tab or "
            "user): their speeds are disturbed (the column \"beside another run\" says which); sweep again alone to "
            "measure them.")


def write_download(folder: Path, name: str, text: str) -> tuple[str | None, str]:
    """(the written file's path, "") or (None, the disk's reason): a full temp disk costs the download, not
    what the panel shows. The Sweep rewrites its CSV in place after every point; other downloads get a folder each."""
    try:
        path = folder / name
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        return None, exc.strerror or str(exc)
    return str(path), ""


def save_csv(folder: Path, points) -> tuple[str | None, str]:
    """(the Sweep's CSV path, "") or (None, what its message adds)."""
    from twotower import sweep

    path, reason = write_download(folder, "sweep.csv", sweep.csv_text(points, sweep.CSV_FIELDS + APP_FIELDS))
    return (path, "") if path else (None, f" The CSV could not be saved ({reason}): copy the table instead.")


def with_front(points) -> list[dict]:
    """Copies of the points measured so far, each flagged on or off the frontier of those points."""
    from twotower.sweep import front_flags

    return [{**p, "pareto": on} for p, on in zip(points, front_flags(points))]


def table_headers() -> list[str] | None:
    """The Sweep table's short headers (also its headers before any Sweep, which were Gradio's "1 2 3"); None
    where twotower.sweep cannot load (the panel says so when run)."""
    try:
        from twotower import sweep
    except ImportError:
        return None
    headers = {**sweep.TABLE_HEADERS, "disturbed": "beside another run"}
    return [headers[c] for c in sweep.CSV_FIELDS + APP_FIELDS]


def sweep_table(points) -> gr.Dataframe:
    """Rounded, short headers for reading; the CSV keeps every digit and the field names."""
    from twotower import sweep

    columns = list(sweep.CSV_FIELDS + APP_FIELDS)
    shown = [[round(v, 3) if isinstance(v, float) else v for v in (p.get(c) for c in columns)] for p in points]
    return gr.Dataframe(value=shown, headers=table_headers())
