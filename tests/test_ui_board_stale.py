"""The Playground's note over its board once a setting has moved since the board's run (ui.handlers.board_staleness,
ui.playground_common.board_stale_note): a slider moved from the keyboard is never released in Gradio's sense, and
temperature, seed, top-k / top-p and max new tokens re-run nothing, so the board stood under settings that did not
make it, unmarked."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from ui.handlers import Handlers  # noqa: E402

# the Playground's inputs as ui/wiring.py sends them (c.playground_in): prompt, mode, γ, S, steps, max new tokens,
# temperature, seed, colour, anchor, the recorded run, healing, top-k, top-p
INPUTS = dict(prompt="def f(x):", mode="diffusion", gamma=0.8, block_size=4.0, steps_per_block=4.0,
              max_new_tokens=8.0, temperature=0.0, seed=0, colour_by="step", anchor_first=False)


def ran(handlers, **changes) -> dict:
    s = dict(INPUTS, **changes)
    *_, (_, _, _, record, _) = handlers.generate(*s.values())
    return record


def note(handlers, record, heal=True, top_k=0, top_p=1.0, request=None, **changes) -> str:
    s = dict(INPUTS, **changes)
    return handlers.board_staleness(*s.values(), record, heal, top_k, top_p, request=request)


@pytest.fixture
def handlers(engine):
    return Handlers(engine)  # one per test: what a run started with is kept per session


def test_no_note_while_the_settings_are_the_boards(handlers):
    record = ran(handlers)
    assert note(handlers, record) == ""
    # as a browser sends them: S as a float, the box's value whole; the colour radio is not a run's setting
    assert note(handlers, record, block_size=4, colour_by="confidence") == ""
    assert note(handlers, None) == "" and note(handlers, {"events": []}) == ""  # nothing on the board


def test_a_moved_setting_is_named_with_both_values(handlers):
    record = ran(handlers)
    assert "γ 0.8 → 0.7" in note(handlers, record, gamma=0.7) and "Generate runs them" in note(handlers, record, gamma=0.7)
    assert "max new tokens 8 → 16" in note(handlers, record, max_new_tokens=16.0)
    assert "temperature 0 → 0.5" in note(handlers, record, temperature=0.5)
    assert "prompt edited" in note(handlers, record, prompt="def g(y):")
    assert "mode diffusion → AR" in note(handlers, record, mode="ar")
    # out of range, as a box sends it before the browser clamps it: compared, never refused
    assert "γ 0.8 → 7" in note(handlers, record, gamma=7)
    assert "anchored diffusion off → on" in note(handlers, record, anchor_first=True)


def test_what_the_boards_run_did_not_read_moves_nothing(handlers):
    ar = ran(handlers, mode="ar")
    assert note(handlers, ar, mode="ar", gamma=0.3, block_size=16.0, steps_per_block=2.0, anchor_first=True) == ""
    # greedy reads no seed and no filter
    assert note(handlers, ar, mode="ar", seed=5, top_k=40, top_p=0.9) == ""
    sampled = ran(handlers, temperature=0.7, seed=3)
    assert "seed 3 → 4" in note(handlers, sampled, temperature=0.7, seed=4)
    assert "top-k none → 40" in note(handlers, sampled, temperature=0.7, seed=3, top_k=40)
    assert note(handlers, sampled, temperature=0.7, seed=3, top_k=0, top_p=1) == ""  # the "every token" ends
    # "def f(x):" ends on a whole token: healing had nothing to take back, off runs the same
    assert note(handlers, ran(handlers), heal=False) == ""


def test_an_opened_run_is_compared_with_the_inputs_it_was_opened_beside(handlers):
    record = {**ran(handlers), "trace": {}, "panel": handlers._panel_key(*[INPUTS[k] for k in (
        "prompt", "mode", "gamma", "block_size", "steps_per_block", "max_new_tokens", "temperature", "seed",
        "anchor_first")], True, 0, 1.0)}
    assert note(handlers, record) == ""
    assert "since this run was opened (γ 0.8 → 0.5): Generate runs" in note(handlers, record, gamma=0.5)
    assert "since this run was opened (γ 0.8 → 7)" in note(handlers, record, gamma=7)  # as typed, before the clamp
    assert "since this run was opened: Generate runs" in note(handlers, record, top_k=-1)  # unreadable: unnamed


class Session:
    def __init__(self, name):
        self.session_hash = name


def test_the_note_compares_with_what_the_latest_run_started_with(handlers):
    """The recording is the board's from the run's first frame: a checkbox's change, sent after its release-like
    `input`, was compared with the run before and the note named the settings the new run was using."""
    record = ran(handlers)  # γ 0.8, anchor off, on the board
    tab = Session("a")
    started = dict(INPUTS, anchor_first=True)
    assert handlers.board_fresh("playground", *started.values(), record, True, 0, 1.0, request=tab) == ""
    assert note(handlers, record, anchor_first=True, request=tab) == ""  # the run starting reads it: no note
    assert "anchored diffusion on → off" in note(handlers, record, request=tab)  # moved again, from the new run's
    assert "anchored diffusion off → on" in note(handlers, record, anchor_first=True)  # another session: its own board
    # a release on another tab runs nothing there: the board stays the started run's
    assert handlers.board_fresh("race", *dict(INPUTS, gamma=0.3).values(), record, True, 0, 1.0, request=tab) == gr.skip()
    assert note(handlers, record, anchor_first=True, request=tab) == ""
    # inputs no run takes (γ past the end, through the API): the board stays the recording's
    assert handlers.board_fresh("playground", *dict(INPUTS, gamma=7).values(), record, True, 0, 1.0, request=tab) == ""
    assert "anchored diffusion off → on" in note(handlers, record, anchor_first=True, request=tab)


def test_a_refused_run_or_an_opened_file_gives_the_board_back_to_its_recording(handlers):
    record = ran(handlers)
    tab = Session("b")
    handlers.board_fresh("playground", *dict(INPUTS, prompt="   ").values(), record, True, 0, 1.0, request=tab)
    list(handlers.generate("   ", *list(INPUTS.values())[1:], record, request=tab))  # refused: the board stays
    assert note(handlers, record, request=tab) == ""  # (compared with the empty prompt it read "prompt edited")
    handlers.board_fresh("playground", *dict(INPUTS, gamma=0.5).values(), record, True, 0, 1.0, request=tab)
    assert handlers.open_pressed(request=tab) == "" and note(handlers, record, request=tab) == ""


def test_speculative_gamma_is_compared_only_where_a_draft_takes_several_passes(handlers):
    from ui.playground_common import board_stale_note

    ran_settings = {"prompt": "x", "mode": "speculative", "heal": True, "healed": None,
                    "settings": {"gamma": 0.8, "block_size": 16, "max_new_tokens": 8, "temperature": 0.0}}
    moved = dict(prompt="x", mode="speculative", gamma=0.75, block_size=16, max_new_tokens=8, temperature=0, heal=True)
    assert board_stale_note(ran_settings, moved, draft_steps=1) == ""  # one pass commits the block: γ unread
    assert "γ 0.8 → 0.75" in board_stale_note(ran_settings, moved, draft_steps=2)
    assert "S 16 → 8" in board_stale_note(ran_settings, {**moved, "block_size": 8.0}, draft_steps=1)
    # an empty seed box is unseeded, as run_settings records it
    sampled = {**ran_settings, "settings": {**ran_settings["settings"], "temperature": 0.5, "seed": None}}
    assert board_stale_note(sampled, {**moved, "gamma": 0.8, "temperature": 0.5, "seed": ""}) == ""


def test_the_note_listeners_are_wired_to_every_run_setting(engine):
    """Each setting a run reads triggers the note (the mode and the checkboxes re-run the board beside them), which
    reads the values as sent; every run start (Generate, Enter,
    each release) keeps its inputs first; an opened run is compared once it is on the board."""
    from ui.app import build_demo

    demo = build_demo(engine)
    ids = {block.elem_id: block._id for block in demo.blocks.values() if getattr(block, "elem_id", None)}

    def wired(name):
        fns = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == name]
        assert fns and all(fn.preprocess is False for fn in fns if name != "open_pressed"), name
        return {(t[0], t[1]) for fn in fns for t in fn.targets}

    notes = wired("board_staleness")
    for elem in ("prompt", "gamma", "block-size", "steps", "max-new", "temperature", "seed", "top-k", "top-p"):
        assert (ids[elem], "change") in notes, elem
    for elem in ("mode", "anchor-first", "heal"):  # beside the board, each re-runs it
        assert (ids[elem], "change") not in notes, elem
    assert [t for t in notes if t[1] == "then"] and len([t for t in notes if t[1] == "then"]) == 1  # the open's
    starts = wired("board_fresh")
    for elem, event in (("generate", "click"), ("prompt", "submit"), ("gamma", "release"), ("block-size", "release"),
                        ("steps", "release"), ("mode", "input"), ("anchor-first", "input"), ("heal", "input")):
        assert (ids[elem], event) in starts, (elem, event)
    assert (ids["open-run"], "upload") in wired("open_pressed")
