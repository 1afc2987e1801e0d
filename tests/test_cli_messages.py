"""What the CLI says to a person: the random-preset notice, a readable statistics footer beside a complete --json,
one dtype vocabulary in every command, no silent flag abbreviations, input that is not UTF-8 named as such, a
file given for --model, reports that name only what ran, and answers before torch loads."""

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tiny_models import byte_level_tokenizer_json
from twotower import bench, build_model, save_pretrained, sweep, training
from twotower.cli import main as cli_main
from twotower.cli_generate import format_footer, short_number

ROOT = Path(__file__).resolve().parent.parent
TINY = ["generate", "--preset", "tiny", "--max-new-tokens", "6"]
PRESET_NOTE = ("note: --preset {} builds random weights (untrained); the shipped model loads without --preset "
               "(or --model assets/default)")


def footer(err: str) -> dict:
    """The `key=value` pairs of generate's last stderr line."""
    return dict(item.split("=", 1) for item in err.strip().splitlines()[-1].split())


# ------------------------------------------------------------------------------------------- random presets
def test_generate_and_bench_say_a_preset_decodes_random_weights(capsys):
    assert cli_main(["generate", "--preset", "tiny", "--max-new-tokens", "2", "x"]) == 0
    assert PRESET_NOTE.format("tiny") in capsys.readouterr().err.splitlines()
    argv = ["bench", "--preset", "tiny", "--modes", "ar", "--n-prompts", "1", "--repeats", "1", "--max-new-tokens", "2",
            "--batch-size", "1", "--json"]
    assert cli_main(argv) == 0
    out, err = capsys.readouterr()
    assert PRESET_NOTE.format("tiny") in err.splitlines() and json.loads(out)["model"].startswith("random 'tiny'")


@pytest.mark.parametrize("argv", [
    ["eval", "--preset", "tiny", "--modes", "ar", "--tasks", "next_line", "--n-prompts", "2", "--next-line-tokens", "2",
     "--json"],
    ["sweep", "--preset", "tiny", "--gammas", "0.5,0.9", "--block-sizes", "2", "--n-prompts", "1", "--max-new-tokens",
     "2", "--json"],
], ids=["eval", "sweep"])
def test_eval_and_sweep_say_it_once_over_their_progress(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)  # the sweep's default --out-dir lands here
    assert cli_main(argv) == 0
    assert capsys.readouterr().err.count(PRESET_NOTE.format("tiny")) == 1  # several progress calls, one note


def test_a_checkpoint_gets_no_preset_note(capsys, tmp_path):
    save_pretrained(build_model("tiny", seed=0), tmp_path)
    byte_level_tokenizer_json(tmp_path / "tokenizer.json")
    assert cli_main(["generate", "--model", str(tmp_path), "--max-new-tokens", "2", "x"]) == 0
    assert "random weights" not in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ the footer
@pytest.mark.parametrize("value, text", [(0.8333333333333334, "0.833"), (5.4783, "5.48"), (16.9486, "16.9"),
                                         (1234.56, "1235"), (1.0, "1"), (0.0, "0"), (0.000123456, "0.000123")])
def test_short_numbers_keep_three_significant_digits(value, text):
    assert short_number(value) == text


def test_the_footer_leaves_out_empty_fields_and_summarises_lists():
    stats = {"mode": "mock_ar", "tokens_per_pass": None, "share": 0.8333333333333334, "adaptive": False,
             "acceptance_lengths": [1, 2, 3], "rollbacks": {"positions": 6, "none": 1},
             "acceptance_by_position": [{"position": p, "drafted": 4, "accepted": 1, "share": 0.25} for p in range(10)]}
    assert format_footer(stats) == ("mode=mock-AR share=0.833 adaptive=no rollbacks=positions:6,none:1 "
                                    "acceptance_by_position=0.25,0.25,0.25,0.25,0.25,0.25,0.25,0.25,…")


def test_speculative_footer_is_one_short_readable_line_and_its_json_is_complete(capsys):
    argv = TINY + ["--mode", "speculative", "--block-size", "4", "--draft-steps", "3", "--no-eos", "x = "]
    assert cli_main(argv) == 0
    err = capsys.readouterr().err
    line = err.strip().splitlines()[-1]
    assert len(line) < 600 and "{" not in line and "None" not in line and "'" not in line  # was ~1500, dict reprs
    stats = footer(err)
    assert stats["mode"] == "speculative" and stats["block_size"] == "4" and stats["draft_steps"] == "3"
    assert len(stats["acceptance_by_position"].split(",")) == 4  # a share per draft position
    seconds = [value for key, value in stats.items() if key.endswith("_s")]  # total_s, draft_s, tokens_per_s, ...
    assert len(seconds) >= 4 and all(len(value.replace(".", "").lstrip("0")) <= 3 for value in seconds)
    assert cli_main(argv + ["--json"]) == 0
    record = json.loads(capsys.readouterr().out)["stats"]
    assert record["acceptance_by_position"][0].keys() >= {"position", "drafted", "accepted", "share"}  # unrounded
    assert (record["block_size"], record["draft_steps"], record["draft_threshold"]) == (4, 3, 0.8)
    assert "min_draft_confidence" in record and record["adaptive"] is False


