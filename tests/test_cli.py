"""`twotower generate` on a random tiny model: every mode prints the text and the statistics; bad input
exits 2 with one line that says what was wrong, never a traceback."""

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twotower.cli import main as cli_main

ROOT = Path(__file__).resolve().parent.parent
TINY = ["generate", "--preset", "tiny", "--max-new-tokens", "6"]


@pytest.mark.parametrize("mode", ["diffusion", "mock-ar", "ar", "speculative"])
def test_generate_prints_text_and_statistics(capsys, mode):
    assert cli_main(TINY + ["--mode", mode, "--block-size", "4", "--steps", "2", "x = "]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("x = ")
    stats = dict(item.split("=", 1) for item in err.strip().splitlines()[-1].split())
    assert stats["mode"] == {"mock-ar": "mock-AR", "ar": "AR"}.get(mode, mode) and int(stats["new_tokens"]) >= 1
    for key in ("nfe", "context_passes", "total_s", "tokens_per_s"):
        assert key in stats
    if mode != "ar":
        assert int(stats["nfe"]) >= 1 and float(stats["tokens_per_pass"]) > 0
    else:  # AR makes no denoiser pass: no tokens per pass, and no "None" printed for it
        assert "tokens_per_pass" not in stats


def test_generate_json_and_step_display(capsys):
    argv = TINY + ["--mode", "diffusion", "--block-size", "3", "--steps", "3", "--no-eos", "--json", "--show-steps"]
    assert cli_main(argv + ["print("]) == 0
    out, err = capsys.readouterr()
    record = json.loads(out)
    assert record["prompt"] == "print(" and isinstance(record["completion"], str)
    assert record["stats"]["new_tokens"] == 6 and record["stats"]["nfe"] >= 2  # two blocks of 3
    step_lines = [line for line in err.splitlines() if line.startswith("[step block")]
    assert step_lines and step_lines[0].startswith("[step block 0 step 0]")
    assert (record["engine"]["dtype"], record["engine"]["den_dtype"]) == ("fp32", "fp32")


def test_generate_takes_the_engine_flags_of_bench():
    """--dtype / --den-dtype / --compile as in bench, eval, sweep and the app: a bf16 denoiser drafting for
    the fp32 context tower leaves speculative output equal to AR's."""
    outputs = {}
    for mode, extra in (("ar", []), ("speculative", ["--den-dtype", "bf16"])):
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert cli_main(TINY + ["--mode", mode, "--no-eos", "--json", *extra, "def f(x):"]) == 0
        outputs[mode] = json.loads(out.getvalue())
    assert outputs["speculative"]["engine"]["den_dtype"] == "bf16" and outputs["ar"]["engine"]["den_dtype"] == "fp32"
    assert outputs["speculative"]["completion"] == outputs["ar"]["completion"]


def test_generate_compile_and_dtype_reach_the_engine(monkeypatch, capsys):
    """--compile compiles the towers before the run and the JSON says so; --dtype bf16 casts both towers (the
    test above reads --den-dtype only). The compiler is replaced by a recorder: a real compile takes minutes."""
    from twotower import compiled

    compiled_models = []

    def record_compile(model):
        compiled_models.append(model)
        model.is_compiled_for_decoding = True
        return model

    monkeypatch.setattr(compiled, "compile_towers", record_compile)
    assert cli_main(TINY + ["--compile", "--json", "x"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert len(compiled_models) == 1 and record["engine"]["compiled"] is True
    assert cli_main(TINY + ["--dtype", "bf16", "--json", "x"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert (record["engine"]["dtype"], record["engine"]["den_dtype"], record["engine"]["compiled"]) == \
        ("bf16", "bf16", False)


@pytest.mark.parametrize("flags,expected", [(["--draft-steps", "3", "--steps", "1"], 3), (["--steps", "2"], 2)])
def test_generate_draft_steps_as_bench_spells_them(capsys, flags, expected):
    """--draft-steps sets speculative's draft passes as in bench; --steps alone still does (its old
    meaning here), and --draft-steps wins when both are given."""
    assert cli_main(TINY + ["--mode", "speculative", "--json", *flags, "x"]) == 0
    assert json.loads(capsys.readouterr().out)["stats"]["draft_steps"] == expected


BAD_ARGUMENTS = [  # (arguments after the tiny preset, what the one-line error must say)
    ([""], "the prompt is empty"),
    (["   "], "the prompt holds only whitespace"),
    (["--gamma", "0", "x"], "γ must be in (0, 1]"),
    (["--gamma", "1.5", "x"], "γ must be in (0, 1]"),
    (["--block-size", "0", "x"], "block size S must be >= 1"),
    (["--steps", "0", "x"], "steps per block must be >= 1"),
    (["--max-new-tokens", "0", "x"], "--max-new-tokens must be >= 1"),  # the flag, as bench names it
    (["--temperature", "-1", "x"], "--temperature must be 0 (greedy) or between"),  # the flags, as typed
    (["--temperature", "1e-300", "--mode", "speculative", "x"], "--temperature must be 0"),  # was a RuntimeError
    (["--mode", "ar", "--top-p", "2", "x"], "--top-p must be in (0, 1]"),
    (["--mode", "ar", "--top-k", "-1", "x"], "--top-k must be >= 0, got -1"),
    (["--seed", "-1", "x"], "--seed must be >= 0 and <= 9223372036854775807, got -1"),  # named as typed
    (["--ctx-device", "gpu", "x"], "not a device name"),
    (["--den-device", "cuda:7", "x"], "cuda:7"),
    (["--mode", "speculative", "--min-draft-confidence", "2", "x"], "--min-draft-confidence must be in [0, 1]"),
    (["--mode", "speculative", "--draft-steps", "0", "x"], "draft steps must be >= 1"),
    (["--mode", "ar", "--gamma", "5", "x"], "γ must be in (0, 1]"),  # checked in every mode, as bench does
    (["--ctx-device", "meta", "x"], "'meta' holds no data"),  # was a RuntimeError from inside the experts
    (["--model", "assets/default", "x"], "give either a model directory or a preset, not both"),
    # a long file: the limit named with the flag that raises it (bench keeps a prompt's last N; generate had no flag)
    (["--max-prompt-tokens", "4", "def f(x): return x"], "tokens long; the limit is 4 tokens (--max-prompt-tokens "
                                                          "raises it)"),
    (["--max-prompt-tokens", "0", "x"], "--max-prompt-tokens must be >= 1"),
]


@pytest.mark.parametrize("extra,message", BAD_ARGUMENTS)
def test_bad_input_exits_2_with_one_clear_line(capsys, extra, message):
    assert cli_main(["generate", "--preset", "tiny"] + extra) == 2
    out, err = capsys.readouterr()
    assert out == "" and "Traceback" not in err
    assert err.count("\n") == 1 and err.startswith("twotower generate: error: ") and message in err


@pytest.mark.parametrize("argv,message", [
    (["generate", "--preset", "huge", "x"], "unknown preset 'huge'"),
    (["generate", "--model", "/nonexistent/model", "x"], "model directory not found"),
    (["generate", "--preset", "release", "x"], "the 'release' preset is the release's shape"),  # was ~250 GB
])
def test_bad_model_choice_exits_2(capsys, argv, message):
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_a_real_process_exits_2_with_one_line():
    """Through `python -m twotower.cli`: the exit code, and no transformers notice or traceback around the
    one error line (the passing path is covered in-process above; one process start is enough)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "twotower.cli", "generate", "--preset", "tiny", "--gamma", "2", "a"]
    bad = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == ["twotower generate: error: --gamma: confidence threshold γ must be in (0, 1], got 2.0"]


def test_a_reader_that_leaves_ends_generate_quietly():
    """`twotower generate ... | head -c 0`: the reader is gone before the text is written; the exit is 141
    (128 + SIGPIPE, as a shell reports it) with no BrokenPipeError traceback, at the write or at exit."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "twotower.cli", "generate", "--preset", "tiny", "--max-new-tokens", "4", "a"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    process.stdout.close()  # long before the child has imported torch
    err = process.stderr.read()
    assert process.wait(timeout=300) == 141 and "Traceback" not in err and "BrokenPipe" not in err, err


def test_an_unknown_mode_names_each_mode_once(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["generate", "--preset", "tiny", "--mode", "foo", "x"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    listed = err.split("choose from ")[1]
    for mode in ("'diffusion'", "'speculative'", "'ar'", "'mock-ar'", "'mock_ar'"):
        assert listed.count(mode) == 1, mode


@pytest.mark.parametrize("extra, note", [
    (["--mode", "ar", "--gamma", "0.5", "--adaptive"], "note: --mode ar reads no --gamma, --adaptive: ignored"),
    (["--mode", "speculative", "--anchor-first"], "note: --mode speculative reads no --anchor-first: ignored"),
    (["--mode", "diffusion", "--top-k", "3"], "note: greedy decoding (temperature 0) uses no --top-k: ignored"),
    (["--mode", "ar", "--seed", "5"], "note: greedy decoding (temperature 0) uses no --seed: ignored"),
    (["--mode", "ar", "--seed", "5", "--temperature", "0.7"], None),
    (["--mode", "ar", "--min-draft-confidence", "0"], "note: --mode ar reads no --min-draft-confidence: ignored"),
    (["--mode", "speculative", "--steps", "2", "--draft-steps", "3"], "note: --mode speculative reads no --steps: ignored"),
    (["--mode", "speculative", "--temperature", "0.7", "--draft-steps", "2", "--min-draft-confidence", "0.5"],
     "note: sampling over 2 draft passes uses no --min-draft-confidence (a position's confidence can depend on "
     "tokens drawn after it, so a cut could favour them; --draft-steps 1 keeps it): ignored"),
    (["--mode", "speculative", "--temperature", "0.7", "--draft-steps", "1", "--min-draft-confidence", "0.5"], None),
    (["--mode", "speculative", "--draft-steps", "2", "--min-draft-confidence", "0.5"], None),  # greedy: applied
    (["--mode", "speculative", "--adaptive", "--steps", "2", "--top-p", "0.9", "--temperature", "0.7"], None),
    (["--mode", "diffusion", "--anchor-first", "--gamma", "0.9", "--block-size", "4"], None),
])
def test_flags_the_mode_does_not_read_are_named_not_dropped_silently(capsys, extra, note):
    assert cli_main(TINY + extra + ["x = 1"]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines()
             if line.startswith("note:") and not line.startswith("note: --max-new-tokens ended")]  # (the test below's)
    assert notes[0].startswith("note: --preset tiny builds random weights")  # the tiny preset's, first
    assert notes[1:] == ([note] if note else [])


@pytest.mark.parametrize("extra, past", [([], 10), (["--block-size", "4"], 2), (["--block-size", "3"], None),
                                         (["--block-size", "5"], 4), (["--mode", "ar"], None),
                                         (["--mode", "mock-ar"], None), (["--block-size", "7"], 1)])
def test_a_budget_that_ends_inside_a_block_says_the_block_is_denoised_whole(capsys, extra, past):
    """6 new tokens at S = 16 ran 16 positions a pass and reported tokens_per_pass 0.44 (kept tokens over passes),
    which read as fewer than the one token a step the commit rule promises, without a word. A run that ended at
    EOS before the budget dropped nothing: no note."""
    import argparse

    from twotower.cli_generate import last_block_note

    assert cli_main(TINY + ["--no-eos"] + extra + ["x = 1"]) == 0
    err = capsys.readouterr().err
    if past is None:
        assert "ended inside a block" not in err
    else:
        size = (extra or [0, 16])[-1]
        assert f"note: --max-new-tokens ended inside a block of S = {size}: its passes ran all {size} positions, " \
               f"{past} past the budget and dropped, so tokens_per_pass counts the kept tokens only" in err
        assert err.index("ended inside a block") < err.index("tokens_per_pass=")  # beside the figure it explains
        ran = argparse.Namespace(mode="diffusion", block_size=int(size), max_new_tokens=6)
        assert last_block_note(ran, None, 6) is not None and last_block_note(ran, None, 3) is None  # EOS at 3


def test_ctrl_c_while_a_command_imports_is_one_line(capsys, monkeypatch):
    """The command's module is imported before the guarded run (torch: seconds): Ctrl-C there was a traceback."""
    import twotower.cli

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(twotower.cli.importlib, "import_module", interrupted)
    assert cli_main(["generate", "x"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


def test_a_prompt_read_from_a_terminal_says_how_to_end_it(capsys, monkeypatch):
    """`twotower generate -` typed at a terminal waited for standard input without a word."""
    from twotower.cli_generate import read_prompt

    class Terminal(io.StringIO):
        def __init__(self, text, tty):
            super().__init__(text)
            self.tty = tty

        def isatty(self):
            return self.tty

    monkeypatch.setattr(sys, "stdin", Terminal("def f():", True))
    assert read_prompt("-") == "def f():"
    assert "reading the prompt from standard input: end it with Ctrl-D" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", Terminal("def f():", False))  # a pipe or a file: nothing said
    assert read_prompt("-") == "def f():" and capsys.readouterr().err == ""


def test_version_and_an_unquoted_prompt(capsys):
    """`twotower --version` was "the following arguments are required: command"; `generate def f(x):` unquoted
    said only "unrecognized arguments: f(x):"."""
    from importlib import metadata

    with pytest.raises(SystemExit) as done:
        cli_main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out == f"twotower {metadata.version('twotower-playground')}\n"
    with pytest.raises(SystemExit) as done:
        cli_main(["generate", "--preset", "tiny", "def", "f(x):"])
    err = capsys.readouterr().err
    assert done.value.code == 2 and "unrecognized arguments: f(x): (a prompt of several words is one argument: " \
                                     "quote it, twotower generate \"def f(x):\")" in err
    with pytest.raises(SystemExit):
        cli_main(["bench", "--preset", "tiny", "stray"])  # no prompt argument: no such hint
    assert "quote it" not in capsys.readouterr().err


def test_max_prompt_tokens_raises_generates_limit(capsys):
    prompt = "x = 1\n" * 500  # 3,000 byte tokens on the tiny preset: past the default 2,048
    assert cli_main(TINY + ["--mode", "ar", prompt]) == 2
    assert "the limit is 2048 tokens (--max-prompt-tokens raises it)" in capsys.readouterr().err
    assert cli_main(TINY + ["--mode", "ar", "--max-prompt-tokens", "4096", prompt]) == 0
