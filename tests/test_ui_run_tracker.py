"""Timings that shared the machine say so: the run tracker, and the Race's cards and the Sweep's message when
another run of the app was going while they timed."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402
from pathlib import Path  # noqa: E402

from tiny_models import sweep_tick, timed_record  # noqa: E402
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
    outputs = list(handlers.sweep(["fibonacci"], "", "0.5, 0.9", "4", 4, 4, False, 1))
    *_, (_, table, path, message) = outputs
    assert "1 of 2 point(s) were timed while another run of this app was going" in message
    # a Stop after the first point keeps the note (a line of its own beside the progress line, which it replaces)
    (first_point,) = [out[3] for out in outputs if isinstance(out[3], str) and "1 of 2 grid points measured" in out[3]]
    assert "Stopped" in handlers.sweep_stopped(first_point) and "1 of 1 point(s) were timed while" in \
        handlers.sweep_stopped(first_point)
    # which point: the table's last column and the CSV's disturbed column
    assert table.headers[-1] == "beside another run" and [row[-1] for row in table.value["data"]] == [True, False]
    assert Path(path).read_text().splitlines()[0].endswith(",pareto,disturbed")
    busy_during(handlers, engine, monkeypatch, "nothing")
    *_, (_, _, _, quiet) = list(handlers.sweep(["fibonacci"], "", "0.5, 0.9", "4", 4, 4, False, 1))
    assert "were timed while" not in quiet



def test_the_audit_says_when_its_round_times_were_measured_beside_another_run(engine):
    """The audit shows milliseconds per round drafting and verifying: a run of another session during it (here
    started at its first round) makes them slow, and the summary now says so; alone, no such note."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    audit = handlers.speculative_audit("def f(x):", 0.8, 4, 4, 16, 0.0, 0, False, None, request=Request("a"))
    next(audit)  # its first round is verified
    other = handlers.engine.stream("ar", engine.encode_prompt("x"), max_new_tokens=2)
    next(other)
    *_, (_, _, summary) = list(audit)
    other.close()
    assert "the times per round are disturbed" in summary and "per round: drafting" in summary
    *_, (_, _, alone) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 4, 16, 0.0, 0, False, None, request=Request("a")))
    assert "disturbed" not in alone and "per round: drafting" in alone

# ---- a panel's Stop reaches the run between two decoding steps (not only where the panel's generator yields)
class Request:
    """What Gradio hands a listener that asks for its gr.Request: only the session is read."""

    def __init__(self, session_hash):
        self.session_hash = session_hash


def test_a_stop_request_stops_only_the_run_of_its_session_and_panel_and_keeps_nothing_after_it():
    from ui.run_tracker import StopRequests

    stops = StopRequests()
    race, other_session, sweep, no_session = (stops.begin("a", "race"), stops.begin("b", "race"),
                                              stops.begin("a", "sweep"), stops.begin(None, "race"))
    assert not any(watch() for watch in (race, other_session, sweep, no_session))
    stops.request("a", "race")
    stops.request(None, "race")  # a caller with no session (the Python API) has no Stop to press
    assert race() and not other_session() and not sweep() and not no_session()
    assert not stops.begin("a", "race")()  # a run begun after the Stop is not stopped by it
    newer = stops.begin("b", "race")  # a newer run of a session's panel stops the older
    assert other_session() and not newer()
    for watch in (race, other_session, sweep, no_session, newer):
        watch.end()
    assert stops._live == {("a", "race"): stops._live[("a", "race")]}  # only the run begun and not ended


def test_a_stopped_run_leaves_the_tally_even_when_its_sampler_is_a_plain_iterator(engine):
    from ui.run_tracker import Stopped

    class ListEngine:  # an engine whose stream is a list's iterator (no close())
        def stream(self, *args, **kwargs):
            return iter([1, 2, 3])

    tracker = RunTracker()
    stopped = TrackedEngine(ListEngine(), tracker).own(lambda: True)
    with pytest.raises(Stopped):
        list(stopped.stream("ar", [1]))
    assert tracker.active == 0 and stopped.active == 0
    assert list(TrackedEngine(ListEngine(), tracker).stream("ar", [1])) == [1, 2, 3] and tracker.active == 0


