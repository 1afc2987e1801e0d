"""Pure UI functions, without launching anything: events -> board -> HTML, colours, escaping, diffs, cost."""

import re

import pytest
import torch

from twotower.events import StepEvent
from ui.board import Board, fold, fold_event, verify_rounds
from ui.cost import cost_line, cost_table, monthly_cost, monthly_tokens
from ui.render import (board_html, confidence_colour, error_html, stats_html, step_colour, token_text)
from ui.render_panels import acceptance_summary_html, audit_html, cost_html, diff_html, race_html

MASK, EOS = 4, 2


def piece(token_id: int) -> str:
    return {EOS: "</s>", MASK: "<mask>", 66: "<script>alert(1)</script>", 67: " ", 68: "\n", 200: "\ufffd"}.get(
        token_id, chr(token_id + 32))


def event(kind, block, step, start, tokens, commit_step, confidence=None, generated=0, info=None, mode="diffusion"):
    t = torch.tensor([tokens])
    conf = torch.tensor([confidence or [0.5] * len(tokens)])
    steps = torch.tensor([commit_step])
    return StepEvent(mode, kind, block, step, start, t, t == MASK, conf, torch.zeros_like(t, dtype=torch.bool), steps,
                     nfe=step + 1, context_passes=1, elapsed=0.01 * (step + 1), generated=generated, info=info or {})


def done_event(new_tokens, stats=None):
    empty = torch.zeros(1, 0, dtype=torch.long)
    stats = stats or {"new_tokens": len(new_tokens), "nfe": 3, "tokens_per_pass": 2.0, "context_passes": 2,
                      "tokens_per_s": 123.4, "time_to_first_token_s": 0.01, "total_s": 0.05}
    return StepEvent("diffusion", "done", -1, -1, 0, empty, empty.bool(), empty.float(), empty.bool(), empty,
                     3, 2, 0.05, len(new_tokens), {"new_tokens": [new_tokens]}, None, stats)


def decode(ids):
    return "".join(piece(i) for i in ids)


def two_block_run():
    return [
        event("step", 0, 0, 0, [MASK, 40, MASK, MASK], [-1, 0, -1, -1], [0.1, 0.9, 0.2, 0.3], 1),
        event("step", 0, 1, 0, [41, 40, 42, 43], [1, 0, 1, 1], [0.6, 0.9, 0.7, 0.8], 4),
        event("block", 0, -1, 0, [41, 40, 42, 43], [1, 0, 1, 1], [0.6, 0.9, 0.7, 0.8], 4),
        event("step", 1, 0, 4, [44, EOS, MASK, MASK], [0, 0, -1, -1], [0.9, 0.95, 0.1, 0.1], 6),
    ]


def count_cells(html, cls):
    classes = [c.split() for c in re.findall(r'class="([^"]*)"', html)]
    return sum(1 for c in classes if "tt-cell" in c and cls in c)


def test_fold_tracks_masks_active_block_and_frames():
    events = two_block_run()
    board = fold(events)
    assert board.masked_count() == 2 and board.active == 1 and board.frames == 3
    assert board.rows[0].done and not board.rows[1].done
    first = fold(events, upto_frame=1)
    assert first.masked_count() == 3 and first.active == 0 and 1 not in first.rows
    finished = fold_event(fold(events), done_event([41, 40, 42, 43, 44, EOS]))
    assert finished.done and finished.active is None and finished.new_tokens[-1] == EOS


def test_board_html_draws_rows_masks_and_active_block():
    board = fold(two_block_run())
    html = board_html(board, piece, EOS, steps_per_block=4, prompt="def f():")
    assert html.count('class="tt-row') == 2 and html.count('class="tt-row active"') == 1
    assert count_cells(html, "mask") == board.masked_count() == 2
    assert 'data-masked="2"' in html and 'data-done="0"' in html
    # every committed token is coloured by the step it was committed at
    assert f"background:{step_colour(0, 4)}" in html and f"background:{step_colour(1, 4)}" in html
    by_conf = board_html(board, piece, EOS, colour_by="confidence")
    assert f"background:{confidence_colour(0.95)}" in by_conf and step_colour(1, 4) not in by_conf


