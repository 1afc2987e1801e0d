"""The numbers of `twotower bench`, `eval` and `sweep` on hand-made records: each summary, ratio, batch and table
cell is the arithmetic its docstring promises (the smoke runs in test_bench_eval.py only see that fields agree
with each other, so a rate averaged the wrong way, or a column printed upside down, passed them)."""

import types

import pytest

from tiny_models import force_tokens, timed_record
from twotower import bench, evaluation, metrics


# ------------------------------------------------------------------------------------------------ summarise
def test_the_reported_tokens_per_s_is_the_median_round_not_the_mean():
    # one generation a round at 9, 1 and 2 tokens/s: median 2 (the mean, 4, would let one slow round move it)
    rounds = [[timed_record(tokens=9)], [timed_record(tokens=1)], [timed_record(tokens=2)]]
    summary = bench.summarise(rounds)
    assert summary["tokens_per_s_repeats"] == [9.0, 1.0, 2.0]
    assert summary["tokens_per_s"] == 2.0


def test_a_rounds_rate_is_its_tokens_over_its_seconds():
    # 10 tokens in 1 s and 10 in 9 s: 20 tokens in 10 s is 2 tokens/s (the mean of the two rates is 5.56)
    summary = bench.summarise([[timed_record(tokens=10, seconds=1.0), timed_record(tokens=10, seconds=9.0)]])
    assert summary["tokens_per_s_repeats"] == [2.0] and summary["tokens_per_s"] == 2.0


def test_summarise_takes_per_generation_means_of_the_counts():
    # passes are means over generations, and tokens per pass a ratio of those means (not a mean of ratios)
    summary = bench.summarise([[timed_record(tokens=8, nfe=4, context_passes=2),
                                timed_record(tokens=8, nfe=12, context_passes=6)]])
    assert (summary["new_tokens"], summary["nfe"], summary["context_passes"]) == (8, 8, 4)
    assert summary["tokens_per_pass"] == 1.0 and summary["tokens_per_context_pass"] == 2.0
    assert summary["generations"] == 2 and summary["mean_acceptance_length"] is None
    none = bench.summarise([[timed_record(nfe=0, context_passes=0)]])  # AR: no denoiser pass
    assert none["tokens_per_pass"] is None and none["tokens_per_context_pass"] is None


def test_time_to_first_token_is_the_median_round_of_each_rounds_mean_first_token():
    # each generation's first token comes long before its end: TTFT reads ttft_s, never the total seconds
    rounds = [[timed_record(seconds=1.0, ttft_s=0.1), timed_record(seconds=9.0, ttft_s=0.3)],  # mean 0.2
              [timed_record(seconds=2.0, ttft_s=0.5), timed_record(seconds=2.0, ttft_s=0.5)],  # 0.5
              [timed_record(seconds=3.0, ttft_s=0.05), timed_record(seconds=3.0, ttft_s=0.15)]]  # 0.1
    assert bench.summarise(rounds)["time_to_first_token_s"] == pytest.approx(0.2)


def test_ratio_range_is_the_lowest_and_highest_round_ratio():
    ar = {"tokens_per_s_repeats": [10.0, 20.0, 10.0]}
    assert bench.ratio_range({"tokens_per_s_repeats": [25.0, 30.0, 20.0]}, ar) == "1.50–2.50"
    assert bench.ratio_range({"tokens_per_s_repeats": [25.0]}, {"tokens_per_s_repeats": [10.0]}) == "—"  # one round
    assert bench.ratio_range({"tokens_per_s_repeats": [25.0, 30.0]}, ar) == "—"  # rounds that do not pair up
    assert bench.ratio_range({}, ar) == "—"  # an older report without its rounds


def test_mean_ms_times_only_the_calls_after_the_warm_up(monkeypatch):
    # a fake clock: each warm-up call takes 1 s (a compile), each timed call 2 ms
    clock, calls = [0.0], []

    def fn():
        calls.append(None)
        clock[0] += 1.0 if len(calls) <= 3 else 0.002

    monkeypatch.setattr(bench, "perf_counter", lambda: clock[0])
    assert bench.mean_ms(fn, n=5, warmup=3) == pytest.approx(2.0)
    assert len(calls) == 8