@pytest.mark.parametrize("flags, where", [([], {"device": "cpu", "dtype": "fp32"}),
                                          (["--den-dtype", "bf16"], {"device": "cpu", "dtype": "fp32", "den_dtype": "bf16"}),
                                          (["--dtype", "bf16"], {"device": "cpu", "dtype": "bf16"})])
def test_the_footer_says_what_its_speeds_were_measured_on(capsys, flags, where):
    """--dtype's help said the dtype was reported in the output, but the footer's tokens/s named no dtype or
    device; the denoiser's are named where they differ from the context tower's."""
    assert cli_main(TINY + [*flags, "x"]) == 0
    stats = footer(capsys.readouterr().err)
    assert {key: stats.get(key) for key in ("device", "dtype", "den_dtype", "den_device")} == \
        {"den_dtype": None, "den_device": None, **where}


@pytest.mark.parametrize("flags, expected", [([], dict(gamma=0.8, block_size=16, steps_per_block=16)),
                                             (["--gamma", "0.5", "--block-size", "3", "--steps", "2"],
                                              dict(gamma=0.5, block_size=3, steps_per_block=2))])
def test_diffusion_json_and_footer_carry_the_settings_that_ran(capsys, flags, expected):
    """The model's defaults filled in (the tiny preset's γ 0.8, S 16, 16 steps) or the flags' values."""
    assert cli_main(TINY + ["--mode", "diffusion", "--json", *flags, "x"]) == 0
    stats = json.loads(capsys.readouterr().out)["stats"]
    assert {key: stats[key] for key in expected} == expected and stats["anchor_first"] is False
    assert cli_main(TINY + ["--mode", "diffusion", *flags, "x"]) == 0
    shown = footer(capsys.readouterr().err)
    assert {key: shown[key] for key in expected} == {key: str(value) for key, value in expected.items()}


# ------------------------------------------------------------------------------------------- flag spellings
@pytest.mark.parametrize("spelling, expected", [("bf16", "bf16"), ("BFloat16", "bf16"), ("float32", "fp32"), ("FP32", "fp32")])
def test_generate_takes_every_dtype_spelling(capsys, spelling, expected):
    assert cli_main(TINY + ["--max-new-tokens", "1", "--dtype", spelling, "--den-dtype", spelling, "--json", "x"]) == 0
    engine = json.loads(capsys.readouterr().out)["engine"]
    assert (engine["dtype"], engine["den_dtype"]) == (expected, expected)


def test_plan_and_train_take_the_same_dtype_spellings(capsys, monkeypatch):
    assert cli_main(["plan", "--preset", "tiny", "--ctx-device", "cpu", "--den-device", "cpu", "--dtype", "FP32",
                     "--den-dtype", "bfloat16", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert (plan["dtype"], plan["den_dtype"]) == ("float32", "bfloat16")
    seen = []
    monkeypatch.setattr(training, "run_stage", lambda *args, **kwargs: seen.append(args[8]) or {})
    for spelling in ("BF16", "float32"):
        assert cli_main(["train", "--stage", "context", "--dtype", spelling]) == 0
    assert seen == ["bfloat16", "float32"]  # the names a checkpoint records


@pytest.mark.parametrize("command", ["generate", "bench", "eval", "sweep", "plan", "train"])
def test_every_command_lists_the_same_dtype_choices_and_refuses_others(capsys, command):
    with pytest.raises(SystemExit):
        cli_main([command, "--help"])
    assert "--dtype {bf16,fp32}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli_main([command, "--dtype", "fp16"] + (["--stage", "context"] if command == "train" else []))
    assert exit_info.value.code == 2
    assert "argument --dtype: unknown dtype 'fp16': choose bf16 or fp32 (bfloat16 / float32" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["bench", "--batch-s", "2"], ["generate", "--max-new", "3", "x"],
                                  ["plan", "--context", "10"], ["train", "--stage", "context", "--batch", "2"]])
