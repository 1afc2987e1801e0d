"""The Playground's Stop and supersession, called directly (no server): what a stopped or superseded run leaves
on screen, and that it leaves no live entry behind. Gradio cancels the run on Stop too; these are the parts that
do not wait for Gradio's cancel to land."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402

from ui.handlers import Handlers  # noqa: E402

# diffusion with γ 0.99 on a random model commits one token a step: a run of many steps, stopped mid-block
ARGS = ("def f(x):", "diffusion", 0.99, 8.0, 8.0, 16.0, 0.0, 0)


class Request:
    def __init__(self, session_hash):
        self.session_hash = session_hash


def started(handlers, session, steps=3):
    """A run of the session, `steps` frames in: (its generator, its record so far)."""
    stream = handlers.generate(*ARGS, "step", request=Request(session))
    for _ in range(steps):
        out = next(stream)
    return stream, out[3]


def test_stop_ends_the_run_at_its_next_step_and_draws_what_the_record_keeps(engine):
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    stream, record = started(handlers, "s1")
    handlers.stop_playground(Request("s1"))  # as the app wires it: the Stop, then after_stop
    view, scrubber, stats, stopped, completion = handlers.after_stop(record, "step")
    assert stopped["stopped"] and "Stopped" in stats and 'class="tt-row stopped"' in view
    assert stopped["events"] == record["events"] and stopped["events"] is not record["events"]
    assert completion == ""  # no block finished: the completion holds finished blocks only
    # the run returned at its next step, drawing nothing
    assert list(stream) == [] and not handlers._stops.going("s1", "playground")
    assert scrubber.maximum == sum(e.kind == "step" for e in stopped["events"])


def test_a_stop_for_an_older_run_leaves_the_newer_one_going(engine):
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    _, older = started(handlers, "s1")
    newer, _ = started(handlers, "s1")  # the older is superseded
    handlers.after_stop(older, "step")  # drawn late, with the older run's record
    rest = list(newer)
    assert rest and 'data-done="1"' in rest[-1][0]


def test_a_run_superseded_by_a_refused_one_is_drawn_stopped_under_the_message(engine):
    """Generate mid-run with an empty prompt: the older run returned at its next step, and the refusal redrew
    its record as a running one ("being denoised", statistics "running")."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    stream, record = started(handlers, "s1")
    handlers.supersede("playground", Request("s1"))  # the queue-free listener of Generate
    assert list(stream) == []
    (view, stats, completion, kept, scrubber), = list(handlers.generate("  ", *ARGS[1:], "step", False, record,
                                                                        request=Request("s1")))
    assert "the prompt holds only whitespace" in view and 'class="tt-row stopped"' in view and "being denoised" not in view
    assert "Stopped" in stats and kept["stopped"] and completion == ""
    assert scrubber.visible and scrubber.maximum == sum(e.kind == "step" for e in record["events"])
    # a finished run under a refusal stays as it was drawn: its statistics and completion are left alone
    *_, (_, _, _, finished, _) = list(handlers.generate(*ARGS, "step", request=Request("s1")))
    (view, stats, completion, kept, _), = list(handlers.generate("", *ARGS[1:], "step", False, finished,
                                                                 request=Request("s1")))
    assert 'data-done="1"' in view and stats == completion == gr.skip() and kept == {**finished, "refused": True}


def test_supersede_with_no_run_going_leaves_no_entry_and_the_colour_radio_redraws(engine):
    """Supersede used to claim a run of its own; a run then cancelled while queued never released it, and the
    colour radio took the session for one with a run going."""
    handlers = Handlers(engine)
    *_, (_, _, _, record, _) = list(handlers.generate(*ARGS, "step", request=Request("s1")))
    handlers.supersede("playground", Request("s1"))
    assert handlers._stops._live == {} and handlers._live_colour == {}
    assert "confidence 0" in handlers.recolour(record, None, "confidence", request=Request("s1"))


def test_the_stop_reaches_the_run_on_the_server_and_one_still_queued_never_starts(engine):
    """Gradio's cancel alone missed a run pressed a moment before Stop (1 in 6 to 15 tries through Chromium ran on
    to its end). stop_playground stops the session's run at its next step, or, with none going yet, the next
    one to begin, unless its button (supersede, the queue-free listener before it) was pressed after the Stop."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    stream, _ = started(handlers, "s1")
    handlers.stop_playground(Request("s1"))
    assert list(stream) == []  # stopped at its next step
    handlers.stop_playground(Request("s1"))  # nothing going: the run waiting in the queue is the one stopped
    assert list(handlers.generate(*ARGS, "step", request=Request("s1"))) == [(gr.skip(),) * 5]
    assert handlers._stops._live == {}
    other = list(handlers.generate(*ARGS, "step", request=Request("s2")))  # another session's runs are not
    assert 'data-done="1"' in other[-1][0]
    handlers.stop_playground(Request("s1"))
    handlers.supersede("playground", Request("s1"))  # Generate pressed after that Stop: its run is not stopped
    assert 'data-done="1"' in list(handlers.generate(*ARGS, "step", request=Request("s1")))[-1][0]
