"""The markdown report of `twotower bench`: its table, the settings line above it and the notes below.

Split from bench.py (the measuring) so each stays readable; bench re-exports these names.
"""

from __future__ import annotations

from . import metrics
from .engine import ANCHOR_NOTE
from .run_setup import counted, machine_line

SPECULATIVE_BATCH_NOTE = "speculative decoding is batch-1 only"


def round_ratios(record: dict, ar_record: dict) -> list[float] | None:
    """Each round's tokens/s ÷ AR's in the same round. Modes take turns within a round, so a pair saw nearly
    the same load on the host; the spread of these pairs is the run's own measure of its noise. None when
    either record lacks its rounds (older reports, a mode not measured)."""
    mine, ar = record.get("tokens_per_s_repeats"), ar_record.get("tokens_per_s_repeats")
    if not mine or not ar or len(mine) != len(ar):
        return None
    return [metrics.ratio(x, y) for x, y in zip(mine, ar)]


def ratio_range(record: dict, ar_record: dict) -> str:
    """'min–max' of the per-round ratios, '—' when there are none or only one."""
    ratios = [r for r in round_ratios(record, ar_record) or [] if r is not None]
    return f"{min(ratios):.2f}–{max(ratios):.2f}" if len(ratios) > 1 else "—"


def _num(value, digits=2, scale=1.0) -> str:
    return "n/a" if value is None else f"{value * scale:.{digits}f}"


def _share(value) -> str:
    return "n/a" if value is None else f"{value * 100:.0f} %"


def _cut(min_confidence) -> str:
    return f", proposal cut below confidence {min_confidence:g}" if min_confidence else ""


def _passes(n) -> str:
    return f"{'?' if n is None else n} draft pass{'' if n == 1 else 'es'}"


def ran_modes(report: dict) -> list[str]:
    """The modes a report measured (a skipped one has status "skipped"; hand-made and older reports: no status)."""
    return [mode for mode, rec in report["modes"].items() if rec.get("status", "ok") == "ok"]


def settings_line(report: dict) -> str:
    """Machine and variant, then the settings of the modes that ran (AR and mock-AR read none), then the prompts."""
    ran = ran_modes(report)
    diffusion = "diffusion" in ran or "retention" in report  # --eval scores diffusion whatever --modes timed
    parts = [machine_line(report)]
    if diffusion or "speculative" in ran:  # both read γ and S
        parts.append(f"γ = {report['gamma']}, S = {report['block_size']}" + (
            f", steps per block = {report['steps_per_block']}{ANCHOR_NOTE if report.get('anchor_first') else ''}"
            if diffusion else ""))
    if "speculative" in ran:
        parts.append(f"speculative: {_passes(report.get('draft_steps'))} per block"
                     f"{', adaptive length' if report.get('adaptive') else ''}"
                     f"{', snapshot rollback' if report.get('snapshot_rollback') else ''}"
                     f"{_cut(report.get('min_draft_confidence'))}")
    parts.append(f"{counted(report['n_prompts'], 'prompt')} ({report['prompt_source']}), {report['max_new_tokens']} "
                 f"new tokens each (EOS ignored), median of {counted(report['repeats'], 'round')} after a warm-up.")
    return "; ".join(parts)


# how bench's markdown begins: what `bench --out` may write over (path_checks.check_written_over)
MARKDOWN_START = "## Throughput: "


