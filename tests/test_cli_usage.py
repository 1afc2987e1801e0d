"""An argument a command does not know is that command's error: its usage, its name, and the closest real flag
when one is close (argparse left a subcommand's leftovers to the top-level parser, which printed
`usage: twotower [-h] {generate,...}` and `twotower: error: ...`, naming no command)."""

import pytest

from twotower.cli import COMMANDS
from twotower.cli import main as cli_main

# what each command needs besides the bad flag, so that the flag is the only thing wrong
REQUIRED = {"generate": ["x"], "train": ["--stage", "context"]}


def refused(capsys, argv) -> str:
    """The last stderr line of a command argparse refused (exit status 2), after checking the usage it printed."""
    with pytest.raises(SystemExit) as exit_info:
        cli_main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: twotower {argv[0]} ") if argv[0] in COMMANDS else err.startswith("usage: twotower ")
    return err.strip().splitlines()[-1]


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_flag_prints_the_commands_usage_and_names_it(capsys, command):
    line = refused(capsys, [command, "--bogus", *REQUIRED.get(command, [])])
    assert line == f"twotower {command}: error: unrecognized arguments: --bogus"  # nothing close to suggest


@pytest.mark.parametrize("command", ["generate", "train"])
def test_an_unknown_flag_comes_before_the_required_argument_it_displaced(capsys, command):
    """`train --satge context` said "the following arguments are required: --stage": the typo is the news."""
    line = refused(capsys, [command, "--bogus"])
    assert line == f"twotower {command}: error: unrecognized arguments: --bogus"


@pytest.mark.parametrize("argv, line", [
    (["generate", "--mdoe", "ar", "x"], "twotower generate: error: unrecognized arguments: --mdoe x (did you mean --mode?)"),
    (["generate", "--gama=0.5", "x"], "twotower generate: error: unrecognized arguments: --gama=0.5 (did you mean --gamma?)"),
    (["train", "--satge", "context"], "twotower train: error: unrecognized arguments: --satge (did you mean --stage?)"),
    (["train", "--stage", "context", "--batch", "2"],
     "twotower train: error: unrecognized arguments: --batch 2 (did you mean --batch-size?)"),
    (["eval", "--worker", "2"], "twotower eval: error: unrecognized arguments: --worker 2 (did you mean --workers?)"),
    (["sweep", "--gamma", "0.5"], "twotower sweep: error: unrecognized arguments: --gamma 0.5 (did you mean --gammas?)"),
    (["plan", "--jsn"], "twotower plan: error: unrecognized arguments: --jsn (did you mean --json?)"),
    (["bench", "--n-prompt", "2"], "twotower bench: error: unrecognized arguments: --n-prompt 2 (did you mean --n-prompts?)"),
    (["generate", "--mdoe", "ar", "--gama", "0.5", "--block-size", "4", "x"],
     "twotower generate: error: unrecognized arguments: --mdoe --gama 0.5 x (did you mean --mode for --mdoe, --gamma for --gama?)"),
])
def test_a_near_miss_gets_the_closest_real_flag(capsys, argv, line):
    assert refused(capsys, argv) == line


def test_a_prefix_is_still_refused_and_told_its_flag(capsys):
    """allow_abbrev=False stays: the prefix is not taken for the flag, only named beside it."""
    line = refused(capsys, ["bench", "--n-prom", "2"])
    assert line == "twotower bench: error: unrecognized arguments: --n-prom 2 (did you mean --n-prompts?)"


def test_a_missing_value_and_a_flag_before_the_command_keep_their_usage(capsys):
    assert refused(capsys, ["bench", "--n-prompts"]) == "twotower bench: error: argument --n-prompts: expected one argument"
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["--bogus", "plan"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: twotower [-h] [--version] {") and err.strip().endswith("twotower: error: unrecognized arguments: --bogus")


def test_negative_numbers_and_standard_input_are_not_taken_for_flags(capsys):
    """`-` (the prompt from standard input) and a negative value are arguments, not unknown flags."""
    line = refused(capsys, ["generate", "--temperature", "-1", "--bogus", "-"])
    assert line == "twotower generate: error: unrecognized arguments: --bogus"


@pytest.mark.parametrize("word, line", [
    ("genrate", "twotower: error: unknown command 'genrate': did you mean generate? choose from generate, train, eval, "
                "bench, sweep, plan"),
    ("zzz", "twotower: error: unknown command 'zzz': choose from generate, train, eval, bench, sweep, plan"),
])
def test_an_unknown_command_gets_the_closest_one(capsys, word, line):
    """argparse's "argument command: invalid choice: 'genrate' (choose from ...)" left the reader to spot the typo."""
    assert refused(capsys, [word, "x"]) == line


def test_the_apps_mistyped_flag_gets_the_closest_one(capsys):
    """`python app.py` parses as the commands do (CommandParser): a typo gets a hint, not only argparse's refusal."""
    import app as app_script

    with pytest.raises(SystemExit) as exit_info:
        app_script.parse_args(["--modle", "x"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # "app.py: error: ..." (argparse's prog: argv[0])
    assert last.endswith(": error: unrecognized arguments: --modle x (did you mean --model?)")