def test_eos_and_the_positions_after_it_are_marked():
    html = board_html(fold(two_block_run()), piece, EOS)
    assert count_cells(html, "eos") == 1
    assert count_cells(html, "after-eos") == 2  # the two masked cells after EOS in block 1
    no_eos = board_html(fold(two_block_run()[:3]), piece, EOS)
    assert count_cells(no_eos, "after-eos") == 0


def test_tokens_and_prompt_are_escaped():
    events = [event("step", 0, 0, 0, [66, 67, 68, 200, MASK], [0, 0, 0, 0, -1])]
    prompt = '<img src=x onerror=alert(1)> "quoted" <script>bad()</script>'
    html = board_html(fold(events), piece, EOS, prompt=prompt)
    assert "<script" not in html and "<img" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "␣" in html and "↵" in html
    assert ">#200<" in html  # a lone byte of a multi-byte character shows its id, not a replacement glyph
    assert "<script" not in error_html("<script>x</script>")


def test_colour_scales():
    hues = [int(re.match(r"hsl\((\d+)", step_colour(s, 8)).group(1)) for s in range(8)]
    assert hues[0] == 210 and hues[-1] == 30 and hues == sorted(hues, reverse=True)
    assert step_colour(0, 1) == step_colour(5, 1)  # one step per block: one colour
    assert confidence_colour(-1) == "hsl(30, 75%, 68%)" and confidence_colour(2) == "hsl(200, 75%, 90%)"
    assert token_text("") == "∅" and token_text(" a\t") == "␣a⇥"


def test_ar_tokens_wrap_into_lines():
    events = [event("token", i, 0, i, [40 + i], [0], mode="ar", generated=i + 1) for i in range(20)]
    html = board_html(fold(events), piece, EOS, line_width=8)
    assert html.count('class="tt-row') == 3 and count_cells(html, "mask") == 0


def test_stats_html_live_and_done():
    board = fold(two_block_run())
    live = stats_html(board)
    assert "running" in live and "6" in live
    fold_event(board, done_event([41, 40, 42, 43, 44, EOS]))
    done = stats_html(board)
    for label in ("tokens", "NFE", "tokens per denoiser pass", "tokens / s", "time to first token", "total time"):
        assert label in done
    assert "123.4" in done and "0.050 s" in done
    # the sampler's clock runs while the app draws: the figure says so, and where a clean one is measured
    assert "tokens / s (drawing included; the Race times without)" in done


def test_ar_tokens_are_finished_as_soon_as_they_are_folded():
    """An AR (or speculative's first) token is committed to the context tower when emitted: the live completion
    shows it (finished_tokens reads only rows marked done)."""
    board = fold([event("token", i, 0, i, [40 + i], [0], mode="ar", generated=i + 1) for i in range(3)])
    assert board.finished_tokens() == [40, 41, 42] and board.active is None


def test_live_rate_is_committed_tokens_per_second_not_passes():
    # 6 tokens in 0.01 s from 2 denoiser passes: 600 tokens/s (passes per second would read 200.0)
    live = stats_html(Board(mode="diffusion", generated=6, nfe=2, context_passes=1, elapsed=0.01))
    assert '<td>committed tokens / s (so far)</td><td class="v">600.0</td>' in live


def test_diff_html_marks_only_differences():
    same = diff_html([40, 41, 42], [40, 41, 42], decode)
    assert "<ins" not in same and "<del" not in same
    diff = diff_html([40, 41, 66, 43], [40, 41, 42, 43], decode)
    assert diff.count("<ins") == 1 and diff.count("<del") == 1 and "&lt;script&gt;" in diff


def test_race_html_speedup_and_diff_against_ar():
    results = [{"mode": "ar", "tokens": [40, 41], "tokens_per_s": 10.0, "total_s": 0.2, "nfe": 0},
               {"mode": "diffusion", "tokens": [40, 42], "tokens_per_s": 25.0, "total_s": 0.08, "nfe": 1,
                "agreement": 0.5},
               {"mode": "speculative", "tokens": [], "error": "not available <yet>"}]
    html = race_html(results, decode, note="n")
    assert "2.50× AR" in html and "agreement with AR 50%" in html and html.count("<ins") == 1
    assert "not available &lt;yet&gt;" in html and "acceptance length" not in html
    speculative = {"mode": "speculative", "tokens": [40, 41], "tokens_per_s": 12.0, "total_s": 0.17, "nfe": 1,
                   "agreement": 1.0, "mean_acceptance_length": 2.0}
    assert "mean acceptance length 2.00" in race_html([results[0], speculative], decode)


