"""Timings that shared the machine say so: the run tracker, and the Race's cards and the Sweep's message when
another run of the app was going while they timed."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from tiny_models import timed_record  # noqa: E402
from ui.handlers import Handlers  # noqa: E402
from ui.render_panels import DISTURBED  # noqa: E402
from ui.run_tracker import RunTracker, TrackedEngine  # noqa: E402


def test_a_run_counts_from_its_first_step_to_its_end_or_close_and_only_for_others(engine):
    tracker = RunTracker()
    playground, timer = TrackedEngine(engine, tracker), TrackedEngine(engine, tracker).own()
    ids = engine.encode_prompt("def f(x):")
    before = timer.others()
    events = playground.stream("ar", ids, max_new_tokens=4)
    assert timer.others() == before  # opened, not started: nothing runs yet
    next(events)
    assert timer.others().active == 1 and timer.disturbed(before)
    events.close()  # Stop: the run ends without finishing
    assert timer.others().active == 0
    quiet, playground_quiet = timer.others(), playground.others()
    list(timer.stream("ar", ids, max_new_tokens=4))  # the timer's own run
    assert not timer.disturbed(quiet)
    assert playground.disturbed(playground_quiet)  # …which is another's run to the playground
    with pytest.raises(ValueError, match="γ"):  # refused before it starts: it never counts
        playground.stream("diffusion", ids, gamma=5.0)
    assert timer.others().active == 0


def busy_during(handlers, engine, monkeypatch, busy_mode):
    """bench.timed_generation stubbed: while `busy_mode` is timed (not its warm-up), a Playground run of the same
    app takes a step, as a concurrent run would."""
    from twotower import bench

    calls = []

    def timed(engine_, mode, ids, max_new_tokens, settings):
        calls.append(mode)
        if mode == busy_mode and calls.count(mode) == 2:
            other = handlers.engine.stream("ar", ids, max_new_tokens=2)
            next(other)
            other.close()
        return timed_record(rows=[[7] * 4], seconds=0.5)

    monkeypatch.setattr(bench, "timed_generation", timed)


def test_a_race_card_says_when_another_run_shared_the_machine(engine, monkeypatch):
    handlers = Handlers(engine)
    busy_during(handlers, engine, monkeypatch, "diffusion")
    *_, (html, _, _) = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 1))
    ar_card, diffusion_card = html.split('data-mode="diffusion"')
    assert DISTURBED not in ar_card and DISTURBED in diffusion_card
    busy_during(handlers, engine, monkeypatch, "nothing")
    *_, (quiet, _, _) = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 2))
    assert DISTURBED not in quiet  # its own warm-up and timed runs do not count


def test_the_sweep_counts_the_points_timed_beside_another_run(engine, monkeypatch):
    handlers = Handlers(engine)
    busy_during(handlers, engine, monkeypatch, "diffusion")  # the first point's diffusion (the warm-up is AR)
    *_, (_, _, _, message) = list(handlers.sweep(["fibonacci"], "", "0.5, 0.9", "4", 4, 4, False, 1))
    assert "1 of 2 point(s) were timed while another run of this app was going" in message
    busy_during(handlers, engine, monkeypatch, "nothing")
    *_, (_, _, _, quiet) = list(handlers.sweep(["fibonacci"], "", "0.5, 0.9", "4", 4, 4, False, 1))
    assert "were timed while" not in quiet
