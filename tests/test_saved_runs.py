"""The Playground's "Open a saved run (JSON)" (ui/saved_runs.py): a trace (twotower/trace.py) back on the board as the
run drew it, with the file's own pieces and EOS; a file that is no trace, or one hand-edited past drawing, refused in
words over the last board; an opened run through releases, Stop and refusals. The trace's own round trip
(read_trace, trace_events) is in test_trace.py."""

import html
import json
import os
import re

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402

from test_trace import TINY, traced  # noqa: E402
from twotower.cli import main as cli_main  # noqa: E402
from twotower.trace import trace_json  # noqa: E402


@pytest.mark.parametrize("mode", ["diffusion", "speculative"])
def test_a_saved_run_opens_on_the_playground_board_as_it_ran(engine, mode):
    """Save this run, then Open a saved run: the same board, completion and scrubber; every step replays; the
    statistics are the run's own and say the run came from a file; saved again, the file is the same."""
    from ui.board import count_frames
    from ui.handlers import OPENED_NOTE, Handlers

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    *_, (view, _, completion, record, _) = list(handlers.generate("def f(x):", mode, 0.8, 4.0, 4.0, 9.0, 0.0, 0,
                                                                  "step"))
    path = handlers.save_trace(record).value["path"]
    (opened,) = list(handlers.open_trace(path))
    o_view, o_stats, o_completion, o_record, scrubber, file_box = opened
    assert o_view == view and o_completion == completion and o_record["events"]
    assert html.unescape(OPENED_NOTE) in html.unescape(o_stats) and "opened from" in o_stats and ">done<" in o_stats
    frames = count_frames(record["events"])
    assert scrubber.maximum == frames and scrubber.value == frames
    for frame in range(1, frames + 1):  # each step as the live run's recording replays it
        assert handlers.replay(o_record, frame) == handlers.replay(record, frame)
    again = handlers.save_trace(o_record).value["path"]
    assert json.loads(open(again, encoding="utf-8").read()) == json.loads(open(path, encoding="utf-8").read())


def test_an_opened_run_is_drawn_with_its_own_models_pieces_and_a_bad_file_is_refused_over_the_board(engine,
                                                                                                   tmp_path):
    from ui.handlers import Handlers

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    *_, (view, _, _, record, _) = list(handlers.generate("def f(x):", "ar", 0.8, 4.0, 4.0, 5.0, 0.0, 0, "step"))
    trace = json.loads(open(handlers.save_trace(record).value["path"], encoding="utf-8").read())
    first = str(trace["new_tokens"][0][0])
    trace["pieces"][first] = "⟨another-models-piece⟩"  # a run of another model: its own tokenizer's text
    other = tmp_path / "other.json"
    other.write_text(json.dumps(trace), encoding="utf-8")
    (opened,) = list(handlers.open_trace(str(other), previous=record))
    assert "⟨another-models-piece⟩" in html.unescape(opened[0]) and "opened from other.json" in opened[1]
    # a file that is no trace: the message over the last board, which stays (and its recording, marked)
    bad = tmp_path / "notes.json"
    bad.write_text("{oops", encoding="utf-8")
    with pytest.warns(UserWarning, match="Not opened: notes.json: the file is not JSON"):
        (refused,) = list(handlers.open_trace(str(bad), previous=record))
    assert 'class="tt-error"' in refused[0] and refused[0].endswith(handlers.replay(record, None, "step"))
    assert refused[3] == {**record, "refused": True} and refused[1:3] == (gr_skip(), gr_skip())
    assert refused[5] == gr_skip()  # the last run's saved file stays
    with pytest.warns(UserWarning, match="Not opened: missing.json"):
        (refused,) = list(handlers.open_trace(str(tmp_path / "missing.json")))
    assert 'class="tt-error"' in refused[0] and refused[3] == gr_skip()


def test_generate_trace_from_the_cli_opens_in_the_playground(tmp_path, capsys, engine):
    from ui.handlers import Handlers

    path = tmp_path / "run.json"
    assert cli_main([*TINY, "--mode", "diffusion", "--trace", str(path), "def f(x):"]) == 0
    printed = capsys.readouterr().out
    (opened,) = list(Handlers(engine).open_trace(str(path), colour_by="confidence"))
    assert opened[2] and opened[2] in printed and 'data-done="1"' in opened[0]


