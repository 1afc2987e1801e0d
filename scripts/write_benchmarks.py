"""Assemble BENCHMARKS.md from the JSON that `twotower bench / eval / sweep --json` wrote.

  python scripts/write_benchmarks.py --bench runs/bench.json [--bench-extra runs/bench_spec.json] \
      --eval runs/eval_diff.json runs/eval_mock.json --sweep runs/sweep.json [--intro notes.md]

Each table is the command's own markdown formatter applied to its measured output, headed by the device,
the commit, the date and the exact command. Nothing here computes or types a number.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.model_card import merge_reports  # noqa: E402
from twotower import bench, eval_report, run_setup, sweep  # noqa: E402


def _header(title: str, report: dict, commands: dict, key: str, commit: str) -> list[str]:
    """Device, commit, date and command of one measured report: the report's own record where it has
    one (bench / eval / sweep write it), else the commands file and HEAD."""
    device = f"{report['device']['name']} ({run_setup.run_variant(report)}), torch {report['device'].get('torch', '')}"
    command = report.get("command") or commands.get(key, "?")
    if isinstance(command, list):  # evals of several modes, run side by side and merged: each run's own command
        command = "`; `".join(command)
    measured_at = report.get("commit") or commit
    when = (f"measured {report['date']}" if report.get("date")  # reports before 2026-12-02 did not record it
            else f"measured on or after that commit's date, "
                 f"{run_setup.git('show', '-s', '--format=%cs', measured_at.removesuffix('-dirty')) or 'unknown'}")
    return [f"## {title}", "", f"- device: {device}", f"- commit: `{measured_at}`, {when}", f"- command: `{command}`", ""]



def _pct(x) -> str:
    return "n/a" if x is None else f"{100 * x:.1f} %"


def _met(ok: bool) -> str:
    return "met" if ok else "**not met**"


def _other_variant(report: dict, b: dict) -> str:
    """The report's run variant (dtype, compile) when it differs from the main bench's, else ""."""
    variant = run_setup.run_variant(report)
    return "" if variant == run_setup.run_variant(b) else variant


def _speculative_how(rec: dict) -> str:
    return (f"{bench._passes(rec.get('draft_steps'))}{', adaptive' if rec.get('adaptive') else ''}"
            f"{', snapshot rollback' if rec.get('snapshot_rollback') else ''}"
            f"{bench._cut(rec.get('min_draft_confidence'))}, S = {rec['block_size']}")


def _by_round(rec: dict, report: dict) -> str:
    """'0.80–1.12 by round': the spread of the run's paired per-round ratios, '' when it has none."""
    spread = bench.ratio_range(rec, report["modes"]["ar"])
    return "" if spread == "—" else f"{spread} by round"


def _tags(*parts: str) -> str:
    """' (a; b)' of the non-empty parts, '' when all are empty."""
    kept = [p for p in parts if p]
    return f" ({'; '.join(kept)})" if kept else ""


def _worst_task(report: dict) -> tuple[str, float] | None:
    """An eval report's diffusion task with the lowest retention, (name, retention); None when no task has one."""
    tasks = {k: v for k, v in report["retention"].get("diffusion", {}).get("tasks", {}).items() if v is not None}
    if not tasks:
        return None
    name = min(tasks, key=tasks.get)
    return name, tasks[name]


def _eval_tokens_per_pass(report: dict) -> float | None:
    """Diffusion's tokens per denoiser pass over an eval's generations (older reports: none)."""
    return report.get("passes", {}).get("diffusion", {}).get("tokens_per_pass")


EVAL_ROWS = "; the eval's rows (retention, tokens per pass over its generations) on "


def eval_host(b: dict, reports: list[dict], lead: str) -> str:
    """`lead` and the machine(s) the evals ran on, where that is not the bench's ("" where it is): the timed runs
    and the evals of one table can come from two hosts (2026-12-06: the evals on an Intel Xeon, the benches of
    2026-12-05 on an AMD EPYC), and the header named the bench's alone."""
    hosts = list(dict.fromkeys(r["device"]["name"] for r in reports if (r.get("device") or {}).get("name")))
    return "" if not hosts or hosts == [b["device"]["name"]] else lead + " and ".join(hosts)