def stop_after(handlers, monkeypatch, panel: str, session: str, n_events: int) -> list[int]:
    """Every engine run of the app counts its steps in the list returned; the `n_events`-th step of all runs
    presses `panel`'s Stop in `session`, as a click in the browser would while the run is mid-way."""
    seen, inner = [0], handlers.engine._engine
    stream = inner.stream

    def counting(*args, **kwargs):
        for event in stream(*args, **kwargs):
            seen[0] += 1
            if seen[0] == n_events:
                handlers._stops.request(session, panel)  # stop_<panel> would wait for this very run to end
            yield event

    monkeypatch.setattr(inner, "stream", counting)
    return seen


def test_a_race_stopped_mid_run_ends_at_its_next_step_and_a_new_race_runs(engine, monkeypatch):
    handlers = Handlers(engine)
    seen = stop_after(handlers, monkeypatch, "race", "s1", n_events=5)
    outputs = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 32, 1, None, request=Request("s1")))
    # AR's warm-up (33 steps for 32 tokens) ended at the step of the Stop: nothing after "timing ar…"
    assert seen[0] == 5 and len(outputs) == 2 and "timing ar" in outputs[0][0]
    assert "Stopped before any mode was timed" in outputs[1][0]  # the run draws itself stopped
    seen[0] = -1000  # no further Stop: the next Race of the session (and another session's) runs to its end
    *_, (html, _, measured) = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 1, None, request=Request("s1")))
    assert html.count('class="tt-card"') == 2 and set(measured["tokens_per_s"]) == {"ar", "diffusion"}


def test_a_sweep_stopped_mid_point_ends_at_its_next_step(engine, monkeypatch):
    handlers = Handlers(engine)
    seen = stop_after(handlers, monkeypatch, "sweep", "s1", n_events=3)
    outputs = list(handlers.sweep(["fibonacci"], "", "0.5, 0.9", "4", 4, 16, False, 1, Request("s1")))
    drawn = [out for out in outputs if not sweep_tick(out)]  # less the ticks before each timed run
    assert seen[0] == 3 and len(drawn) == 2 and len(outputs) == 3  # its opening message, a tick before the warm-up
    assert "Stopped during the warm-up" in drawn[1][3]  # and, stopped within it: no point was measured
    seen[0] = -1000
    other = list(handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 1, Request("s2")))
    assert "1 grid point over 1 prompt" in other[-1][3]


def test_a_new_race_of_a_session_supersedes_its_race_still_going(engine):
    """The front end can start a second Race while a stopped one is pending; two at once would disturb each
    other's timings. The newer runs; the older ends at its next step; another session's Race is untouched."""
    handlers = Handlers(engine)
    older = handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 1, None, request=Request("s1"))
    other = handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 1, None, request=Request("s2"))
    assert "timing ar" in next(older)[0] and "timing ar" in next(other)[0]
    newer = handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 1, None, request=Request("s1"))
    assert "timing ar" in next(newer)[0]
    (stopped, *_), = list(older)  # its warm-up's next step raised Stopped: it ends, drawn stopped
    assert "Stopped before any mode was timed" in stopped
    for race in (newer, other):
        *_, (html, _, _) = list(race)
        assert html.count('class="tt-card"') == 2 and "Stopped" not in html
    assert handlers._stops._live == {}  # ended runs leave nothing per session


def test_a_refused_run_stops_nothing_and_newer_sweeps_and_audits_supersede(engine):
    handlers = Handlers(engine)
    race = handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 1, None, request=Request("s1"))
    assert "timing ar" in next(race)[0]
    refused = list(handlers.race("def f(x):", ["diffusion"], 5.0, 4, 4, 8, 1, None, request=Request("s1")))
    assert "γ" in refused[-1][0]  # its message, and the Race going is untouched
    *_, (html, _, _) = list(race)
    assert html.count('class="tt-card"') == 2
    older = handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 8, False, 1, Request("s1"))
    next(older)  # its opening message: the grid's inputs checked, its watch begun
    *_, (_, _, _, message) = list(handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 1, Request("s1")))
    assert "1 grid point over 1 prompt" in message and "Stopped" in list(older)[-1][3]
    handlers.frame_interval_s = 0.0
    older = handlers.speculative_audit("def f(x):", 0.8, 4, 4, 16, 0.0, 0, False, None, request=Request("s1"))
    next(older)
    *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 4, 8, 0.0, 0, False, None,
                                                         request=Request("s1")))
    assert "Running" not in summary and "Stopped" in list(older)[-1][2]
    assert handlers._stops._live == {}


