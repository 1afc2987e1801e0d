"""The Sweep panel's handlers called directly (no server): point-by-point drawing, Stop, the CSV folders."""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from tiny_models import sweep_tick  # noqa: E402
from ui.handlers import Handlers  # noqa: E402
from ui.sweep_panel import with_front  # noqa: E402


def test_the_sweep_draws_each_point_as_it_is_measured(engine):
    """A generator: the plot and table fill in point by point, and Stop (the generator ended) keeps them."""
    handlers = Handlers(engine)
    updates, csv_lines, ticks = [], [], 0
    for update in handlers.sweep(["fibonacci"], "", "0.5, 0.9", "2", 2, 4):
        if sweep_tick(update):  # a tick before a timed run, where Gradio can close a Sweep (page gone)
            ticks += 1
            continue
        updates.append(update)  # the CSV as it was at each yield (Gradio copies the file when it is yielded)
        csv_lines.append(open(update[2]).read().count("\n") if isinstance(update[2], str) else None)
    assert ticks == 2 + 2 * 2  # the two warm-ups, then AR and diffusion at each point (1 prompt, 1 timed run)
    first, *partial, final = updates
    assert "2 grid point(s)" in first[3] and first[:3] == (None, None, None)  # the last sweep's results go
    assert len(partial) == 1 and "1 of 2 grid points measured" in partial[0][3]
    assert len(partial[0][1].value["data"]) == 1 and len(final[1].value["data"]) == 2
    assert csv_lines == [None, 2, 3]  # header + the points so far: what Stop keeps is downloadable
    assert final[2].endswith("sweep.csv") and "2 grid points over 1 prompt(s)" in final[3]
    # Stop: the progress line becomes a "stopped" one; a finished sweep's message is left alone
    stopped = handlers.sweep_stopped(partial[0][3])
    assert "Stopped" in stopped and "grid points measured" not in stopped
    assert handlers.sweep_stopped(final[3]) == gr.skip() and handlers.sweep_stopped(None) == gr.skip()
    # stopped in the warm-up: no point, no CSV; it said "the grid points above were measured before Stop"
    assert "before any grid point was measured" in handlers.sweep_stopped(first[3])


def test_sweep_csv_folders_idle_an_hour_are_removed_by_the_next_sweep(engine):
    """One temp folder per Sweep was made and never removed. Now they share the app's folder; the next Sweep
    removes those idle for an hour (Gradio serves its own copy of each CSV), a running one's stays."""
    import time

    import ui.sweep_panel as panels

    handlers = Handlers(engine)
    first = Path(list(handlers.sweep(["fibonacci"], "", "0.9", "2", 2, 2))[-1][2]).parent
    second = Path(list(handlers.sweep(["fibonacci"], "", "0.9", "2", 2, 2))[-1][2]).parent
    assert first.parent == second.parent and first != second and first.exists()  # the first is not idle yet
    hour_ago = time.time() - panels.CSV_KEEP_S - 1
    for entry in (first, first / "sweep.csv"):
        os.utime(entry, (hour_ago, hour_ago))
    os.utime(second, (hour_ago, hour_ago))  # the folder is old but its CSV was just written: a running Sweep's
    third = Path(list(handlers.sweep(["fibonacci"], "", "0.9", "2", 2, 2))[-1][2]).parent
    assert not first.exists() and second.exists() and third.exists()
    root = first.parent
    import shutil

    shutil.rmtree(root)  # a temp cleaner took the app's folder: the next Sweep makes it again
    assert Path(list(handlers.sweep(["fibonacci"], "", "0.9", "2", 2, 2))[-1][2]).parent.parent == root
    del handlers  # the app's folder goes with the handlers (weakref.finalize, which also runs at exit)
    import gc

    gc.collect()
    assert not root.exists()


def test_sweep_points_so_far_are_flagged_on_their_own_front():
    # the third point is worse than the first on both axes, the fourth lacks its agreement: off the front
    points = [{"ratio_vs_ar": 1.0, "agreement": 0.9}, {"ratio_vs_ar": 2.0, "agreement": 0.5},
              {"ratio_vs_ar": 0.8, "agreement": 0.8}, {"ratio_vs_ar": 3.0, "agreement": None}]
    flagged = with_front(points)
    assert [p["pareto"] for p in flagged] == [True, True, False, False]
    assert [p["pareto"] for p in with_front(points[2:3])] == [True]  # alone, the third is its own front
    assert all("pareto" not in p for p in points)  # copies: the measured points are left as they were


