"""An eval stopped by Ctrl-C or SIGTERM keeps the prompts it scored: `evaluate` raises EvalInterrupted with the
report over them, `twotower eval` prints it and writes --out before it ends as the interrupt does, and `bench
--eval` keeps its timed rounds when the interrupt lands in its eval (both were lost: minutes of work). With
--workers, a real Ctrl-C ends the command and its worker processes."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twotower import eval_report, evaluation, metrics
from twotower.cli import main as cli_main
from twotower.interrupts import Terminated

TINY = ["--preset", "tiny", "--max-prompt-tokens", "48"]
ROOT = Path(__file__).resolve().parent.parent


def stop_at_job(monkeypatch, k, signal=KeyboardInterrupt):
    """score_item raises `signal` on its k-th call (1-based); returns the records of the calls before it."""
    real, records = evaluation.score_item, []

    def scored_until_k(*args, **kwargs):
        if len(records) + 1 == k:
            raise signal()
        records.append(real(*args, **kwargs))
        return records[-1]

    monkeypatch.setattr(evaluation, "score_item", scored_until_k)
    return records


def test_an_interrupted_evaluate_reports_the_prompts_scored_in_every_mode(engine, monkeypatch):
    records = stop_at_job(monkeypatch, 4)
    with pytest.raises(evaluation.EvalInterrupted) as caught:
        evaluation.evaluate(engine, ("ar", "diffusion"), n_next_line=5, n_syntax=2, next_line_tokens=4,
                            max_prompt_tokens=48)
    report = caught.value.report
    assert isinstance(caught.value.signal, KeyboardInterrupt) and len(records) == 3
    assert report["interrupted_after"] == "3 of 7 prompts"
    assert report["tasks"] == ["next_line"] and report["n_prompts"] == {"next_line": 3}  # no syntax prompt reached
    for mode in ("ar", "diffusion"):
        for name in ("next_line_exact_match", "next_line_edit_similarity", "agreement_with_ar"):
            assert report["scores"][mode][name] == metrics.mean([r["scores"][mode][name] for r in records])
    assert set(report["retention"]["diffusion"]["tasks"]) == {"next_line_exact_match", "next_line_edit_similarity"}
    assert "Interrupted after 3 of 7 prompts: the figures are theirs." in eval_report.format_markdown(report)


def test_an_eval_interrupted_before_its_first_prompt_raises_the_interrupt_itself(engine, monkeypatch):
    stop_at_job(monkeypatch, 1, Terminated)
    with pytest.raises(Terminated):
        evaluation.evaluate(engine, ("ar",), n_next_line=2, n_syntax=1, max_prompt_tokens=48)


def test_an_interrupted_eval_command_prints_and_writes_what_it_scored(tmp_path, monkeypatch, capsys):
    stop_at_job(monkeypatch, 4, Terminated)  # SIGTERM as `timeout` sends it: exit 143
    out = tmp_path / "eval.md"
    argv = ["eval", *TINY, "--modes", "diffusion", "--n-prompts", "3", "--syntax-prompts", "2",
            "--next-line-tokens", "4", "--syntax-tokens", "8", "--out", str(out)]
    assert cli_main(argv + ["--json"]) == 143
    shown, err = capsys.readouterr()
    report = json.loads(shown)
    assert report["interrupted_after"] == "3 of 5 prompts" and report["n_prompts"] == {"next_line": 3}
    assert err.strip().endswith("terminated")
    assert "Interrupted after 3 of 5 prompts" in out.read_text() and "| next-line exact match | 3 |" in out.read_text()


def test_a_bench_interrupted_in_its_eval_keeps_its_timed_rounds(tmp_path, monkeypatch, capsys):
    stop_at_job(monkeypatch, 2)
    out = tmp_path / "bench.md"
    argv = ["bench", *TINY, "--modes", "diffusion", "--n-prompts", "1", "--repeats", "1", "--max-new-tokens", "4",
            "--eval", "--eval-prompts", "4", "--out", str(out)]
    assert cli_main(argv) == 130
    shown = capsys.readouterr().out
    assert ("Interrupted in the quality eval (--eval), after 1 of 5 prompts: the throughput figures are every "
            "round's, the quality figures those prompts'.") in shown
    assert "| diffusion |" in shown and "| next_line_exact_match | 1 |" in shown  # the rounds, the eval's n
    assert "syntax_ok" not in shown  # no syntax prompt was reached
    assert out.read_text() in shown  # the markdown, printed and written

    stop_at_job(monkeypatch, 1)  # before the eval's first prompt: the rounds all the same
    assert cli_main(argv + ["--json"]) == 130
    report = json.loads(capsys.readouterr().out)
    assert report["eval_interrupted_after"] == "no prompt" and "retention" not in report
    assert report["modes"]["diffusion"]["status"] == "ok"
    stop_at_job(monkeypatch, 1)
    assert cli_main(argv) == 130
    assert "before its first prompt was scored: the throughput figures are every round's; there are no quality " \
           "figures." in capsys.readouterr().out
    for k in (1, 3):  # SIGTERM (`timeout`) in the eval, before or after a prompt: exit 143, as SIGTERM elsewhere
        stop_at_job(monkeypatch, k, Terminated)
        assert cli_main(argv) == 143
        assert capsys.readouterr().err.strip().endswith("terminated")


def _spawned_workers(parent: int) -> set[int]:
    """The pids of multiprocessing's spawned children of `parent` (Linux /proc)."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                spawned = b"spawn_main" in cmdline.read()
        except (OSError, ValueError, IndexError):  # a process that ended meanwhile
            continue
        if ppid == parent and spawned:
            found.add(int(entry))
    return found


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads the worker processes from /proc")
def test_ctrl_c_during_an_eval_with_workers_ends_it_and_its_workers(tmp_path):
    """`twotower eval --workers 2` stopped by Ctrl-C (SIGINT to the command, as a terminal sends it): it ends as an
    interrupt (exit 130) with no traceback, prints the report of what it scored if it scored anything, and leaves
    no worker process behind (each holds a model; the pool's shutdown waited for their chunks before)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "twotower.cli", "eval", *TINY, "--modes", "ar,diffusion", "--n-prompts", "1000",
            "--syntax-prompts", "50", "--next-line-tokens", "8", "--workers", "2", "--json"]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline, workers = time.monotonic() + 120, set()
        while len(workers) < 2 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.5)
            workers = _spawned_workers(process.pid)
        assert len(workers) == 2, "the two workers never started"
        time.sleep(5)  # their engines built, some prompts scored (or not: either way the run must end cleanly)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130 and "Traceback" not in err, err
    if out.strip():  # what it scored, said as scored
        assert "interrupted_after" in json.loads(out)
    deadline = time.monotonic() + 30
    while any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not any(os.path.exists(f"/proc/{pid}") and _alive(pid) for pid in workers), "a worker was left running"


def _alive(pid: int) -> bool:
    """Not a zombie: a process that ended but was not yet reaped still has its /proc entry."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
