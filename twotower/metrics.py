"""Pure scoring functions shared by `twotower eval`, `bench`, `sweep`, the model card and the UI.

No model, no I/O: strings and token lists in, numbers out, so each rule is tested on hand-made inputs.
"""

from __future__ import annotations

import codeop
import statistics
import warnings

RETENTION_UNDEFINED = "AR scores 0 on this task, so retention (mode score / AR score) is undefined"


# ------------------------------------------------------------------------------------------------
# next-line completion
def first_line(text: str) -> str:
    """The completion up to (not including) its first newline."""
    return text.split("\n", 1)[0]


def exact_match(prediction: str, target: str) -> float:
    """1.0 when the two lines are equal once trailing whitespace is stripped, else 0.0."""
    return float(prediction.rstrip() == target.rstrip())


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute, each cost 1), two-row dynamic programme."""
    if len(a) < len(b):
        a, b = b, a  # keep the row as short as the shorter string
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b)))
        previous = current
    return previous[-1]


def edit_similarity(prediction: str, target: str) -> float:
    """1 - levenshtein / max(len): 1.0 for equal lines (two empty lines included), 0.0 for nothing in common.

    Both sides are stripped of trailing whitespace first, as in `exact_match`.
    """
    prediction, target = prediction.rstrip(), target.rstrip()
    longest = max(len(prediction), len(target))
    if longest == 0:
        return 1.0
    return 1.0 - edit_distance(prediction, target) / longest


# ------------------------------------------------------------------------------------------------
# syntax of a free continuation
def cut_at_last_complete_line(text: str) -> str:
    """The continuation up to and including its last newline ("" when it holds no complete line).

    A fixed token budget usually ends mid-line; the unfinished line says nothing about syntax.
    """
    end = text.rfind("\n")
    return text[: end + 1] if end >= 0 else ""


def syntax_ok(prompt: str, continuation: str, ended: bool = False) -> bool:
    """Is `prompt + continuation` free of syntax errors so far? The one rule every mode is judged by.

    1. The continuation is cut at its last complete line; a continuation with no complete non-blank
       line fails (it gives nothing to judge, and an empty output must not score 1).
    2. `prompt + cut` must compile as a module, or be what Python's own REPL calls *incomplete input*
       (`codeop.compile_command` returns None: an open block, bracket or triple-quoted string that more
       lines could finish). A truncated but valid function body therefore passes; a real syntax error,
       a bad dedent or an unmatched bracket fails.
    `ended`: the generation stopped at EOS, the end of the file: nothing is cut (its last line is complete, and
    was never judged), and `prompt + continuation` must compile as a whole module (a block left open fails).
    The evaluation picks prompts that end at a line break at top level and compile on their own, so
    a failure is the continuation's fault.
    """
    if ended:
        return bool(continuation.strip()) and source_compiles(prompt + continuation)
    cut = cut_at_last_complete_line(continuation)
    if not cut.strip():
        return False
    if source_is_valid_so_far(prompt + cut):
        return True
    # a last line that a backslash continues ("x = 1 + \\" at the budget's end) is a statement cut mid-way,
    # which Python calls an error at the end of input: judge the lines before it. Only as a fallback: inside an
    # open string a trailing backslash is valid so far as it is (b'''\ then data, in test_gettext.py). Every
    # continued line at the end goes ("x = 1 + \\" then "  2 + \\" failed when only one went); what a dropped
    # line holds is not judged, as the unfinished line the cut drops is not
    while cut.endswith("\\\n"):
        cut = cut_at_last_complete_line(cut[:-1])
        if not cut.strip():
            return False
        if source_is_valid_so_far(prompt + cut):
            return True
    return False


def source_compiles(source: str) -> bool:
    """True when `source` is a whole valid module (what a file that ends here must be)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            compile(source, "<continuation>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
            return False
    return True


def source_is_valid_so_far(source: str) -> bool:
    """True when `source` is valid Python, complete or incomplete (see `syntax_ok`)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SyntaxWarning for odd escapes is not an error
        try:
            codeop.compile_command(source, "<continuation>", "exec")
        except (SyntaxError, ValueError, OverflowError, RecursionError, MemoryError):
            return False  # ValueError: null bytes; the others: pathological nesting
    return True


# ------------------------------------------------------------------------------------------------
# agreement with AR, retention, aggregation
def token_agreement(tokens, reference) -> float:
    """Share of positions where `tokens` equals `reference`, over the longer of the two.

    Outputs are cut after EOS, so lengths may differ; a position one output lacks counts as a
    disagreement (an output that stops early does not get a free 1.0). Two empty outputs agree fully.
    """
    tokens, reference = list(tokens), list(reference)
    longest = max(len(tokens), len(reference))
    if longest == 0:
        return 1.0
    same = sum(a == b for a, b in zip(tokens, reference))
    return same / longest


def cut_after_eos(tokens, eos_token_id: int | None) -> list[int]:
    """The tokens up to and including the first EOS (what a user sees when generation stops at EOS)."""
    tokens = list(tokens)
    if eos_token_id is not None and eos_token_id in tokens:
        return tokens[: tokens.index(eos_token_id) + 1]
    return tokens


def retention(mode_score: float | None, ar_score: float | None) -> tuple[float | None, str | None]:
    """(mode score / AR score, note). The ratio is None, with a note saying why, when AR scores 0 or
    either score is missing."""
    if mode_score is None or ar_score is None:
        return None, "no score for this task"
    if ar_score == 0:
        return None, RETENTION_UNDEFINED
    return mode_score / ar_score, None


def aggregate_retention(retentions) -> float | None:
    """Mean of the defined per-task retentions (the release's aggregate); None when none is defined."""
    defined = [r for r in retentions if r is not None]
    return sum(defined) / len(defined) if defined else None


BOOTSTRAP_RESAMPLES = 2000  # the eval's retention intervals (its tables say how many)
MIN_CLUSTERS = 5  # fewer files (or prompts) than this: no interval (percentile intervals of a few draws cover little)


def bootstrap_retention(mode_items: dict, ar_items: dict, groups: dict, n_boot: int = BOOTSTRAP_RESAMPLES,
                        seed: int = 0, level: float = 0.95, clusters: dict | None = None) -> dict:
    """Percentile intervals of retention (mode score / AR score), paired bootstrap over prompts or their files.

    mode_items / ar_items: {metric: per-prompt scores, the same prompts in the same order}; groups: {task:
    [metrics]}: a task's metrics share one resample of its prompts, tasks are resampled independently.
    clusters: {task: each prompt's cluster (its file)}: resample whole clusters, each with all its prompts (a
    cluster bootstrap): prompts of one file are alike, and resampling them one by one made the intervals
    narrower than they are (500 prompts come from ~28 files). Mode and AR still share every resample.
    Returns {"tasks": {metric: [lo, hi] | None}, "aggregate": [lo, hi] | None}; None where AR's resampled
    score is 0 in more than 1 % of the resamples (the ratio is then undefined too often to bound), and for
    the aggregate when any metric it averages has no interval.
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    ratios = {}
    for task, metrics_of_task in groups.items():
        n = len(ar_items[metrics_of_task[0]])
        labels = (clusters or {}).get(task) or range(n)  # no clusters: each prompt its own
        _, member = np.unique([str(label) for label in labels], return_inverse=True)  # (n,) each prompt's cluster
        k = int(member.max()) + 1 if n else 0
        size = np.bincount(member, minlength=k)  # (k,) prompts per cluster
        picks = rng.integers(0, k, size=(n_boot, k))  # (n_boot, k) cluster indices, shared by the task's metrics
        if k < MIN_CLUSTERS:  # one file resampled is that file every time: "(50.0–50.0 %)" bounded nothing
            ratios.update({name: np.full(n_boot, np.nan) for name in metrics_of_task})
            continue
        resampled_size = size[picks].sum(1)  # (n_boot,) prompts in each resample

        def resampled_mean(scores):
            total = np.bincount(member, weights=np.asarray(scores, dtype=float), minlength=k)  # (k,) per cluster
            return total[picks].sum(1) / resampled_size  # (n_boot,) mean over the resampled prompts

        for name in metrics_of_task:
            mode, ar = resampled_mean(mode_items[name]), resampled_mean(ar_items[name])
            with np.errstate(divide="ignore", invalid="ignore"):
                ratios[name] = np.where(ar > 0, mode / ar, np.nan)  # (n_boot,)
    tail = 100 * (1 - level) / 2

    def interval(samples):
        if np.isnan(samples).mean() > 0.01:
            return None
        lo, hi = np.nanpercentile(samples, [tail, 100 - tail])
        return [float(lo), float(hi)]

    intervals = {name: interval(r) for name, r in ratios.items()}
    # the aggregate's interval covers the metrics its point estimate averages (those where AR scores above 0
    # on the whole sample): if one of them cannot be bounded, neither can the aggregate (an interval over the
    # others alone could miss its own point estimate)
    averaged = [name for name in ratios if np.mean(np.asarray(ar_items[name], dtype=float)) > 0]
    if not averaged or any(intervals[name] is None for name in averaged):
        aggregate = None
    else:
        aggregate = interval(np.nanmean(np.stack([ratios[name] for name in averaged]), axis=0))
    return {"tasks": intervals, "aggregate": aggregate}


def mean(values) -> float | None:
    """Mean of the values that are not None; None when there are none."""
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def median(values) -> float | None:
    """Median of the values that are not None (timings of repeated runs); None when there are none."""
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(value: float | None, baseline: float | None) -> float | None:
    """value / baseline, None when either is missing or the baseline is 0."""
    if value is None or not baseline:
        return None
    return value / baseline


# ------------------------------------------------------------------------------------------------
# Pareto frontier
def pareto_front(points, x: str, y: str) -> list[bool]:
    """For each point (a dict), True when no other point is at least as good on both `x` and `y`
    (larger is better) and strictly better on one. Points missing either value are never on the
    front and dominate nothing (NaN counts as missing: it compares False with everything, so it was on
    the front). Equal points are all on the front."""
    def value(point, key):
        v = point.get(key)
        return None if v is None or v != v else v  # v != v: NaN

    values = [(value(p, x), value(p, y)) for p in points]
    flags = []
    for xi, yi in values:
        if xi is None or yi is None:
            flags.append(False)
            continue
        dominated = any(
            xj is not None and yj is not None and xj >= xi and yj >= yi and (xj > xi or yj > yi)
            for xj, yj in values
        )
        flags.append(not dominated)
    return flags
