"""`twotower generate`: one prompt, any mode, text and statistics on stdout."""

from __future__ import annotations

import json
import sys

from .engine import MODES


def add_model_arguments(parser) -> None:
    """Model selection flags shared by every command that loads a model."""
    parser.add_argument("--model", default=None, help="local checkpoint directory (default: the embedded model)")
    parser.add_argument("--preset", default=None,
                        help="a preset configuration instead of a checkpoint (tiny, default, release); commands that "
                             "decode give it random weights")
    parser.add_argument("--ctx-device", default="cpu", help="the context tower's device (default: %(default)s)")
    parser.add_argument("--den-device", default="cpu", help="the denoiser's device (default: %(default)s)")


def add_arguments(parser) -> None:
    from .run_setup import add_anchor_argument, add_engine_arguments  # as bench / eval / sweep / app

    parser.add_argument("prompt", help="prompt text ('-' reads standard input)")
    add_engine_arguments(parser)
    # mock-ar and mock_ar both work; the usage and error messages list each mode once
    parser.add_argument("--mode", default="diffusion", choices=list(dict.fromkeys([m.replace("_", "-") for m in MODES]
                                                                                 + list(MODES))))
    parser.add_argument("--gamma", type=float, default=None, help="confidence threshold γ in (0, 1] (default: the model's)")
    parser.add_argument("--block-size", type=int, default=None, help="block size S (default: the model's)")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoiser steps per block (default: the model's; speculative: draft passes, unless "
                             "--draft-steps is given)")
    parser.add_argument("--draft-steps", type=int, default=None,
                        help="speculative: denoiser passes per drafted block (default: --steps, else the model's), "
                             "as bench spells it")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--adaptive", action="store_true", help="speculative: adapt the block length to acceptance")
    add_anchor_argument(parser)
    parser.add_argument("--min-draft-confidence", type=float, default=None,
                        help="speculative: propose only the draft prefix whose confidence reaches this (default: the model's)")
    parser.add_argument("--no-eos", action="store_true", help="do not stop at end-of-sequence")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--show-steps", action="store_true", help="print every denoising step as it happens")


def draft_steps(args):
    """Speculative draft passes: --draft-steps, else --steps (its meaning in this command before the flag)."""
    return args.steps if args.draft_steps is None else args.draft_steps


# the options each mode reads (engine.stream): what the others are given is said to be ignored, not dropped silently
MODE_OPTIONS = {"diffusion": ("gamma", "block_size", "steps", "anchor_first"),
                "speculative": ("gamma", "block_size", "steps", "draft_steps", "adaptive", "min_draft_confidence"),
                "mock_ar": (), "ar": ()}
MODE_SPECIFIC = ("gamma", "block_size", "steps", "draft_steps", "adaptive", "min_draft_confidence", "anchor_first")


def ignored_note(args) -> str | None:
    """A line naming the flags given that this run will not read: another mode's, or top-k / top-p under
    greedy decoding (the argmax, whatever the filters keep). None when every flag given is read."""
    mode = args.mode.replace("-", "_")
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    given = [name for name in MODE_SPECIFIC if getattr(args, name) is not None and getattr(args, name) is not False]
    read = set(MODE_OPTIONS[mode]) - ({"steps"} if mode == "speculative" and args.draft_steps is not None else set())
    other_modes = [flag(name) for name in given if name not in read]  # 0 is given (0 == False: not a test)
    greedy = [flag(name) for name in ("top_k", "top_p") if not args.temperature and getattr(args, name) is not None]
    parts = ([f"--mode {args.mode} reads no {', '.join(other_modes)}"] if other_modes else []) + \
            ([f"greedy decoding (temperature 0) uses no {', '.join(greedy)}"] if greedy else [])
    return f"note: {'; '.join(parts)}: ignored" if parts else None


def main(args) -> int:
    from .run_setup import engine_from_args
    from .validation import check_int

    check_int("--max-new-tokens", args.max_new_tokens)  # named as typed, and before the model loads (as bench)
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    engine = engine_from_args(args)
    ids = engine.encode_prompt(prompt)
    note = ignored_note(args)  # said once the run has started: a refused setting is the one line printed
    events = engine.stream(args.mode, ids, max_new_tokens=args.max_new_tokens, block_size=args.block_size,
                           steps_per_block=args.steps, gamma=args.gamma, temperature=args.temperature,
                           top_k=args.top_k, top_p=args.top_p, seed=args.seed, stop_at_eos=not args.no_eos,
                           adaptive=args.adaptive, draft_steps=draft_steps(args),
                           min_draft_confidence=args.min_draft_confidence, anchor_first=args.anchor_first)
    done = None
    for event in events:
        if note:  # stderr: stdout keeps the completion (or the JSON) alone
            print(note, file=sys.stderr)
            note = None
        if args.show_steps and event.kind in ("step", "verify", "token"):
            cells = [engine.tokenizer.piece(t) if not m else "▒" for t, m in zip(event.tokens[0].tolist(), event.masked[0].tolist())]
            print(f"[{event.kind} block {event.block} step {event.step}] " + "|".join(repr(c)[1:-1] for c in cells), file=sys.stderr)
        if event.kind == "done":
            done = event
    text = engine.decode(done.info["new_tokens"][0])
    stats = {k: v for k, v in done.stats.items()}
    if args.json:
        print(json.dumps({"prompt": prompt, "completion": text, "stats": stats, "engine": engine.describe()}))
        return 0
    print(prompt + text)
    print("---", file=sys.stderr)
    fmt = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in stats.items()}
    print(" ".join(f"{k}={v}" for k, v in fmt.items()), file=sys.stderr)
    return 0
