"""`twotower eval`'s report as markdown: the release's table (task | n | AR | mode | retention), the diagnostics
over every generation, and the notes (evaluation.py computes the report; bench and the model card quote it)."""

from __future__ import annotations

from . import metrics
from .engine import ANCHOR_NOTE, MODE_LABELS
from .evaluation import METRIC_LABELS, TASK_METRICS


TASK_NAMES = {"next_line": "next-line prompts", "syntax": "syntax prompts"}


def format_score(value, percent=False) -> str:
    """A score as the eval tables print it: 3 decimals, or a percentage; n/a where undefined (None)."""
    if value is None:
        return "n/a"
    return f"{100 * value:.1f} %" if percent else f"{value:.3f}"


def interval(ci) -> str:
    # a decimal, as the point has: "99.6 % (100–100 %)" read as an interval that missed its point
    return "" if not ci else f" ({100 * ci[0]:.1f}–{100 * ci[1]:.1f} %)"


# how eval's markdown begins: what `eval --out` may write over (path_checks.check_written_over)
MARKDOWN_START = "## Quality on the test split: "


def format_markdown(report: dict) -> str:
    """The release's layout: task | n | AR | mode | retention (one mode column pair per non-AR mode)."""
    s = report["settings"]
    others = [m for m in report["modes"] if m != "ar"]
    lines = [f"{MARKDOWN_START}{report['model']}", "",
             f"γ = {s['gamma']}, S = {s['block_size']}, steps per block = {s['steps_per_block']}, greedy"
             f"{ANCHOR_NOTE if s.get('anchor_first') else ''}; "
             f"prompts truncated to their last {s['max_prompt_tokens']} tokens.", ""]
    if report.get("interrupted_after"):  # Ctrl-C or SIGTERM: the prompts scored in every mode
        lines[-1:] = ["", f"Interrupted after {report['interrupted_after']}: the figures are theirs.", ""]
    header = ["task", "n", "AR"] + [c for m in others for c in (MODE_LABELS[m], "retention")]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in report["tasks"]:
        for name in TASK_METRICS[task]:
            row = [METRIC_LABELS[name], str(report["n_prompts"][task]), format_score(report["scores"]["ar"].get(name))]
            for m in others:
                ci = report["retention"][m].get("ci", {}).get("tasks", {}).get(name)  # older reports: none
                row += [format_score(report["scores"][m].get(name)),
                        format_score(report["retention"][m]["tasks"][name], percent=True) + interval(ci)]
            lines.append("| " + " | ".join(row) + " |")
    row = ["**aggregate (mean retention)**", "", ""]
    for m in others:
        ci = report["retention"][m].get("ci", {}).get("aggregate")
        row += ["", f"**{format_score(report['retention'][m]['aggregate'], percent=True)}**{interval(ci)}"]
    lines += ["| " + " | ".join(row) + " |", ""]
    lines += ["Diagnostics over every generation (not tasks):", "",
              "| mode | agreement with AR tokens | AR-tower mean log-likelihood | tokens per denoiser pass |"
              " mean acceptance length |", "|---|---|---|---|---|"]
    for m in report["modes"]:
        sc, passes = report["scores"][m], report.get("passes", {}).get(m, {})  # older reports: no pass counts
        lines.append(f"| {MODE_LABELS[m]} | {format_score(sc.get('agreement_with_ar'))} | {format_score(sc.get('ar_mean_loglik'))} | "
                     f"{format_score(passes.get('tokens_per_pass'))} | {format_score(passes.get('mean_acceptance_length'))} |")
    notes = sorted({f"{METRIC_LABELS[k]}: {v}" for m in others for k, v in report["retention"][m]["notes"].items()})
    if "syntax" in report["tasks"]:  # what "free of syntax errors" means here (the spec names ast)
        notes.append("syntax check: the prompt and the continuation cut at its last complete line must be valid Python "
                     "so far (Python's codeop, as its REPL: a block or bracket left open may go on; where that fails, "
                     "lines a backslash continues at the end are dropped first), or a whole module where the generation "
                     "stopped at EOS")
    if report["reference"].get("syntax_ok") is not None:
        notes.append(f"the true file continuation passes the syntax check in {format_score(report['reference']['syntax_ok'], True)}"
                     " of syntax prompts (the check's ceiling)")
    cis = [report["retention"][m].get("ci") or {} for m in others]
    bounded = any(ci.get("aggregate") or any((ci.get("tasks") or {}).values()) for ci in cis)
    by_files = any(ci.get("resampled") == "files" for ci in cis)
    few = [TASK_NAMES.get(t, t) for t in report["tasks"] if report.get("files", {}).get(t, 0) < metrics.MIN_CLUSTERS]
    if by_files and few:
        notes.append(f"no retention interval for {', '.join(few)}: fewer than {metrics.MIN_CLUSTERS} files to resample")
    if by_files and bounded:
        files = ", ".join(f"{report['files'][task]} for {TASK_NAMES.get(task, task)}" for task in report["tasks"])
        notes.append("retention in parentheses: 95 % interval of a paired bootstrap over the files the prompts come "
                     f"from ({files}), each file's prompts resampled together ({metrics.BOOTSTRAP_RESAMPLES:,} resamples)")
    elif bounded and not any(ci.get("resampled") for ci in cis):  # reports before the file-level bootstrap
        notes.append("retention in parentheses: 95 % interval of a paired bootstrap over the prompts "
                     f"({metrics.BOOTSTRAP_RESAMPLES:,} resamples)")
    if any(report.get("passed_over", {}).values()):
        skipped = ", ".join(f"{report['passed_over'][task]} for {TASK_NAMES.get(task, task)}" for task in report["tasks"])
        notes.append("each prompt ends where the file's own tokens break (this tokenizer merges across line breaks); "
                     f"line breaks inside a token passed over: {skipped}")
    if report.get("python"):
        notes.append(f"prompts from the test split of the Python {report['python']} standard library (the corpus)")
        trained = report.get("trained_on_python")
        if trained and trained != report["python"]:
            notes.append(f"**the model was trained on Python {trained}'s standard library**: another version's files "
                         "split otherwise where they differ, so some test prompts may come from files it trained on")
    notes += list(report["skipped"].values())
    lines += [""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"
