"""`twotower <command>`: each command lives in its own module, which defines add_arguments(parser) and
main(args) -> int. Errors in user input print one clear line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import difflib
import importlib
import os
import signal
import sys

from .interrupts import StdoutFailed, Terminated, quiet_stdout, raise_terminated, take_over

COMMANDS = {
    "generate": ("twotower.cli_generate", "generate text in any decoding mode"),
    "train": ("twotower.cli_train", "train the default model (stage 1: context tower, stage 2: denoiser, then export)"),
    "eval": ("twotower.evaluation", "quality per task and retention vs AR on the test split"),
    "bench": ("twotower.bench", "throughput of every mode on the same prompts"),
    "sweep": ("twotower.sweep", "γ × S grid: throughput ratio against quality, Pareto frontier"),
    "plan": ("twotower.memory_plan", "memory plan per device, without loading weights"),
}


class CommandParser(argparse.ArgumentParser):
    """One command's parser: an argument it does not know is that command's error, with its usage and its name
    (`twotower generate: error: unrecognized arguments: --mdoe (did you mean --mode?)`). Left to the top-level
    parser, as argparse does with a subcommand's leftovers, it printed `twotower`'s usage instead."""

    _given: list[str] = []

    def parse_known_args(self, args=None, namespace=None):
        self._given = list(args or [])
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self.unrecognized(extras))
        return namespace, extras

    def error(self, message):
        # an unknown flag is reported before what it caused: `train --satge context` said "--stage is required"
        unknown = self.unknown_flags(self._given)
        if unknown and not message.startswith("unrecognized arguments"):
            message = self.unrecognized(unknown)
        super().error(message)

    def unknown_flags(self, words: list[str]) -> list[str]:
        """The words that look like flags (not a negative number, not '-' for standard input) this command lacks."""
        unknown = []
        for word in words:
            if word == "--":  # what follows is positional
                break
            if not word.startswith("-") or word == "-" or _is_number(word):
                continue
            if word.split("=", 1)[0] not in self._option_string_actions:
                unknown.append(word)
        return unknown

    def unrecognized(self, extras: list[str]) -> str:
        # compared without their dashes, which every flag shares (with them `--bogus` was close to `--out`)
        flags = {flag[2:]: flag for flag in self._option_string_actions if flag.startswith("--")}
        hints = {}
        for word in extras:
            name = word.split("=", 1)[0]
            if name.startswith("-") and not _is_number(name):
                close = difflib.get_close_matches(name.lstrip("-"), list(flags), n=1, cutoff=0.6)
                if close:
                    hints[name] = flags[close[0]]
        message = f"unrecognized arguments: {' '.join(extras)}"
        # words alone (no mistyped flag, whose value a word may be): `generate def f(x):` unquoted
        # (a stray number is no prompt's word: `--top-k 5 6`)
        if (all(not word.startswith("-") and not _is_number(word) for word in extras)
                and any(a.dest == "prompt" for a in self._actions)):
            message += f" (a prompt of several words is one argument: quote it, {self.prog} \"def f(x):\")"
        if len(hints) == 1:
            return f"{message} (did you mean {next(iter(hints.values()))}?)"
        if hints:
            return f"{message} (did you mean {', '.join(f'{right} for {wrong}' for wrong, right in hints.items())}?)"
        return message


class VersionAction(argparse.Action):
    """--version: the package's version read when asked (argparse's own action reads it as the parser is built, at
    every command's start)."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="show the installed version and exit")

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"twotower {_version()}")
        parser.exit()


def _version() -> str:
    """The installed package's version (a checkout on PYTHONPATH, not installed, has none to read)."""
    from importlib import metadata

    try:
        return metadata.version("twotower-playground")
    except metadata.PackageNotFoundError:
        return "(not installed: a checkout)"


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def text_streams_never_fail_on_a_character() -> None:
    """stdout and stderr that are not UTF-8 (PYTHONIOENCODING=ascii, a Windows console or redirect in cp1252) write
    a character they cannot hold as an escape (\\u03b3): `--help` (γ) was a traceback, and generate's whole output
    was lost to one 'é' of the prompt."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "").replace("_", "")
        if encoding not in ("utf8", "") and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def quiet_kernel_notices() -> None:
    """transformers' "falling back to its reference PyTorch implementation ... much slower" notices are not for a
    command's or the app's user (on a CPU that implementation is the only one). transformers reads the variable when
    it first loads (with the model: importing it here would cost seconds before a bad value is even looked at)."""
    if "transformers" in sys.modules:  # in-process callers (tests, scripts) have it loaded already
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
    else:
        os.environ["TRANSFORMERS_VERBOSITY"] = "error"


def main(argv=None) -> int:
    text_streams_never_fail_on_a_character()
    # allow_abbrev=False: a prefix of a flag is refused, not taken for it (bench's `--batch 2` silently set
    # --batch-size; a flag added later would change what an old abbreviation meant)
    parser = argparse.ArgumentParser(prog="twotower", description="TwoTower Playground engine", allow_abbrev=False)
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=CommandParser)
    argv = list(sys.argv[1:] if argv is None else argv)
    # only the command named builds its arguments: importing a command's module can cost seconds (torch), and
    # `twotower --help` or another command's typo need none of the others (the first word that is no option)
    named = next((word for word in argv if not word.startswith("-")), None)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text, allow_abbrev=False)
        if name != named:
            continue
        try:
            modules[name] = importlib.import_module(module_name)
        except KeyboardInterrupt:  # Ctrl-C in the seconds a command's import takes (torch): no traceback
            print("interrupted", file=sys.stderr)
            return 130
        modules[name].add_arguments(command_parser)
    if named is not None and named not in COMMANDS:  # argparse lists the choices; a typo also gets the closest one
        close = difflib.get_close_matches(named, list(COMMANDS), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}? " if close else ""
        parser.error(f"unknown command {named!r}: {hint}choose from {', '.join(COMMANDS)}")
    args = parser.parse_args(argv)
    args.argv = argv  # reports quote the command that measured them
    quiet_kernel_notices()
    # SIGTERM (timeout, kill, docker stop, a job scheduler) ends a run as Ctrl-C does: what Ctrl-C keeps (a partial
    # trace, a sweep's measured points, a training checkpoint) it keeps, where the default action kept nothing
    # (take_over: not where SIGTERM is ignored, as a supervisor or `trap '' TERM` may set it, nor off the main thread)
    previous = take_over(signal.SIGTERM, raise_terminated)
    try:
        return int(modules[args.command].main(args) or 0)
    except ValueError as exc:
        print(f"twotower {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print("terminated" if isinstance(exc, Terminated) else "interrupted", file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130  # 128 + the signal, as a shell reports it
    except BrokenPipeError as exc:  # `twotower generate ... | head`: the reader left; no traceback, and none at exit
        quiet_stdout()
        if isinstance(exc, StdoutFailed):  # a full disk under `> file`, a terminal gone: said (files written)
            print(f"twotower {args.command}: error: {exc.strerror}", file=sys.stderr)
            return 1
        return 141  # 128 + SIGPIPE, as a shell reports a pipe's writer that the reader left
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
