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


def note(handlers, record, heal=True, top_k=0, top_p=1.0, **changes) -> str:
    s = dict(INPUTS, **changes)
    return handlers.board_staleness(*s.values(), record, heal, top_k, top_p)


@pytest.fixture(scope="module")
def handlers(engine):
    return Handlers(engine)


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
    assert "since this run was opened" in note(handlers, record, gamma=0.5)


def test_a_run_starting_on_the_playground_clears_the_note(handlers):
    assert handlers.board_fresh("playground") == "" and handlers.board_fresh("race") == gr.skip()


def test_the_note_listeners_are_wired_to_every_run_setting(engine):
    """Each input a run reads triggers the note, which reads the values as sent; runs and Stop end with it."""
    from ui.app import build_demo

    demo = build_demo(engine)
    wired = [fn for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "board_staleness"]
    assert wired and all(fn.preprocess is False for fn in wired)
    triggers = {(t[0]._id if hasattr(t[0], "_id") else t[0], t[1]) for fn in wired for t in fn.targets}
    ids = {block.elem_id: block._id for block in demo.blocks.values() if getattr(block, "elem_id", None)}
    for elem in ("prompt", "mode", "gamma", "block-size", "steps", "max-new", "temperature", "seed", "top-k",
                 "top-p", "anchor-first", "heal"):
        assert (ids[elem], "change") in triggers, elem
    assert any(t[1] == "then" for fn in wired for t in fn.targets)  # worked out again as runs end
