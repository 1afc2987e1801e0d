"""TwoTower Playground web app.

    python app.py                    # the embedded default model (assets/default), on the CPU
    python app.py --preset tiny      # a random tiny model (tests, no checkpoint needed)
    python app.py --den-dtype bf16   # the denoiser in bf16 (faster diffusion on CPUs with bf16 matmuls)
    python app.py --compile          # torch.compile both towers' decode passes (compiles before it serves)
    python app.py --model DIR --ctx-device cuda:0 --den-device cuda:1 --host 0.0.0.0 --port 7860

Binds to 127.0.0.1 unless --host says otherwise; no public share link unless --share.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # offline machine: no telemetry calls


def parse_args(argv=None) -> argparse.Namespace:
    from twotower.cli import CommandParser  # a mistyped flag gets the closest real one, as in every command
    from twotower.run_setup import add_engine_arguments

    # allow_abbrev=False as every twotower command: a flag prefix is refused, not taken for another flag
    parser = CommandParser(description="TwoTower Playground: the web app over the two-tower engine",
                                     allow_abbrev=False)
    add_engine_arguments(parser)  # model, devices, --dtype / --den-dtype: as bench, eval and sweep
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=7860, help="port to serve on (default 7860)")
    parser.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (needs the internet: Gradio fetches its tunnel "
                             "binary on first use; offline it says so and serves locally only)")
    parser.add_argument("--concurrency", type=int, default=2, help="runs served at once; more users queue")
    return parser.parse_args(argv)


def serving_problem(args) -> str | None:
    """What makes --host / --port / --concurrency unusable, found before minutes of model loading and compiling."""
    import socket

    if args.concurrency < 1:
        return "--concurrency must be >= 1"
    if not 1 <= args.port <= 65535:
        return f"--port must be between 1 and 65535, got {args.port}"
    try:
        if args.host:  # "" lets gradio pick its default
            socket.getaddrinfo(args.host, args.port)
    except (socket.gaierror, UnicodeError) as exc:
        return f"--host {args.host!r} is not an address or name this machine can resolve ({exc})"
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    from twotower.cli import quiet_kernel_notices
    from twotower.run_setup import engine_from_args

    quiet_kernel_notices()  # the server's log, as the commands' output
    from twotower.engine import DEFAULT_MODEL_DIR

    problem = serving_problem(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        engine = engine_from_args(args)
    except ValueError as exc:
        message = str(exc)
        if args.model is None and args.preset is None and not DEFAULT_MODEL_DIR.is_dir():
            # only a missing default directory gets the hint; any other load error (a bad --dtype pairing,
            # a corrupt file) is reported as it is
            message += ", or --preset tiny for a random tiny model"
        print(f"error: {message}", file=sys.stderr)
        return 2
    from twotower.run_setup import preset_note

    note = preset_note(args)
    if note:  # the page's header names the random preset too
        print(note, file=sys.stderr)
    if args.compile:  # compile now, not in the first visitor's run
        from twotower.compiled import warm_up

        print("compiling the decode passes (torch.compile, one-off; a few minutes on a CPU) ...", flush=True)
        print(f"compiled and warmed up in {warm_up(engine):.0f} s", flush=True)
    from ui.app import PAGE_CSS, build_demo

    demo = build_demo(engine, concurrency_limit=args.concurrency)
    try:
        # state_session_capacity: each session's state (~0.2 MB, and its last run's record: MBs at 512 tokens) is
        # kept until 10,000 sessions by default, about 2 GB for a shared server; the oldest go past 1,000
        # quiet unless --share: Gradio's start-up lines end with its hint "set `share=True` in `launch()`", code
        # this app's user does not write; the address is printed here instead, with this app's flag for a link
        demo.launch(server_name=args.host, server_port=args.port, share=args.share, css=PAGE_CSS,
                    state_session_capacity=1000, quiet=not args.share, prevent_thread_lock=True)
    except OSError as exc:  # gradio's "Cannot find empty port in range: 7860-7860": the port is taken
        print(f"error: cannot serve on {args.host}:{args.port} ({exc}); another server may hold the port: "
              "stop it or give --port", file=sys.stderr)
        return 2
    if not args.share:
        url = getattr(demo, "local_url", None) or f"http://{args.host}:{args.port}/"
        print(f"* Running on local URL:  {url}  (Ctrl-C stops it; --share adds a public link)", flush=True)
    demo.block_thread()
    return 0


if __name__ == "__main__":
    sys.exit(main())