def test_verify_rounds_audit_table_and_summary():
    info = {"drafted": [40, 41, 42, 43], "accepted": 2, "rejected_pos": 2, "draft_token": 42, "target_token": 66,
            "p_draft_of_draft": 0.6, "p_target_of_draft": 0.1, "p_draft_of_target": 0.2, "p_target_of_target": 0.7,
            "bonus": False, "block_size": 4}
    full = dict(info, accepted=4, rejected_pos=None, draft_token=None, target_token=45, bonus=True)
    events = [event("verify", 0, 2, 0, [40, 41, 42, 43], [0, 0, 1, 1], info=info, mode="speculative"),
              event("verify", 1, 2, 3, [40, 41, 42, 43], [0, 0, 1, 1], info=full, mode="speculative")]
    rounds = verify_rounds(events)
    assert [r["accepted"] for r in rounds] == [2, 4] and rounds[0]["drafted"] == 4
    html = audit_html(rounds, piece)
    assert 'data-rounds="2"' in html and html.count('tt-acc"') == 6 and html.count('tt-rej"') == 2
    assert "0.600 · 0.100" in html and "0.200 · 0.700" in html and "bonus" in html and "<script" not in html
    assert "not emitted" not in html
    # a space and a newline drawn as the board draws them (repr() showed the space as nothing); a bonus
    # token the run's budget cut is marked as not emitted
    spaced = dict(full, drafted=[67, 68, 42, 43], target_token=67)
    spaced_rounds = verify_rounds([event("verify", 0, 2, 0, [67, 68, 42, 43], [0, 0, 0, 0], info=spaced,
                                         mode="speculative")])
    spaced_rounds[0]["emitted"] = 4
    spaced_html = audit_html(spaced_rounds, piece)
    assert f'tt-acc">{token_text(" ")}</span>' in spaced_html and f'tt-acc">{token_text(chr(10))}</span>' in spaced_html
    assert "not emitted: the run ended after 4 of this round's tokens" in spaced_html
    summary = acceptance_summary_html(None, rounds)
    assert "0.750" in summary and "4.00" in summary  # 6 / 8 accepted; 1 + 6 / 2
    assert "draft position" not in summary  # while running: no stats yet
    stats = {"acceptance_rate": 0.75, "mean_acceptance_length": 4.0, "rounds": 2, "draft_s": 0.03, "verify_s": 0.05,
             "acceptance_by_position": [{"position": i, "drafted": 2, "accepted": a, "share": a / 2}
                                        for i, a in enumerate([2, 2, 1, 1], start=1)]}
    done = acceptance_summary_html(stats, rounds)
    assert "1.00 (2/2) · 1.00 (2/2) · 0.50 (1/2) · 0.50 (1/2)" in done and "15.0 ms · 25.0 ms" in done
    board = fold(events)
    assert board.rows[0].rejected_pos == 2 and board.rows[1].rejected_pos is None


def test_cost_arithmetic():
    assert monthly_cost(2.0, 1) == 2.0 * 720
    assert monthly_tokens(100.0, 1, 1.0) == 100.0 * 3600 * 24 * 30
    line = cost_line("ar", 100.0, 2.0, 1, 1.0, api_usd_per_million=10.0)
    assert line.usd_per_million == pytest.approx(1440 / 259.2)
    assert line.break_even_million == pytest.approx(144.0) and line.breaks_even
    # twice the GPUs at half the utilisation: same tokens, twice the bill
    assert cost_line("ar", 100.0, 2.0, 2, 0.5).usd_per_million == pytest.approx(2 * 1440 / 259.2)
    assert not cost_line("ar", 100.0, 2.0, 1, 1.0, api_usd_per_million=1.0).breaks_even  # needs 1440 M > 259.2 M
    fast = cost_line("diffusion", 242.0, 2.0, 1, 1.0)
    assert fast.usd_per_million == pytest.approx(line.usd_per_million / 2.42)
    lines = cost_table({"ar": 100.0, "diffusion": None, "speculative": 0}, 2.0, 1, 0.6)
    assert [x.mode for x in lines] == ["ar"]
    html = cost_html(lines, {"ar": "measured here"})
    assert "measured here" in html and "$1,440" in html
    # a number box sends None for "abc" as for an empty field: "missing" told a user who typed something
    with pytest.raises(ValueError, match=r"price per GPU-hour \(\$\) is empty or not a number"):
        cost_line("ar", 100.0, None, 1, 1.0)