def gr_skip():
    import gradio as gr

    return gr.skip()


def test_a_hand_edited_trace_opens_or_is_refused_in_words(engine, tmp_path):
    """A mode this build does not know is refused; settings missing or of another kind leave the caption the mode
    alone (the board is the events'); a malformed "engine" names no model."""
    from twotower.trace import read_trace
    from ui.handlers import Handlers

    _, trace = traced(engine, "diffusion")
    with pytest.raises(ValueError, match="the trace's mode: unknown mode 'foo'"):
        read_trace(trace_json({**trace, "mode": "foo"}))
    path = tmp_path / "edited.json"
    path.write_text(trace_json({**trace, "settings": {"steps_per_block": "four"}, "engine": "?"}), encoding="utf-8")
    (opened,) = list(Handlers(engine).open_trace(str(path)))
    assert 'data-done="1"' in opened[0] and "diffusion · opened from edited.json<" in opened[1]


def _edited(trace, edit):
    trace = json.loads(json.dumps(trace))
    edit(trace)
    return trace


@pytest.mark.parametrize("edit, words", [
    (lambda t: t.update(stats=[1, 2]), "\"stats\" is not a JSON object"),
    (lambda t: t["events"][-1]["info"].update(new_tokens=[]), "event {last} cannot be read: a done event's new_tokens"),
    (lambda t: t["events"][-1]["info"].update(new_tokens=[[1e300]]), "a done event's new_tokens"),
    (lambda t: t["pieces"].update({"1": 7}), "\"pieces\" are not all text"),
    (lambda t: t["events"][0]["info"].update(needed="2"), "event 1 cannot be read: info's needed is not a whole number"),
    (lambda t: [e["info"].update(rejected_pos=[1]) for e in t["events"] if e["kind"] == "verify"],
     "info's rejected_pos is not a whole number"),
    (lambda t: t.update(version=True), "of version True"),
], ids=["stats-list", "done-empty", "done-float", "piece-int", "needed-text", "rejected-list", "version-bool"])
def test_a_hand_edited_trace_the_board_could_not_draw_is_refused_by_the_event(engine, tmp_path, edit, words):
    from ui.handlers import Handlers

    _, trace = traced(engine, "speculative")
    trace["events"][0]["info"]["needed"] = 2  # (a step event's field; the reader checks it wherever it is)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(_edited(trace, edit)), encoding="utf-8")
    words = words.replace("{last}", str(len(trace["events"])))
    with pytest.warns(UserWarning, match=re.escape(words)):
        (refused,) = list(Handlers(engine).open_trace(str(path)))
    assert 'class="tt-error"' in refused[0] and "Not opened: edited.json" in refused[0]


