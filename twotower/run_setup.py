"""What every command that loads a model shares: its engine arguments, building the engine from them,
and the provenance a report records (device, dtypes, command line, commit, date).

bench, eval, sweep, generate and the app all build their engine here, so a flag means the same in each
and every report says how it was measured in the same words (scripts/write_benchmarks.py quotes them).
"""

from __future__ import annotations

import platform
import sys
from pathlib import Path

# torch and transformers are imported in the functions that read them: the CLI parses before they load
from .cli_generate import add_model_arguments
from .engine import DTYPE_HELP, DTYPE_METAVAR, dtype_flag, dtype_name, load_engine


def add_engine_arguments(parser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--dtype", default="fp32", type=dtype_flag, metavar=DTYPE_METAVAR,
                        help=f"weights dtype: {DTYPE_HELP} (default: %(default)s; every run's statistics and report "
                             "say which)")
    parser.add_argument("--den-dtype", default=None, type=dtype_flag, metavar=DTYPE_METAVAR,
                        help="the denoiser's own dtype (default: --dtype); the context tower, hence AR and the "
                             "speculative verifier, keeps --dtype")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile both towers' decode passes (same tokens, fewer per-op costs; a one-off "
                             "compile of a few minutes on a CPU, needs a C++ compiler)")


def add_settings_arguments(parser) -> None:
    parser.add_argument("--gamma", type=float, default=None, help="confidence threshold γ in (0, 1] (default: the model's)")
    parser.add_argument("--block-size", type=int, default=None, help="block size S (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="denoiser steps per block (default: the model's)")
    add_anchor_argument(parser)


def add_anchor_argument(parser) -> None:
    """--anchor-first, for every command that runs diffusion (generate, bench, eval, sweep)."""
    parser.add_argument("--anchor-first", action="store_true",
                        help="diffusion variant: each block's first token is the context tower's next token "
                             "(from the pass it runs anyway; not the release's rule)")


def loaded_model_dir(args):
    """The model folder a command loads: --model, none for a --preset (random weights), else the embedded one."""
    from .engine import default_model_dir

    return args.model if args.model is not None else None if args.preset is not None else default_model_dir()


def output_file(name: str, path, args, written=None):
    """A command's output file, checked before the model loads (path_checks.check_output_file), and never one of
    the run's inputs: a file in the model folder it loads or its --prompts file. written: (what the file is,
    holds(head) -> bool: whether a file's first bytes are one): an existing file of something else is not written
    over."""
    from .path_checks import check_apart_from_inputs, check_output_file, check_written_over

    path = check_output_file(name, path)
    if path is not None:
        check_apart_from_inputs(name, path, loaded_model_dir(args), getattr(args, "prompts", None) or None)
        if written is not None:
            check_written_over(name, path, *written)
    return path


def engine_from_args(args):
    from .validation import check_device

    check_device("--ctx-device", args.ctx_device)
    check_device("--den-device", args.den_device)
    note = upcast_note(args)
    if note:
        print(note, file=sys.stderr, flush=True)
    engine = load_engine(args.model, args.preset, args.ctx_device, args.den_device, dtype=args.dtype,
                         den_dtype=args.den_dtype)  # names (dtype_flag's): load_engine parses them
    if getattr(args, "compile", False):
        import multiprocessing

        from .compiled import compile_towers

        compile_towers(engine.model)
        if multiprocessing.parent_process() is None:  # said once, not by each eval worker
            # the compile happens at the passes' first calls, in a warm-up or the run: a bench said nothing for
            # its seven minutes on this CPU
            print("note: --compile: torch.compile compiles the decode passes at their first calls (minutes on a "
                  "CPU, before anything is timed), with nothing printed meanwhile", file=sys.stderr, flush=True)
    return engine


def upcast_note(args) -> str | None:
    """A checkpoint stored in 16 bits that a tower on a GPU loads in fp32 takes twice its size there, with no word
    (`twotower plan` plans bf16, as a GPU run is meant to load it): said before loading, naming the towers and the
    flag that loads each as stored. Not on a CPU, where fp32 is the shipped model's way (stored bf16, run fp32)."""
    from .engine import as_dtype

    if getattr(args, "preset", None) is not None:
        return None
    fp32 = as_dtype("dtype", "fp32")
    dtype = as_dtype("dtype", args.dtype)
    den_dtype = dtype if getattr(args, "den_dtype", None) is None else as_dtype("den_dtype", args.den_dtype)
    towers = [(tower, flag) for tower, device, kept, flag in (
        ("the context tower", args.ctx_device, dtype, "--dtype bf16"),
        ("the denoiser", args.den_device, den_dtype,
         "--den-dtype bf16" if args.den_dtype is not None else "--dtype bf16"))
        if str(device or "cpu").startswith("cuda") and kept == fp32]
    if not towers:
        return None
    try:
        import json

        from .engine import default_model_dir
        from .path_checks import check_model_dir

        folder = check_model_dir(args.model) if args.model is not None else default_model_dir()  # as load_engine
        stored = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        stored = stored.get("torch_dtype") or stored.get("dtype")
    except (OSError, ValueError, AttributeError):  # loading says what is wrong with the folder
        return None
    if stored not in ("bfloat16", "float16"):
        return None
    names = " and ".join(tower for tower, _ in towers)
    flags = " / ".join(dict.fromkeys(flag for _, flag in towers))
    return (f"note: the checkpoint is stored in {stored}; {names} load{'s' if len(towers) == 1 else ''} it as fp32 on "
            f"the GPU, twice its size there; {flags} loads it as stored (`twotower plan` plans for bf16)")


def preset_note(args) -> str | None:
    """The line every command prints when it decodes a preset: random weights write noise, and `--preset
    default` reads like the shipped model (assets/default), which loads without --preset."""
    if getattr(args, "preset", None) is None:
        return None
    return (f"note: --preset {args.preset} builds random weights (untrained); the shipped model loads without "
            "--preset (or --model assets/default)")


LOG_INTERVAL_S = 60.0  # off a terminal: a progress line at most this often, the first once a run has taken as long


class _Lines:
    """tqdm's stream off a terminal: each redraw ("\\r" and the bar) a line of its own, so a log of a long run holds
    a line a minute, not one line of carriage returns (or, with tqdm's default there, nothing at all)."""

    def __init__(self, stream):
        self.stream, self.last = stream, None

    def write(self, text: str) -> None:
        text = text.replace("\r", "").rstrip()
        if text and text != self.last:  # (the bar's close draws its last state again)
            self.stream.write(text + "\n")
            self.last = text

    def flush(self) -> None:
        self.stream.flush()


def read_only(flags: list[str], where: str) -> str:
    """"--a, --b are read only <where>": bench's and eval's notes of flags given that the run does not read."""
    return f"{', '.join(flags)} {'is' if len(flags) == 1 else 'are'} read only {where}"


def starts_with(text: str):
    """`written`'s test for a markdown report: the file begins with the report's heading (after blank space)."""
    return lambda head: head.lstrip().startswith(text.encode())


def report_text(report: dict, markdown: str, path) -> str:
    """What bench's and eval's --out writes: the JSON to a file named *.json, the markdown table to any other
    (--json prints the JSON and keeps the table for people in the file beside it, `--json --out eval.md`)."""
    import json

    return json.dumps(report, indent=1) + "\n" if str(path).lower().endswith(".json") else markdown


def report_file(markdown_start: str, command: str):
    """`written`'s test for bench's or eval's --out: the report's markdown (its heading first) or its JSON (--json:
    an object whose "command" is this one's, as provenance records it; `> saved.json` was refused as --out)."""
    import re

    markdown = starts_with(markdown_start)
    ran = re.compile(rb'"command":\s*"[^"\n]*twotower ' + command.encode())
    return lambda head: markdown(head) or (head.lstrip().startswith(b"{") and ran.search(head) is not None)


def progress_bar(total: int, desc: str, unit: str):
    """bench's, eval's and sweep's progress: tqdm's bar on a terminal; elsewhere (`2>log`, nohup, CI) a line every
    LOG_INTERVAL_S, none for a run shorter than that. A default eval (~16 minutes in one process) said nothing
    under `2>log` until its report."""
    from tqdm import tqdm

    if sys.stderr.isatty():
        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr)
    return tqdm(total=total, desc=desc, unit=unit, file=_Lines(sys.stderr), disable=False, ascii=True, ncols=100,
                delay=LOG_INTERVAL_S, mininterval=LOG_INTERVAL_S, maxinterval=LOG_INTERVAL_S)


def preset_note_once(args, bar):
    """A function that writes preset_note(args) above the progress `bar` the first time it is called and nothing
    after (nothing at all without a preset): called from a run's progress, so the note comes once the run has
    started, and a refused setting stays the one line printed (bench, eval, sweep)."""
    pending = [note] if (note := preset_note(args)) else []

    def say():
        while pending:
            bar.write(pending.pop(), file=sys.stderr)

    return say


def run_variant(report: dict) -> str:
    """How a report's model ran: "fp32", "bf16", "fp32, denoiser bf16", each with ", torch.compile" when it
    was compiled and ", anchored blocks" for anchored diffusion (bench or eval; older reports: dtype only)."""
    den = report.get("den_dtype")
    label = report["dtype"] if den in (None, report["dtype"]) else f"{report['dtype']}, denoiser {den}"
    anchored = report.get("anchor_first") or (report.get("settings") or {}).get("anchor_first")
    return label + (", torch.compile" if report.get("compiled") else "") + (", anchored blocks" if anchored else "")


def machine_line(report: dict) -> str:
    """'<device>, <variant>': where and how a report measured; bench's and sweep's markdown open with it."""
    return f"{report['device']['name']}, {run_variant(report)}"


def counted(n, noun: str) -> str:
    """'1 prompt', '3 prompts': a count with its noun (the reports once read "1 prompts", "1 rounds")."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def device_info(engine) -> dict:
    """{"device": {...}, "dtype": context tower's, "den_dtype": denoiser's}: where and how it was measured."""
    import torch
    import transformers

    from .training import _cpu_runs_bf16_fast

    model = engine.model
    bf16_native = _cpu_runs_bf16_fast()
    names = []
    for dev in dict.fromkeys([model.ctx_device, model.den_device]):
        if dev.type == "cuda":
            names.append(torch.cuda.get_device_name(dev))
        else:
            threads = torch.get_num_threads()
            about = filter(None, [cpu_model(), platform.machine(), cpu_vector_isa(bf16_native)])
            names.append(f"{dev.type} ({', '.join(about)}, {threads} thread{'s' if threads > 1 else ''})")
    return {"device": {"name": " + ".join(names), "ctx_device": str(model.ctx_device), "den_device": str(model.den_device),
                       "torch": torch.__version__, "transformers": transformers.__version__,
                       "cpu_bf16_native": bf16_native},
            "dtype": dtype_name(model.ctx_dtype),
            "den_dtype": dtype_name(model.den_dtype),
            "compiled": model.is_compiled_for_decoding}


def cpu_vector_isa(bf16_native: bool) -> str:
    """The vector instructions torch's CPU kernels use ("AVX2", "AVX512", ...), with "+ bf16" where oneDNN has
    native bf16 matmuls (`bf16_native`: training._cpu_runs_bf16_fast): the same "AMD EPYC" host name has come
    with and without them in this project's sessions, and a bf16 denoiser ran ~4x slower without
    (BENCHMARKS.md, "torch.compile on the GPU-trained model")."""
    import torch

    try:
        isa = torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):
        return ""
    return f"{isa} + bf16" if bf16_native else isa


def cpu_model() -> str:
    """The CPU's model name ("AMD EPYC ..."), or "" where the system does not say: tokens/s are only comparable
    on the same CPU, so reports name it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def git(*argv, root: Path | None = None) -> str | None:
    """A git command's output in this project's checkout (`root`, this package's parent folder by default), or
    None (no git, not a checkout's top, an error)."""
    import subprocess

    root = Path(root or Path(__file__).resolve().parent.parent).resolve()

    def run(*args) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    # an installed copy inside another repository (a project's .venv) recorded that repository's commit
    top = run("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() != root:
        return None
    return run(*argv)


def provenance(args) -> dict:
    """The command line (`args.argv`, set by the CLI), the commit and the (UTC) date a report was measured with
    (BENCHMARKS.md and the model card quote them). The commit gets "-dirty" when the working tree had
    uncommitted changes. Called when a run starts: a commit made while it runs is not what it measured."""
    import shlex
    from datetime import datetime, timezone

    import torch

    commit = git("rev-parse", "--short", "HEAD")
    if commit and git("status", "--porcelain", "--untracked-files=no"):
        commit += "-dirty"
    threads = f"OMP_NUM_THREADS={torch.get_num_threads()} " if not torch.cuda.is_available() else ""
    return {"command": threads + "twotower " + shlex.join(getattr(args, "argv", [])), "commit": commit,
            "date": datetime.now(timezone.utc).date().isoformat()}


def print_report(text: str) -> BrokenPipeError | None:
    """Print a command's report; where stdout fails (its reader gone: `| head`, a pager quit before the end; or a
    full disk, a terminal gone), the error to end on once the command has written its files (a sweep's measured
    points were lost with the pipe): BrokenPipeError, the CLI's exit 141, or interrupts.StdoutFailed, said as an
    error. Later prints go nowhere instead of raising."""
    from .interrupts import stdout_error

    try:
        print(text, flush=True)
        return None
    except OSError as exc:
        return stdout_error(exc)
