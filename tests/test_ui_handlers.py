"""The app's handlers called directly (no server): live streaming, replay, bad input, Race, cost provenance (the
Sweep's: test_ui_sweep_panel.py)."""

import json
import os
import re
from types import SimpleNamespace

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from tiny_models import timed_record  # noqa: E402
from twotower.decoding import drain  # noqa: E402
from ui.handlers import Handlers, run_settings  # noqa: E402
from ui.cost_model_panel import provenance  # noqa: E402
from ui.render_panels import figure_decimals  # noqa: E402
from ui.panel_handlers import PanelHandlers  # noqa: E402

SETTINGS = dict(gamma=1.0, block_size=4.0, steps_per_block=4.0, max_new_tokens=8.0, temperature=0.0, seed=0)


class CountingEngine:
    """Wraps an engine and counts the events the handler has pulled from the sampler."""

    def __init__(self, engine):
        self.inner, self.pulled = engine, 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def stream(self, *args, **kwargs):
        for event in self.inner.stream(*args, **kwargs):
            self.pulled += 1
            yield event


def generate(handlers, prompt="def f(x):", mode="diffusion", **overrides):
    s = dict(SETTINGS, **overrides)
    return list(handlers.generate(prompt, mode, s["gamma"], s["block_size"], s["steps_per_block"],
                                  s["max_new_tokens"], s["temperature"], s["seed"], "step"))


def test_generate_yields_each_step_as_the_sampler_produces_it(engine):
    counting = CountingEngine(engine)
    handlers = Handlers(counting)
    handlers.frame_interval_s = 0  # every step a frame (the tiny model's steps are faster than the pacing)
    stream = handlers.generate("def f(x):", "diffusion", *SETTINGS.values(), "step")
    view, stats, _, record, _ = next(stream)
    assert counting.pulled == 1  # drawn after the first denoiser pass, not after the whole run
    assert 'data-masked="3"' in view and "running" in stats
    outputs = [view] + [out[0] for out in stream]
    # γ = 1 on a random model commits one token per step: 2 blocks x 4 steps, then the final view
    assert len(outputs) == 9
    masked = [int(v.split('data-masked="')[1].split('"')[0]) for v in outputs]
    assert masked == [3, 2, 1, 0, 3, 2, 1, 0, 0]
    assert len(record["events"]) == counting.pulled


def test_steps_faster_than_the_frame_interval_are_drawn_together_and_all_recorded(engine):
    """The live view skips frames that would come sooner than frame_interval_s after the last one; the run's
    last view, its statistics and its recording (every step, for the scrubber) are those of an unpaced run."""
    every, paced = Handlers(engine), Handlers(engine)
    every.frame_interval_s, paced.frame_interval_s = 0, 3600  # no step is an hour apart: first frame, then the last
    for mode in ("diffusion", "ar", "speculative"):
        unpaced, outputs = generate(every, mode=mode), generate(paced, mode=mode)
        assert len(unpaced) > 3 and len(outputs) == 2, mode
        assert 'data-frames="1"' in outputs[0][0], mode  # the first step is drawn at once
        assert outputs[-1][0] == unpaced[-1][0] and outputs[-1][2] == unpaced[-1][2], mode
        assert [e.kind for e in outputs[-1][3]["events"]] == [e.kind for e in unpaced[-1][3]["events"]], mode


def test_the_frame_pacer_lets_a_frame_through_once_the_interval_has_passed():
    from ui.panel_common import FramePacer

    now = [0.0]
    pacer = FramePacer(0.04, clock=lambda: now[0])
    due = []
    for t in (0.0, 0.01, 0.039, 0.041, 0.05, 0.2, 0.21, 0.25):
        now[0] = t
        due.append(pacer.due())
    # measured from the last frame let through (0.0, then 0.041, then 0.2), not from the last step
    assert due == [True, False, False, True, False, True, False, True]


def test_final_output_is_the_engines(engine):
    handlers = Handlers(engine)
    for mode in ("diffusion", "mock_ar", "ar", "speculative"):
        view, stats, completion, record, scrubber = generate(handlers, mode=mode)[-1]
        ids = engine.encode_prompt("def f(x):")
        expected = drain(engine.stream(mode, ids, **run_settings(*SETTINGS.values())))
        assert completion == engine.decode(expected.new_tokens[0]), mode
        assert 'data-done="1"' in view and 'data-masked="0"' in view and "total time" in stats
        # speculative's first token is the context tower's, from the prefill: drawn as given, not as a step
        assert ("given, not from a denoiser step" in view) == (mode == "speculative"), mode
        # the legend's step scale is the slider's for diffusion only (it read "committed at step 0 … 3" for AR
        # too); AR and mock-AR key one token a pass, speculative its accepted draft
        if mode == "diffusion":
            assert f"</span> {int(SETTINGS['steps_per_block']) - 1} · " in view
        legend = view.split('class="tt-legend"')[1]
        assert ("one token a pass" in legend) == (mode in ("ar", "mock_ar")), mode
        assert ("accepted draft" in legend) == (mode == "speculative"), mode
        assert ("draft passes per round" in stats) == (mode == "speculative"), mode