def format_markdown(report: dict) -> str:
    from .engine import MODE_LABELS
    from .eval_report import format_score, interval  # a retention as the eval prints it
    from .evaluation import TASK_METRICS

    b = report["batch_size"]
    lines = [f"{MARKDOWN_START}{report['model']}", "", settings_line(report), ""]
    if report.get("eval_interrupted_after") == "no prompt":  # Ctrl-C or SIGTERM in --eval, after every timed round
        lines[-1:-1] = ["", "Interrupted in the quality eval (--eval), before its first prompt was scored: the "
                            "throughput figures are every round's; there are no quality figures."]
    elif report.get("eval_interrupted_after"):
        lines[-1:-1] = ["", f"Interrupted in the quality eval (--eval), after {report['eval_interrupted_after']}: "
                            "the throughput figures are every round's, the quality figures those prompts'."]
    elif report.get("interrupted_after"):  # Ctrl-C or SIGTERM: the rounds every mode finished
        lines[-1:-1] = ["", f"Interrupted after {report['interrupted_after']}: the figures are those rounds'."]
    header = ["mode", "tokens/s", "× AR", "× AR by round", "NFE", "context passes", "tokens / pass", "TTFT (ms)", "= AR output"]
    if b > 1:
        header += [f"tokens/s (batch {b})", f"× AR (batch {b})"]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    ar = report["modes"]["ar"]
    for mode, rec in report["modes"].items():
        row = [MODE_LABELS[mode], _num(rec["tokens_per_s"], 1), _num(rec["ratio_vs_ar"]),
               "—" if mode == "ar" else ratio_range(rec, ar), _num(rec["nfe"], 1),
               _num(rec["context_passes"], 1), _num(rec["tokens_per_pass"]), _num(rec["time_to_first_token_s"], 1, 1000),
               "—" if mode == "ar" else _share(rec.get("identical_to_ar"))]
        if b > 1:
            row += [_num(rec["batch"]["tokens_per_s"], 1), _num(rec["batch"]["ratio_vs_ar"])]
        lines.append("| " + " | ".join(row) + " |")
    notes = [f"{MODE_LABELS[m]}: {rec['note']}" for m, rec in report["modes"].items() if rec.get("note")]
    notes.append("× AR: median tokens/s ÷ AR's median; × AR by round: the lowest and highest of each round's "
                 "tokens/s ÷ AR's in that round (the modes take turns within a round), the run's own noise")
    notes.append("= AR output: share of batch-1 generations whose tokens are exactly AR's on the same prompt")
    spec = report["modes"].get("speculative", {})  # {} where it did not run: none of its notes below
    notes.append("tokens / pass: new tokens ÷ denoiser passes (NFE)" + (
        "; speculative's first token comes from the prompt's prefill, as AR's does, and is counted too"
        if "speculative" in ran_modes(report) else ""))
    if spec.get("mean_acceptance_length") is not None:
        notes.append(f"speculative: mean acceptance length {spec['mean_acceptance_length']:.2f} "
                     "(1 + accepted / verification rounds, over all rounds, as vLLM defines it)"
                     + (f"; acceptance rate {spec['acceptance_rate']:.3f} (accepted / drafted)"
                        if spec.get("acceptance_rate") is not None else ""))
    if spec.get("break_even_acceptance_length") is not None:
        ar_step = report["modes"]["ar"]["decode_ms_per_token"]
        notes.append(f"speculative: a round spent {spec['draft_ms_per_round']:.1f} ms drafting and "
                     f"{spec['verify_ms_per_round']:.1f} ms verifying, {_num(ar_step, 1)} ms per AR decode step: "
                     f"break-even mean acceptance length {spec['break_even_acceptance_length']:.2f} "
                     "(above it speculative decodes faster than AR)")
    if spec.get("rollbacks"):
        notes.append("speculative: rounds by rollback (first repeat): " + ", ".join(
            f"{how} {n}" for how, n in spec["rollbacks"].items()) + " (none: full acceptance or the last round; "
            "positions: from the verify pass's per-position states; snapshot / rescan: the twin's)")
    if spec.get("acceptance_by_position"):
        shares = " · ".join(f"{row['share']:.2f}" for row in spec["acceptance_by_position"])
        notes.append(f"speculative: share of drafted tokens accepted, by draft position 1, 2, …: {shares} "
                     "(when every round drafts the same length, the shares add up to the mean acceptance length "
                     "less 1)")
    if b > 1:
        notes.append(f"batch {b}: prompts cut from the left to each batch's shortest prompt"
                     + (f"; speculative: {SPECULATIVE_BATCH_NOTE}" if "speculative" in ran_modes(report) else ""))
    if "retention" in report:
        task_of = {name: task for task, names in TASK_METRICS.items() for name in names}
        n_of = report.get("eval_n_prompts", {})  # older reports: no counts
        lines += ["", "| task | n | AR | diffusion | retention |", "|---|---|---|---|---|"]
        ci = report.get("retention_ci") or {}  # older reports: no intervals
        for name, value in report["retention"].items():
            ar, diff = report["eval_scores"]["ar"].get(name), report["eval_scores"]["diffusion"].get(name)
            lines.append(f"| {name} | {n_of.get(task_of.get(name), '')} | {_num(ar, 3)} | {_num(diff, 3)} | "
                         f"{format_score(value, percent=True)}{interval(ci.get('tasks', {}).get(name))} |")
        lines.append(f"| **aggregate** | | | | **{format_score(report['retention_aggregate'], percent=True)}**"
                     f"{interval(ci.get('aggregate'))} |")
        notes += [f"{task}: {note}" for task, note in report["retention_notes"].items()]
        # a quick look beside the timing: the spec's figure needs the model card's 500 + 100 prompts
        notes.append("retention: a quick check over the prompts counted in its n column"
                     + (" (95 % intervals of a bootstrap over their files in parentheses)" if ci else "")
                     + "; `twotower eval` scores the model card's 500 + 100")
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"
