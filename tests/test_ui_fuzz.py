"""A small, deterministic fuzz of the app's event handlers, called as Gradio calls them but with no server: the
functions ui/wiring.py wires to Generate, Stop, the slider / radio / checkbox listeners, Race, the audit, Sweep, Cost
and the Model tab, over random and edge-case values a browser can send (every slider at its ends and between,
S above max new tokens, steps above S, empty / blank / long / non-ASCII / emoji / NUL prompts, odd γ and S lists,
empty, 0, negative, huge and NaN numbers), and in unexpected orders (Stop or Cost before any run, a Sweep twice).

Invariants: no exception leaves a handler; every value a handler returns or yields passes Gradio's own
postprocessing for the components it is wired to (so a wrong count or type fails here as it would in the app);
bad input comes back as a plain-words message in the panel and keeps what the user had (the Playground's last run,
the Race's numbers for the Cost panel, the Sweep's last plot, table and CSV). Then regression tests for what a
longer run of this fuzz (a few thousand cases) found.
"""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import asyncio  # noqa: E402
import html  # noqa: E402
import inspect  # noqa: E402
import itertools  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402

import gradio as gr  # noqa: E402
import pytest  # noqa: E402

from ui.board import count_frames  # noqa: E402
from ui.render_panels import figure_decimals  # noqa: E402
from ui.examples import EXAMPLE_PROMPTS  # noqa: E402

SKIP = gr.skip()
NAN, INF = float("nan"), float("inf")
MODES = ["diffusion", "speculative", "mock_ar", "ar"]  # the mode radio's values
CONTESTANTS = ["diffusion", "diffusion_anchored", "speculative", "mock_ar"]  # the Race's checkbox values
# accepted prompts (the tiny preset's byte tokenizer takes any text) and refused ones (with the words that say why)
GOOD_PROMPTS = ["def f(x):", "ünïcödé 日本語 ≠", "🙂🚀" * 10, "a\x00b", "<script>alert(1)</script>", "y" * 2048,
                "\u200b", "\ufeffimport os", "def f():\n" * 100]
BAD_PROMPTS = {"": "the prompt is empty", " ": "the prompt holds only whitespace", "\n\t \r\n": "the prompt holds only whitespace",
               "x" * 5000: "the limit is 2048 tokens", "🙂" * 600: "the limit is 2048 tokens",
               "def f(): \ud83d": "not valid text"}


class App:
    """The demo ui/app.py builds, its wired functions by name, and one session's state for Gradio's postprocessing."""

    def __init__(self, demo):
        from gradio.state_holder import SessionState

        self.demo, self.fns = demo, {}
        for block_fn in demo.fns.values():  # the first wiring of a function (Cost's button and its .then agree)
            self.fns.setdefault(getattr(block_fn.fn, "__name__", None), block_fn)
        self.handlers = self.fns["generate"].fn.__self__
        self.state = SessionState(demo)

    def call(self, name: str, *args) -> list:
        """Run the function wired as `name` with as many values as the wiring gives it; a generator is drained.
        Every output goes through Gradio's postprocess_data for its output components (raises if it does not fit).
        Returns the outputs (one per yield)."""
        block_fn = self.fns[name]
        assert len(args) == len(block_fn.inputs), f"{name} is wired to {len(block_fn.inputs)} inputs"
        result = block_fn.fn(*args)
        outputs = list(result) if inspect.isgenerator(result) else [result]
        for out in outputs:
            asyncio.run(self.demo.postprocess_data(block_fn, list(out) if isinstance(out, tuple) else out, self.state))
            for value in out if isinstance(out, tuple) else (out,):
                assert not (isinstance(value, str) and "Traceback (most recent call last)" in value), name
        return outputs


@pytest.fixture(scope="module")
def app():
    from twotower.engine import load_engine
    from ui.app import build_demo

    return App(build_demo(load_engine(preset="tiny")))


def is_error(html) -> bool:
    return isinstance(html, str) and 'class="tt-error"' in html


def refused_keeping(outputs, error_at: int, kept: tuple[int, ...]) -> str:
    """A refusal: one output, a visible error at `error_at`, the outputs at `kept` left as they were (skips)."""
    assert len(outputs) == 1, f"{len(outputs)} outputs for a refused input"
    out = outputs[0]
    assert is_error(out[error_at]), out[error_at]
    assert all(out[i] == SKIP for i in kept), out
    return html.unescape(out[error_at])


