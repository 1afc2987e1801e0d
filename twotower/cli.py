"""`twotower <command>`: each command lives in its own module, which defines add_arguments(parser) and
main(args) -> int. Errors in user input print one clear line and exit 2, never a traceback."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

COMMANDS = {
    "generate": ("twotower.cli_generate", "generate text in any decoding mode"),
    "train": ("twotower.training", "train the default model (stage 1: context tower, stage 2: denoiser, then export)"),
    "eval": ("twotower.evaluation", "quality per task and retention vs AR on the test split"),
    "bench": ("twotower.bench", "throughput of every mode on the same prompts"),
    "sweep": ("twotower.sweep", "γ × S grid: throughput ratio against quality, Pareto frontier"),
    "plan": ("twotower.memory_plan", "memory plan per device, without loading weights"),
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="twotower", description="TwoTower Playground engine")
    sub = parser.add_subparsers(dest="command", required=True)
    modules = {}
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command whose module is not there yet
        modules[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # reports quote the command that measured them
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "falling back to PyTorch kernels" notices are not for CLI users
    try:
        return int(modules[args.command].main(args) or 0)
    except ValueError as exc:
        print(f"twotower {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `twotower generate ... | head`: the reader left; no traceback, and none at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, as a shell reports a pipe's writer that the reader left


if __name__ == "__main__":
    sys.exit(main())