def test_replay_redraws_any_recorded_step(engine):
    handlers = Handlers(engine)
    *_, (final_view, _, _, record, scrubber) = generate(handlers)
    assert scrubber.maximum == 8 and scrubber.visible
    assert 'data-masked="3"' in handlers.replay(record, 1)
    assert 'data-masked="0"' in handlers.replay(record, 4) and 'data-masked="3"' in handlers.replay(record, 5)
    assert handlers.replay(record, 8) == final_view
    assert "Replaying step 1 of 8; the statistics beside it are those of the whole run." in handlers.replay(record, 1)
    assert "Replaying" not in handlers.replay(record, 8)
    assert "generate first" in handlers.replay(None, 3)
    # the colour radio redraws a recorded run in the other colours, and leaves the view alone with none
    # (a refused Generate's error message stays on screen)
    recoloured = handlers.recolour(record, 8, "confidence")
    assert recoloured == handlers.replay(record, 8, "confidence") and recoloured != final_view
    assert isinstance(handlers.recolour(None, 3, "confidence"), type(gr.skip()))
    # an API caller's step that is no whole number: NaN was a ValueError traceback, 1.5 silently step 1
    for frame, shown in ((float("nan"), "nan"), (1.5, "1.5"), (True, "True")):
        view = handlers.replay(record, frame)
        assert f"the replay step must be an integer, got {shown}" in view and view.endswith(final_view)


@pytest.mark.parametrize("prompt, overrides, message", [
    ("", {}, "the prompt is empty"),
    ("   \n", {}, "the prompt holds only whitespace"),
    ("x" * 2100, {}, "the limit is 2048 tokens"),
    ("def f():", {"gamma": 0.0}, "γ must be in (0, 1]"),
    ("def f():", {"block_size": 2.5}, "block size S must be an integer"),
    ("def f():", {"temperature": -1.0}, "temperature must be 0 (greedy) or between"),
    ("def f():", {"seed": 1e20}, "seed must be &gt;= 0 and &lt;= 9223372036854775807"),
    ("def f():", {"seed": float("inf")}, "seed must be an integer"),
    ("def f(): \ud83d", {}, "not valid text"),
], ids=["empty", "blank", "too-long", "gamma-0", "fractional-S", "negative-temperature", "huge-seed", "inf-seed",
        "lone-surrogate"])
def test_bad_input_gives_a_message_not_a_traceback(engine, prompt, overrides, message):
    outputs = generate(Handlers(engine), prompt, **overrides)
    assert len(outputs) == 1
    view = outputs[0][0]
    assert 'class="tt-error"' in view and message in view
    assert all(out == gr.skip() for out in outputs[0][1:])  # the last run's text, stats and recording stay


def test_a_refusal_after_a_run_shows_the_whole_run_with_the_scrubber_at_its_last_step(engine):
    """Under the message the board is the whole last run; the scrubber stayed at the step replayed before."""
    handlers = Handlers(engine)
    record = generate(handlers)[-1][3]
    frames = sum(e.kind == "step" for e in record["events"])
    s = SETTINGS
    refused = list(handlers.generate("", "diffusion", s["gamma"], s["block_size"], s["steps_per_block"],
                                     s["max_new_tokens"], s["temperature"], s["seed"], "step", False, record))
    view, stats, completion, kept, scrubber = refused[-1]
    assert "the prompt is empty" in view and view.endswith(handlers.replay(record, None))
    assert stats == completion == gr.skip() and frames >= 2 and scrubber.value == frames
    assert kept == {**record, "refused": True}  # the same recording, marked as under a message