# ---------------------------------------------------------------------------------------------------- Playground
def playground_cases(rng: random.Random):
    """(prompt, mode, γ, S, steps, max new tokens, temperature, seed, colour by, anchor): the sliders' ends, S
    above max new tokens, steps above S, every prompt, then random values on the sliders' steps."""
    for mode in MODES:
        yield "def f(x):", mode, 0.05, 1, 1, 1, 0.0, 0, "step", False  # every slider at its minimum
        yield "def f(x):", mode, 1.0, 64, 64, 12, 2.0, None, "confidence", True  # at its maximum (seed empty)
    yield "def f(x):", "diffusion", 0.05, 64, 1, 512, 0.0, 0, "step", False  # 512 tokens, one pass per block
    yield "def f(x):", "diffusion", 0.8, 64.0, 16.0, 3.0, 0.0, 0, "step", True  # S > max new tokens (floats)
    yield "def f(x):", "speculative", 0.8, 2, 64, 9, 0.0, 0, "step", False  # steps > S
    for prompt in [*GOOD_PROMPTS, *BAD_PROMPTS]:
        yield prompt, rng.choice(MODES), 0.8, 4, 4, 4, 0.0, 0, "step", rng.random() < 0.5
    for seed in (-1, 1.5, 2 ** 63, 1e300, NAN, INF):  # what the seed box can hold that a seed cannot be
        yield "def f(x):", "ar", 0.8, 4, 4, 2, 0.5, seed, "step", False
    for _ in range(10):
        yield ("def f(x):", rng.choice(MODES), round(0.05 * rng.randint(1, 20), 2), rng.randint(1, 64),
               rng.randint(1, 64), rng.randint(1, 16), rng.choice([0.0, 0.05, 0.7, 2.0]),
               rng.choice([None, 0, 7]), rng.choice(["step", "confidence"]), rng.random() < 0.5)