@pytest.mark.parametrize("text, words", [
    ('{"format": "twotower-trace", "elapsed": NaN}', "holds NaN, which JSON has no value for"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_json_no_trace_holds_is_refused(text, words):
    from twotower.trace import read_trace

    with pytest.raises(ValueError, match=words):
        read_trace(text.encode())


def test_an_opened_run_stays_through_releases_that_change_nothing_and_a_refused_open_stops_a_run_going(engine,
                                                                                                       tmp_path):
    """Opened beside the panel's inputs: a release with those inputs leaves it (tabbing through the number boxes),
    one that moves a setting runs the panel's prompt. A bad file opened while a run goes draws that run stopped, as
    a refused Generate does. Stop over an opened run changes nothing (none is going), and an opened unfinished
    run keeps its file's completion."""
    from ui.handlers import Handlers

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    panel = ["x = 1", "diffusion", 0.8, 4.0, 4.0, 9.0, 0.0, 0, "step", False]
    *_, (_, _, _, record, _) = list(handlers.generate("def f(x):", "ar", 0.8, 4.0, 4.0, 6.0, 0.0, 0, "step"))
    path = handlers.save_trace(record).value["path"]
    (opened,) = list(handlers.open_trace(path, *panel))
    o_record = opened[3]
    assert list(handlers.rerun("playground", *panel, o_record)) == [(gr_skip(),) * 5]
    moved = list(handlers.rerun("playground", *panel[:2], 0.5, *panel[3:], o_record))
    assert 'data-done="1"' in moved[-1][0] and moved[-1][3]["prompt"] == "x = 1" and "trace" not in moved[-1][3]
    # a run three steps in, superseded by a bad file: drawn stopped under the message
    going = {**record, "events": record["events"][:3]}
    bad = tmp_path / "bad.json"
    bad.write_text("[]", encoding="utf-8")
    with pytest.warns(UserWarning, match="Not opened: bad.json"):
        (refused,) = list(handlers.open_trace(str(bad), *panel, going))
    assert "stopped" in refused[1] and refused[3]["stopped"] is True
    # an unfinished run saved, opened: Stop changes nothing, a refusal over it keeps the file's completion
    trace = json.loads(open(handlers.save_trace({**record, "events": record["events"][:3]}).value["path"]).read())
    trace["completion"] = "FROM-THE-FILE"
    unfinished = tmp_path / "unfinished.json"
    unfinished.write_text(json.dumps(trace), encoding="utf-8")
    (opened,) = list(handlers.open_trace(str(unfinished), *panel))
    assert opened[2] == "FROM-THE-FILE" and opened[3]["stopped"] is True and "stopped" in opened[1]
    assert handlers.after_stop(opened[3], "step") == (gr_skip(),) * 5
    with pytest.warns(UserWarning):
        *_, (_, _, text, _, _) = list(handlers.generate("", "ar", 0.8, 4.0, 4.0, 6.0, 0.0, 0, "step", False,
                                                        opened[3]))
    assert text == "FROM-THE-FILE"


def test_an_opened_run_marks_its_own_models_eos(engine, tmp_path):
    from ui.handlers import Handlers

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    *_, (_, _, _, record, _) = list(handlers.generate("def f(x):", "ar", 0.8, 4.0, 4.0, 6.0, 0.0, 0, "step"))
    trace = json.loads(open(handlers.save_trace(record).value["path"]).read())
    assert trace["eos_token_id"] == engine.eos_token_id  # written since 2026-12-06
    trace["eos_token_id"] = trace["new_tokens"][0][2]  # another model's EOS id, at the third cell
    path = tmp_path / "other.json"
    path.write_text(json.dumps(trace), encoding="utf-8")
    (opened,) = list(handlers.open_trace(str(path)))
    assert opened[0].count("tt-cell eos") == 1 and "after-eos" in opened[0]


def test_a_generate_waiting_in_the_queue_does_not_start_over_an_opened_run(engine):
    """Opening acts as Stop on the session's Playground run: one going stops at its next step, and one still
    waiting in the queue never starts (with Generate's supersede instead, it started after the open and drew over
    it). The next Generate pressed runs as usual."""
    from types import SimpleNamespace

    from ui.handlers import Handlers

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    request = SimpleNamespace(session_hash="s1")
    *_, (_, _, _, record, _) = list(handlers.generate("def f(x):", "ar", 0.8, 4, 4, 4, 0.0, 0, "step",
                                                      request=request))
    path = handlers.save_trace(record).value["path"]
    handlers.supersede("playground", request)  # Generate pressed: its queue-free listener; the run waits
    handlers.open_pressed(request)  # then a file opened
    (opened,) = list(handlers.open_trace(path, request=request))
    queued = list(handlers.generate("x = 1", "ar", 0.8, 4, 4, 4, 0.0, 0, "step", previous=opened[3],
                                    request=request))
    assert queued == [(gr_skip(),) * 5]  # it never started: the opened run stays
    handlers.supersede("playground", request)  # Generate pressed again
    *_, (view, _, _, again, _) = list(handlers.generate("x = 1", "ar", 0.8, 4, 4, 4, 0.0, 0, "step",
                                                        previous=opened[3], request=request))
    assert 'data-done="1"' in view and "trace" not in again