def test_race_measures_each_mode_and_feeds_the_cost_panel(engine, monkeypatch):
    handlers = Handlers(engine)
    *_, (html, figure, measured) = list(handlers.race("def f(x):", ["diffusion", "mock_ar"], 0.8, 4, 4, 8, 1))
    assert html.count('class="tt-card"') == 3 and "× AR" in html and "Greedy" in html
    assert set(measured["tokens_per_s"]) == {"ar", "diffusion", "mock_ar"}
    said = []
    monkeypatch.setattr(gr, "Info", said.append)
    tps = handlers.use_race_numbers(measured)
    assert said == ["Not copied: mock-AR (the Cost panel prices AR, diffusion and speculative)."]  # was silent
    # the Cost that follows the button: with no Race to copy the panel keeps what it shows (it added a "no
    # throughput given" box under the warning); after a Race it is the Cost button's own
    assert handlers.cost_from_race(2.0, 1, 60, 0, 0, 0, 1.0, None) == (gr.skip(), gr.skip())
    assert handlers.cost_from_race(2.0, 1, 60, tps[0], 0, 0, 1.0, measured)[0] == \
        handlers.cost(2.0, 1, 60, tps[0], 0, 0, 1.0, measured)[0]
    # speculative was not raced: its box keeps what the user typed (an update that changes nothing)
    ar = measured["tokens_per_s"]["ar"]  # copied to four significant digits, at least two decimals
    assert tps[0] == round(ar, figure_decimals(ar)) and tps[2] == gr.skip()
    table, _ = handlers.cost(2.0, 1, 60, tps[0], tps[1], 50.0, 1.0, measured)
    assert table.count("measured on this machine") == 2 and "typed by you" in table
    assert "measured on a CPU" in table  # a CPU machine's throughput, in fields that say GPU-hour
    typed, _ = handlers.cost(2.0, 1, 60, 100.0, 200.0, 50.0, 1.0, measured)
    assert "measured on a CPU" not in typed  # typed numbers: nothing was measured here
    assert provenance(measured, {"ar": tps[0] * 1.5}) == {}
    # a second Race without diffusion: diffusion keeps the first Race's number and that Race's label (it was
    # kept, and labelled "typed by you"); the new AR number carries the new Race's label
    first_label = measured["labels"]["diffusion"]
    measured["labels"] = {mode: label.replace("by the Race at", "by the first Race at")
                          for mode, label in measured["labels"].items()}
    *_, (_, _, second) = list(handlers.race("def g(y):", ["mock_ar"], 0.8, 4, 4, 8, 1, measured))
    assert second["tokens_per_s"]["diffusion"] == measured["tokens_per_s"]["diffusion"]
    assert "first Race" in second["labels"]["diffusion"] and "first Race" not in second["labels"]["ar"]
    tps = handlers.use_race_numbers(second)
    diffusion = measured["tokens_per_s"]["diffusion"]
    assert tps[1] == round(diffusion, figure_decimals(diffusion)) and "by the Race at" in first_label
    table, _ = handlers.cost(2.0, 1, 60, tps[0], tps[1], 50.0, 1.0, second)
    assert "by the first Race at" in table and "typed by you" in table  # speculative: never raced


def test_a_race_card_counts_the_tokens_it_timed_when_the_model_writes_eos(engine, monkeypatch):
    """EOS is ignored while timing: the card's count, text and agreement read the timed tokens, and say
    where EOS came (they read the text cut at EOS: "1 tokens" beside a speed measured over all of them)."""
    from twotower import bench

    real = bench.timed_generation

    def with_eos_first(engine_, mode, ids, max_new_tokens, settings):
        run = real(engine_, mode, ids, max_new_tokens, settings)
        run["rows"][0][0] = engine.eos_token_id
        return run

    monkeypatch.setattr(bench, "timed_generation", with_eos_first)
    *_, (html, _, _) = list(Handlers(engine).race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 1))
    assert html.count("8 tokens (EOS at token 1, ignored while timing)") == 2


def test_race_has_an_anchored_diffusion_contestant(engine):
    handlers = Handlers(engine)
    *_, (html, figure, measured) = list(handlers.race("def f(x):", ["diffusion", "diffusion_anchored"],
                                                      1.0, 4, 4, 8, 1))
    assert "<h4>diffusion, anchored</h4>" in html and "<h4>diffusion</h4>" in html
    assert set(measured["tokens_per_s"]) == {"ar", "diffusion", "diffusion_anchored"}
    assert [bar for bar in figure.data[0].x] == ["AR", "diffusion", "diffusion, anchored"]
    # γ = 1 on a random model: a token a pass, so the anchored run spends one pass less per block
    assert "denoiser passes 8" in html and "denoiser passes 6" in html


def test_model_info_describes_the_engine(engine):
    html = Handlers(engine).model_info()
    assert "M*EM-*" in html and "46,712" in html and "context tower parameters" in html  # labels, not code names
    assert "block size 4" in Handlers(engine).model_info(4.0)  # the S slider's value, as a float from Gradio


def test_a_fractional_block_size_in_the_model_tab_is_refused_over_the_last_plan(engine):
    """The Model tab's S box takes 2.5: the plan went, for a grey "No memory plan for this configuration"."""
    handlers, request = Handlers(engine), SimpleNamespace(session_hash="m1", headers={})
    handlers.model_info(4.0, request=request)
    refused = handlers.model_info(2.5, request=request)
    assert refused.index("block size S must be an integer, got 2.5") < refused.index("Below: the last plan.")
    assert "block size 4" in refused and "No memory plan" not in refused
    # a session with no plan of its own keeps the page's first, at the model's S
    first = handlers.model_info(0.5, request=SimpleNamespace(session_hash="m2", headers={}))
    assert f"block size {engine.model.config.default_block_size}" in first
    handlers.forget_session(request)
    assert ("m1", "model") not in handlers._shown


def test_an_anchored_run_shows_its_given_first_tokens(engine):
    """The Playground's anchor checkbox reaches the sampler: each block's first cell is drawn as given
    (grey, titled so), and a plain run has no such cell."""
    handlers = Handlers(engine)
    args = ("def f(x):", "diffusion", *SETTINGS.values(), "step")
    plain = list(handlers.generate(*args))[-1][0]
    anchored = list(handlers.generate(*args, True))[-1][0]
    assert "given, not from a denoiser step" in anchored and "given, not from a denoiser step" not in plain
    assert "</span> given" in anchored and "</span> given" not in plain  # and the legend says what grey is