def test_monthly_tokens_scale_with_utilisation_and_gpus():
    """The arithmetic case above runs 2 GPUs at 0.5, whose product is 1: each factor alone must count."""
    month = 100.0 * 3600 * 24 * 30  # tokens of one GPU busy all month at 100 tokens/s
    assert monthly_tokens(100.0, 1, 0.5) == pytest.approx(0.5 * month)
    assert monthly_tokens(100.0, 3, 1.0) == pytest.approx(3 * month)
    half_busy = cost_line("ar", 100.0, 2.0, 1, 0.5)
    assert half_busy.monthly_tokens == pytest.approx(0.5 * month)
    assert half_busy.usd_per_million == pytest.approx(2 * 720 / (100 * 2592000 * 0.5 / 1e6))  # twice the full rate
    three = cost_line("ar", 100.0, 2.0, 3, 0.5, api_usd_per_million=10.0)
    assert three.monthly_cost == pytest.approx(3 * 1440) and three.monthly_tokens == pytest.approx(1.5 * month)
    assert three.usd_per_million == pytest.approx(3 * 1440 / (1.5 * month / 1e6))
    # 432 M tokens a month to break even, 388.8 M the three GPUs can serve at half load: never
    assert three.break_even_million == pytest.approx(432.0) and three.breaks_even is False


def test_a_volume_exactly_at_break_even_breaks_even():
    # 125 tokens/s all month is 324 M tokens; $9/h is $6,480, which at $20 per M buys exactly 324 M: a tie pays off
    tie = cost_line("ar", 125.0, 9.0, 1, 1.0, api_usd_per_million=20.0)
    assert tie.break_even_million == tie.monthly_tokens / 1e6 == 324.0
    assert tie.breaks_even is True
    assert cost_line("ar", 125.0, 9.0, 1, 1.0, api_usd_per_million=19.99).breaks_even is False


@pytest.mark.parametrize("kwargs, message", [
    (dict(gpus=0), "number of GPUs"), (dict(gpus=1.5), "whole number"), (dict(utilisation=1.5), "utilisation"),
    (dict(utilisation=0), "utilisation"), (dict(tokens_per_s=-3), "throughput"), (dict(usd_per_gpu_hour="x"), "price"),
    (dict(api_usd_per_million=0), "API price"),
])
def test_cost_rejects_bad_numbers(kwargs, message):
    args = dict(mode="ar", tokens_per_s=100.0, usd_per_gpu_hour=2.0, gpus=1, utilisation=0.5, api_usd_per_million=None)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        cost_line(**args)
    with pytest.raises(ValueError, match="no throughput"):
        cost_table({"ar": None}, 2.0, 1, 0.5)


def test_empty_board_says_what_to_do():
    html = board_html(Board(), piece, EOS)
    assert "type a prompt" in html and 'data-masked="0"' in html


def test_each_mode_has_the_legend_of_what_its_board_shows():
    """Speculative and AR boards once carried diffusion's legend: a 0..n step scale, masks and a block
    "being denoised" that AR never has, and no key for speculative's dashed outline."""
    from ui.render import legend_html

    spec = legend_html("step", 2, mode="speculative")
    assert "accepted draft" in spec and "the context tower's token" in spec and "k-rejected" in spec
    assert "committed at step" not in spec and "draft, pass 0" not in spec  # one draft pass: no pass scale
    assert "accepted draft, pass 0" in legend_html("step", 3, mode="speculative")
    for mode in ("ar", "mock_ar"):
        text_line = legend_html("step", 1, mode=mode)
        assert "one token a pass" in text_line and "masked" not in text_line and "being denoised" not in text_line
    assert "from the context tower" in legend_html("step", 1, mode="ar")
    diffusion = legend_html("step", 16)
    assert "committed at step 0" in diffusion and "masked" in diffusion and "being denoised" in diffusion
    assert "confidence 0" in legend_html("confidence", 2, mode="speculative")


