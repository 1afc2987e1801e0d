"""Bad input to `twotower bench / eval / sweep / plan`: each refusal exits 2 with one line that says what was
wrong, before the model is loaded or anything is run or written (the smoke runs: test_bench_eval.py)."""

import re

import pytest
import torch

from twotower.cli import main


@pytest.mark.parametrize("argv, words", [
    (["bench", "--preset", "tiny", "--repeats", "0"], "--repeats"),
    (["bench", "--preset", "tiny", "--prompts", "/nonexistent/prompts.txt"], "prompt file not found"),
    (["bench", "--preset", "tiny", "--gamma", "1.5"], "γ"),
    (["bench", "--preset", "tiny", "--min-draft-confidence", "-0.5"], "--min-draft-confidence must be in [0, 1]"),
    (["sweep", "--preset", "tiny", "--gammas", "0.5,abc"], "--gammas"),
    (["sweep", "--preset", "tiny", "--block-sizes", "0"], "block size"),
    (["eval", "--preset", "tiny", "--tasks", "next_line,poetry"], "poetry"),
    (["eval", "--preset", "tiny", "--modes", "telepathy"], "unknown mode"),
    (["eval", "--preset", "tiny", "--tasks", ","], "no task given"),  # was "unknown or no tasks ['']"
    # these were checked only once the model had loaded
    (["eval", "--preset", "tiny", "--gamma", "5"], "--gamma: confidence threshold γ must be in (0, 1], got 5.0"),
    (["eval", "--preset", "tiny", "--next-line-tokens", "0"], "--next-line-tokens must be >= 1"),
    (["bench", "--preset", "tiny", "--draft-steps", "0"], "--draft-steps: draft steps must be >= 1"),
    (["bench", "--preset", "tiny", "--block-size", "0"], "--block-size: block size S must be >= 1"),  # the flag typed
    (["sweep", "--preset", "tiny", "--repeats", "0"], "--repeats must be >= 1"),
    (["sweep", "--preset", "tiny", "--gammas", "0.5,0"], "--gammas: confidence threshold γ must be in (0, 1], got 0.0"),
    (["sweep", "--preset", "tiny", "--block-sizes", "4,0"], "--block-sizes: block size S must be >= 1"),
    (["bench", "--preset", "tiny", "--steps", str(10**20)], "--steps: steps per block must be >= 1 and <= 4096"),
    (["sweep", "--preset", "tiny", "--steps", str(10**20)], "--steps: steps per block must be >= 1 and <= 4096"),
    (["sweep", "--preset", "tiny", "--max-new-tokens", "-3"], "--max-new-tokens must be >= 1"),
    (["eval", "--preset", "tiny", "--workers", "-1"], "--workers must be >= 0"),
    (["bench", "--preset", "tiny", "--eval", "--workers", "-1"], "--workers must be >= 0"),
    (["bench", "--preset", "tiny", "--modes", ","], "no mode given"),  # was: AR alone
    (["bench", "--preset", "tiny", "--prompts", "{binary}"], "is not UTF-8 text"),
    (["bench", "--preset", "tiny", "--prompts", "{tmp}"], "is a folder; give a file"),
    # an output path that cannot be written is refused before the run (the run used to be lost at its end)
    (["bench", "--preset", "tiny", "--out", "{tmp}/missing/bench.md"], "the folder '{tmp}/missing' does not exist"),
    (["bench", "--preset", "tiny", "--out", "{tmp}"], "is a folder; give a file name"),
    (["eval", "--preset", "tiny", "--out", "{tmp}/missing/eval.md"], "does not exist"),
    (["sweep", "--preset", "tiny", "--out-dir", "{binary}"], "is a file, not a folder"),
    (["sweep", "--preset", "tiny", "--out-dir", "{tmp}/taken"], "'{tmp}/taken/sweep.csv' is a folder"),
    # a JSON "\ud800" is a str no tokenizer can encode: refused with its line, not a sentencepiece traceback
    (["bench", "--preset", "tiny", "--prompts", "{surrogate}"], "surrogate.jsonl:2: the prompt holds a character"),
    (["sweep", "--preset", "tiny", "--prompts", "{surrogate}"], "surrogate.jsonl:2: the prompt holds a character"),
    (["sweep", "--preset", "tiny", "--max-prompt-tokens", "0"], "--max-prompt-tokens must be >= 1"),
    (["plan", "--preset", "release", "--device-memory-gb", "nan"], "must be a positive number of GiB, got nan"),
    (["plan", "--preset", "release", "--block-size", "0"], "block size must be a positive integer, got 0"),
    (["plan", "--preset", "release", "--device-memory-gb", "cuda:0=80,cuda:5=80"], "memory given for cuda:5"),
    # each was taken without a word: the last value won, the empty item was skipped, "" read as the default
    (["plan", "--preset", "release", "--device-memory-gb", "cuda:0=80,cuda:0=1"], "names cuda:0 twice"),
    (["sweep", "--preset", "tiny", "--gammas", "0.5,,0.7"], "--gammas has an empty item (value 2 of '0.5,,0.7')"),
    (["sweep", "--preset", "tiny", "--steps", ""], "--steps is empty"),
    (["sweep", "--preset", "tiny", "--out-dir", ""], "--out-dir is empty"),
    (["generate", "--model", "", "x"], "--model is empty"),
    # a name longer than the OS takes: pathlib raised OSError (ENAMETOOLONG) from its is_dir / exists
    (["bench", "--preset", "tiny", "--out", "{tmp}/" + "b" * 300], "cannot be used: File name too long"),
    (["generate", "--model", "m" * 300, "x"], "--model 'mmm"),
    # refused before the run: root's os.access said yes to /proc, so a bench measured everything first
    (["bench", "--preset", "tiny", "--out", "/proc/twotower-bench.json"], "cannot be written here"),
    (["generate", "--preset", "tiny", "--trace", "{binary}/t.json", "x"], "binary.txt' is a file, not a folder"),
    # --prompts as every path flag: "" benchmarked the test split without a word; a long name was a traceback
    (["bench", "--preset", "tiny", "--prompts", ""], "--prompts is empty: give a file name"),
    (["sweep", "--preset", "tiny", "--prompts", "{tmp}/" + "p" * 300], "--prompts '{tmp}/ppp"),
    (["generate", "--preset", "tiny", "--trace", "", "x"], "--trace is empty: give a file name"),  # not "a folder"
    # sizes past any run's: 10**8 rows filled the memory, 10**23 tokens was past int64, 10**8 prompts the whole split
    (["bench", "--preset", "tiny", "--batch-size", "100000000"], "--batch-size must be >= 1 and <= 1024"),
    (["generate", "--preset", "tiny", "--max-new-tokens", "9" * 23, "x"], "--max-new-tokens must be >= 1 and <= 1000000"),
    (["sweep", "--preset", "tiny", "--n-prompts", "100000000"], "--n-prompts must be >= 1 and <= 100000"),
    (["eval", "--preset", "tiny", "--syntax-tokens", "2000000"], "--syntax-tokens must be >= 1 and <= 1000000"),
])
def test_bad_input_exits_2_with_one_line(capsys, tmp_path, monkeypatch, argv, words):
    import twotower.bench
    import twotower.run_setup
    import twotower.sweep

    monkeypatch.setattr(twotower.bench, "run_bench", lambda *a, **k: pytest.fail("ran before refusing"))
    monkeypatch.setattr(twotower.sweep, "run_sweep", lambda *a, **k: pytest.fail("ran before refusing"))
    # every refusal comes before the model is loaded (a release checkpoint is ~118 GiB to read first); load_engine
    # checks --model itself before it reads anything
    if "--model" not in argv:
        monkeypatch.setattr(twotower.run_setup, "load_engine", lambda *a, **k: pytest.fail("loaded the model first"))
    (tmp_path / "binary.txt").write_bytes(bytes([0xDE, 0xAD, 0xBE, 0xEF]))
    (tmp_path / "taken" / "sweep.csv").mkdir(parents=True)
    (tmp_path / "surrogate.jsonl").write_text('"def f():"\n"\\ud800abc"\n', encoding="utf-8")
    fill = {"{tmp}": str(tmp_path), "{binary}": str(tmp_path / "binary.txt"),
            "{surrogate}": str(tmp_path / "surrogate.jsonl")}
    for key, value in fill.items():
        argv, words = [a.replace(key, value) for a in argv], words.replace(key, value)
    work = tmp_path / "cwd"  # a refused command leaves nothing behind (the sweep made its default --out-dir first)
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not any(work.iterdir())


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_request_without_cuda_is_a_clear_error(capsys):
    assert main(["bench", "--preset", "tiny", "--ctx-device", "cuda"]) == 2
    assert "not available on this machine" in capsys.readouterr().err


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_a_backend_this_build_lacks_is_said_in_one_short_line(capsys):
    """torch's dispatcher error for 'mps' on this build is one ~1,500-character line listing every backend."""
    assert main(["generate", "--preset", "tiny", "--den-device", "mps", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("twotower generate: error: --den-device 'mps' is not available on this machine (")
    assert len(err) < 200 and len(err.splitlines()) == 1


def test_eval_starts_no_more_worker_processes_than_it_has_prompts(monkeypatch):
    """--workers 100 on one prompt would have spawned 100 processes, each loading a whole engine."""
    import twotower.eval_workers
    from twotower.engine import load_engine
    from twotower.evaluation import evaluate

    monkeypatch.setattr(twotower.eval_workers, "records_in_workers", lambda *a, **k: pytest.fail("spawned workers"))
    engine = load_engine(preset="tiny")
    report = evaluate(engine, ["ar"], ["next_line"], n_next_line=1, n_syntax=0, next_line_tokens=2, workers=100,
                      engine_factory=lambda: pytest.fail("a worker's engine"))
    assert report["n_prompts"]["next_line"] == 1


@pytest.mark.parametrize("factory, words", [
    # a worker that cannot build its engine (CUDA out of memory, say): the initializer's error made
    # multiprocessing.Pool start another worker, and fail again, forever
    ("missing_model", "an eval worker could not build its engine (ValueError: model directory not found"),
    # a worker gone mid-run (the out-of-memory killer): Pool waited for its job's result forever
    ("exit", "an eval worker process ended before its prompts were scored"),
])
def test_an_eval_worker_that_fails_or_dies_is_one_error_not_a_hang(factory, words):
    import functools
    import os

    from twotower.engine import load_engine
    from twotower.eval_workers import records_in_workers

    factory = {"missing_model": functools.partial(load_engine, "/nonexistent/model"),
               "exit": functools.partial(os._exit, 3)}[factory]
    with pytest.raises(ValueError, match=re.escape(words)):
        list(records_in_workers(factory, 1, [("next_line", {"prompt": "x"})] * 2, {}))


def test_bench_names_the_eval_flags_it_does_not_read_without_eval(capsys, monkeypatch):
    """bench --workers 2 --eval-prompts 3 without --eval ran and said nothing, where generate and train name the
    flags they ignore."""
    import twotower.run_setup

    def stop(*args, **kwargs):
        raise ValueError("stopped before loading")

    monkeypatch.setattr(twotower.run_setup, "load_engine", stop)
    assert main(["bench", "--preset", "tiny", "--workers", "2", "--eval-prompts", "3"]) == 2
    assert "note: --eval-prompts, --workers are read only with --eval: ignored" in capsys.readouterr().err
    assert main(["bench", "--preset", "tiny", "--workers", "2", "--eval"]) == 2
    assert "read only with --eval" not in capsys.readouterr().err


def test_prompts_from_a_pipe_and_a_quoted_home_are_read(tmp_path, monkeypatch, capsys):
    """`--prompts <(grep ...)` was "prompt file not found: /dev/fd/63" (a pipe is not a regular file), and a quoted
    "~/p.txt" was looked for in a folder named "~"."""
    import json
    import os
    import threading

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "p.txt").write_text("import os\nx = 1\n")
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    def write_the_other_end():  # as a shell's process substitution
        with open(fifo, "w") as f:
            f.write("def f():\n")

    writer = threading.Thread(target=write_the_other_end, daemon=True)
    writer.start()
    argv = ["bench", "--preset", "tiny", "--modes", "ar", "--repeats", "1", "--max-new-tokens", "2", "--json"]
    assert main(argv + ["--prompts", str(fifo)]) == 0
    writer.join(timeout=10)
    assert json.loads(capsys.readouterr().out)["n_prompts"] == 1
    assert main(argv + ["--prompts", "~/p.txt"]) == 0
    assert json.loads(capsys.readouterr().out)["n_prompts"] == 2


def test_bench_names_mode_flags_that_no_mode_of_its_run_reads(capsys):
    """generate notes another mode's flags; bench took --adaptive / --draft-steps with no speculative run without a
    word, and its header said "anchored" of a run with no diffusion."""
    argv = ["bench", "--preset", "tiny", "--n-prompts", "1", "--repeats", "1", "--max-new-tokens", "2", "--batch-size",
            "1", "--modes", "ar", "--adaptive", "--draft-steps", "3", "--anchor-first"]
    assert main(argv) == 0
    shown, err = capsys.readouterr()
    assert ("note: --draft-steps, --adaptive are read only by speculative; --anchor-first is read only by "
            "diffusion: ignored") in err
    assert "first token from the context tower" not in shown  # the header's anchored note
    assert main(argv[:-5] + ["diffusion", "--anchor-first"]) == 0  # read: no note, and the header says it
    shown, err = capsys.readouterr()
    assert "ignored" not in err and "first token from the context tower" in shown


def test_bench_and_sweep_say_when_the_split_holds_fewer_prompts_than_asked(capsys, monkeypatch):
    """--n-prompts 100000 ran the split's 11,008 prompts without a word (eval said so of its tasks)."""
    from twotower import eval_prompts
    from twotower.eval_prompts import split_note

    assert split_note("--n-prompts", 8, 8) is None
    assert split_note("--n-prompts", 100_000, 11_008) == ("note: the test split holds 11,008 prompts: all of them "
                                                          "run (--n-prompts 100,000 asked for more)")
    real = eval_prompts.held_out_prompts
    monkeypatch.setattr(eval_prompts, "held_out_prompts", lambda encode, n, seed: real(encode, 1, seed))
    from twotower.cli import main

    assert main(["bench", "--preset", "tiny", "--modes", "ar", "--n-prompts", "5", "--repeats", "1",
                 "--max-new-tokens", "2"]) == 0
    assert "holds 1 prompt: all of them run (--n-prompts 5 asked for more)" in capsys.readouterr().err


def test_eval_says_which_flags_a_task_not_run_leaves_unread(capsys):
    from twotower.cli import main

    argv = ["eval", "--preset", "tiny", "--modes", "ar", "--n-prompts", "1", "--syntax-prompts", "1"]
    assert main(argv + ["--tasks", "syntax", "--syntax-tokens", "2", "--next-line-tokens", "8"]) == 0
    assert "note: --next-line-tokens is read only with the next-line task: ignored" in capsys.readouterr().err
    assert main(argv + ["--tasks", "next_line", "--next-line-tokens", "2", "--syntax-tokens", "9"]) == 0
    assert ("note: --syntax-prompts, --syntax-tokens are read only with the syntax task: ignored"
            in capsys.readouterr().err)