@pytest.mark.parametrize("mode, overrides", [
    ("ar", {"max_new_tokens": 1.0}),  # one token: one frame
    ("speculative", {"max_new_tokens": 1.0}),
    ("diffusion", {"gamma": 0.05, "steps_per_block": 1.0, "max_new_tokens": 4.0}),  # a whole block in one pass
])
def test_a_run_of_one_step_finishes_without_a_scrubber(engine, mode, overrides):
    """Gradio refuses a slider whose ends meet: a run with a single frame used to raise at its end, after
    the last step, so its result never showed. Now it finishes and the scrubber stays hidden."""
    handlers = Handlers(engine)
    *_, (view, stats, completion, record, scrubber) = generate(handlers, mode=mode, **overrides)
    assert 'data-done="1"' in view and "total time" in stats and completion
    assert scrubber.visible is False
    assert handlers.after_stop(record) == (gr.skip(),) * 5  # Stop after the run ended changes nothing
    record = {**record, "events": record["events"][:-1]}  # Stop pressed after that one step, before the end
    _, stopped_scrubber, stats, _, _ = handlers.after_stop(record)
    assert stopped_scrubber.visible is False and "Stopped" in stats


def test_stop_mid_block_marks_the_block_stopped_and_counts_what_the_completion_shows(engine):
    """After Stop the unfinished block kept its 'being denoised' outline, and the statistics counted its
    committed tokens, which the completion (finished blocks only) never shows."""
    handlers = Handlers(engine)
    *_, (_, _, _, record, _) = generate(handlers, mode="diffusion", gamma=0.99, block_size=8.0,
                                        steps_per_block=8.0, max_new_tokens=16.0)
    events = record["events"]
    blocks = [i for i, e in enumerate(events) if e.kind == "block"]
    # Stop after the first block and two steps of the second: the second is half done
    cut = {**record, "events": events[:blocks[0] + 3]}
    assert [e.kind for e in cut["events"][-2:]] == ["step", "step"]
    view, scrubber, stats, stopped, completion = handlers.after_stop(cut)
    assert 'class="tt-row stopped" title="stopped before it finished' in view and 'class="tt-row active"' not in view
    assert view.count('class="tt-row') == 2 and "stopped (not in the completion)" in view  # the legend says it
    assert "being denoised" not in view
    in_block = cut["events"][-1].generated - 8
    assert in_block >= 1  # at least one token per step
    assert "tokens (finished blocks)</td><td class=\"v\">8<" in stats
    assert f"committed in the stopped block (not in the completion)</td><td class=\"v\">{in_block}<" in stats
    assert scrubber.maximum == sum(e.kind == "step" for e in cut["events"])
    # mock-AR's blocks are its tokens: stopped after a token's step, before the context tower read it
    *_, (_, _, _, mock, _) = generate(handlers, mode="mock_ar", max_new_tokens=4.0)
    steps = [i for i, e in enumerate(mock["events"]) if e.kind == "step"]
    _, _, mock_stats, _, _ = handlers.after_stop({**mock, "events": mock["events"][:steps[2] + 1]})
    assert "committed, not read by the context tower (not in the completion)</td><td class=\"v\">1<" in mock_stats
    assert "stopped block" not in mock_stats
    # the record remembers the Stop: the colour radio and the scrubber's last step draw the block stopped again,
    # an earlier step shows it as it was then, being denoised (they drew it "being denoised" at every step)
    assert stopped["stopped"] and not cut.get("stopped") and stopped["events"] == cut["events"]
    assert stopped["events"] is not cut["events"]  # a run still in its step appends to its own list, not this one
    assert completion == engine.decode(events[blocks[0]].tokens[0].tolist())  # the first block: the finished one
    assert 'class="tt-row stopped"' in handlers.recolour(stopped, scrubber.maximum, "confidence")
    assert 'class="tt-row stopped"' in handlers.replay(stopped, scrubber.maximum)
    earlier = handlers.replay(stopped, scrubber.maximum - 1)
    assert 'class="tt-row active"' in earlier and 'class="tt-row stopped"' not in earlier
    assert 'class="tt-row active"' in handlers.replay(cut, None)  # a run that was not stopped: as before


def test_stop_in_mock_ar_outlines_no_line(engine):
    """Mock-AR draws its one-token blocks as wrapped lines of text: a Stop between a token's step and its block
    event outlined the whole line as stopped, tokens of the completion included."""
    handlers = Handlers(engine)
    *_, (_, _, _, record, _) = generate(handlers, mode="mock_ar", max_new_tokens=12.0)
    events = record["events"]
    cut = {**record, "events": events[:max(i for i, e in enumerate(events) if e.kind == "step") + 1]}
    view, _, stats, _, _ = handlers.after_stop(cut)
    assert "tt-row stopped" not in view and "tt-row active" not in view and "Stopped" in stats