def test_the_step_scale_ends_at_the_passes_a_block_can_take():
    """A block of S positions takes at most S passes: with S = 4 and the steps slider at 64 the scale read 0..63."""
    board = fold([event("step", 0, 0, 3, [5, 6, 7, 8], [0, 0, 1, -1])])
    assert "committed at step 0" in board_html(board, piece, None, steps_per_block=64)
    assert "</span> 3 · " in board_html(board, piece, None, steps_per_block=64)
    assert "</span> 1 · " in board_html(board, piece, None, steps_per_block=2)


def test_the_budgets_last_block_marks_the_cells_past_it_until_the_block_is_in():
    """max new tokens 6 with S = 4: the second block is denoised whole and keeps 2; while it runs its last two
    cells are drawn as past the budget (dropped), with a legend key; its block event adds only the 2."""
    run = two_block_run()[:3] + [
        event("step", 1, 0, 4, [44, MASK, 45, MASK], [0, -1, 0, -1], [0.9, 0.2, 0.9, 0.1], 5, info={"needed": 2}),
        event("step", 1, 1, 4, [44, 46, 45, MASK], [0, 1, 0, -1], [0.9, 0.6, 0.9, 0.1], 6, info={"needed": 2}),
    ]
    live = board_html(fold(run), piece, EOS, steps_per_block=4)
    assert count_cells(live, "past-budget") == 2 and "past max new tokens (dropped)" in live
    assert "past max new tokens: denoised with its block, dropped" in live  # the cells' titles say why
    finished = run + [event("block", 1, -1, 4, [44, 46], [0, 1], [0.9, 0.6], 6), done_event([41, 40, 42, 43, 44, 46])]
    final = board_html(fold(finished), piece, EOS, steps_per_block=4)
    assert count_cells(final, "past-budget") == 0 and "past max new tokens" not in final
    assert count_cells(final, "tt-cell") == 6
    # an EOS committed past the budget is dropped with its cell: not drawn as the end
    past_eos = run[:3] + [event("step", 1, 0, 4, [44, MASK, EOS, MASK], [0, -1, 0, -1], generated=5,
                                info={"needed": 2})]
    assert count_cells(board_html(fold(past_eos), piece, EOS, steps_per_block=4), "eos") == 0
    # no budget cut (a whole block, or a step event without "needed"): no mark, no key
    assert "past max new tokens" not in board_html(fold(two_block_run()), piece, EOS, steps_per_block=4)


def test_cached_cells_draw_the_board_the_uncached_twin_draws():
    """cell_html is cached across frames; drawing with a cold cache, a warm one and the uncached function
    (its reference twin) gives the same HTML, frame by frame, in both colourings."""
    import ui.render as render

    events = two_block_run() + [done_event([41, 40, 42, 43, 44, EOS])]
    render.cell_html.cache_clear()
    for colour_by in ("step", "confidence"):
        for upto in range(1, len(events) + 1):
            board = fold(events[:upto])
            cached = board_html(board, piece, EOS, colour_by=colour_by, steps_per_block=4)
            again = board_html(board, piece, EOS, colour_by=colour_by, steps_per_block=4)
            real = render.cell_html
            render.cell_html = real.__wrapped__  # the same drawing without the cache
            try:
                uncached = board_html(board, piece, EOS, colour_by=colour_by, steps_per_block=4)
            finally:
                render.cell_html = real
            assert cached == again == uncached
    assert render.cell_html.cache_info().hits > 0


def test_cell_cache_is_keyed_on_the_piece_function():
    """Two models' tokenizers draw the same id differently: a cached cell of one is never shown for the other."""
    board = fold(two_block_run())
    first = board_html(board, piece, EOS)
    other = board_html(board, lambda t: "Z" if t == 41 else piece(t), EOS)
    assert ">Z<" in other and ">Z<" not in first
