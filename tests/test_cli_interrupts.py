"""A command stopped early keeps what it had: a closed pipe (`| head`, a pager quit) costs no output file, Ctrl-C
in a sweep keeps its measured points, and SIGTERM (timeout, kill, docker stop) is taken as Ctrl-C is."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from twotower.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}


def run_without_reader(argv) -> subprocess.CompletedProcess:
    """The command with its stdout's reader gone before anything is written."""
    process = subprocess.Popen([sys.executable, "-m", "twotower.cli", *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=ENV)
    process.stdout.close()
    err = process.stderr.read()
    return subprocess.CompletedProcess(argv, process.wait(timeout=600), "", err)


@pytest.mark.parametrize("command", ["sweep", "bench", "generate"])
def test_a_reader_gone_costs_no_output_file(tmp_path, command):
    """`twotower sweep | less`, quit before the end: every measured point was lost (the report was printed first,
    the BrokenPipeError ended the run before the files)."""
    tiny = ["--preset", "tiny", "--max-new-tokens", "4"]
    argv, files = {
        "sweep": (["sweep", *tiny, "--gammas", "0.9", "--block-sizes", "2", "--n-prompts", "1",
                   "--out-dir", str(tmp_path)], ["sweep.csv", "sweep.html"]),
        "bench": (["bench", *tiny, "--n-prompts", "1", "--repeats", "1", "--out", str(tmp_path / "b.md")], ["b.md"]),
        "generate": (["generate", *tiny, "--trace", str(tmp_path / "t.json"), "x"], ["t.json"]),
    }[command]
    done = run_without_reader(argv)
    assert done.returncode == 141 and "Traceback" not in done.stderr, done.stderr
    for name in files:
        assert (tmp_path / name).stat().st_size > 0, name
    if command == "generate":  # it stops at its first write, as a writer to a closed pipe does: the run so far
        assert json.loads((tmp_path / "t.json").read_text())["events"] and "traced in" in done.stderr


def test_an_interrupted_sweep_reports_and_writes_the_points_it_measured(tmp_path, monkeypatch, capsys):
    from twotower import sweep

    real = sweep.iter_sweep

    def stopped_after_one(*args, **kwargs):
        for point in real(*args, **kwargs):
            yield point
            raise KeyboardInterrupt  # Ctrl-C while the second point is measured

    monkeypatch.setattr(sweep, "iter_sweep", stopped_after_one)
    argv = ["sweep", "--preset", "tiny", "--max-new-tokens", "4", "--gammas", "0.5,0.9", "--block-sizes", "2",
            "--n-prompts", "1", "--out-dir", str(tmp_path)]
    assert cli_main(argv) == 130
    out, err = capsys.readouterr()
    assert "Interrupted: 1 of 2 grid points were measured" in out and err.strip().endswith("interrupted")
    # in files of their own: sweep.csv and sweep.html are whole grids (a finished sweep's were replaced, unmarked)
    assert f"wrote {tmp_path / 'sweep-interrupted.csv'} and {tmp_path / 'sweep-interrupted.html'}" in out
    assert not (tmp_path / "sweep.csv").exists() and not (tmp_path / "sweep.html").exists()
    rows = (tmp_path / "sweep-interrupted.csv").read_text().splitlines()
    assert len(rows) == 2 and rows[1].startswith("0.5,2,") and rows[1].endswith(",True")  # alone: on its front
    assert (tmp_path / "sweep-interrupted.html").stat().st_size > 0


def test_sigterm_ends_a_run_as_ctrl_c_does(tmp_path):
    """`timeout 60 twotower generate --trace t.json ...` ended with no trace and no word (exit 143 from the default
    action); now the steps so far are traced and the run says "terminated"."""
    trace = tmp_path / "t.json"
    process = start_decoding(["--trace", str(trace)])
    process.send_signal(signal.SIGTERM)
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 143 and "Traceback" not in err, err
    assert err.strip().endswith("terminated") and f"the run so far is traced in {trace}" in err
    recorded = json.loads(trace.read_text())
    assert recorded["finished"] is False and len(recorded["events"]) > 0


def start_decoding(argv, **popen):
    """A long tiny-model generation, returned once its streamed text shows it is decoding (stdout non-blocking)."""
    process = subprocess.Popen([sys.executable, "-m", "twotower.cli", "generate", "--preset", "tiny", "--mode", "ar",
                                "--no-eos", "--max-new-tokens", "1000000", *argv, "x"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, **popen)
    os.set_blocking(process.stdout.fileno(), False)
    shown, deadline = b"", time.monotonic() + 300
    while len(shown) < 20 and time.monotonic() < deadline:
        shown += process.stdout.read(100) or b""
        time.sleep(0.05)
    return process


def test_an_ignored_sigterm_stays_ignored():
    """`trap '' TERM` (or a supervisor) ignores SIGTERM for its children: the handler took it over, and such a run
    ended with 143."""
    process = start_decoding([], preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN))
    process.send_signal(signal.SIGTERM)
    time.sleep(1.0)
    assert process.poll() is None  # still decoding
    process.kill()
    process.wait(timeout=60)


def test_ctrl_c_of_a_pipeline_still_writes_the_trace(tmp_path):
    """`twotower generate --trace t.json ... | tee`: Ctrl-C ends the reader too; the newline closing the text was
    written first, raised BrokenPipeError, and the trace was lost (exit 141, no "interrupted")."""
    trace = tmp_path / "t.json"
    process = start_decoding(["--trace", str(trace)])
    process.stdout.close()  # the reader goes with the Ctrl-C
    process.send_signal(signal.SIGINT)
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 130 and err.strip().endswith("interrupted") and "Exception" not in err, err
    assert json.loads(trace.read_text())["finished"] is False


def test_a_ctrl_c_just_after_the_closed_pipe_still_writes_the_trace(tmp_path, monkeypatch, capsys):
    """The pipeline's Ctrl-C can reach the writer after the closed pipe raised and before the signals are held for
    the trace's write (a loaded CI host made that moment long enough: the run ended "interrupted" with no trace).
    Here the closed pipe comes at the third write and the Ctrl-C as the signals are first to be held."""
    import contextlib

    from twotower import cli_generate, interrupts

    real_write, real_held, writes, holds = cli_generate._write, interrupts.signals_held, [], []

    def closing_write(text):
        writes.append(text)
        if len(writes) == 3:
            raise BrokenPipeError
        real_write(text)

    @contextlib.contextmanager
    def interrupted_first(*args):
        holds.append(1)
        if len(holds) == 1:
            raise KeyboardInterrupt  # the Ctrl-C, before the handler that holds it is in place
        with real_held(*args):
            yield

    monkeypatch.setattr(cli_generate, "_write", closing_write)
    monkeypatch.setattr(interrupts, "signals_held", interrupted_first)
    trace = tmp_path / "t.json"
    argv = ["generate", "--preset", "tiny", "--mode", "ar", "--no-eos", "--max-new-tokens", "8", "--trace", str(trace),
            "x"]
    assert cli_main(argv) == 130
    assert json.loads(trace.read_text())["finished"] is False and len(holds) == 2
    assert f"the run so far is traced in {trace}" in capsys.readouterr().err
    # and at the end: a finished run whose one write (--json) meets the closed pipe, then the same Ctrl-C
    writes.clear()
    holds.clear()
    monkeypatch.setattr(cli_generate, "_write", lambda text: (_ for _ in ()).throw(BrokenPipeError))
    finished = tmp_path / "f.json"
    argv = ["generate", "--preset", "tiny", "--mode", "ar", "--max-new-tokens", "4", "--json", "--trace", str(finished),
            "x"]
    assert cli_main(argv) == 130
    assert json.loads(finished.read_text())["finished"] is True and len(holds) == 2


def test_an_interrupted_bench_reports_and_writes_the_rounds_every_mode_finished(tmp_path, monkeypatch, capsys):
    """bench kept nothing on Ctrl-C: minutes of timed rounds lost. Now the rounds every mode finished are
    reported (and --out written), marked interrupted, and the command still ends as the interrupt does."""
    from twotower import bench

    real, calls = bench.timed_generation, []

    def stopped_in_the_second_round(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 2 + 2 + 1:  # two warm-ups, a whole round of AR and diffusion, then the next AR
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "timed_generation", stopped_in_the_second_round)
    out = tmp_path / "b.md"
    argv = ["bench", "--preset", "tiny", "--modes", "diffusion", "--n-prompts", "1", "--repeats", "3",
            "--max-new-tokens", "4", "--out", str(out)]
    assert cli_main(argv) == 130
    shown, err = capsys.readouterr()
    assert "Interrupted after 1 of 3 round(s) at batch 1: the figures are those rounds'." in shown
    assert "Interrupted after 1 of 3 round(s)" in out.read_text() and "| diffusion |" in out.read_text()
    assert "not measured" in shown or "interrupted before a whole round" in json_of(argv, monkeypatch, capsys, real)
    assert err.strip().endswith("interrupted")
    monkeypatch.setattr(bench, "timed_generation", real)
    assert cli_main(argv[:-2] + ["--repeats", "1"]) == 0  # uninterrupted: no such line
    assert "Interrupted" not in capsys.readouterr().out


def json_of(argv, monkeypatch, capsys, real) -> str:
    """The interrupted bench again, as --json: its batch-8 records say they were not measured."""
    from twotower import bench

    calls = []

    def stopped(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(bench, "timed_generation", stopped)
    assert cli_main(argv + ["--json"]) == 130
    return json.dumps(json.loads(capsys.readouterr().out)["modes"]["diffusion"]["batch"])


@pytest.mark.parametrize("name", ["SIGINT", "SIGTERM"])
def test_a_signal_during_a_kept_write_comes_once_it_is_written(name):
    """The Ctrl-C of a pipeline reached generate just after the closed pipe had set off the trace's write, cut the
    write short, and the trace was lost (a fresh-clone CI run caught it). Held off, it is raised afterwards, as the
    CLI reads it (Terminated: exit 143)."""
    from twotower.interrupts import Terminated, signals_held

    written, before = [], signal.getsignal(getattr(signal, name))
    with pytest.raises(Terminated if name == "SIGTERM" else KeyboardInterrupt):
        with signals_held():
            os.kill(os.getpid(), getattr(signal, name))
            written.append("whole")
    assert written == ["whole"] and signal.getsignal(getattr(signal, name)) == before


@pytest.mark.parametrize("flag", ["--json", "--show-steps"])
def test_an_interrupted_generate_that_prints_at_the_end_prints_the_text_so_far(monkeypatch, capsys, flag):
    """--json and --show-steps print the text once the run is done: Ctrl-C printed nothing of it."""
    from twotower.engine import Engine

    real = Engine.stream

    def stopped_after_two_blocks(self, *args, **kwargs):
        blocks = 0
        for event in real(self, *args, **kwargs):
            yield event
            blocks += event.kind == "block"
            if blocks == 2:
                raise KeyboardInterrupt

    monkeypatch.setattr(Engine, "stream", stopped_after_two_blocks)
    argv = ["generate", "--preset", "tiny", "--block-size", "4", "--max-new-tokens", "16", "--no-eos", flag, "x ="]
    assert cli_main(argv) == 130
    out, err = capsys.readouterr()
    if flag == "--json":
        shown = json.loads(out)
        assert shown["interrupted"] is True and shown["stats"] is None and shown["prompt"] == "x ="
        completion = shown["completion"]
    else:
        assert out.startswith("x =")
        completion = out[len("x ="):-1]
    monkeypatch.setattr(Engine, "stream", real)
    assert cli_main(argv[:-2] + ["--json", "x ="]) == 0  # the run uninterrupted: its first two blocks are those
    full = json.loads(capsys.readouterr().out)["completion"]
    assert completion and full.startswith(completion) and len(completion) < len(full)
    assert err.strip().endswith("interrupted")