def test_race_with_no_contestant_says_so(engine):
    *_, (html, _, measured) = list(Handlers(engine).race("def f(x):", [], 0.8, 4, 4, 4, 1))
    assert html.count('class="tt-card"') == 1 and "tick a contestant" in html
    assert set(measured["tokens_per_s"]) == {"ar"}


def test_cost_and_race_name_a_bad_number(engine):
    handlers = Handlers(engine)
    table, _ = handlers.cost(2.0, 1, "lots", 100.0, None, None, 1.0)
    assert 'class="tt-error"' in table and "utilisation must be a number" in table
    *_, (html, _, _) = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, float("nan")))
    assert 'class="tt-error"' in html and "timed runs per mode must be an integer" in html


def test_a_race_of_several_runs_shows_their_spread_and_names_its_settings(engine):
    handlers = Handlers(engine)
    *_, (html, _, measured) = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 2, 8, 3))
    assert html.count("(runs ") == 2  # AR's card and diffusion's: min–max of the three timed runs
    assert "γ = 0.8, S = 4, 2 steps per block" in measured["labels"]["diffusion"]  # the Cost panel quotes it
    *_, (single, _, _) = list(handlers.race("def f(x):", [], 0.8, 4, 2, 8, 1))
    assert "(runs " not in single


def test_the_statistics_name_the_mode_and_settings_that_made_the_board(engine):
    handlers = Handlers(engine)
    *_, (_, stats, _, record, _) = generate(handlers, mode="diffusion", gamma=0.9)
    assert "diffusion · γ 0.9 · S 4 · 4 steps per block · greedy" in stats and record["caption"] in stats
    from ui.handlers import run_caption

    more = run_caption("diffusion", run_settings(0.9, 4, 64, 8, 0, 0))  # read "S 4 · 64 steps per block"
    assert "S 4 · 64 steps per block (at most 4 steps run)" in more
    assert "S 1 · 16 steps per block (at most 1 step runs)" in run_caption("diffusion", run_settings(0.9, 1, 16, 8, 0, 0))
    assert "S 1 · 1 step per block ·" in run_caption("diffusion", run_settings(0.9, 1, 1, 8, 0, 0))
    *_, (_, ar_stats, _, _, _) = generate(handlers, mode="ar")
    assert ">AR · greedy<" in ar_stats
    *_, (_, spec_stats, _, _, _) = generate(handlers, mode="speculative")
    passes = engine.model.config.default_draft_steps
    assert f"speculative · S 4 · {passes} draft pass" in spec_stats


def test_the_sampling_filters_are_recorded_and_named_only_where_a_draw_reads_them(engine):
    """top-k / top-p act on a sampled draw: a sampled run's caption and record (its saved trace's settings) name
    them; greedy reads neither, so a greedy run records none (the board said nothing of a filter that did nothing,
    and a release compared a top-k moved under greedy as a new setting: a re-run of the same text)."""
    from ui.handlers import run_caption

    assert run_settings(0.8, 4, 4, 8, 0, 0, 5, 0.5)["top_k"] is None
    assert run_settings(0.8, 4, 4, 8, 0, 0, 5, 0.5)["top_p"] is None
    # checked at any temperature, as the engine and the CLI check them, by the sliders' names
    for top_k, top_p, message in ((-1, None, "top-k must be >= 0"), (1.5, None, "top-k must be an integer"),
                                  (None, 0.0, "top-p must be in (0, 1]"), (None, 1.5, "top-p must be in (0, 1]")):
        for temperature in (0.0, 1.0):
            with pytest.raises(ValueError, match=re.escape(message)):
                run_settings(0.8, 4, 4, 8, temperature, 0, top_k, top_p)
    assert [(s["top_k"], s["top_p"]) for s in (run_settings(0.8, 4, 4, 8, 1.0, 0, 0.0, 1.0),
                                               run_settings(0.8, 4, 4, 8, 1.0, 0, None, None))] == [(None, None)] * 2
    sampled = run_settings(0.8, 4, 4, 8, 0.7, 3, 5.0, 0.5)
    assert (sampled["top_k"], sampled["top_p"]) == (5, 0.5)  # the slider's float, whole
    assert run_caption("ar", sampled).endswith("temperature 0.7, top-k 5, top-p 0.5, seed 3")
    # their "every token" ends name nothing
    assert run_caption("ar", run_settings(0.8, 4, 4, 8, 0.7, 3, 0, 1.0)).endswith("temperature 0.7, seed 3")
    handlers = Handlers(engine)
    s = dict(SETTINGS, temperature=1.0)
    runs = [list(handlers.generate("def f(x):", "ar", s["gamma"], s["block_size"], s["steps_per_block"],
                                   s["max_new_tokens"], s["temperature"], seed, "step", False, None, True, 1, None))
            for seed in (1, 2)]
    *_, (_, stats, text, record, _) = runs[0]
    assert record["settings"]["top_k"] == 1 and "top-k 1" in stats
    assert text == runs[1][-1][2]  # top-k 1: the argmax whatever the seed
    *_, (_, _, greedy_text, _, _) = generate(handlers, mode="ar")
    assert text == greedy_text
    # a release with the same inputs leaves the finished board; another top-k is another run
    args = ["def f(x):", "ar", s["gamma"], s["block_size"], s["steps_per_block"], s["max_new_tokens"], 1.0, 1]
    assert handlers._board_shows(record, *args, False, True, 1, None)
    assert not handlers._board_shows(record, *args, False, True, 2, None)
    trace = json.loads(open(handlers.save_trace(record).value["path"], encoding="utf-8").read())
    assert trace["settings"]["top_k"] == 1 and trace["settings"]["top_p"] is None


