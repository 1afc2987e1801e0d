"""The app's Plotly figures (ui/plots.py), pure: numbers in, figure out — what each bar and line says."""

import pytest

from ui.cost import cost_line
from ui.plots import acceptance_histogram, cost_bars, race_bars


def test_acceptance_histogram_counts_rounds_per_length_and_marks_the_mean():
    fig = acceptance_histogram([1, 3, 3, 1], block_size=4)
    bars = fig.data[0]
    assert list(bars.x) == [1, 2, 3, 4, 5]  # up to S + 1 (a full acceptance), even when no round got there
    assert list(bars.y) == [2, 0, 2, 0, 0]
    (mean_line,) = fig.layout.shapes
    assert mean_line.x0 == mean_line.x1 == pytest.approx(2.0)
    assert fig.layout.annotations[0].text == "mean 2.00"
    adaptive = acceptance_histogram([1, 9], block_size=4).data[0]  # an adaptive draft may outgrow S
    assert list(adaptive.x)[-1] == 9 and list(adaptive.y)[-1] == 1


def test_acceptance_histogram_of_no_rounds_is_an_empty_axis_without_a_mean():
    fig = acceptance_histogram([], block_size=None)
    assert list(fig.data[0].y) == [0] and not fig.layout.shapes


def test_race_bars_show_only_the_modes_that_measured_a_throughput():
    results = [{"mode": "ar", "tokens_per_s": 100.0}, {"mode": "speculative", "tokens_per_s": None},
               {"mode": "diffusion", "tokens_per_s": 120.5}]
    bars = race_bars(results).data[0]
    assert list(bars.x) == ["AR", "diffusion"] and list(bars.y) == [100.0, 120.5]
    assert list(bars.text) == ["100.0", "120.5"]


def test_cost_bars_draw_the_api_price_only_when_one_is_given():
    lines = [cost_line(mode, tps, 2.0, 1, 1.0, 0.5) for mode, tps in (("ar", 100.0), ("diffusion", 200.0))]
    fig = cost_bars(lines)
    assert list(fig.data[0].y) == [line.usd_per_million for line in lines]
    assert lines[0].usd_per_million == pytest.approx(2 * lines[1].usd_per_million)  # twice the speed, half the cost
    assert not fig.layout.shapes
    priced = cost_bars(lines, api_usd_per_million="0.5")
    assert priced.layout.shapes[0].y0 == 0.5 and "API $0.50 / M" in priced.layout.annotations[0].text
