"""Assemble BENCHMARKS.md from the JSON that `twotower bench / eval / sweep --json` wrote.

  python scripts/write_benchmarks.py --bench runs/bench.json --eval runs/eval_diff.json runs/eval_mock.json \
      --sweep runs/sweep.json --commands runs/commands.json

Each table is the command's own markdown formatter applied to its measured output, headed by the device,
the commit, the date and the exact command. Nothing here computes or types a number.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.model_card import merge_reports  # noqa: E402
from twotower import bench, evaluation, sweep  # noqa: E402


def _header(title: str, command: str, device: str, commit: str) -> list[str]:
    """commit: the one the run was measured at (recorded in its JSON), else HEAD."""
    return [f"## {title}", "", f"- device: {device}", f"- commit: `{commit}`, measured {date.today().isoformat()}",
            f"- command: `{command}`", ""]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bench", required=True)
    parser.add_argument("--eval", nargs="+", required=True)
    parser.add_argument("--sweep", default=None)
    parser.add_argument("--commands", required=True, help="JSON {bench, eval, sweep} of the exact commands run")
    parser.add_argument("--intro", default=None, help="markdown file with the analysis to put on top")
    args = parser.parse_args()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    commands = json.loads(Path(args.commands).read_text())
    b = json.loads(Path(args.bench).read_text())
    device = f"{b['device']['name']} ({b['dtype']}), torch {b['device'].get('torch', '')}"
    lines = ["# Benchmarks", "", "Every number on this page was measured by the command quoted above its table, on the "
             "embedded default model (`assets/default`) and held-out prompts (the corpus's test split). "
             "Tables are the commands' own markdown output; regenerate with `scripts/write_benchmarks.py`.", ""]
    if args.intro:
        lines += [Path(args.intro).read_text().strip(), ""]
    lines += _header("Throughput", commands["bench"], device, b.get("commit", commit)) + [bench.format_markdown(b), ""]
    report = merge_reports([json.loads(Path(p).read_text()) for p in args.eval])
    lines += _header("Quality and retention", " && ".join(commands["eval"]), device, report.get("commit", commit))
    lines += [evaluation.format_markdown(report), ""]
    if args.sweep:
        s = json.loads(Path(args.sweep).read_text())
        lines += _header("Speed against quality (γ × S)", commands["sweep"], device, s.get("commit", commit))
        lines += [sweep.format_markdown(s["points"]), ""]
    lines += ["## GPU", "", "No GPU was lent to the sessions that measured this page; the GPU rows are not measured yet. "
              "The same commands take `--ctx-device cuda --den-device cuda --dtype bf16`.", ""]
    (ROOT / "BENCHMARKS.md").write_text("\n".join(lines), encoding="utf-8")
    print((ROOT / "BENCHMARKS.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