def summary(b: dict, reports: list[dict], extras: list[dict]) -> list[str]:
    """The headline figures against the issues' targets, read from the measured reports. Rows measured in
    another dtype than the main bench say which."""
    lines = ["## Summary", "",
             f"On {b['device']['name']} ({run_setup.run_variant(b)} unless a row says otherwise), γ = {b['gamma']}, "
             f"S = {b['block_size']}, batch 1{eval_host(b, reports, EVAL_ROWS)}:", "",
             "| figure | measured | target | |", "|---|---|---|---|"]
    for rec in [b, *extras]:
        diff = rec["modes"].get("diffusion", {})
        other = _other_variant(rec, b)
        if diff.get("tokens_per_s") and (rec is b or other):
            tag = _tags(other)
            lines.append(f"| diffusion tokens/s ÷ AR{_tags(other, _by_round(diff, rec))} | {diff['ratio_vs_ar']:.2f}× | "
                         "≥ 2.0× (#6) | "
                         f"{_met(diff['ratio_vs_ar'] >= 2.0)} |")
            lines.append(f"| diffusion tokens per denoiser pass{tag} | {diff['tokens_per_pass']:.2f} | ≥ 4 (#3) | "
                         f"{_met(diff['tokens_per_pass'] >= 4)} |")
    for report in reports:
        ret = report["retention"].get("diffusion", {})
        worst = _worst_task(report)
        other = _other_variant(report, b)
        tag = f", {other}" if other else ""
        if worst is not None:
            lines.append(f"| diffusion retention, worst task (aggregate {_pct(ret.get('aggregate'))}{tag}) | "
                         f"{_pct(worst[1])} | ≥ 95 % on every task (#3, #6) | {_met(worst[1] >= 0.95)} |")
        per_pass = _eval_tokens_per_pass(report)
        if per_pass is not None:
            n = sum(report["n_prompts"].values())
            lines.append(f"| diffusion tokens per denoiser pass over the eval's {n} generations{tag} | {per_pass:.2f} | "
                         f"≥ 4 (#3) | {_met(per_pass >= 4)} |")
    for rec in [b, *extras]:
        sp = rec["modes"].get("speculative", {})
        if sp.get("tokens_per_s"):
            other = _other_variant(rec, b)
            how = _speculative_how(rec) + (f", {other}" if other else "")
            same = sp.get("identical_to_ar")
            even = sp.get("break_even_acceptance_length")  # older reports: none
            spread = _by_round(sp, rec)
            lines.append(f"| speculative tokens/s ÷ AR ({how}; mean acceptance length "
                         f"{sp['mean_acceptance_length']:.2f}{'' if even is None else f', break-even {even:.2f}'}"
                         f"{'' if same is None else f'; output = AR on {100 * same:.0f} % of generations'}"
                         f"{f'; {spread}' if spread else ''}) | "
                         f"{sp['ratio_vs_ar']:.2f}× | ≥ 1.8× (#4) | {_met(sp['ratio_vs_ar'] >= 1.8)} |")
    return lines + [""]


README_START = "<!-- measured-table:start (scripts/write_benchmarks.py --readme writes this block) -->"
README_END = "<!-- measured-table:end -->"


def _ratio(rec: dict | None, report: dict) -> str:
    """'81.6 (1.02×; 0.90–1.10)': tokens/s, its ratio to AR's, and the spread of the paired per-round ratios."""
    if not rec or not rec.get("tokens_per_s"):
        return "–"
    spread = bench.ratio_range(rec, report["modes"]["ar"])
    return f"{rec['tokens_per_s']:.1f} ({rec['ratio_vs_ar']:.2f}×{'' if spread == '—' else f'; {spread}'})"