def test_an_audit_stopped_mid_run_ends_at_its_next_step(engine, monkeypatch):
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0.0  # every verified round is drawn
    seen = stop_after(handlers, monkeypatch, "audit", "s1", n_events=10)
    outputs = list(handlers.speculative_audit("def f(x):", 0.8, 4, 4, 32, 0.0, 0, False, None, request=Request("s1")))
    assert seen[0] == 10 and outputs[:-1] and all("Running" in summary for *_, summary in outputs[:-1])
    assert "Stopped: the rounds above were verified" in outputs[-1][2]  # …but the rounds drawn, marked stopped
    # with the text those rounds wrote (a stopped audit showed no output at all), and what it ran with
    assert "Output so far (verified: " in outputs[-1][2] and "Ran: speculative · S 4" in outputs[-1][2]
    seen[0] = -1000
    *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 4, 8, 0.0, 0, False, None,
                                                         request=Request("s1")))
    assert "Running" not in summary and "verification rounds" in summary


def test_a_stop_with_no_run_going_stops_the_run_queued_unless_its_button_is_pressed_again(engine):
    """A Stop pressed while the Race waits in Gradio's queue (no run going yet) stops it as it begins; a Race
    pressed after that Stop (its queue-free race_start goes first) is not stopped by it."""
    handlers = Handlers(engine)
    handlers.race_start(["diffusion"], 1, 0.8, 4, 4, 8, "def f(x):", request=Request("s1"))
    handlers.stop_race(Request("s1"))  # nothing going: returns at once
    last = {"view": '<div class="tt-card">the last Race</div>'}  # the session's measured state holds its cards
    outputs = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 1, last, request=Request("s1")))
    assert len(outputs) == 1 and "timing" not in str(outputs)  # nothing timed
    # the last Race's cards stay, said to be its: race_start had already dropped the note that they were
    # measured at other settings, so they looked like this Race's
    view = outputs[0][0]
    assert view.index("Stopped before it started") < view.index("the last Race") and outputs[0][1:] == (gr.skip(),) * 2
    for panel, run in (("audit", lambda: handlers.speculative_audit("def f(x):", 0.8, 4, 4, 8, 0.0, 0, False, None,
                                                                  request=Request("s1"))),
                       ("sweep", lambda: handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 1, Request("s1")))):
        getattr(handlers, f"stop_{panel}")(Request("s1"))
        (*kept, said), = list(run())  # it left no trace: now it says so, over what the panel showed
        assert all(output == gr.skip() for output in kept) and "Stopped before it started" in said, panel
    handlers.stop_sweep(Request("s1"))
    handlers.sweep_start(1, 4, 4, "0.5", "4", ["fibonacci"], "", False, request=Request("s1"))  # pressed again: the
    # earlier Stop is not for this run
    *_, (_, _, _, message) = list(handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 1, Request("s1")))
    assert "1 grid point over 1 prompt" in message
    handlers.stop_audit(Request("s1"))
    handlers.audit_pressed("def f(x):", 0.8, 4, 4, 8, 0.0, 0, False, None, request=Request("s1"))  # likewise
    *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 4, 8, 0.0, 0, False, None,
                                                         request=Request("s1")))
    assert "Stopped" not in summary and "verification rounds" in summary
    assert handlers._stops._live == {} and handlers._stops._stop_next == set()


def test_stop_returns_once_its_run_has_ended(engine, monkeypatch):
    """The Stop listener returns after the stopped run's generator has ended, so the "stopped" line drawn next
    (race_stopped) is over the run's last view."""
    import threading
    import time

    handlers = Handlers(engine)
    inner = handlers.engine._engine
    stream = inner.stream

    def slow(*args, **kwargs):  # 10 ms a step: the Race's four AR runs take seconds, so the Stop lands mid-run
        for event in stream(*args, **kwargs):
            time.sleep(0.01)
            yield event

    monkeypatch.setattr(inner, "stream", slow)
    race = handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 64, 3, None, request=Request("s1"))
    next(race)  # "timing ar…": the watch has begun
    watch, outputs = handlers._stops._live["s1", "race"], []
    worker = threading.Thread(target=lambda: outputs.extend(race))  # the queue's worker: the rest of the Race
    worker.start()
    time.sleep(0.05)
    handlers.stop_race(Request("s1"))
    assert watch.ended.is_set()
    worker.join(5.0)
    assert not worker.is_alive() and "Stopped before any mode was timed" in outputs[-1][0]


