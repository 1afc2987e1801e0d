"""What the measuring panels tell a user beyond their numbers: a stopped audit says so, a stopped Race's numbers
still reach the Cost panel, the Sweep's timed runs per point, the Model tab's yes / no, an unseeded run's caption,
and bad Cost numbers refused by name (the components no longer pre-empt the handlers with Gradio's bare Error)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import html  # noqa: E402

import gradio as gr  # noqa: E402

from tiny_models import timed_record  # noqa: E402
from ui.handlers import Handlers, run_caption  # noqa: E402


def test_a_stopped_audit_says_so_and_a_finished_one_is_left_alone(engine):
    handlers = Handlers(engine)
    updates = list(handlers.speculative_audit("def f(x):", 1.0, 2, 2, 8, 0.0, 0))
    running = updates[0][2]  # after the first verification round
    assert "Running: 1 round(s) verified" in running
    stopped = handlers.audit_stopped(running)
    assert "Stopped: the rounds above were verified before Stop" in stopped and "Running" not in stopped
    assert "verification rounds" in stopped  # the figures so far stay
    assert handlers.audit_stopped(updates[-1][2]) == gr.skip()  # finished: its summary is final
    assert handlers.audit_stopped("") == gr.skip()


def test_an_audit_says_when_its_proposal_cut_was_not_applied(engine):
    """Sampling over several draft passes verifies the whole draft whatever the cut (it could favour drawn
    tokens): the slider moved and nothing changed, with no word why. Greedy, the cut applies and nothing is said."""
    handlers = Handlers(engine)
    said = "the proposal cut (min draft confidence) is off when sampling"
    for temperature, cut, noted in ((0.8, 0.5, True), (0.0, 0.5, False), (0.8, 0.0, False)):
        *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 2, 8, temperature, 0, False, cut))
        assert (said in summary.lower()) == noted, (temperature, cut)


def test_a_new_audit_takes_the_last_ones_histogram_away_at_its_first_round(engine):
    """The last audit's histogram (another prompt, other settings) stood beside the new audit's live rounds."""
    handlers = Handlers(engine)
    handlers.frame_interval_s = 0  # every round drawn
    first, *live, final = list(handlers.speculative_audit("def f(x):", 1.0, 2, 2, 8, 0.0, 0))
    assert first[1] is None and live and all(update[1] == gr.skip() for update in live)
    assert final[1] is not None and final[1] != gr.skip()  # a finished run draws its own


def test_a_finished_audit_shows_the_text_it_wrote_and_where_its_times_were_measured(engine):
    from twotower.decoding import drain

    handlers = Handlers(engine)
    *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 1.0, 2, 2, 8, 0.0, 0))
    expected = drain(engine.stream("speculative", engine.encode_prompt("def f(x):"), gamma=1.0, block_size=2,
                                   steps_per_block=2, max_new_tokens=8, temperature=0.0, seed=0))
    written = engine.decode(expected.new_tokens[0])
    assert f'<div class="tt-text" data-output="1">{html.escape(written)}</div>' in summary
    assert "drafting · verifying (measured here, cpu)" in summary


def test_each_timed_mode_reaches_the_cost_panel_before_the_race_ends(engine, monkeypatch):
    """Stop after AR was timed: "Use the last Race's measurements" said no Race had run."""
    from twotower import bench

    monkeypatch.setattr(bench, "timed_generation", lambda *a: timed_record(rows=[[7] * 4], seconds=0.5))
    race = Handlers(engine).race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 1)
    first = next(race)  # "timing ar…": nothing measured yet, the session's numbers untouched
    assert first[2] == gr.skip()
    while True:  # on to the frame that starts timing diffusion, where a Stop could land
        view, _, measured = next(race)
        if "timing diffusion" in view:
            break
    race.close()  # Stop
    assert measured["tokens_per_s"] == {"ar": 8.0} and "by the Race at" in measured["labels"]["ar"]
    assert Handlers(engine).use_race_numbers(measured) == (8.0, gr.skip(), gr.skip())


def test_the_sweep_times_each_point_the_chosen_number_of_times(engine, monkeypatch):
    from twotower import bench

    calls = []
    monkeypatch.setattr(bench, "timed_generation", lambda *a: calls.append(a[1]) or timed_record(rows=[[7] * 4]))
    handlers = Handlers(engine)
    *_, (_, _, _, once) = list(handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 1))
    n_once, calls[:] = len(calls), []
    *_, (_, _, _, thrice) = list(handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 3))
    # the warm-up runs once either way; each point's and its AR's timed runs three times
    assert len(calls) - n_once == 2 * 2 and calls.count("ar") == calls.count("diffusion")
    assert "one timed run per point" in once and "median of 3 timed runs per point" in thrice
    *_, (_, _, _, refused) = list(handlers.sweep(["fibonacci"], "", "0.5", "4", 4, 4, False, 0))
    assert "timed runs per point must be" in refused


def test_the_model_tab_says_yes_or_no_and_what_its_count_counts(engine):
    html = Handlers(engine).model_info()
    assert "decode passes compiled (torch.compile)</th><td>no<" in html and "False" not in html
    assert "weight matrices stored input-major (count" in html


def test_an_unseeded_sampled_run_is_captioned_unseeded():
    settings = dict(gamma=0.8, block_size=4, steps_per_block=4, temperature=0.7, seed=None)
    assert "temperature 0.7, unseeded" in run_caption("ar", settings)
    assert "temperature 0.7, seed 3" in run_caption("ar", {**settings, "seed": 3})


def test_extreme_cost_figures_print_in_three_significant_digits():
    from ui.cost import cost_table
    from ui.render_panels import cost_html

    html = cost_html(cost_table({"ar": 1e-300, "diffusion": 100.0}, 2.0, 1, 0.5, 0.6), {})
    assert "<td>1e-300</td>" in html and "$1.11e+303" in html and "1.3e-300 M" in html
    assert "<td>100.00</td>" in html and "<td>$1,440</td>" in html and "$11.111" in html  # ordinary ones as before
    assert len(html) < 1500  # a 300-digit figure made the table run off the page


def test_plot_axes_hold_whole_rounds_and_the_whole_share():
    from twotower.sweep import sweep_figure
    from ui.plots import acceptance_histogram

    one = {"gamma": 0.5, "block_size": 4, "steps_per_block": 4, "tokens_per_pass": 1.0, "ar_mean_loglik": -1.0,
           "tokens_per_s": 10.0, "ratio_vs_ar": 0.8, "agreement": 0.5, "pareto": True}
    assert tuple(sweep_figure([one]).layout.yaxis.range) == (-0.02, 1.02)  # one point drew -0.5 … 1
    assert acceptance_histogram([2, 3], 4).layout.yaxis.dtick == 1  # no tick at half a round
    assert acceptance_histogram([2] * 40, 4).layout.yaxis.dtick == 5  # at most 8 ticks
    assert acceptance_histogram([], 4).layout.yaxis.rangemode == "nonnegative"  # no round: the axis ran from -1
    from ui.plots import race_bars

    assert race_bars([]).layout.yaxis.rangemode == "nonnegative"  # a Race timing AR, no card yet: likewise


def test_the_cost_table_shows_the_throughput_as_the_race_numbers_copied_it():
    """The Race card's 34.3 (of 34.2546) was copied as 34.25 and shown by the Cost table as 34.2."""
    from ui.cost import cost_table
    from ui.render_panels import cost_html

    assert "<td>34.25</td>" in cost_html(cost_table({"ar": round(34.2546, 2)}, 2.0, 1, 0.6), {})


def test_an_audit_of_two_tokens_says_why_it_has_no_round(engine):
    """max new tokens 2: the prefill's token, then the last token from the context tower: no round, while the
    note spoke of a run of one token only, beside an output of two."""
    *_, (table, _, _) = list(Handlers(engine).speculative_audit("def f(x):", 0.8, 4, 4, 2, 0.0, 0))
    assert "a run of one or two tokens has none" in table


def test_a_mode_the_cost_panel_does_not_price_is_named(engine):
    """The browser sends a number it cannot read ("5e", "1e400") as empty, which leaves the mode out: AR vanished
    from the table without a word while its field still showed the text."""
    table, _ = Handlers(engine).cost(2.0, 1, 60, None, 80.0, 0, 0.6)
    assert "Not priced: AR, speculative (its field is empty, 0, or not a number the page could read)" in table
    table, _ = Handlers(engine).cost(2.0, 1, 60, 100.0, 80.0, 50.0, 0.6)
    assert "Not priced" not in table