def readme_tables(b: dict, reports: list[dict], extras: list[dict]) -> list[str]:
    """The README's "where it stands" tables, every cell read from one measure.sh run's reports: tokens/s of
    each mode per run variant (batch 1), the speculative variants, and the quality of each eval variant."""
    dates = sorted({r.get("date") for r in [b, *extras, *reports] if r.get("date")})
    commits = sorted({r.get("commit") for r in [b, *extras] if r.get("commit")})
    lines = [f"Measured {' to '.join(dict.fromkeys([dates[0], dates[-1]])) if dates else 'on an unrecorded date'} "
             f"on {b['device']['name']}, commit{'s' if len(commits) > 1 else ''} "
             f"{', '.join(f'`{c}`' for c in commits) or 'unrecorded'} for the timed runs (BENCHMARKS.md has every "
             f"command); γ = {b['gamma']}, S = {b['block_size']}, greedy, {b['max_new_tokens']} new tokens, batch 1, "
             "tokens/s with the ratio to AR in the same run (median rounds; then the lowest–highest ratio of the "
             "run's paired rounds, where the report has them):", "",
             "| run variant | AR | diffusion | mock-AR | speculative (mean acceptance length) | diffusion tokens per pass |",
             "|---|---|---|---|---|---|"]
    for rec in [b, *extras]:
        if rec is not b and not _other_variant(rec, b):
            continue  # a speculative variant of the main run: the next table
        modes = rec["modes"]
        sp = modes.get("speculative") or {}
        spec = _ratio(sp, rec) + (f", {sp['mean_acceptance_length']:.2f}" if sp.get("mean_acceptance_length") else "")
        if sp.get("identical_to_ar") is not None and sp["identical_to_ar"] < 1.0:  # lossless only where it says not
            spec += f"; output = AR on {100 * sp['identical_to_ar']:.0f} %"
        per_pass = (modes.get("diffusion") or {}).get("tokens_per_pass")
        lines.append(f"| {run_setup.run_variant(rec)} | {modes['ar']['tokens_per_s']:.1f} | {_ratio(modes.get('diffusion'), rec)} | "
                     f"{_ratio(modes.get('mock_ar'), rec)} | {spec} | {'–' if per_pass is None else f'{per_pass:.2f}'} |")
    lines += ["", "| speculative variant (fp32) | AR | speculative | mean acceptance length | break-even | output = AR |",
              "|---|---|---|---|---|---|"]
    for rec in [b, *extras]:
        sp = rec["modes"].get("speculative") or {}
        if not sp.get("tokens_per_s") or _other_variant(rec, b):
            continue
        even, same = sp.get("break_even_acceptance_length"), sp.get("identical_to_ar")
        lines.append(f"| {_speculative_how(rec)} | {rec['modes']['ar']['tokens_per_s']:.1f} | {_ratio(sp, rec)} | "
                     f"{sp['mean_acceptance_length']:.2f} | {'–' if even is None else f'{even:.2f}'} | "
                     f"{'–' if same is None else f'{100 * same:.0f} %'} |")
    eval_commits = sorted({r.get("commit") for r in reports if r.get("commit")})
    lines += ["", f"The quality rows: the evals at commit{'s' if len(eval_commits) > 1 else ''} "
              f"{', '.join(f'`{c}`' for c in eval_commits) or 'unrecorded'}"
              f"{eval_host(b, reports, ', on ')}:", "",
              "| quality (eval variant) | aggregate retention of AR's task scores (95 % interval) | worst task | "
              "diffusion tokens per pass over the eval |", "|---|---|---|---|"]
    for report in reports:
        worst = _worst_task(report)
        if worst is None:
            continue
        ret = report["retention"]["diffusion"]
        interval = eval_report.interval((ret.get("ci") or {}).get("aggregate"))  # as the eval's own table prints it
        per_pass = _eval_tokens_per_pass(report)
        lines.append(f"| {run_setup.run_variant(report)}, {sum(report['n_prompts'].values())} generations | "
                     f"{_pct(ret.get('aggregate'))}{interval} | {worst[0].replace('_', ' ')} {_pct(worst[1])} | "
                     f"{'–' if per_pass is None else f'{per_pass:.2f}'} |")
    return lines


