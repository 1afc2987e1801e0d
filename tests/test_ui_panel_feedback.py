"""What the measuring panels tell a user beyond their numbers: a stopped audit says so, a stopped Race's numbers
still reach the Cost panel, the Sweep's timed runs per point, the Model tab's yes / no, an unseeded run's caption,
and bad Cost numbers refused by name (the components no longer pre-empt the handlers with Gradio's bare Error)."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import html  # noqa: E402

import pytest  # noqa: E402

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


def test_an_audits_summary_adds_up_its_tokens_and_names_what_it_ran_with(engine):
    """12 new tokens read beside 5 rounds and 5 accepted, the other 2 nowhere; the settings that ran were said
    nowhere once the sliders moved on (a cut typed past its end was clamped by the page)."""
    import re

    handlers = Handlers(engine)
    *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 2, 9, 0.0, 0, True, 0.25))
    found = re.search(r"new tokens</td><td class=\"v\">(\d+) = 1 from the prompt&#x27;s pass \+ (\d+) accepted \+ "
                      r"(\d+) the context tower&#x27;s own \(one a round\)( \+ 1 the context tower&#x27;s last \(no round: one "
                      r"token left\))?<", summary)
    assert found, summary
    new, accepted, rounds = (int(found.group(i)) for i in (1, 2, 3))
    assert new == 9 == 1 + accepted + rounds + bool(found.group(4))
    assert f"verification rounds</td><td class=\"v\">{rounds}<" in summary
    assert "Ran: speculative · S 4 · " in summary and "up to 9 new tokens · adaptive draft length" in summary
    assert "proposal cut 0.25" in summary and "greedy" in summary


def test_new_tokens_add_up_on_the_snapshot_path_and_say_an_eos_cut():
    """After a re-scan the last token needs no pass of its own (the cursor holds its logits): counting passes, the
    line came out one short and blamed an end-of-text token that never came."""
    from spec_decode import iter_speculative
    from twotower import build_model
    from twotower.decoding import drain
    from ui.render_panels import new_tokens_line

    model = build_model("tiny", seed=0)
    for size in (2, 3, 4):
        stats = drain(iter_speculative(model, [1, 50, 60], max_new_tokens=16, block_size=size,
                                       per_position_rollback=False)).stats
        assert new_tokens_line(stats).startswith("16 = 1 from the prompt"), (size, stats)
    stats = dict(stats, accepted=stats["accepted"] + 3)  # an EOS inside a round: fewer tokens than counted
    assert new_tokens_line(stats).startswith("16: the run ended at an end-of-text token inside a round, which cut 1 "
                                             "from the prompt's pass + ")


def test_a_refused_audit_keeps_the_last_audits_summary_under_its_message(engine):
    """A refused run kept the last audit's rounds and histogram but replaced its summary and text with the message:
    half a panel, with nothing to say whose."""
    from types import SimpleNamespace

    handlers = Handlers(engine)
    tab = SimpleNamespace(session_hash="s1")
    *_, (_, _, summary) = list(handlers.speculative_audit("def f(x):", 0.8, 4, 2, 8, 0.0, 0, request=tab))
    ((rounds, plot, refused),) = list(handlers.speculative_audit("", 0.8, 4, 2, 8, 0.0, 0, request=tab))
    assert rounds == gr.skip() and plot == gr.skip()
    assert "the prompt is empty" in refused and "Below: the last audit, as it ran." in refused
    assert refused.endswith(summary)
    # another session has no audit of its own to keep: the message alone
    ((_, _, other),) = list(handlers.speculative_audit("", 0.8, 4, 2, 8, 0.0, 0, request=SimpleNamespace(
        session_hash="s2")))
    assert "the prompt is empty" in other and "Below" not in other
    handlers.forget_session(tab)
    assert ("s1", "audit") not in handlers._shown


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
    assert "Not priced: AR, speculative (their fields are empty, 0, or not a number the page could read)" in table
    table, _ = Handlers(engine).cost(2.0, 1, 60, None, 80.0, 50.0, 0.6)
    assert "Not priced: AR (its field is empty" in table
    table, _ = Handlers(engine).cost(2.0, 1, 60, 100.0, 80.0, 50.0, 0.6)
    assert "Not priced" not in table


def test_small_cost_figures_keep_three_significant_digits():
    """$0.0149 per M tokens was labelled "$0.01" on its bar and "$0.015" in the table, a monthly $0.6 "$1"."""
    from ui.cost import cost_line, cost_table
    from ui.plots import cost_bars
    from ui.render_panels import amount, cost_html

    assert (amount(0.0149, 2), amount(0.0149, 3), amount(0.6, 0), amount(0.0051, 2)) == ("0.0149", "0.0149", "0.6",
                                                                                        "0.0051")
    assert (amount(1440.0, 0), amount(11.1111, 3), amount(155.52, 1), amount(0.0, 2)) == ("1,440", "11.111",
                                                                                          "155.5", "0.00")
    fast = cost_line("ar", 50_000.0, 2.0, 1, 0.6)  # a GPU's throughput: $0.0185 per M tokens
    assert fast.usd_per_million == pytest.approx(0.018519, rel=1e-4)
    assert "$0.0185" in cost_html([fast], {}) and list(cost_bars([fast]).data[0].text) == ["$0.0185"]
    never = cost_html(cost_table({"ar": 10.0}, 2.0, 1, 0.6, 0.6), {})
    assert "capacity 15.6 M at this utilisation" in never  # 15.6 M at 60 %, not the GPU's 25.9 M


def test_race_numbers_are_copied_with_four_significant_digits_and_still_read_as_measured(engine):
    """Two decimals copied a measured 0.126 tokens/s as 0.13 (3 % off, labelled measured) and 0.004 as 0, which
    dropped the mode as "empty or 0"; the same 2-decimal tolerance called a typed 0.001 the measured 0.004."""
    from ui.cost_model_panel import provenance

    measured = {"tokens_per_s": {"ar": 0.12634, "diffusion": 0.0041234, "speculative": 111.3456},
                "labels": {mode: "measured on this machine by the Race" for mode in ("ar", "diffusion", "speculative")},
                "devices": {}}
    copied = Handlers(engine).use_race_numbers(measured)
    assert copied == (0.1263, 0.004123, 111.35)
    assert set(provenance(measured, dict(zip(("ar", "diffusion", "speculative"), copied)))) == {
        "ar", "diffusion", "speculative"}
    assert provenance(measured, {"ar": 0.13, "diffusion": 0.001, "speculative": 111.35}) == {
        "speculative": "measured on this machine by the Race"}  # two decimals of a figure past 100: four digits
    table, _ = Handlers(engine).cost(2.0, 1, 60, *copied, None, measured)
    assert "<td>0.1263</td>" in table and "<td>0.004123</td>" in table and "<td>111.35</td>" in table
    assert "Not priced" not in table
    # a Race's numbers are one request at a time: the table says so beside them, and not beside typed ones
    assert "batch 1" in table and "--batch-size" in table
    assert "batch 1" not in Handlers(engine).cost(2.0, 1, 60, 100.0, None, None, None, measured)[0]


def test_an_api_price_the_form_cannot_use_is_named_with_what_to_do():
    from ui.cost import cost_line

    with pytest.raises(ValueError, match=r"API price .* must be > 0, got 0 \(leave it empty for no comparison"):
        cost_line("ar", 100.0, 2.0, 1, 0.6, api_usd_per_million=0)
    # 1e-300 $ per M tokens against $1e10 an hour: an infinite break-even was blamed on the price per GPU-hour and the throughput
    with pytest.raises(ValueError, match=r"API price \(\$ per M tokens\) 1e-300 is too small") as refused:
        cost_line("ar", 100.0, 1e10, 1, 0.6, api_usd_per_million=1e-300)
    assert "GPU-hour" not in str(refused.value)
    # $1e306 an hour: the cost is beyond reach whatever the API price, and the message names the hourly price
    with pytest.raises(ValueError, match="check the price per GPU-hour"):
        cost_line("ar", 100.0, 1e306, 1, 0.6, api_usd_per_million=1.0)
    with pytest.raises(ValueError, match=r"\(100 % at most\), got 1.5"):
        cost_line("ar", 100.0, 2.0, 1, 1.5)


def test_a_race_with_the_denoiser_on_the_cpu_is_priced_as_a_cpu_figure():
    """The CPU caveat read the context tower's device alone: a GPU context tower with a CPU denoiser gave none."""
    from types import SimpleNamespace

    import torch

    from ui.panel_handlers import PanelHandlers

    model = SimpleNamespace(ctx_device=torch.device("cuda", 0), den_device=torch.device("cpu"))
    fake = SimpleNamespace(engine=SimpleNamespace(model=model))
    results = [{"mode": "ar", "tokens_per_s": 90.0}, {"mode": "diffusion", "tokens_per_s": 60.0}]
    measured = PanelHandlers._measured(fake, None, results, "by the Race")
    assert measured["devices"] == {"ar": "cuda", "diffusion": "cpu"}  # AR runs the context tower alone