# ------------------------------------------------------------------------------------------------ per generation
def test_decode_time_and_speculative_summary_arithmetic():
    generations = [timed_record(rows=[[1, 2, 3]], seconds=0.5, ttft_s=0.1),
                   timed_record(rows=[[1, 2], [3, 4]], seconds=0.4, ttft_s=0.2)]  # batch 1, then batch 2
    assert bench.decode_ms_per_token(generations) == pytest.approx(1000 * 0.6 / 4)  # (3 - 1) + (4 - 2) tokens
    assert bench.decode_ms_per_token([timed_record(rows=[[1]], seconds=0.1, ttft_s=0.1)]) is None
    table = [{"position": 1, "drafted": 2, "accepted": 1, "share": 0.5}]
    first = {"mean_acceptance_length": 2.0, "rounds": 4, "accepted": 4, "draft_s": 0.04, "verify_s": 0.08,
             "acceptance_by_position": table, "rollbacks": {"none": 1, "positions": 3}}
    spec = [[first] * 2, [{**first, "draft_s": 0.08}] * 2]
    summary = bench.speculative_summary(spec)
    assert summary["draft_ms_per_round"] == pytest.approx(15.0)  # median of 10 and 20 ms per round
    assert summary["verify_ms_per_round"] == pytest.approx(20.0)
    assert summary["acceptance_by_position"] == [{"position": 1, "drafted": 4, "accepted": 2, "share": 0.5}]
    assert summary["rollbacks"] == {"none": 2, "positions": 6}  # the first repeat's two generations
    assert bench.break_even_acceptance_length(summary, {"decode_ms_per_token": 10.0}) == pytest.approx(3.5)
    assert bench.break_even_acceptance_length(summary, {"decode_ms_per_token": None}) is None
    # no verification round at all (two new tokens: the prefill's and the context tower's last): no time per round,
    # so no break-even length (it read 0.00, "above it speculative decodes faster")
    none = bench.speculative_summary([[{**first, "rounds": 0, "accepted": 0, "draft_s": 0.0, "verify_s": 0.0}]])
    assert none["draft_ms_per_round"] is None and none["verify_ms_per_round"] is None
    assert bench.break_even_acceptance_length(none, {"decode_ms_per_token": 10.0}) is None
    # vLLM's mean acceptance length is over all rounds: one generation of 1 round with 7 accepted and one of
    # 7 rounds with none give 1 + 7 / 8, not the mean of their own ratios (8 and 1: 4.5, as the bench once said)
    lopsided = [[{**first, "rounds": 1, "accepted": 7, "mean_acceptance_length": 8.0,
                  "acceptance_by_position": [{"position": 1, "drafted": 1, "accepted": 1, "share": 1.0}] * 7},
                 {**first, "rounds": 7, "accepted": 0, "mean_acceptance_length": 1.0,
                  "acceptance_by_position": [{"position": 1, "drafted": 7, "accepted": 0, "share": 0.0}]}]]
    summary = bench.speculative_summary(lopsided)
    assert summary["mean_acceptance_length"] == pytest.approx(1 + 7 / 8)
    assert summary["acceptance_rate"] == pytest.approx(7 / 14)


def test_identical_share_compares_each_generation_with_ar_on_the_same_input():
    ar = [[{"rows": [[5, 6]]}, {"rows": [[7, 8]]}], [{"rows": [[5, 6]]}, {"rows": [[7, 8]]}]]  # 2 rounds x 2 prompts
    same = [[{"rows": [[5, 6]]}, {"rows": [[7, 8]]}]] * 2
    one_off = [[{"rows": [[5, 6]]}, {"rows": [[7, 9]]}], [{"rows": [[5, 6]]}, {"rows": [[7, 8]]}]]
    swapped = [[{"rows": [[7, 8]]}, {"rows": [[5, 6]]}]] * 2  # AR's outputs, but for the other prompts
    assert bench.identical_share(same, ar) == 1.0
    assert bench.identical_share(one_off, ar) == 0.75
    assert bench.identical_share(swapped, ar) == 0.0
    with pytest.raises(ValueError):  # a missing generation is an error, not a silent 100 %
        bench.identical_share([[{"rows": [[5, 6]]}]] * 2, ar)


def test_make_batches_cycles_and_cuts_from_the_left():
    assert bench.make_batches([[1, 2, 3], [4, 5]], 2) == [[[2, 3], [4, 5]]]
    assert bench.make_batches([[1, 2, 3], [4, 5], [6, 7, 8]], 2) == [[[2, 3], [4, 5]], [[6, 7, 8], [1, 2, 3]]]
    assert bench.make_batches([[1, 2]], 1) == [[[1, 2]]]


def test_pass_totals_are_ratios_of_totals():
    stats = [{"new_tokens": 10, "nfe": 2, "rounds": 2, "accepted": 6}, {"new_tokens": 2, "nfe": 2, "rounds": 1, "accepted": 0}]
    totals = evaluation.pass_totals(stats)
    assert totals["tokens_per_pass"] == 12 / 4  # not the mean of 5.0 and 1.0
    assert totals["mean_acceptance_length"] == 1 + 6 / 3
    assert "mean_acceptance_length" not in evaluation.pass_totals([{"new_tokens": 3, "nfe": 3}])
    assert evaluation.pass_totals([])["tokens_per_pass"] is None


# ------------------------------------------------------------------------------------------------ the table
def record(tokens_per_s, ratio, repeats, batch=None, **extra):
    return {"status": "ok", "tokens_per_s": tokens_per_s, "ratio_vs_ar": ratio, "tokens_per_s_repeats": repeats,
            "nfe": extra.get("nfe", 0), "context_passes": extra.get("context_passes", 9.0),
            "tokens_per_pass": extra.get("tokens_per_pass"), "time_to_first_token_s": extra.get("ttft", 0.01),
            "identical_to_ar": extra.get("identical"), "batch": batch}