def test_a_release_supersedes_the_playground_run_only_on_its_tab(engine):
    """On another tab a release must not stop the Playground's run (a front-end cancel did, and left its board
    frozen mid-way); on the Playground tab the run in flight stops at its next step for the re-run."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0  # a frame every step: the paced run could end before the supersede on a fast host
    request = type("Request", (), {"session_hash": "s1"})()
    s = dict(SETTINGS, max_new_tokens=16.0)
    args = ("def f(x):", "mock_ar", s["gamma"], s["block_size"], s["steps_per_block"], s["max_new_tokens"],
            s["temperature"], s["seed"], "step")

    def frames_after_releases(*tabs):
        run = handlers.generate(*args, request=request)
        next(run)
        handlers.supersede("race", request)
        view = next(run)[0]
        for tab in tabs:
            handlers.supersede(tab, request)
        return view, list(run)

    view, rest = frames_after_releases()  # the twin: a release on another tab only
    assert 'data-done="0"' in view and len(rest) >= 8 and 'data-done="1"' in rest[-1][0]
    view, rest = frames_after_releases("playground")
    assert 'data-done="0"' in view and rest == []  # stopped at its next step


def test_a_slider_release_reruns_the_prompt_only_on_the_playground_tab(engine):
    """From the Race or the Sweep (which read the same sliders) a hidden Playground run shared the CPU with
    their timings, and with an empty Playground prompt it popped up a warning on the Cost tab."""
    handlers = Handlers(CountingEngine(engine))
    s = SETTINGS
    args = ("def f(x):", "diffusion", s["gamma"], s["block_size"], s["steps_per_block"], s["max_new_tokens"],
            s["temperature"], s["seed"], "step")
    assert list(handlers.rerun("race", *args)) == [(gr.skip(),) * 5] and handlers.engine.pulled == 0
    assert list(handlers.rerun("cost", "", *args[1:])) == [(gr.skip(),) * 5]  # no "prompt is empty" warning
    assert len(list(handlers.rerun("playground", *args))) > 1 and handlers.engine.pulled > 0


def test_a_release_that_changes_nothing_on_a_finished_board_runs_nothing(engine):
    """Gradio sends a slider's release when its number box loses focus, changed or not: tabbing through γ, S and
    steps re-ran the prompt three times (each replacing the board and its saved trace). A release whose inputs
    are those of the finished run on the board now leaves it; a changed one, or a board mid-run, runs."""
    handlers = Handlers(CountingEngine(engine))
    s = SETTINGS
    args = ["def f(x):", "diffusion", s["gamma"], s["block_size"], s["steps_per_block"], s["max_new_tokens"],
            s["temperature"], s["seed"], "step", False]
    *_, (_, _, _, record, _) = list(handlers.rerun("playground", *args))
    pulled = handlers.engine.pulled
    assert list(handlers.rerun("playground", *args, record)) == [(gr.skip(),) * 5] and handlers.engine.pulled == pulled
    changed = list(args)
    changed[4] = s["steps_per_block"] - 1
    assert len(list(handlers.rerun("playground", *changed, record))) > 1 and handlers.engine.pulled > pulled
    mid_run = {**record, "events": record["events"][:-1]}  # no "done": a run the release superseded
    assert len(list(handlers.rerun("playground", *args, mid_run))) > 1
    stopped = {**record, "stopped": True}
    assert len(list(handlers.rerun("playground", *args, stopped))) > 1
    # its queue-free listener before it: the saved trace's file stays, and a run pressed meanwhile (its first frame
    # not drawn yet: the board is the finished one) is not stopped, which the skipped re-run would not replace

    class Request:
        session_hash = "s"

    going = handlers._stops.begin("s", "playground")
    assert handlers.release_pressed("playground", *args, record, request=Request()) == gr.skip() and not going()
    dropped = handlers.release_pressed("playground", *changed, record, request=Request())
    assert dropped != gr.skip() and going()  # a change: the trace goes, the run going gives way to the re-run
    # wired with preprocess=False, it reads a number typed past the slider's end as sent (the slider's check
    # refused γ 7 in a hidden HTTP 500 before): one that cannot run reads as changed
    going = handlers._stops.begin("s", "playground")
    past_end = list(args)
    past_end[2] = 7
    assert handlers.release_pressed("playground", *past_end, record, request=Request()) != gr.skip() and going()


def test_a_release_after_a_refused_run_clears_its_message(engine):
    """A refused run (the prompt emptied) puts its message over the finished board; with the prompt typed back, a
    release that changed nothing left the message there, as the board's run was the one asked for."""
    handlers = Handlers(CountingEngine(engine))
    s = SETTINGS
    args = ["def f(x):", "diffusion", s["gamma"], s["block_size"], s["steps_per_block"], s["max_new_tokens"],
            s["temperature"], s["seed"], "step", False]
    *_, (_, _, _, record, _) = list(handlers.rerun("playground", *args))
    ((view, _, _, marked, _),) = list(handlers.generate("   ", *args[1:], record))
    assert "the prompt holds only whitespace" in view and marked["refused"] and marked["events"] == record["events"]
    assert len(list(handlers.rerun("playground", *args, marked))) > 1  # runs again: the message goes