def test_a_cost_table_names_what_it_priced_with_and_a_refused_form_keeps_it(engine):
    """The table stayed when the price moved on, with nothing saying it was priced at the old one (a utilisation
    the page clamped to 1 % read as typed); a refused form took the table away and left the chart."""
    from types import SimpleNamespace

    handlers = Handlers(engine)
    tab = SimpleNamespace(session_hash="s1")
    table, _ = handlers.cost(2.0, 3, 55.5, 100.0, None, None, 0.6, request=tab)
    assert "Priced at $2.00 per GPU-hour, 3 GPUs, 55.5 % utilisation." in html.unescape(table)
    refused, plot = handlers.cost(-2.0, 3, 55.5, 100.0, None, None, 0.6, request=tab)
    assert plot == gr.skip() and "price per GPU-hour" in refused
    assert "Below: the last form computed." in refused and refused.endswith(table)
    # "Use the last Race's measurements" computes through cost_from_race, whose request Gradio must see
    from gradio.helpers import special_args

    assert special_args(handlers.cost_from_race, list(range(8)), request=tab)[0][-1] is tab
    huge, _ = handlers.cost(2.0, 1e300, 55.5, 100.0, None, None, None)
    assert "Priced at $2.00 per GPU-hour, 1e+300 GPUs" in huge
    # no table yet in another session: the message alone
    alone, _ = handlers.cost(-2.0, 3, 55.5, 100.0, None, None, 0.6, request=SimpleNamespace(session_hash="s2"))
    assert "Below" not in alone


def test_enter_in_a_cost_number_box_computes(engine):
    from ui.app import build_demo

    demo = build_demo(engine)
    ids = {block._id: getattr(block, "label", None) for block in demo.blocks.values()}
    submits = {ids.get(t[0]) for fn in demo.fns.values() if getattr(fn.fn, "__name__", "") == "cost"
               for t in fn.targets if t[1] == "submit"}
    assert {"$ per GPU-hour", "GPUs", "API price, $ per M output tokens"} <= submits
    assert any(label and label.startswith("AR tokens/s") for label in submits)


def test_the_race_draws_no_chart_before_a_mode_is_timed(engine):
    """While AR was timed, an empty bar chart drew axes of mode -1 … 6 and 0–4 tokens/s, and stayed so after a
    Race stopped before any mode was timed."""
    updates = [u for u in Handlers(engine).race("def f(x):", ["diffusion"], 0.8, 4, 4, 4, 1, None) if u is not None]
    assert "timing ar" in updates[0][0] and updates[0][1] is None
    assert updates[-1][1] is not None and len(updates[-1][1].data[0].x) == 2  # AR and diffusion, once timed