def test_a_disk_that_refuses_the_csv_costs_the_download_not_the_points(engine, tmp_path, monkeypatch):
    handlers = Handlers(engine)
    monkeypatch.setattr(handlers, "_csv_folder", lambda prefix="sweep-": tmp_path / "gone")  # removed meanwhile
    *partial, final = [out for out in handlers.sweep(["fibonacci"], "", "0.5, 0.9", "2", 2, 2)
                       if not sweep_tick(out)]  # less the ticks before each timed run
    assert partial[-1][2] is None and len(partial[-1][1].value["data"]) == 1  # no file, the point drawn
    assert final[2] is None and len(final[1].value["data"]) == 2
    assert "2 grid points over 1 prompt(s)" in final[3] and "The CSV could not be saved (" in final[3]
    assert "copy the table instead" in final[3]


def test_a_grid_past_the_apps_limit_is_refused_with_its_size(engine):
    """γ values 0.001…1.000 and S 1…512 were taken as 512,000 points (seconds each on a CPU) with no word,
    holding one of the app's engine slots; the limit counts points after duplicates are merged."""
    from ui.sweep_panel import MAX_GRID_POINTS

    handlers = Handlers(engine)
    gammas = ",".join(f"{g / 1000:.3f}" for g in range(1, 1001))
    sizes = ",".join(str(s) for s in range(1, 513))
    *_, (_, _, _, message) = list(handlers.sweep(["fibonacci"], "", gammas, sizes, 4, 4))
    assert "512,000 grid points" in message and f"at most {MAX_GRID_POINTS}" in message and "twotower sweep" in message
    assert handlers.sweep_start(1, 4, 4, gammas, sizes, ["fibonacci"], "", False) == (gr.skip(), gr.skip())
    at_limit = ",".join(str(s) for s in range(1, MAX_GRID_POINTS + 1))  # 1 γ x 100 sizes, each given twice
    assert handlers.sweep_start(1, 4, 4, "0.5,0.5", at_limit + "," + at_limit, ["fibonacci"], "", False)[1] == ""


def test_a_running_sweep_never_skips_its_csv_box(engine):
    """Gradio keeps a session's own copy of a file box that was sent a gr.skip(), and the CSVs served after that
    in the session were never removed by delete_cache (one per point, every Sweep, measured on a live server).
    The ticks and a Stop send the CSV on screen again instead; only a Sweep refused before it begins skips it,
    to keep the last Sweep's CSV."""
    handlers = Handlers(engine)
    outputs = list(handlers.sweep(["fibonacci"], "", "0.5, 0.9", "2", 2, 2))
    ticks = [out for out in outputs if sweep_tick(out)]
    assert ticks and all(out[2] != gr.skip() for out in outputs)
    assert ticks[0][2] is None and ticks[-1][2].endswith("sweep.csv")  # none before the first point, then the CSV
    going = handlers.sweep(["fibonacci"], "", "0.5, 0.9", "2", 2, 2)
    drawn = next(out for out in going if not sweep_tick(out) and out[2] is not None)  # the first point's CSV
    from ui.run_tracker import Stopped

    stopped = going.throw(Stopped)  # its Stop, at its next step
    assert stopped[2] == drawn[2] and "Stopped" in stopped[3]
    (refused,) = list(handlers.sweep(["fibonacci"], "", "fast", "2", 2, 2))
    assert refused[2] == gr.skip()


def test_a_host_whose_speed_moved_over_the_sweep_is_said_under_it(engine, monkeypatch):
    """AR's speed beside the points varying 3× (a host shared with other work) ranked the points by the host's speed:
    the final message says so (twotower.sweep.baseline_note), a steady sweep's does not."""
    from twotower import sweep

    real = sweep.iter_sweep

    def final_message(second_ar_speed: float) -> str:
        def timed(*args, **kwargs):  # the real sweep, its AR speeds as a host at 100 tokens/s, then at another
            for point in real(*args, **kwargs):
                if point is not None:
                    point = {**point, "ar_tokens_per_s": 100.0 if point["gamma"] == 0.5 else second_ar_speed}
                yield point

        monkeypatch.setattr(sweep, "iter_sweep", timed)
        return [u for u in Handlers(engine).sweep(["fibonacci"], "", "0.5, 0.9", "2", 2, 4) if not sweep_tick(u)][-1][3]

    moved = final_message(300.0)
    assert "ranged from 100.0 to 300.0 tokens/s (3.00×): this host" in moved and "moved during the sweep" in moved
    assert "moved during the sweep" not in final_message(120.0)


