"""Plotly figures of the app (pure: numbers in, figure out). The sweep's scatter is twotower.sweep's own."""

from __future__ import annotations

from collections import Counter

import plotly.graph_objects as go

from .cost import CostLine
from .render_panels import MODE_LABELS, amount

MODE_COLOURS = {"ar": "#495057", "diffusion": "#1c7ed6", "speculative": "#e8590c", "mock_ar": "#2f9e44",
                "diffusion_anchored": "#74c0fc"}


def _layout(fig: go.Figure, title: str, x: str, y: str, top: float | None = None) -> go.Figure:
    """Common look; `top` leaves room above the tallest bar for its label. Every bar counts something (rounds,
    tokens/s, $), so the axis starts at 0: with no bar yet (a Race timing AR, an audit with no round) plotly's own
    range ran from -1."""
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, template="plotly_white", height=340,
                      margin=dict(l=50, r=20, t=50, b=45))
    fig.update_yaxes(rangemode="nonnegative")
    if top:
        fig.update_yaxes(range=[0, 1.18 * top])
    return fig


def acceptance_histogram(lengths: list[int], block_size: int | None = None) -> go.Figure:
    """How many tokens each verification round committed (accepted drafts + the context tower's token)."""
    counts = Counter(int(n) for n in lengths)
    top = max([block_size + 1 if block_size else 0, *counts.keys(), 1])  # a full round commits S + 1 tokens
    xs = list(range(1, top + 1))
    fig = go.Figure(go.Bar(x=xs, y=[counts.get(x, 0) for x in xs], marker_color=MODE_COLOURS["speculative"]))
    mean = sum(lengths) / len(lengths) if lengths else None
    title = "Acceptance length per verification round"
    if mean is not None:
        fig.add_vline(x=mean, line_dash="dash", line_color="#212529", annotation_text=f"mean {mean:.2f}")
    fig.update_yaxes(tick0=0, dtick=max(1, -(-max(counts.values(), default=1) // 8)))  # whole rounds, ≤ 8 ticks
    return _layout(fig, title, "acceptance length (accepted + 1, vLLM's definition)", "rounds")


def race_bars(results: list[dict]) -> go.Figure:
    ok = [r for r in results if r.get("tokens_per_s")]
    fig = go.Figure(go.Bar(
        x=[MODE_LABELS.get(r["mode"], r["mode"]) for r in ok], y=[r["tokens_per_s"] for r in ok],
        marker_color=[MODE_COLOURS.get(r["mode"], "#868e96") for r in ok],
        text=[f'{r["tokens_per_s"]:,.1f}' for r in ok], textposition="outside"))
    top = max((r["tokens_per_s"] for r in ok), default=None)
    return _layout(fig, "Measured throughput (rendering excluded)", "mode", "tokens / s", top)


def cost_bars(lines: list[CostLine], api_usd_per_million=None) -> go.Figure:
    fig = go.Figure(go.Bar(
        x=[MODE_LABELS.get(line.mode, line.mode) for line in lines], y=[line.usd_per_million for line in lines],
        marker_color=[MODE_COLOURS.get(line.mode, "#868e96") for line in lines],
        # labels as the table writes them: an extreme figure in 3 significant digits (1e-300 tokens/s labelled
        # its bar with a $ figure 300 digits wide)
        text=[f"${amount(line.usd_per_million, 2)}" for line in lines], textposition="outside"))
    if api_usd_per_million not in (None, ""):
        fig.add_hline(y=float(api_usd_per_million), line_dash="dash", line_color="#c92a2a",
                      annotation_text=f"API ${amount(float(api_usd_per_million), 2)} / M")
    top = max([line.usd_per_million for line in lines] + [float(api_usd_per_million or 0)])
    return _layout(fig, "Cost per million output tokens", "mode", "$ / M output tokens", top)