def test_a_release_of_a_setting_ar_does_not_read_leaves_a_finished_ar_board(engine):
    """Moving γ, S, the steps or the anchor re-ran the Playground's AR (and mock-AR) text, identical each time; a
    setting every mode reads (the token budget) still runs, and so does a change of mode."""
    handlers = Handlers(CountingEngine(engine))
    s = SETTINGS
    args = ["def f(x):", "ar", s["gamma"], s["block_size"], s["steps_per_block"], s["max_new_tokens"],
            s["temperature"], s["seed"], "step", False]
    *_, (_, _, _, record, _) = list(handlers.rerun("playground", *args))
    pulled = handlers.engine.pulled
    for index, value in ((2, 0.5), (3, s["block_size"] * 2), (4, 1), (9, True)):  # γ, S, steps, the anchor
        moved = list(args)
        moved[index] = value
        assert list(handlers.rerun("playground", *moved, record)) == [(gr.skip(),) * 5], index
    assert handlers.engine.pulled == pulled
    for index, value in ((5, s["max_new_tokens"] - 1), (1, "diffusion")):
        moved = list(args)
        moved[index] = value
        assert len(list(handlers.rerun("playground", *moved, record))) > 1, index
    assert handlers.engine.pulled > pulled

def test_a_race_can_be_stopped_between_two_timed_runs_and_says_so(engine):
    """The Race yielded once per mode, so Stop landed only after a warm-up and every timed run of the mode."""
    handlers = Handlers(engine)
    updates = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 8, 3))
    # per mode: its "timing" frame, then a skip before each of its 3 timed runs; then the result
    assert len(updates) == 2 * (1 + 3) + 1 and updates[1] == (gr.skip(),) * 3
    timing = updates[4][0]  # "timing diffusion…", AR's card above it
    stopped = handlers.race_stopped(timing)
    assert "timing diffusion" not in stopped and "Stopped" in stopped and stopped.count('class="tt-card"') == 1
    assert handlers.race_stopped(updates[-1][0]) == gr.skip()  # a finished Race keeps its note
    # stopped while AR was being timed: no card above, where it said "the modes above were timed before Stop"
    assert "Stopped before any mode was timed" in handlers.race_stopped(updates[0][0])


def test_a_refused_race_times_nothing_and_keeps_the_last_races_cards(engine, monkeypatch):
    """A γ out of range (the API's sliders have no ends) came back only after AR had been timed, and the
    message replaced the cards and the bars of the Race before it."""
    from twotower import bench

    handlers = Handlers(engine)
    # AR alone reads no diffusion setting: a γ the contestants would refuse does not stop it
    alone = list(handlers.race("def f(x):", [], 1.5, 4, 4, 4, 1))[-1][0]
    assert 'class="tt-error"' not in alone and alone.count('class="tt-card"') == 1
    *_, (view, _, measured) = list(handlers.race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 1))
    timed = []
    monkeypatch.setattr(bench, "timed_generation", lambda *a, **k: timed.append(a) or {})
    for settings, message in [((1.5, 4, 4, 4), "γ must be in (0, 1]"), ((0.8, 0, 4, 4), "block size S must be"),
                              ((0.8, 4, 4, 0), "max_new_tokens must be >= 1")]:
        updates = list(handlers.race("def f(x):", ["diffusion"], *settings, 1, measured))
        assert len(updates) == 1 and timed == []
        error, bars, numbers = updates[0]
        assert message in html_text(error) and error.endswith(view) and bars == numbers == gr.skip()


def test_a_refused_race_after_a_stopped_one_shows_the_stopped_cards(engine):
    handlers = Handlers(engine)
    race = handlers.race("def f(x):", ["diffusion", "mock_ar"], 0.8, 4, 4, 4, 1)
    updates = [next(race) for _ in range(5)]  # timing ar, a run, timing diffusion, a run, timing mock_ar
    race.close()  # Stop while mock_ar is timed
    on_screen, measured = handlers.race_stopped(updates[4][0]), updates[4][2]
    assert measured["view"] == on_screen and on_screen.count('class="tt-card"') == 2
    error = list(handlers.race("", ["diffusion"], 0.8, 4, 4, 4, 1, measured))[0][0]
    assert "the prompt is empty" in error and error.endswith(on_screen)