def test_a_stopped_sweep_keeps_the_warning_on_ars_spread_and_the_table_says_steps_ran_as_s(engine, monkeypatch):
    """A Sweep stopped after two points whose AR speeds spread 1.55× showed no warning: the Stopped branch
    returned before the note a finished Sweep adds. Steps above S ran as S with nothing said."""
    from twotower import sweep
    from ui.run_tracker import Stopped

    handlers = Handlers(engine)
    *_, final = [u for u in handlers.sweep(["fibonacci"], "", "0.9", "2", 4, 2) if not sweep_tick(u)]
    assert "Steps per block above S run as S" in final[3] and "not the settings&#x27; 4" in final[3]
    *_, same = [u for u in handlers.sweep(["fibonacci"], "", "0.9", "2", 2, 2) if not sweep_tick(u)]
    assert "Steps per block above S" not in same[3]

    measured = [p for p in sweep.iter_sweep(engine, ["def f(x):"], [0.5, 0.9], [2], steps=2, max_new_tokens=2)]
    measured[0]["ar_tokens_per_s"], measured[1]["ar_tokens_per_s"] = 66.4, 42.8  # 1.55× apart

    def two_points_then_stop(*args, **kwargs):
        yield from measured
        raise Stopped()

    monkeypatch.setattr(sweep, "iter_sweep", two_points_then_stop)
    *_, stopped = [u for u in handlers.sweep(["fibonacci"], "", "0.5, 0.9, 0.7", "2", 2, 2) if not sweep_tick(u)]
    assert "Stopped: the grid points above were measured" in stopped[3]
    assert sweep.baseline_note(measured) and sweep.baseline_note(measured) in stopped[3].replace("&#x27;", "'")


def test_the_sweeps_block_sizes_have_one_range_and_its_table_its_headers_before_a_run(engine):
    from ui.sweep_panel import table_headers

    handlers = Handlers(engine)
    for sizes in ("0", "600", "4, 513"):
        (*_, message), = [u for u in handlers.sweep(["fibonacci"], "", "0.9", sizes, 2, 2) if not sweep_tick(u)]
        assert "is outside 1 … 512: give S from 1 to 512" in message, sizes
    headers = table_headers()
    assert headers[:3] == ["γ", "S", "steps"] and headers[-1] == "beside another run"


def test_a_stopped_sweep_also_says_its_steps_ran_as_s(engine, monkeypatch):
    from twotower import sweep
    from ui.run_tracker import Stopped

    measured = list(sweep.iter_sweep(engine, ["def f(x):"], [0.9], [2], steps=2, max_new_tokens=2))

    def one_point_then_stop(*args, **kwargs):
        yield from measured
        raise Stopped()

    monkeypatch.setattr(sweep, "iter_sweep", one_point_then_stop)
    *_, stopped = [u for u in Handlers(engine).sweep(["fibonacci"], "", "0.9, 0.5", "2", 4, 2) if not sweep_tick(u)]
    assert "Stopped: the grid points above were measured" in stopped[3] and "Steps per block above S" in stopped[3]


def test_a_refused_sweep_keeps_the_last_sweeps_notes_under_its_message(engine):
    from types import SimpleNamespace

    handlers = Handlers(engine)
    tab = SimpleNamespace(session_hash="s1")
    *_, final = [u for u in handlers.sweep(["fibonacci"], "", "0.9", "2", 4, 2, request=tab) if not sweep_tick(u)]
    (*_, refused), = [u for u in handlers.sweep(["fibonacci"], "", "0.9", "1000", 4, 2, request=tab)
                      if not sweep_tick(u)]
    assert "is outside 1 … 512" in refused and "Below: the last Sweep&#x27;s notes." in refused
    assert refused.endswith(final[3]) and "Steps per block above S run as S" in refused
    handlers.forget_session(tab)
    assert ("s1", "sweep") not in handlers._shown
