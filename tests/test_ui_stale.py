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

    swept, _ = PanelHandlers.sweep_settings(16.0, 32.0, "0.5, 0.9", "4, 8", ["fibonacci"], "", False)
    assert PanelHandlers.sweep_staleness(swept, 16.0, 32.0, "0.5, 0.9", "4, 8", ["fibonacci"], "", False) == ""
    note = PanelHandlers.sweep_staleness(swept, 16.0, 32.0, "0.5, 0.7", "4, 8", ["fibonacci", "class"], "x = 1", True)
    assert ("γ values 0.5, 0.9 → 0.5, 0.7" in note and "prompt set fibonacci → fibonacci, class" in note
            and "extra prompt edited" in note and "anchored diffusion off → on" in note and "block sizes" not in note)