def html_text(fragment: str) -> str:
    import html

    return html.unescape(fragment)


def stub_timings(monkeypatch, tokens, seconds):
    """bench.timed_generation stubbed: each mode writes tokens[mode]; the calls take seconds[0], seconds[1], …
    in turn (warm-ups included) and count themselves in nfe, so a test can tell which run a card shows."""
    from twotower import bench

    calls = []

    def timed(engine_, mode, ids, max_new_tokens, settings):
        calls.append(mode)
        return timed_record(rows=[list(tokens[mode])], seconds=seconds[len(calls) - 1], ttft_s=0.001,
                            nfe=len(calls), context_passes=1)

    monkeypatch.setattr(bench, "timed_generation", timed)
    return calls


def test_a_race_card_gives_the_agreement_of_the_modes_tokens_with_ars(engine, monkeypatch):
    # diffusion holds AR's token at 3 of 4 positions: 75% (an output compared with itself would read 100%)
    stub_timings(monkeypatch, {"ar": [70, 71, 72, 73], "diffusion": [70, 71, 99, 73]}, [1.0] * 4)
    *_, (html, _, _) = list(Handlers(engine).race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 1))
    assert html.count("agreement with AR") == 1 and "agreement with AR 75%" in html


def test_a_timed_mode_reports_its_median_run_and_the_spread_of_all(engine, monkeypatch):
    """Three timed runs of 3, 1 and 2 s after a 10 s warm-up: the card shows the 2 s run (the third call after
    the warm-up), 8 tokens in it at 4 tokens/s, and the runs' spread 8/3 to 8 tokens/s; the warm-up counts in none."""
    calls = stub_timings(monkeypatch, {"ar": list(range(40, 48))}, [10.0, 3.0, 1.0, 2.0])
    *_, timed = PanelHandlers(engine)._timed("ar", [5, 6], 8, {}, 3)
    assert len(calls) == 4 and timed["nfe"] == 4 and timed["total_s"] == 2.0
    assert timed["tokens_per_s"] == 4.0 and timed["tokens_per_s_range"] == pytest.approx((8 / 3, 8.0))
    # of an even count, the faster middle run (median_low): 2 s of 4, 1, 2 and 3 s
    stub_timings(monkeypatch, {"ar": list(range(40, 48))}, [10.0, 4.0, 1.0, 2.0, 3.0])
    *_, timed = PanelHandlers(engine)._timed("ar", [5, 6], 8, {}, 4)
    assert timed["total_s"] == 2.0 and timed["nfe"] == 4
    # and the Race's card reads those numbers
    stub_timings(monkeypatch, {"ar": list(range(40, 48))}, [10.0, 3.0, 1.0, 2.0])
    *_, (html, _, measured) = list(Handlers(engine).race("def f(x):", [], 0.8, 4, 4, 8, 3))
    assert "4.0 tokens/s (runs 2.7–8.0) · 8 tokens · 2.000 s" in html and measured["tokens_per_s"]["ar"] == 4.0


def test_the_colour_radio_moved_during_a_run_colours_the_rest_of_it(engine):
    """The run kept the colouring it started with: a change mid-run lasted until its next frame."""
    class Request:
        session_hash = "one"

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    s = SETTINGS
    stream = handlers.generate("def f(x):", "diffusion", s["gamma"], s["block_size"], s["steps_per_block"],
                               s["max_new_tokens"], s["temperature"], s["seed"], "step", request=Request())
    first = next(stream)
    assert "committed at step 0" in first[0]
    # the run draws the new colours from its next frame; a replay of its record here showed an old scrubber's step
    assert handlers.recolour(first[3], None, "confidence", request=Request()) == gr.skip()
    rest = list(stream)
    assert len(rest) > 2 and all("confidence 0" in out[0] and "committed at step" not in out[0] for out in rest)
    # another session's radio, or one moved with no run going, changes no run
    assert handlers.recolour(first[3], None, "step", request=Request()) and handlers._live_colour == {}


def test_a_radio_value_left_by_an_ended_run_does_not_colour_the_next(engine):
    """recolour saw a run going, the run ended and dropped the radio's value, then recolour wrote it: the entry
    outlived its run, and the next run drew in it whatever its own radio said (a review's interleaving)."""
    class Request:
        session_hash = "one"

    handlers = Handlers(engine)
    handlers.frame_interval_s = 0
    handlers._live_colour["one"] = "confidence"  # what that interleaving leaves behind
    s = SETTINGS
    frames = list(handlers.generate("def f(x):", "diffusion", s["gamma"], s["block_size"], s["steps_per_block"],
                                    s["max_new_tokens"], s["temperature"], s["seed"], "step", request=Request()))
    assert all("committed at step" in out[0] for out in frames[:-1]) and handlers._live_colour == {}
