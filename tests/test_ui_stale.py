"""Race and Sweep results that a slider has outdated say so: the pure note and the handlers that record what a
run read (the browser test moves γ after a Race and reads the note)."""

from ui.panel_handlers import PanelHandlers
from ui.render_panels import stale_note


def test_no_note_before_a_run_or_while_the_settings_are_those_it_read():
    current = {"gamma": 0.8, "block_size": 16}
    assert stale_note(None, current, "Race") == ""
    # sliders send floats: 16.0 is S = 16, and 0.1 + 0.2 is the γ of 0.3
    assert stale_note({"gamma": 0.30000000000000004, "block_size": 16}, {"gamma": 0.3, "block_size": 16.0}, "Race") == ""


def test_note_names_each_moved_setting_with_both_values_and_only_those():
    used = {"gamma": 0.8, "block_size": 16, "steps_per_block": 16, "max_new_tokens": 64}
    html = stale_note(used, {**used, "gamma": 0.6000000000000001, "max_new_tokens": 32}, "Race")
    assert "γ 0.8 → 0.6" in html and "max new tokens 64 → 32" in html
    assert "S " not in html and "steps per block" not in html
    assert "run the Race again" in html and html.startswith('<div class="tt-note">')


def test_handlers_record_what_the_run_reads_and_compare_the_sliders_with_it():
    used, note = PanelHandlers.race_settings(0.8, 16.0, 8.0, 64.0)
    assert used == {"gamma": 0.8, "block_size": 16, "steps_per_block": 8, "max_new_tokens": 64} and note == ""
    assert isinstance(used["block_size"], int)  # shown as "16", not "16.0"
    assert PanelHandlers.race_staleness(used, 0.8, 16.0, 8.0, 64.0) == ""
    assert "S 16 → 8" in PanelHandlers.race_staleness(used, 0.8, 8.0, 8.0, 64.0)
    assert PanelHandlers.race_staleness(None, 0.5, 8.0, 8.0, 64.0) == ""  # no Race yet: nothing to outdate

    swept, note = PanelHandlers.sweep_settings(16.0, 32.0)
    assert swept == {"steps_per_block": 16, "max_new_tokens": 32} and note == ""
    # γ and S are the Sweep's own lists: the shared sliders' γ and S do not outdate it
    assert PanelHandlers.sweep_staleness(swept, 16.0, 32.0) == ""
    assert "steps per block 16 → 4" in PanelHandlers.sweep_staleness(swept, 4.0, 32.0)
    assert "Sweep again" in PanelHandlers.sweep_staleness(swept, 16.0, 8.0)


def test_a_panels_own_inputs_outdate_it_too_prompts_named_as_edited():
    used, _ = PanelHandlers.race_settings(0.8, 16.0, 8.0, 64.0, "def f(x):")
    assert PanelHandlers.race_staleness(used, 0.8, 16.0, 8.0, 64.0, "def f(x):") == ""
    note = PanelHandlers.race_staleness(used, 0.8, 16.0, 8.0, 64.0, "def g(y):\n    return y" * 20)
    assert "(prompt edited)" in note and "def g" not in note  # the text itself would swamp the note
    healed, _ = PanelHandlers.race_settings(0.8, 16.0, 8.0, 64.0, "def f(x):", True)
    assert "(token healing on → off)" in PanelHandlers.race_staleness(healed, 0.8, 16.0, 8.0, 64.0, "def f(x):", False)

    swept, _ = PanelHandlers.sweep_settings(16.0, 32.0, "0.5, 0.9", "4, 8", ["fibonacci"], "", False)
    assert PanelHandlers.sweep_staleness(swept, 16.0, 32.0, "0.5, 0.9", "4, 8", ["fibonacci"], "", False) == ""
    note = PanelHandlers.sweep_staleness(swept, 16.0, 32.0, "0.5, 0.7", "4, 8", ["fibonacci", "class"], "x = 1", True)
    assert ("γ values 0.5, 0.9 → 0.5, 0.7" in note and "prompt set fibonacci → fibonacci, class" in note
            and "extra prompt edited" in note and "anchored diffusion off → on" in note and "block sizes" not in note)


def test_a_refused_race_or_sweep_keeps_the_settings_and_note_of_the_results_on_screen(engine):
    """The Race / Run sweep button recorded the settings even when the run was refused: the note was cleared,
    and putting the refused value back then read as "settings moved" (γ values abc → 0.9) beside results
    measured at 0.9."""
    import gradio as gr

    handlers = PanelHandlers(engine)
    used, note = handlers.race_start(["diffusion"], 1, 0.8, 4.0, 4.0, 8.0, "def f(x):")
    # (the healing checkbox is no setting of a prompt with nothing to heal: the Race runs the same either way)
    assert used == PanelHandlers.race_settings(0.8, 4.0, 4.0, 8.0, "def f(x):")[0] and note == ""
    for refused in ((["diffusion"], 1, 0.8, 4.0, 4.0, 8.0, "   "),  # an empty prompt
                    (["diffusion"], 1, 7.0, 4.0, 4.0, 8.0, "def f(x):"),  # γ out of range
                    (["diffusion"], 0, 0.8, 4.0, 4.0, 8.0, "def f(x):")):  # no timed run
        assert handlers.race_start(*refused) == (gr.skip(), gr.skip()), refused
    # AR alone reads no γ: a Race of AR alone with γ 7 runs, so its settings are recorded
    assert handlers.race_start([], 1, 7.0, 4.0, 4.0, 8.0, "def f(x):")[0]["gamma"] == 7.0

    good = (1, 4.0, 8.0, "0.9", "16", ["fibonacci"], "", False)
    swept, note = handlers.sweep_start(*good)
    assert swept == PanelHandlers.sweep_settings(*good[1:])[0] and note == ""
    for change in ({3: "abc"}, {4: "0"}, {5: [], 6: ""}, {0: 0}):  # bad γ, bad S, no prompt, no timed run
        refused = tuple(change.get(i, value) for i, value in enumerate(good))
        assert handlers.sweep_start(*refused) == (gr.skip(), gr.skip()), change