def test_a_prefix_of_a_flag_is_refused_not_taken_for_it(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err


def test_bench_takes_batch_as_plan_spells_it(monkeypatch):
    seen = []
    monkeypatch.setattr(bench, "main", lambda args: seen.append(args.batch_size) or 0)
    assert cli_main(["bench", "--batch", "2"]) == 0 and cli_main(["bench", "--batch-size", "3"]) == 0
    assert seen == [2, 3]


# ------------------------------------------------------------------------------------ input that is not UTF-8
class Stdin(io.StringIO):
    """Standard input as a pipe gives it: `buffer` holds the bytes."""

    def __init__(self, data: bytes):
        super().__init__()
        self.buffer = io.BytesIO(data)


@pytest.mark.parametrize("argv, data, message", [
    (TINY + ["-"], b"caf\xe9", "standard input is not UTF-8 text (byte 3: "),
    (TINY + ["caf\udce9 au lait"], None, "the prompt argument is not UTF-8 text (byte 3: "),  # argv's escaped byte
])
def test_latin1_input_is_named_as_not_utf8(capsys, monkeypatch, argv, data, message):
    monkeypatch.setattr(sys, "stdin", Stdin(data or b""))
    assert cli_main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "\\udce9" not in err


def test_utf8_standard_input_is_read_as_text(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", Stdin("café = 1".encode()))
    assert cli_main(TINY + ["--json", "-"]) == 0
    assert json.loads(capsys.readouterr().out)["prompt"] == "café = 1"


# ----------------------------------------------------------------------------------------- --model a file
@pytest.mark.parametrize("command", [["generate", "x"], ["plan"]])
def test_a_file_given_for_model_is_named_a_file(capsys, tmp_path, command):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not a folder")
    assert cli_main([command[0], "--model", str(weights), *command[1:]]) == 2
    assert capsys.readouterr().err == (f"twotower {command[0]}: error: --model {weights} is a file, not a folder (a "
                                       "checkpoint folder holds config.json and the weights)\n")


# -------------------------------------------------------------------------------------------------- reports
def hand_made_report(modes) -> dict:
    record = {"status": "ok", "tokens_per_s": 10.0, "ratio_vs_ar": 1.0, "nfe": 4.0, "context_passes": 2.0,
              "tokens_per_pass": 1.0, "time_to_first_token_s": 0.01, "identical_to_ar": 1.0, "batch": None}
    return {"batch_size": 1, "model": "hand-made", "device": {"name": "cpu (test)"}, "dtype": "fp32", "gamma": 0.8,
            "block_size": 4, "steps_per_block": 4, "draft_steps": 2, "n_prompts": 1, "prompt_source": "hand-made",
            "max_new_tokens": 8, "repeats": 1, "modes": {mode: dict(record) for mode in modes}}


def test_bench_report_names_only_the_modes_that_ran_and_counts_in_the_singular():
    markdown = bench.format_markdown(hand_made_report(["ar", "diffusion"]))
    assert "speculative" not in markdown and "draft pass" not in markdown
    assert "; γ = 0.8, S = 4, steps per block = 4; 1 prompt (hand-made)" in markdown
    assert "median of 1 round after a warm-up" in markdown
    plain = bench.format_markdown(hand_made_report(["ar"]))
    assert "γ" not in plain.split("\n\n")[1]  # AR alone reads no γ, S or steps
    spec = bench.format_markdown({**hand_made_report(["ar", "speculative"]), "n_prompts": 2, "repeats": 3})
    assert "γ = 0.8, S = 4; speculative: 2 draft passes per block; 2 prompts" in spec
    assert "median of 3 rounds" in spec and "steps per block" not in spec


def test_sweep_markdown_opens_with_the_machine_model_and_settings(capsys, tmp_path):
    argv = ["sweep", "--preset", "tiny", "--gammas", "0.8", "--block-sizes", "2", "--n-prompts", "1",
            "--max-new-tokens", "2", "--out-dir", str(tmp_path)]
    assert cli_main(argv) == 0
    out = capsys.readouterr().out
    heading, settings = out.splitlines()[0], out.splitlines()[2]
    assert heading == "## γ × S sweep: random 'tiny' preset (seed 0)"
    assert settings.startswith("cpu (") and ", fp32; 1 prompt (test split, seed 0, ending on a token boundary), 2 new tokens each" in settings
    assert "median of 1 round per point" in settings and "| γ | S |" in out
    assert sweep.format_markdown([]).startswith("| γ | S |")  # the table alone, as scripts/write_benchmarks.py reads it


# ------------------------------------------------------------------------------------- before torch loads
@pytest.mark.parametrize("argv", [["--help"], ["generate", "--help"], ["bench", "--help"], ["eval", "--help"],
                                  ["sweep", "--help"], ["generate", "--gamma", "5", "x"], ["bench", "--batch-s", "2"]])
def test_help_and_argument_errors_answer_before_torch_loads(argv):
    """torch and transformers took ~10 s to import before any argument was read."""
    code = ("import sys\nfrom twotower.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('heavy:', sorted({'torch', 'transformers'} & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "heavy: []", result.stderr


def test_a_terminal_that_is_not_utf8_gets_escapes_not_a_traceback():
    """PYTHONIOENCODING=ascii (a cp1252 Windows redirect alike): --help (γ) was an argparse traceback, and generate
    printed only "error: 'ascii' codec can't encode character" for an 'é' in its prompt."""
    env = {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PYTHONIOENCODING": "ascii", "PATH": "/usr/bin:/bin"}
    run = [sys.executable, "-m", "twotower.cli"]
    helped = subprocess.run(run + ["bench", "--help"], capture_output=True, text=True, env=env, timeout=120)
    assert helped.returncode == 0 and "\\u03b3" in helped.stdout and "Traceback" not in helped.stderr
    made = subprocess.run(run + TINY + ["print('é')"], capture_output=True, text=True, env=env, timeout=300)
    assert made.returncode == 0 and made.stdout.startswith("print('\\xe9')"), made.stderr


def test_standard_input_closed_or_with_a_bom_and_a_training_run_given_as_model(tmp_path, monkeypatch, capsys):
    from twotower.tokenizer import load_tokenizer

    monkeypatch.setattr(sys, "stdin", None)  # `generate - <&-` was an AttributeError traceback
    assert cli_main(TINY + ["-"]) == 2
    assert "standard input is closed" in capsys.readouterr().err
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("\ufeffimport os".encode())))
    assert cli_main(TINY + ["--json", "-"]) == 0  # a Windows editor's BOM is no part of the prompt
    assert json.loads(capsys.readouterr().out)["prompt"] == "import os"
    # the documented tokenizer API: a lone surrogate was pybind's "Unable to cast Python instance" RuntimeError
    with pytest.raises(ValueError, match="the text to encode holds a character that is not valid text"):
        load_tokenizer(ROOT / "assets" / "default").encode("a\udcffb")
    run = tmp_path / "run"  # a training run's folder: its context_ckpt was suggested, which has no tokenizer
    (run / "context_ckpt").mkdir(parents=True)
    (run / "context_ckpt" / "config.json").write_text("{}")
    assert cli_main(["generate", "--model", str(run), "x"]) == 2  # no denoiser yet: nothing to export
    assert f"context stage only: train its denoiser, `twotower train --stage denoiser --out {run}`" in \
        capsys.readouterr().err
    (run / "denoiser_ckpt").mkdir()
    assert cli_main(["generate", "--model", str(run), "x"]) == 2
    assert f"export it first, `twotower train --stage export --out {run} --to DIR`" in capsys.readouterr().err


def test_a_long_run_off_a_terminal_writes_a_progress_line_a_minute(monkeypatch, capsys):
    """eval, bench and sweep turned their bars off where stderr is no terminal: a default eval (~16 minutes) said
    nothing under `2>log`. Now a line every LOG_INTERVAL_S (the first after as long), each on its own line."""
    import time

    from twotower import run_setup

    monkeypatch.setattr(run_setup, "LOG_INTERVAL_S", 0.05)
    with run_setup.progress_bar(3, "sweep", "point") as bar:
        for _ in range(3):
            time.sleep(0.08)
            bar.set_postfix(gamma=0.5, refresh=False)
            bar.update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("sweep: ") and "\r" not in line for line in lines)
    assert lines[-1].startswith("sweep: 100%") and "3/3" in lines[-1] and "gamma=0.5" in lines[-1]
    assert len(lines) == len(set(lines))  # the close's redraw of the last state is not written twice
    monkeypatch.setattr(run_setup, "LOG_INTERVAL_S", 60.0)
    with run_setup.progress_bar(3, "eval", "gen") as bar:  # a run shorter than the interval: nothing
        bar.update(3)
    assert capsys.readouterr().err == ""


def test_more_eval_prompts_than_the_split_holds_are_said(monkeypatch, capsys):
    """`eval --n-prompts 20000` ran the split's 11,008 next-line prompts and said so only in the report's count."""
    from twotower import evaluation
    from twotower.cli import main

    real = evaluation.next_line_items
    monkeypatch.setattr(evaluation, "next_line_items", lambda n, *a, **k: real(min(n, 2), *a, **k))  # a split of 2
    argv = ["eval", "--preset", "tiny", "--modes", "ar", "--tasks", "next_line", "--next-line-tokens", "2"]
    assert main(argv + ["--n-prompts", "3"]) == 0
    assert "note: the test split holds 2 next-line prompts: all of them run (--n-prompts 3 asked for more)" in \
        capsys.readouterr().err
    assert main(argv + ["--n-prompts", "2"]) == 0
    assert "note: the test split holds" not in capsys.readouterr().err