def replace_block(text: str, block: list[str]) -> str:
    """`text` with what lies between the README's markers replaced by `block`; an error if a marker is missing."""
    start, end = text.find(README_START), text.find(README_END)
    if start < 0 or end < start:
        raise SystemExit(f"the README has no {README_START!r} ... {README_END!r} block to rewrite")
    return text[:start + len(README_START)] + "\n" + "\n".join(block) + "\n" + text[end:]


def sweep_timing_note(report: dict) -> str:
    """How a sweep report's ratios were timed (reports before per-point AR timing have no `ar_timing`)."""
    if report.get("ar_timing") == "per_point":
        return "AR is timed beside each point; each ratio divides by that timing."
    return ("AR was timed once, before the grid, and every ratio divides by that one timing (the sweep of this "
            "report's commit; `twotower sweep` now times AR beside each point).")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    parser.add_argument("--bench-extra", nargs="*", default=[],
                        help="more `twotower bench --json` runs (e.g. speculative variants), one table each")
    parser.add_argument("--eval", nargs="+", required=True)
    parser.add_argument("--eval-extra", nargs="*", default=[],
                        help="`twotower eval --json` runs in other precisions, one table each")
    parser.add_argument("--sweep", default=None)
    parser.add_argument("--commands", default=None, help="JSON {bench, eval, sweep}: commands of reports that lack one")
    parser.add_argument("--intro", default=None, help="markdown file with the analysis to put under the summary")
    parser.add_argument("--readme", default=None, help="also rewrite this file's measured-table block (README.md)")
    args = parser.parse_args()
    commit = run_setup.git("rev-parse", "--short", "HEAD") or ""
    commands = json.loads(Path(args.commands).read_text()) if args.commands else {}
    b = json.loads(Path(args.bench).read_text())
    extras = [json.loads(Path(p).read_text()) for p in args.bench_extra]
    reports = [merge_reports([json.loads(Path(p).read_text()) for p in args.eval]),
               *(merge_reports([json.loads(Path(p).read_text())]) for p in args.eval_extra)]
    for report in reports:
        if len(report.get("commands") or []) > 1 or ("command" not in report and report.get("commands")):
            report["command"] = report["commands"]  # a merged report quotes every run's command, not the first's
    lines = ["# Benchmarks", "", "Every number on this page was measured by the command quoted above its table, on "
             "held-out prompts (the corpus's test split); the tables are of the embedded default model "
             "(`assets/default`), and the introduction also quotes reports of earlier models and other devices, "
             "each with its folder under `benchmarks/`. "
             "Tables are the commands' own markdown output; regenerate with `scripts/write_benchmarks.py`.", ""]
    lines += summary(b, reports, extras)
    if args.intro:
        lines += [Path(args.intro).read_text().strip(), ""]
    lines += _header("Throughput", b, commands, "bench", commit) + [bench.format_markdown(b), ""]
    for extra in extras:
        other = _other_variant(extra, b)
        title = f"Throughput in {other}" if other else "Throughput: speculative variant"
        lines += _header(title, extra, commands, "bench", commit) + [bench.format_markdown(extra), ""]
    for report in reports:
        other = _other_variant(report, b)
        title = "Quality and retention" + (f" in {other}" if other else "")
        lines += _header(title, report, commands, "eval", commit) + [eval_report.format_markdown(report), ""]
    if args.sweep:
        s = json.loads(Path(args.sweep).read_text())
        lines += _header("Speed against quality (γ × S)", s, commands, "sweep", commit)
        lines += [sweep.format_markdown(s["points"]), sweep_timing_note(s), ""]
    gpu = any("cuda" in r["device"].get("ctx_device", "") for r in [b, *extras])
    if not gpu:
        lines += ["## GPU", "", "The tables above are CPU runs. The GPU runs (lent H200s) are in "
                  "`benchmarks/gpu_lease_*/`, quoted in the introduction; the same commands take "
                  "`--ctx-device cuda --den-device cuda --dtype bf16`.", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines), encoding="utf-8")
    if args.readme:
        readme = Path(args.readme)
        readme.write_text(replace_block(readme.read_text(encoding="utf-8"), readme_tables(b, reports, extras)),
                          encoding="utf-8")
    print((ROOT / "BENCHMARKS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