def test_playground_fuzz(app):
    rng, refused, ran, last = random.Random(0), 0, 0, None
    for case in playground_cases(rng):
        prompt, mode, gamma, size, steps, max_new, temperature, seed = case[:8]
        # last: the session's recorded run (a gr.State); then the healing checkbox, on or off, and the sampling
        # filters (top-k, top-p: read when the case samples)
        outputs = app.call("generate", *case, last, rng.random() < 0.7, rng.choice([0, 1, 5, 500]),
                           rng.choice([1.0, 0.5, 0.05]))
        if is_error(outputs[0][0]):
            # the last run's statistics and completion stay, its recording too (marked refused); the message says
            # why, over the last run's board
            message = refused_keeping(outputs, 0, (1, 2) if last else (1, 2, 3, 4))
            assert last is None or outputs[0][3] == {**last, "refused": True}  # the recording, marked
            expected = BAD_PROMPTS.get(prompt) or "seed must be"
            assert expected in message, (case, message)
            assert last is None or message.endswith(html.unescape(app.call("replay", last, None, case[8])[0]))
            if last is not None:  # under the whole last run, the scrubber at its last step (hidden: left alone)
                frames, scrubber = count_frames(last["events"]), outputs[0][4]
                assert scrubber == SKIP if frames < 2 else (isinstance(scrubber, gr.Slider) and scrubber.value == frames)
            refused += 1
            continue
        assert prompt not in BAD_PROMPTS and seed not in (-1, 1.5, 2 ** 63, 1e300) and seed == seed, case
        ran += 1
        view, stats, completion, record, _ = outputs[-1]
        last = record
        assert 'data-done="1"' in view and "total time" in stats and isinstance(completion, str), case
        assert "<script>" not in view  # the prompt is drawn as text
        # what the recording offers afterwards: replay any step, recolour, Stop after (or during) the run
        for frame in (1, 2, 10 ** 6, None):
            app.call("replay", record, frame, rng.choice(["step", "confidence"]))
            app.call("recolour", record, frame, rng.choice(["step", "confidence"]))
        assert app.call("after_stop", record, "step") == [(SKIP,) * 5]  # finished: Stop changes nothing
        events = record["events"]
        for cut in sorted({0, 1, len(events) // 2, len(events) - 1}):
            app.call("after_stop", {**record, "events": events[:cut]}, "confidence")
    assert refused == len(BAD_PROMPTS) + 6 and ran > 25


def test_the_mode_radio_and_the_sliders_rerun_only_on_the_playground_tab(app):
    """The release / change listeners: supersede, then re-run with the tab the session shows."""
    # ..., record, heal, top-k, top-p
    args = ("def f(x):", "mock_ar", 0.05, 64, 1, 3, 0.0, None, "step", True, None, False, 0, 1.0)
    for tab in ("race", "audit", "sweep", "cost", "model"):
        assert app.call("supersede", tab) == [None]
        assert app.call("rerun", tab, *args) == [(SKIP,) * 5]
        assert app.call("rerun", tab, "", *args[1:]) == [(SKIP,) * 5]  # no "prompt is empty" off its tab
    app.call("supersede", "playground")
    view, *_, record, _ = app.call("rerun", "playground", *args)[-1]
    assert 'data-done="1"' in view
    error = refused_keeping(app.call("rerun", "playground", " ", *args[1:-4], record, False, 0, 1.0), 0,
                            (1, 2))  # 3: marked
    assert "the prompt holds only whitespace" in error and 'data-done="1"' in error  # over the last run's board


def test_stop_and_replay_before_any_run(app):
    assert app.call("after_stop", None, "step") == [(SKIP,) * 5]
    assert app.call("after_stop", {"prompt": "x", "events": []}, "step") == [(SKIP,) * 5]
    assert "generate first" in app.call("replay", None, 1, "step")[0]
    assert app.call("recolour", None, 1, "confidence") == [SKIP]
    for name in ("race_stopped", "sweep_stopped", "audit_stopped"):  # a panel's Stop with nothing running
        assert app.call(name, None) == [SKIP] and app.call(name, "") == [SKIP]


# ---------------------------------------------------------------------------------------------------- Race
def test_race_with_every_subset_of_contestants(app):
    """Each of the 16 subsets once, at small random settings; then refused Races, which keep the numbers."""
    rng, measured = random.Random(1), None
    for subset in itertools.chain.from_iterable(itertools.combinations(CONTESTANTS, k) for k in range(5)):
        gamma, size, steps = round(0.05 * rng.randint(1, 20), 2), rng.choice([1, 3, 64]), rng.choice([1, 2, 64])
        # ..., timed runs, the session's numbers (a gr.State), the healing checkbox
        outputs = app.call("race", "def f(x):", list(subset), gamma, size, steps, rng.choice([1, 2]), 1, measured,
                           rng.random() < 0.7)
        view, _, now = outputs[-1]
        assert not is_error(view) and view.count('class="tt-card"') == 1 + len(subset), subset
        assert set(now["tokens_per_s"]) >= {"ar", *subset}  # each mode's latest, earlier Races' modes kept
        measured = now
    assert set(measured["tokens_per_s"]) == {"ar", *CONTESTANTS}
    for prompt, message in [*BAD_PROMPTS.items()][:4]:  # the message over the last Race's cards, which stay
        error = refused_keeping(app.call("race", prompt, CONTESTANTS, 0.8, 4, 4, 4, 1, measured, True), 0, (1, 2))
        assert message in error and error.endswith(html.unescape(view))
    # the contestants box left empty (None through the API): AR alone, with the hint to tick one
    assert "tick a contestant" in app.call("race", "def f(x):", None, 0.8, 4, 4, 1, 1, None, False)[-1][0]
    # Cost reads what the Race measured, before and after the refusals
    tps = app.call("use_race_numbers", measured)[0]
    copied = {mode: round(v, figure_decimals(v)) for mode, v in measured["tokens_per_s"].items()}  # 4 digits
    assert tps[0] == copied["ar"] and tps[2] == copied["speculative"]
    table = app.call("cost", 2.0, 1, 60, *tps, 0.6, measured)[0][0]
    assert table.count("measured on this machine") == 3


# ---------------------------------------------------------------------------------------------------- audit
def test_speculative_audit_fuzz(app):
    rng = random.Random(2)
    # ..., adaptive, the proposal cut, top-k, top-p, heal
    cases = [("def f(x):", 0.05, 1, 1, 1, 0.0, 0, False, 0.0, 0, 1.0, True),
             ("def f(x):", 1.0, 64, 64, 12, 2.0, None, True, 0.95, 500, 0.05, False),
             ("def f(x):", 0.5, 64, 2, 3, 0.0, 0, True, 0.5, 3, 0.5, True),  # S > max new tokens
             ("🙂\x00", 0.7, 4, 4, 8, 1.3, 5, False, 0.0, 2, 1.0, None)]  # sampled: the audit at temperature > 0
    cases += [(rng.choice(GOOD_PROMPTS[:5]), round(0.05 * rng.randint(1, 20), 2), rng.randint(1, 64), rng.randint(1, 64),
               rng.randint(1, 12), rng.choice([0.0, 0.5, 2.0]), rng.choice([None, 3]), rng.random() < 0.5,
               round(0.05 * rng.randint(0, 19), 2), rng.choice([0, 1, 40]), rng.choice([1.0, 0.3]), rng.random() < 0.7)
              for _ in range(6)]
    for case in cases:
        outputs = app.call("speculative_audit", *case)
        table, _, summary = outputs[-1]
        assert not is_error(table) and "verification rounds" in summary and 'data-output="1"' in summary, case
        for _, _, running in outputs[:-1]:  # Stop at any yield says the run was stopped; after the end, nothing
            assert "Stopped" in app.call("audit_stopped", running)[0]
        assert app.call("audit_stopped", summary) == [SKIP]
    for prompt, message in BAD_PROMPTS.items():
        outputs = app.call("speculative_audit", prompt, 0.8, 4, 4, 4, 0.0, 0, False, 0.0, 0, 1.0, True)
        # the refusal goes in the summary; the last audit's table and histogram stay (SKIP), as a refused Sweep's
        assert len(outputs) == 1 and list(outputs[0][:2]) == [SKIP, SKIP], prompt
        assert is_error(outputs[0][2]) and message in outputs[0][2]
    outputs = app.call("speculative_audit", "def f(x):", 0.8, 4, 4, 4, 0.0, -1, False, 0.0, 0, 1.0, True)
    assert len(outputs) == 1 and list(outputs[0][:2]) == [SKIP, SKIP] and "seed must be" in outputs[0][2]


# ---------------------------------------------------------------------------------------------------- Sweep
# γ list, S list -> points of the grid (at steps 1), or the words of the refusal
SWEEP_LISTS = [
    ("0.8,", "4,", 1), ("1e-3", "2", 1), (" 0.7 ", " 2 ", 1), ("0.5,0.5,0.5", "2,2", 1), (",".join(["0.9"] * 300), "2", 1),
    ("0.5, 0.9", "1, 64", 4), ("１", "+2", 1),  # Python reads a full-width 1 and a signed int
    (" , ", "4", "γ values is empty"), ("", "4", "γ values is empty"), ("0.5 0.9", "4", "expects comma-separated floats"),
    ("0.5;0.9", "4", "expects comma-separated floats"), ("nan", "4", "γ must be in (0, 1]"), ("-1", "4", "γ must be in (0, 1]"),
    ("0", "4", "γ must be in (0, 1]"), ("inf", "4", "γ must be in (0, 1]"), ("1.0000001", "4", "γ must be in (0, 1]"),
    ("0.9", "2 4", "expects comma-separated ints"), ("0.9", "4.0", "expects comma-separated ints"),
    ("0.9", "1e-3", "expects comma-separated ints"), ("0.9", "nan", "expects comma-separated ints"),
    ("0.9", "-1", "block size -1 is outside 1 … 512"), ("0.9", "0", "block size 0 is outside 1 … 512"), ("0.9", " , ", "block sizes is empty"),
    (",".join(["0.9"] * 300) + ",x", "4", "expects comma-separated floats"),  # a long list, one bad value
]


def test_sweep_with_odd_lists_and_a_refusal_keeps_the_previous_sweep(app):
    def sweep(gammas, sizes, names=("loop",), extra="", repeats=1):
        return app.call("sweep", list(names), extra, gammas, sizes, 1, 1, False, repeats)

    first = sweep("0.5, 0.9", "2")
    assert first[0][:3] == (None, None, None) and "2 grid points" in first[-1][3]  # documented: a run clears the last
    for gammas, sizes, expected in SWEEP_LISTS:
        outputs = sweep(gammas, sizes)
        if isinstance(expected, int):
            assert f"{expected} grid point{'' if expected == 1 else 's'} over 1 prompt" in outputs[-1][3], gammas
            assert len(outputs[-1][1].value["data"]) == expected and outputs[-1][2].endswith("sweep.csv")
        else:  # refused before anything was cleared: the last sweep's plot, table and CSV stay
            assert expected in refused_keeping(outputs, 3, (0, 1, 2)), (gammas, sizes)
    for names, extra, message in [((), "", "the prompt set is empty"), ((), "  \n", "the prompt set is empty"),
                                  (("loop",), "x" * 5000, "the limit is 2048 tokens"),
                                  (("loop",), "def f(): \ud83d", "not valid text")]:
        assert message in refused_keeping(sweep("0.9", "2", names, extra), 3, (0, 1, 2))
    assert "timed runs per point must be" in refused_keeping(sweep("0.9", "2", repeats=NAN), 3, (0, 1, 2))
    # every example and an extra prompt of emoji and NUL, anchored, at the sliders' ends
    outputs = app.call("sweep", list(EXAMPLE_PROMPTS), "🙂\x00", "1", "64", 64, 1, True, 1)
    assert ("1 grid point over 6 prompt(s) (the last token of each healed, as the Race does by default), "
            "anchored diffusion") in outputs[-1][3]
    # Stop mid-sweep turns the progress line into a "stopped" one; a finished sweep's message stays
    outputs = sweep("0.5, 0.9", "2")
    (progress,) = [out[3] for out in outputs if "1 of 2 grid points measured" in str(out[3])]
    assert "Stopped" in app.call("sweep_stopped", progress)[0]
    assert app.call("sweep_stopped", outputs[-1][3]) == [SKIP]


# ---------------------------------------------------------------------------------------------------- Cost
NUMBERS = [None, 0, 0.0, -1, -0.5, 1e308, 1e300, NAN, INF, 2.0, 1, 1.5, 100.0, 1e-300, 5e-324, 3]


def test_cost_fuzz(app):
    """150 random Cost forms, with and without a Race behind them: a table and a chart, or a message by name."""
    rng = random.Random(3)
    measured = {"tokens_per_s": {"ar": 10.0}, "labels": {"ar": "measured by the Race"}, "devices": {"ar": "cpu"}}
    errors = 0
    for _ in range(150):
        form = [rng.choice(NUMBERS), rng.choice(NUMBERS + [1, 2]), rng.choice([1, 50, 100, 37.0]),
                rng.choice(NUMBERS), rng.choice(NUMBERS), rng.choice(NUMBERS), rng.choice(NUMBERS + [0.6]),
                rng.choice([None, measured, {"tokens_per_s": {}, "labels": {}}])]
        table, figure = app.call("cost", *form)[0]
        if is_error(table):
            errors += 1
            assert figure == SKIP and len(table) < 400, form  # the last chart computed stays
            continue
        assert "<table" in table and figure is not None, form
        # no NaN / inf in a table, and no figure a hundred digits wide (in the table, the bars or the API line)
        shown = table + " ".join(map(str, figure.data[0].text)) + str([a.text for a in figure.layout.annotations])
        assert not re.search(r"nan|inf\b|\d[\d,.]{24,}", shown), (form, shown)
    assert 20 < errors < 150
    # in unexpected orders: the Race's numbers asked for before any Race, then Compute on the empty form
    assert app.call("use_race_numbers", None) == [(SKIP,) * 3]
    assert app.call("use_race_numbers", {"tokens_per_s": {}}) == [(SKIP,) * 3]
    assert "no throughput given" in app.call("cost", 2.0, 1, 60, None, None, None, 0.6, None)[0][0]


# ---------------------------------------------------------------------------------------------------- the rest
def test_model_tab_and_staleness_listeners_at_the_sliders_ends(app):
    for size in (None, 1, 64, 32.0):
        assert "Memory plan per device" in app.call("model_info", size)[0]
    rng = random.Random(4)
    values = [0.05, 1.0, 1, 64, 512, 16.0, "", None]
    for _ in range(30):
        race_in = [rng.choice([[], ["diffusion"]]), rng.choice([1, 3.0, None]), *(rng.choice(values) for _ in range(4)),
                   rng.choice(GOOD_PROMPTS), rng.choice([True, False, None])]
        used, note = app.call("race_start", *race_in)[0]
        # a Race its inputs refuse ("" for γ, γ 64) keeps the settings and note on screen: both skipped
        assert (note, used) == (SKIP, SKIP) if note == SKIP else note == "" and isinstance(used, dict)
        used = used if isinstance(used, dict) else None
        assert isinstance(app.call("race_staleness", rng.choice([None, used]), *(rng.choice(values) for _ in range(4)),
                                   rng.choice(GOOD_PROMPTS), rng.choice([True, False, None]))[0], str)
        lists = [rng.choice([g for g, _, _ in SWEEP_LISTS]), rng.choice([s for _, s, _ in SWEEP_LISTS])]
        sweep_in = [rng.choice(values), rng.choice(values), *lists, rng.choice([[], ["loop"], None]),
                    rng.choice(["", None, "🙂"]), rng.random() < 0.5]
        used, note = app.call("sweep_start", rng.choice([1, 2.0, None]), *sweep_in)[0]
        assert (note, used) == (SKIP, SKIP) if note == SKIP else note == "" and isinstance(used, dict)
        used = used if isinstance(used, dict) else None
        assert isinstance(app.call("sweep_staleness", used, *sweep_in)[0], str)
    # the staleness listeners take the values as typed: a component's refusal (max new tokens 0, on the way to
    # 10) was an HTTP 500 at every keystroke; values out of range are compared like any other
    for name in ("race_staleness", "sweep_staleness", "release_pressed"):
        assert app.fns[name].preprocess is False, name
    assert "max new tokens 8 → 0" in app.call("race_staleness", {"max_new_tokens": 8}, 0.8, 4, 4, 0, "x", True)[0]


# ---------------------------------------------------------------------------------------------------- regressions
def test_a_throughput_whose_monthly_tokens_underflow_is_refused_by_name(app):
    """5e-324 tokens/s at 1 % utilisation makes a month's tokens 0: Cost divided by zero (ZeroDivisionError, the
    panel got Gradio's bare Error). Now the field is named."""
    from ui.cost import cost_line

    with pytest.raises(ValueError, match="beyond what can be computed: .* the AR throughput"):
        cost_line("ar", 5e-324, 2.0, 1, 0.01)
    table, figure = app.call("cost", 2.0, 1, 1, 5e-324, None, None, 0.6, None)[0]
    assert is_error(table) and "the AR throughput" in table and figure == SKIP  # the last chart stays
    assert "$" in app.call("cost", 2.0, 1, 1, 1e-300, None, None, 0.6, None)[0][0]  # small but computable: as before


def test_extreme_cost_figures_are_short_on_the_chart_and_in_the_api_line_too():
    """The table wrote extreme figures in 3 significant digits; the bars' labels, the API price's line and the
    table's note still printed them in full (1e-300 tokens/s: a bar labelled with a $ figure 300 digits wide)."""
    from ui.cost import cost_table
    from ui.plots import cost_bars
    from ui.render_panels import cost_html

    lines = cost_table({"ar": 1e-300, "diffusion": 100.0}, 2.0, 1, 0.5, 1e300)
    figure = cost_bars(lines, 1e300)
    assert list(figure.data[0].text) == ["$1.11e+303", "$11.11"]
    assert figure.layout.annotations[0].text == "API $1e+300 / M"
    assert "API price: $1e+300 per M output tokens." in cost_html(lines, {}, 1e300)
    assert cost_bars(lines[1:], 0.5).layout.annotations[0].text == "API $0.50 / M"  # ordinary ones as before


def test_an_error_message_that_echoes_a_long_input_wraps_in_its_box():
    """A seed of 1e300 or a γ list of hundreds of values is echoed as one unbroken word: in Chromium the error box
    ran 2,416 px wide in a 500 px panel. The box now wraps anywhere (same measurement: 498 px)."""
    from ui.render import CSS

    rule = re.search(r"\.tt-error \{([^}]*)\}", CSS).group(1)
    assert "overflow-wrap: anywhere" in rule


def test_a_click_while_a_stopped_run_is_still_pending_waits_instead_of_being_dropped(app):
    """Stop then Race (or Run sweep) at once lost the second click: the stopped run was still pending in the front
    end, and Gradio's default trigger mode ("once") drops a trigger while its event is pending. Through Chromium on
    this host: the new Race ran 0 of 3 times before, 3 of 4 with "always_last" (the deferred click waited on the
    stopped run's end, which came late or as an error: the test below has the rest of the fix)."""
    wired = {block_fn.api_name: block_fn for block_fn in app.demo.fns.values() if block_fn.api_name}
    for name in ("race", "sweep", "speculative_audit"):
        assert wired[name].trigger_mode == "always_last", name


def test_the_race_sweep_and_audit_stop_their_run_themselves_and_their_buttons_arm_it_first(app):
    """Their Stop tells the run (stop_race …) and uses no Gradio cancel, which lost the Race pressed next and
    could end it (tests/test_ui_browser.py races again right after Stop); the run's button first runs its
    queue-free press listener (race_start, sweep_start, audit_pressed: the front end awaits it before queueing
    the run), so that a Stop pressed earlier is not taken for this run's, and the run going gives way to it."""
    elem = {block._id: getattr(block, "elem_id", None) for block in app.demo.blocks.values()}
    fns = [fn for _, fn in sorted(app.demo.fns.items())]

    def on(elem_id):
        return [fn for fn in fns if any(elem.get(target) == elem_id for target, _ in fn.targets)]

    for panel, button, press, run in (("race", "race-button", "race_start", "race"),
                                      ("sweep", "sweep-button", "sweep_start", "sweep"),
                                      ("audit", "audit-button", "audit_pressed", "speculative_audit")):
        stops = on(f"{panel}-stop")
        assert getattr(stops[0].fn, "__name__", None) == f"stop_{panel}" and not any(fn.cancels for fn in stops)
        names = [getattr(fn.fn, "__name__", None) for fn in on(button)]
        assert names.index(press) == 0 and names.index(press) < names.index(run), (panel, names)
        if panel == "audit":  # it checks the inputs its run will get
            pressed, audit = on(button)[names.index(press)], on(button)[names.index(run)]
            assert [block._id for block in pressed.inputs] == [block._id for block in audit.inputs]


def test_the_playground_stop_cancels_in_gradio_and_tells_the_server(app):
    """Gradio's cancel drops the run's stream at once; stop_playground stops the run a cancel missed."""
    elem = {block._id: getattr(block, "elem_id", None) for block in app.demo.blocks.values()}
    stops = [fn for _, fn in sorted(app.demo.fns.items()) if any(elem.get(t) == "stop" for t, _ in fn.targets)]
    generate = next(i for i, fn in app.demo.fns.items() if fn.api_name == "generate")
    assert [getattr(fn.fn, "__name__", None) for fn in stops if fn.queue is False][0] == "stop_playground"
    assert any(generate in fn.cancels for fn in stops)  # Gradio 6 registers the cancel as a listener of its own


def test_a_run_buttons_queue_free_listeners_come_before_its_run(app):
    """The front end runs a trigger's listeners in order and waits for a queued run's whole stream before the
    next one: the old trace file stayed on screen through a new Playground run, and the Race's and Sweep's
    "settings they read" were taken only after they had run, while registered after their runs."""
    elem = {block._id: getattr(block, "elem_id", None) for block in app.demo.blocks.values()}
    fns = [fn for _, fn in sorted(app.demo.fns.items())]
    for button in ("generate", "race-button", "sweep-button", "audit-button"):
        on = [fn for fn in fns if any(elem.get(target) == button and event == "click" for target, event in fn.targets)]
        queued = [i for i, fn in enumerate(on) if fn.queue is not False and fn.fn is not None]
        assert len(queued) == 1, (button, [getattr(fn.fn, "__name__", None) for fn in on])
        assert queued[0] == len(on) - 1, (button, [getattr(fn.fn, "__name__", None) for fn in on])