def test_a_panels_button_pressed_during_its_run_replaces_it_unless_its_inputs_are_refused(engine):
    """Run sweep pressed during a Sweep queued the new grid behind the whole old one, with no word on screen: a
    press whose inputs the panel accepts now stops the session's run going at its next step (drawn stopped), so
    the new one runs next; a refused press costs that run nothing. Race and audit alike."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0  # the audit draws every round: a step to press the button in
    runs = {
        "race": (lambda: handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 32, 2, None, request=Request("s1")),
                 lambda prompt: handlers.race_start(["diffusion"], 2, 0.8, 4, 4, 32, prompt, request=Request("s1")),
                 "Stopped"),
        "sweep": (lambda: handlers.sweep(["fibonacci"], "", "0.5,0.9", "4,8", 4, 32, False, 1, Request("s1")),
                  lambda prompt: handlers.sweep_start(1, 4, 32, "0.5", "4", ["fibonacci"], prompt, False,
                                                      request=Request("s1")),
                  "Stopped"),
        "audit": (lambda: handlers.speculative_audit("def f(x):", 0.8, 4, 4, 32, 0.0, 0, False, None, request=Request("s1")),
                  lambda prompt: handlers.audit_pressed(prompt, 0.8, 4, 4, 32, 0.0, 0, False, None,
                                                        request=Request("s1")),
                  "Stopped"),
    }
    for panel, (run, press, stopped) in runs.items():
        going = run()
        next(going)  # its first update: the run has begun
        said = press("   " if panel != "sweep" else "x" * 10**5)  # refused (an empty or too long prompt): it goes on
        # said now in the stale-note box (the audit's note box): the press itself waits for the run going to end
        note = said if panel == "audit" else said[1]
        assert (panel == "audit" or said[0] == gr.skip()) and "Not run: " in note and "going runs on" in note, said
        rest = list(going)
        assert stopped not in str(rest[-1]) and handlers._stops._live == {}, panel
        going = run()
        next(going)
        accepted = press("def g(y):" if panel != "sweep" else "")  # accepted: the run going stops at its next step
        assert panel != "audit" or accepted == "", accepted  # and a refused press's note goes
        rest = [out for out in going if not sweep_tick(out)]  # less the Sweep's ticks before its timed runs
        assert len(rest) == 1 and stopped in str(rest[-1]), panel
        assert handlers._stops._live == {} and handlers._stops._stop_next == set(), panel


def test_a_refused_audit_press_said_while_an_audit_ran_keeps_that_audits_summary(engine):
    """Through Chromium: the refused press's note said "Not run: …; the audit going runs on", then Gradio ran the
    deferred press (trigger_mode always_last) once the audit had ended: its press listener cleared the note and its
    run put the refusal in place of the finished audit's summary. The replay now keeps both."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    args = (0.8, 4, 4, 16, 0.0, 0, False, None)
    going = handlers.speculative_audit("def f(x):", *args, request=Request("s1"))
    next(going)
    note = handlers.audit_pressed("   ", *args, request=Request("s1"))
    assert "Not run: the prompt holds only whitespace" in note and "The audit going runs on." in note
    *_, (_, _, summary) = list(going)
    assert "mean acceptance length" in summary  # it ran on to its end
    # the deferred press, replayed by Gradio: the note stays, and the refused run leaves the summary as it is
    assert handlers.audit_pressed("   ", *args, request=Request("s1")) == gr.skip()
    assert list(handlers.speculative_audit("   ", *args, request=Request("s1"))) == [(gr.skip(),) * 3]
    # said once: a refused press with no audit going is said by its run, in the summary, as before
    assert handlers.audit_pressed("   ", *args, request=Request("s1")) == ""
    (refused,) = list(handlers.speculative_audit("   ", *args, request=Request("s1")))
    assert "the prompt holds only whitespace" in refused[2]
    # Gradio reads a deferred press's inputs when it replays it: a prompt typed since runs as any press does
    going = handlers.speculative_audit("def f(x):", *args, request=Request("s1"))
    next(going)
    assert "Not run" in handlers.audit_pressed("   ", *args, request=Request("s1"))
    list(going)
    assert handlers.audit_pressed("x = 1", *args, request=Request("s1")) == ""
    *_, (_, _, summary) = list(handlers.speculative_audit("x = 1", *args, request=Request("s1")))
    assert "mean acceptance length" in summary and handlers._audit_refusal_said == {}


def test_the_app_forgets_a_session_when_its_page_closes(engine):
    """demo.unload is wired to Handlers.forget_session (a closed page's entries piled up on a shared server)."""
    from ui.app import build_demo

    demo = build_demo(engine)
    unloads = [f for f in demo.fns.values() if getattr(f.fn, "__name__", "") == "forget_session"]
    assert len(unloads) == 1 and isinstance(unloads[0].fn.__self__, Handlers)