def table_rows(markdown: str) -> dict[str, dict[str, str]]:
    """{mode label: {column header: cell}} of the throughput table."""
    lines = [line for line in markdown.splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[1:]]
    return {row[0]: dict(zip(header, row, strict=True)) for row in rows}


def test_the_markdown_table_puts_each_number_in_its_column():
    """AR at 10 tokens/s, diffusion at 25: diffusion's row reads 25.0 and 2.50 × AR (AR ÷ diffusion is 0.40)."""
    batch_ar, batch_diffusion = record(30.0, 1.0, [30.0]), record(45.0, 1.5, [45.0])
    report = {"batch_size": 2, "model": "hand-made", "device": {"name": "cpu"}, "dtype": "fp32", "gamma": 0.8,
              "block_size": 4, "steps_per_block": 4, "n_prompts": 2, "prompt_source": "hand-made",
              "max_new_tokens": 8, "repeats": 2,
              "modes": {"ar": record(10.0, 1.0, [10.0, 10.0], batch_ar, context_passes=8.0),
                        "diffusion": record(25.0, 2.5, [20.0, 30.0], batch_diffusion, nfe=3.0, context_passes=2.0,
                                            tokens_per_pass=8 / 3, ttft=0.012, identical=0.5)}}
    rows = table_rows(bench.format_markdown(report))
    assert rows["diffusion"] == {"mode": "diffusion", "tokens/s": "25.0", "× AR": "2.50",
                                 "× AR by round": "2.00–3.00", "NFE": "3.0", "context passes": "2.0",
                                 "tokens / pass": "2.67", "TTFT (ms)": "12.0",
                                 "= AR output": "50 %", "tokens/s (batch 2)": "45.0", "× AR (batch 2)": "1.50"}
    assert rows["AR"]["tokens/s"] == "10.0" and rows["AR"]["× AR"] == "1.00" and rows["AR"]["= AR output"] == "—"


# ------------------------------------------------------------------------------------------------ timed runs
@pytest.mark.parametrize("mode, settings", [("ar", {}),
                                            ("diffusion", {"gamma": 0.5, "block_size": 2, "steps_per_block": 2})])
def test_timed_generation_writes_every_token_when_the_model_writes_eos_first(monkeypatch, mode, settings):
    """The bench ignores EOS (its docstring): every mode makes max_new_tokens, so their speeds compare. The tiny
    random model never writes EOS, so here both towers are made to predict nothing else."""
    from twotower.engine import load_engine

    engine = load_engine(preset="tiny")
    eos = engine.eos_token_id
    force_tokens(monkeypatch, engine.model, [[eos] * 6])  # at most 6 context passes: AR's prefill + 5 steps
    run = bench.timed_generation(engine, mode, engine.encode_prompt("x = 1"), 6, settings)
    assert run["new_tokens"] == 6 and run["rows"] == [[eos] * 6]


# ------------------------------------------------------------------------------------------------ sweep
def test_a_sweep_points_agreement_compares_its_output_with_ars(monkeypatch):
    """Stubbed timings: AR writes 10 11 12 13, diffusion 10 11 99 13 (3 of 4 positions agree) on one prompt and
    AR's tokens on the other: the point's agreement is the mean, (0.75 + 1) / 2."""
    from twotower.sweep import iter_sweep

    outputs = {("ar", 1): [10, 11, 12, 13], ("diffusion", 1): [10, 11, 99, 13],
               ("ar", 2): [20, 21, 22, 23], ("diffusion", 2): [20, 21, 22, 23]}

    def timed(engine, mode, ids, max_new_tokens, settings):
        return timed_record(rows=[list(outputs[mode, ids[0]])])

    monkeypatch.setattr(bench, "timed_generation", timed)
    monkeypatch.setattr(evaluation, "ar_mean_loglik", lambda model, ids, out: -1.0)
    engine = types.SimpleNamespace(eos_token_id=2, model=None)
    (point,) = list(iter_sweep(engine, [[1], [2]], gammas=[0.9], block_sizes=[4], max_new_tokens=4))
    assert point["agreement"] == pytest.approx(0.875)
    assert metrics.token_agreement(outputs["diffusion", 1], outputs["ar", 1]) == 0.75
    # with ticks (the app's Sweep): None before each timed generation, so that a run whose page went away can be
    # closed there: 2 warm-ups, then per point AR and diffusion over 2 prompts × 3 repeats; the points the same
    timings = []
    monkeypatch.setattr(bench, "timed_generation", lambda *args: timings.append(args[1]) or timed(*args))
    ticked = list(iter_sweep(engine, [[1], [2]], gammas=[0.9], block_sizes=[4], max_new_tokens=4, repeats=3,
                             ticks=True))
    assert ticked[-1]["agreement"] == pytest.approx(0.875) and ticked.count(None) == len(timings) == 2 + 2 * 2 * 3
    assert all(item is None for item in ticked[:-1])
