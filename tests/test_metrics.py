"""The scoring rules of eval / bench / sweep on hand-made inputs (no model)."""

import pytest

from twotower import metrics


def test_exact_match_ignores_trailing_whitespace_only():
    assert metrics.exact_match("    return x  ", "    return x") == 1.0
    assert metrics.exact_match("return x\r", "return x") == 1.0  # CRLF files
    assert metrics.exact_match("return x", "    return x") == 0.0  # indentation is part of the line
    assert metrics.exact_match("", "x") == 0.0


def test_first_line_cuts_at_the_first_newline():
    assert metrics.first_line("a = 1\nb = 2\n") == "a = 1"
    assert metrics.first_line("no newline") == "no newline"
    assert metrics.first_line("\nlater") == ""


@pytest.mark.parametrize("a, b, distance", [
    ("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0), ("flaw", "lawn", 2), ("ab", "ba", 2),
])
def test_edit_distance_known_values(a, b, distance):
    assert metrics.edit_distance(a, b) == distance
    assert metrics.edit_distance(b, a) == distance


def test_edit_similarity_is_one_minus_normalised_levenshtein():
    assert metrics.edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert metrics.edit_similarity("same", "same  ") == 1.0
    assert metrics.edit_similarity("", "") == 1.0
    assert metrics.edit_similarity("", "abc") == 0.0
    assert metrics.edit_similarity("xyz", "abc") == 0.0


def test_cut_at_last_complete_line():
    assert metrics.cut_at_last_complete_line("a = 1\nb = 2\nc = fo") == "a = 1\nb = 2\n"
    assert metrics.cut_at_last_complete_line("a = 1\n") == "a = 1\n"
    assert metrics.cut_at_last_complete_line("no complete line") == ""


PROMPT = "import os\n\n"


@pytest.mark.parametrize("continuation, ok", [
    ("x = 1\ny = 2\n", True),  # complete statements
    ("def f(a):\n    return a\nz = f(", True),  # the unfinished last line is cut away
    ("def f(a):\n    b = a + 1\n", True),  # body cut mid-way: valid so far
    ("x = foo(1,\n        2,\n", True),  # open bracket: Python's REPL would ask for more
    ('s = """text\nmore text\n', True),  # open triple-quoted string
    ("x = = 1\n", False),  # a real syntax error
    ("def f():\n    x = 1\n  y = 2\n", False),  # dedent to no enclosing level
    ("x = 1\n)\n", False),  # unmatched bracket
    ("x = 1", False),  # no complete line: nothing to judge
    ("\n\n", False),  # blank lines only: nothing to judge
])
def test_syntax_ok_cases(continuation, ok):
    assert metrics.syntax_ok(PROMPT, continuation) is ok


def test_a_line_continued_by_a_backslash_is_not_a_complete_line():
    """"x = 1 + \\" then the budget's end was judged a syntax error (unexpected EOF): the statement goes on."""
    assert metrics.syntax_ok(PROMPT, "a = 1\nx = 1 + \\\ny = ")
    assert metrics.syntax_ok(PROMPT, "x = 1 + \\\n  2\n")  # finished
    assert not metrics.syntax_ok(PROMPT, "x = 1 + \\\n")  # nothing complete to judge
    assert not metrics.syntax_ok(PROMPT, "x = = 1\nx = 1 + \\\n")  # the lines before it are judged
    assert metrics.syntax_ok(PROMPT, "a = 1\nx = 1 + \\\n  2 + \\\n")  # two continued lines: both go
    assert not metrics.syntax_ok(PROMPT, "x = 1 + \\\n  2 + \\\n")
    # inside an open string a trailing backslash is valid as it is (a real file's b'''\ then data lines was
    # failed, its only complete line dropped)
    assert metrics.syntax_ok(PROMPT, "DATA = b'''\\\n3hIElQAAAA")


@pytest.mark.parametrize("continuation, ok", [
    ("main()", True),  # the last line, complete at EOS, was cut away and the continuation failed unjudged
    ("x = 1\nmain(", False),  # an error on the last line was never seen
    ("def f(a):\n", False),  # the file ends with a block open: no longer "valid so far"
    ("x = 1\n", True), ("", False), ("\n", False),
])
def test_a_continuation_that_stopped_at_eos_is_judged_whole(continuation, ok):
    assert metrics.syntax_ok(PROMPT, continuation, ended=True) is ok


def test_syntax_ok_reads_the_continuation_in_the_prompts_context():
    prompt = "if flag:\n    a = 1\n"
    assert metrics.syntax_ok(prompt, "else:\n    a = 2\n")  # continues the prompt's if
    assert not metrics.syntax_ok("x = 1\n", "else:\n    a = 2\n")  # no if to continue
    share = metrics.mean(float(metrics.syntax_ok(PROMPT, c)) for c in ["x = 1\n", "x = = 1\n", "y = 2\n", "z"])
    assert share == 0.5


def test_token_agreement_counts_missing_positions_as_disagreement():
    assert metrics.token_agreement([1, 2, 3], [1, 2, 3]) == 1.0
    assert metrics.token_agreement([1, 9, 3, 4], [1, 2, 3, 4]) == 0.75
    assert metrics.token_agreement([1, 2], [1, 2, 3, 4]) == 0.5  # stopping early earns nothing
    assert metrics.token_agreement([], []) == 1.0
    assert metrics.token_agreement([], [5]) == 0.0


def test_cut_after_eos():
    assert metrics.cut_after_eos([5, 6, 2, 7, 2], 2) == [5, 6, 2]
    assert metrics.cut_after_eos([5, 6], 2) == [5, 6]
    assert metrics.cut_after_eos([5, 2], None) == [5, 2]


def test_retention_arithmetic():
    value, note = metrics.retention(0.6, 0.8)
    assert value == pytest.approx(0.75) and note is None
    assert metrics.retention(0.9, 0.6)[0] == pytest.approx(1.5)  # a mode may beat AR
    value, note = metrics.retention(0.3, 0.0)
    assert value is None and "AR scores 0" in note
    assert metrics.retention(None, 0.5)[0] is None
    assert metrics.aggregate_retention([0.9, None, 1.0]) == pytest.approx(0.95)
    assert metrics.aggregate_retention([None, None]) is None


def test_median_mean_ratio_skip_missing_values():
    assert metrics.median([3.0, 1.0, 2.0]) == 2.0
    assert metrics.median([4.0, None, 1.0, 2.0, 3.0]) == 2.5
    assert metrics.median([]) is None and metrics.median([None]) is None
    assert metrics.mean([1.0, None, 3.0]) == 2.0 and metrics.mean([]) is None
    assert metrics.ratio(6.0, 4.0) == 1.5
    assert metrics.ratio(6.0, 0.0) is None and metrics.ratio(None, 2.0) is None


def test_pareto_front_maximises_both_axes():
    points = [
        {"x": 1.0, "y": 0.9},  # best quality
        {"x": 2.0, "y": 0.8},  # a trade-off
        {"x": 1.5, "y": 0.7},  # dominated by (2.0, 0.8)
        {"x": 3.0, "y": 0.5},  # fastest
        {"x": 3.0, "y": 0.4},  # dominated by (3.0, 0.5): equal x, lower y
        {"x": 2.0, "y": 0.8},  # a tie with a front point: both stay
        {"x": None, "y": 1.0},  # missing value: never on the front, dominates nothing
    ]
    assert metrics.pareto_front(points, "x", "y") == [True, True, False, True, False, True, False]
    assert metrics.pareto_front([], "x", "y") == []
    assert metrics.pareto_front([{"x": 1, "y": 1}], "x", "y") == [True]
    # a NaN ratio (a run timed at 0 s) compares False with everything: it was on the front, dominating nothing
    assert metrics.pareto_front([{"x": float("nan"), "y": 0.9}, {"x": 1, "y": 0.5}], "x", "y") == [False, True]



def test_bootstrap_retention_on_hand_made_scores():
    from twotower.metrics import bootstrap_retention

    ar = {"exact": [1.0] * 200, "sim": [0.5] * 200}
    same = bootstrap_retention(ar, ar, {"next_line": ["exact", "sim"]})
    assert same == {"tasks": {"exact": [1.0, 1.0], "sim": [1.0, 1.0]}, "aggregate": [1.0, 1.0]}
    half = {"exact": [1.0, 0.0] * 100, "sim": [0.5] * 200}  # retention 0.5 and 1.0, aggregate 0.75
    ci = bootstrap_retention(half, ar, {"next_line": ["exact", "sim"]}, seed=1)
    lo, hi = ci["tasks"]["exact"]
    assert 0.38 < lo < 0.5 < hi < 0.62  # ±1.96·sqrt(.25/200) ≈ ±0.07 around 0.5
    assert ci["aggregate"][0] < 0.75 < ci["aggregate"][1] and ci["tasks"]["sim"] == [1.0, 1.0]
    assert ci == bootstrap_retention(half, ar, {"next_line": ["exact", "sim"]}, seed=1)  # seeded
    rare = {"exact": [1.0] + [0.0] * 199}  # AR right once in 200: its resampled score is often 0
    assert bootstrap_retention(rare, rare, {"t": ["exact"]}) == {"tasks": {"exact": None}, "aggregate": None}
    # a metric with a point retention but no interval (AR right once in 200) beside one with an interval:
    # the aggregate averages both, so its interval cannot be the other's alone (it missed its point, 0.583 in
    # [0.325, 0.425], when it was)
    ar_mixed = {"exact": [1.0] + [0.0] * 199, "sim": [0.5] * 200}
    mode_mixed = {"exact": [1.0] + [0.0] * 199, "sim": [0.25] * 200}
    mixed = bootstrap_retention(mode_mixed, ar_mixed, {"next_line": ["exact", "sim"]})
    assert mixed["tasks"] == {"exact": None, "sim": [0.5, 0.5]} and mixed["aggregate"] is None


def test_a_cluster_bootstrap_resamples_whole_files():
    """500 prompts from ~28 files: prompts of one file are alike, and resampling them one by one gave intervals
    too narrow. Here 10 files of 20 prompts, each file all right or all wrong: the prompt-level interval is
    ±0.07 around a retention of 0.5, the file-level one as wide as 10 draws make it."""
    from twotower.metrics import bootstrap_retention

    files = [f"f{i // 20}.py" for i in range(200)]
    ar = {"exact": [1.0] * 200}
    mode = {"exact": [float(int(name[1:-3]) % 2 == 0) for name in files]}  # files 0, 2, 4, 6, 8 right
    prompts = bootstrap_retention(mode, ar, {"next_line": ["exact"]}, seed=3)["tasks"]["exact"]
    whole = bootstrap_retention(mode, ar, {"next_line": ["exact"]}, seed=3, clusters={"next_line": files})
    lo, hi = whole["tasks"]["exact"]
    assert lo < 0.5 < hi and hi - lo > 3 * (prompts[1] - prompts[0])  # ±0.31 (1.96·sqrt(.25/10)) against ±0.07
    assert 0.1 < lo < 0.3 and 0.7 < hi < 0.9
    # one file (or four) resampled is the same few files every time: no interval, not "(50.0–50.0 %)"
    few = bootstrap_retention(mode, ar, {"next_line": ["exact"]}, clusters={"next_line": ["a.py"] * 200})
    assert few == {"tasks": {"exact": None}, "aggregate": None}
    # a resample draws files, each with all its prompts: mode and AR still paired, so equal scores give 1
    assert bootstrap_retention(ar, ar, {"next_line": ["exact"]}, clusters={"next_line": files})["tasks"] == {
        "exact": [1.0, 1.0]}
