"""`twotower generate`: one prompt, any mode, text and statistics on stdout."""

from __future__ import annotations

import json
import math
import os
import sys

from .engine import MODES, Engine, PromptTooLong, check_decoding_settings, normalise_mode
from .interrupts import stdout_error
from .trace import MODE_SETTINGS, is_trace_head


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
    # in any case, as bench's --modes and the Python API take it (--mode AR was refused, --modes AR ran)
    parser.add_argument("--mode", default="diffusion", type=str.lower,
                        choices=list(dict.fromkeys([m.replace("_", "-") for m in MODES] + list(MODES))),
                        help="diffusion: blocks of S filled in parallel by the denoiser; ar: the context tower alone; "
                             "mock-ar: both towers, one token a step; speculative: the denoiser drafts, the context "
                             "tower verifies (AR's output) (default: %(default)s)")
    parser.add_argument("--gamma", type=float, default=None, help="confidence threshold γ in (0, 1] (default: the model's)")
    parser.add_argument("--block-size", type=int, default=None, help="block size S (default: the model's)")
    parser.add_argument("--steps", type=int, default=None,
                        help="denoiser steps per block (default: the model's; speculative: draft passes, unless "
                             "--draft-steps is given)")
    parser.add_argument("--draft-steps", type=int, default=None,
                        help="speculative: denoiser passes per drafted block (default: --steps, else the model's), "
                             "as bench spells it")
    parser.add_argument("--max-new-tokens", type=int, default=64, help="tokens to generate (default: %(default)s)")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0: greedy (the most likely token); above 0: sample at this temperature (default: 0)")
    parser.add_argument("--top-k", type=int, default=None,
                        help="sample only from the K most likely tokens; with --temperature > 0 only (greedy takes "
                             "the most likely anyway); 0 or unset: off")
    parser.add_argument("--top-p", type=float, default=None,
                        help="sample only from the most likely tokens whose probabilities add up to P, in (0, 1]; "
                             "with --temperature > 0 only; 1 or unset: off")
    parser.add_argument("--seed", type=int, default=None,
                        help="with --temperature > 0: the same seed repeats the same text (default: unseeded)")
    parser.add_argument("--adaptive", action="store_true", help="speculative: adapt the block length to acceptance")
    add_anchor_argument(parser)
    parser.add_argument("--min-draft-confidence", type=float, default=None,
                        help="speculative: propose only the draft prefix whose confidence reaches this (default: the model's)")
    parser.add_argument("--no-eos", action="store_true", help="do not stop at end-of-sequence")
    parser.add_argument("--no-heal", action="store_true",
                        help="keep the prompt's last token as typed (default: token healing takes it back and the "
                             "first token is chosen among those that start with its text; see twotower/token_healing.py)")
    parser.add_argument("--max-prompt-tokens", type=int, default=Engine.max_prompt_tokens,
                        help="a longer prompt is refused (bench, eval and sweep keep a prompt's last N tokens "
                             "instead); raise it for a long file, memory allowing (default: %(default)s, as the app's)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    parser.add_argument("--show-steps", action="store_true", help="print every denoising step as it happens")
    parser.add_argument("--trace", metavar="FILE", default=None,
                        help="also write every step of the run to FILE as JSON (tokens, confidences, commits per "
                             "step; twotower/trace.py says its shape)")


def draft_steps(args):
    """Speculative draft passes: --draft-steps, else --steps (its meaning in this command before the flag)."""
    return args.steps if args.draft_steps is None else args.draft_steps


# the options each mode reads, named as this command's flags (from what its Engine.stream keywords are, in the
# trace module): what the others are given is said to be ignored, not dropped silently. --steps is diffusion's
# steps per block and speculative's draft passes (draft_steps() above).
FLAG_NAMES = {"steps_per_block": ("steps",), "draft_steps": ("steps", "draft_steps")}
MODE_OPTIONS = {mode: tuple(dict.fromkeys(flag for key in keys for flag in FLAG_NAMES.get(key, (key,))))
                for mode, keys in MODE_SETTINGS.items()}
MODE_SPECIFIC = tuple(dict.fromkeys(flag for flags in MODE_OPTIONS.values() for flag in flags))


def ignored_note(args, config=None) -> str | None:
    """A line naming the flags given that this run will not read: another mode's, top-k / top-p under
    greedy decoding (the argmax, whatever the filters keep) and a seed there, or a speculative --min-draft-confidence when
    sampling over several draft passes (config: the model's, for its default passes). None when every flag
    given is read."""
    from spec_decode import CUT_REASON, proposal_cut

    mode = args.mode.replace("-", "_")
    flag = lambda name: "--" + name.replace("_", "-")  # noqa: E731
    given = [name for name in MODE_SPECIFIC if getattr(args, name) is not None and getattr(args, name) is not False]
    read = set(MODE_OPTIONS[mode]) - ({"steps"} if mode == "speculative" and args.draft_steps is not None else set())
    other_modes = [flag(name) for name in given if name not in read]  # 0 is given (0 == False: not a test)
    # (a seed too: the argmax draws nothing)
    greedy = [flag(name) for name in ("top_k", "top_p", "seed")
              if not args.temperature and getattr(args, name) is not None]
    parts = ([f"--mode {args.mode} reads no {', '.join(other_modes)}"] if other_modes else []) + \
            ([f"greedy decoding (temperature 0) uses no {', '.join(greedy)}"] if greedy else [])
    passes = draft_steps(args) if draft_steps(args) is not None else getattr(config, "default_draft_steps", 1)
    if mode == "speculative" and args.min_draft_confidence and args.temperature and \
            proposal_cut(args.temperature, passes, args.min_draft_confidence) == 0.0:
        parts.append(f"sampling over {passes} draft passes uses no --min-draft-confidence ({CUT_REASON}; "
                     "--draft-steps 1 keeps it)")
    return f"note: {'; '.join(parts)}: ignored" if parts else None


def last_block_note(args, config, new_tokens) -> str | None:
    """A diffusion run that reached --max-new-tokens inside a block: every pass ran all S positions, those past the
    budget dropped, so tokens_per_pass counts the kept tokens only (4 new tokens at S = 16: 0.44 per pass, which
    read as fewer than the one a step the commit rule promises). None where the run ended on a block's end or at
    EOS, or in another mode. Said after the run: only then is its length known."""
    size = args.block_size if args.block_size is not None else getattr(config, "default_block_size", None)
    if (normalise_mode(args.mode) != "diffusion" or not size or new_tokens != args.max_new_tokens
            or args.max_new_tokens % size == 0):
        return None
    past = size - args.max_new_tokens % size
    return (f"note: --max-new-tokens ended inside a block of S = {size}: its passes ran all {size} positions, {past} "
            "past the budget and dropped, so tokens_per_pass counts the kept tokens only")


def healing_note(healing) -> str | None:
    """stderr's line for a healed prompt: what was taken back, and how to keep it."""
    if healing is None:
        return None
    return (f"token healing: the prompt's last token {healing.prefix!r} is chosen again among the {healing.choices} "
            "tokens that start with it (--no-heal keeps it)")


def read_prompt(arg: str) -> str:
    """The prompt argument, or standard input for '-', as UTF-8 text: bytes that are not UTF-8 are named as
    such (byte offset, reason) instead of reaching the tokenizer as lone surrogates."""
    from .path_checks import utf8_text

    if arg == "-":
        if sys.stdin is None:  # `twotower generate - <&-`: no standard input at all (was an AttributeError)
            raise ValueError("the prompt is '-' (standard input), but standard input is closed")
        if sys.stdin.isatty():  # typed at the terminal: the command waited without a word
            print("reading the prompt from standard input: end it with Ctrl-D (Ctrl-Z, Enter on Windows)",
                  file=sys.stderr, flush=True)
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()  # tests pass a StringIO
        text = utf8_text(data, "standard input") if isinstance(data, bytes) else data
        return text.removeprefix("\ufeff")  # a BOM (a Windows editor's UTF-8) is no part of the prompt
    if any("\udc80" <= c <= "\udcff" for c in arg):  # Python's stand-ins for argv bytes that were not UTF-8
        return utf8_text(os.fsencode(arg), "the prompt argument")
    return arg


FOOTER_LIST_ITEMS = 8  # a list longer than this (per-position shares: up to 2·S) shows its first items and "…"
FOOTER_OMITTED = ("acceptance_lengths", "proposed_lengths")  # one number per round: in --json, their means here


def short_number(value: float) -> str:
    """About three significant digits and never an exponent: 0.615, 5.48, 16.9, 1234, 0."""
    if not math.isfinite(value) or value == 0:
        return f"{value:g}"
    text = f"{value:.{max(0, 2 - math.floor(math.log10(abs(value))))}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def footer_value(key: str, value) -> str | None:
    """A statistic as the footer shows it (no spaces: `key=value` pairs split on them); None leaves it out."""
    from .engine import MODE_LABELS

    if value is None or key in FOOTER_OMITTED:
        return None
    if key == "mode":
        return MODE_LABELS.get(value, value)  # mock-AR, AR: as the docs, bench and eval name them
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return short_number(value)
    if isinstance(value, dict):  # rollbacks: {"positions": 6, "none": 1}
        return ",".join(f"{k}:{footer_value(k, v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):  # acceptance_by_position: its shares, position 1, 2, ...
        items = [footer_value(key, v["share"] if isinstance(v, dict) and "share" in v else v) or "n/a" for v in value]
        return ",".join(items[:FOOTER_LIST_ITEMS] + (["…"] if len(items) > FOOTER_LIST_ITEMS else []))
    return str(value)


def format_footer(stats: dict) -> str:
    """The statistics line under the text: readable numbers, no empty fields (--json has every one, unrounded)."""
    pairs = ((key, footer_value(key, value)) for key, value in stats.items())
    return " ".join(f"{key}={text}" for key, text in pairs if text is not None)


def main(args) -> int:
    from .run_setup import engine_from_args, output_file, preset_note
    from .validation import check_fraction, check_sampling, check_seed, check_size

    check_size("--max-new-tokens", args.max_new_tokens)  # named as typed, and before the model loads (as bench)
    check_size("--max-prompt-tokens", args.max_prompt_tokens)
    check_sampling(args.temperature, args.top_k, args.top_p, names=("--temperature", "--top-k", "--top-p"))
    check_seed(args.seed, "--seed")  # named as typed, as every other flag's message
    if args.min_draft_confidence is not None:  # "--min-draft-confidence must be in [0, 1]", as bench says it
        check_fraction("--min-draft-confidence", args.min_draft_confidence)
    # the settings engine.stream checks in every mode, checked before the model loads: a typo costs no loading
    check_decoding_settings(args.gamma, args.block_size, args.steps, args.draft_steps, args.min_draft_confidence,
                            cli=True)
    if args.trace == "-":  # a file named "-" appeared in the current folder
        raise ValueError("--trace - : standard output holds the completion; give the trace a file name")
    # before the model loads, as bench's --out; a file of something else is not written over
    trace_path = output_file("--trace", args.trace, args, ("a run's trace", is_trace_head))
    prompt = read_prompt(args.prompt)
    engine = engine_from_args(args)
    from .token_healing import completion_text, prompt_less_prefix, stream_keywords  # (torch: loaded with the model)

    # healed, the model reads the prompt but its last token, which the first generated token re-spells
    engine.max_prompt_tokens = args.max_prompt_tokens
    try:
        ids, healing = engine.ids_to_run(prompt, heal=not args.no_heal)
    except PromptTooLong as exc:
        raise PromptTooLong(f"{exc} (--max-prompt-tokens raises it)") from None
    healed = healing.prefix if healing else ""
    # said once the run has started: a refused setting is the one line printed
    notes = [note for note in (preset_note(args), ignored_note(args, engine.model.config), healing_note(healing))
             if note]
    settings = dict(max_new_tokens=args.max_new_tokens, block_size=args.block_size, steps_per_block=args.steps,
                    gamma=args.gamma, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    seed=args.seed, stop_at_eos=not args.no_eos, adaptive=args.adaptive,
                    draft_steps=draft_steps(args), min_draft_confidence=args.min_draft_confidence,
                    anchor_first=args.anchor_first)
    events = engine.stream(args.mode, ids, **settings, **stream_keywords(healing))
    recorded = [] if trace_path else None  # kept only when a trace is asked for (a long run's events add up)
    mode = normalise_mode(args.mode)

    def save_trace():
        from .trace import ran_settings, run_trace, write_trace

        write_trace("--trace", trace_path, run_trace(
            recorded, prompt=prompt, prompt_ids=ids, healed=healed, mode=mode,
            settings=ran_settings(mode, engine.model.config, settings),  # what the mode read, defaults filled in
            tokenizer=engine.tokenizer, mask_token_id=engine.model.config.mask_token_id, engine=engine.describe()))

    saved = []  # the trace of a run its reader or a Ctrl-C cut short, once written

    def keep_trace(finished: bool = False) -> None:
        """Write the trace (if one was asked for and holds a step), the signals held while it is written: a
        pipeline's Ctrl-C may come just after the closed pipe that brought us here. Once: a second call, after an
        interrupt that came before the signals were held, writes it if the first did not."""
        if recorded and not saved:
            with signals_held():
                save_trace()
                saved.append(True)
            if not finished:
                print(f"the run so far is traced in {trace_path}", file=sys.stderr)

    from .completion_stream import CompletionStream  # (imports torch: not before the flags are checked)
    from .interrupts import quiet_stdout, signals_held

    # text mode prints the completion as it is committed (the prompt first); --json and --show-steps (whose step
    # lines on stderr would cut into the text on a terminal) print it once the run is done, or at Ctrl-C (`kept`)
    kept = CompletionStream(engine.decode, None if args.no_eos else engine.eos_token_id)
    stream = None if args.json or args.show_steps else kept
    done = None
    try:
        for event in events:
            if recorded is not None:
                recorded.append(event)
            for note in notes or ():  # stderr: stdout keeps the completion (or the JSON) alone
                print(note, file=sys.stderr)
            if stream is not None:
                if notes is not None:  # the first event: the run has started (a healed last token's text is the
                    _write(prompt_less_prefix(prompt, healed))  # completion's to print: it was generated)
                _write(stream.add(event))
            else:
                kept.add(event)
            notes = None
            if args.show_steps and event.kind in ("step", "verify", "token"):
                cells = [engine.tokenizer.piece(t) if not m else "▒" for t, m in zip(event.tokens[0].tolist(), event.masked[0].tolist())]
                shown = "|".join(repr(c)[1:-1] for c in cells[: event.info.get("needed")])
                if event.info.get("needed") is not None:  # the budget's last block: the cells past it are dropped
                    shown += " ✂ " + "|".join(repr(c)[1:-1] for c in cells[event.info["needed"]:])
                print(f"[{event.kind} block {event.block} step {event.step}] {shown}", file=sys.stderr)
            if event.kind == "done":
                done = event
    except (KeyboardInterrupt, BrokenPipeError) as exc:  # Ctrl-C, or a reader gone mid-stream: the steps so far
        # are kept when a trace was asked for ("finished": false); the text so far is already out
        ending = exc
        try:  # first: the Ctrl-C of a pipeline (`| tee`) ends its reader too, and a write to it raises
            try:
                keep_trace()
            except KeyboardInterrupt as late:  # that Ctrl-C came before the signals were held (a loaded host
                keep_trace()  # widens the moment): the trace is written all the same, and the interrupt ends the run
                ending = late
        except ValueError as error:  # said, and the interrupt goes on as one
            print(f"twotower generate: error: {error}", file=sys.stderr)
        if isinstance(ending, KeyboardInterrupt) and notes is None:
            try:  # streamed: the text so far ends its line ("interrupted" follows on stderr); else the text so far
                if stream is not None:  # (a healed prefix the stream has not shown yet is the prompt's: written back)
                    _write(("" if stream.shown else healed) + "\n")
                elif args.json:  # what a finished run prints, marked interrupted (its statistics never came)
                    _write(json.dumps({"prompt": prompt, "completion": completion_text(engine.decode(kept.ids), healed),
                                       "healed": healed, "interrupted": True, "stats": None,
                                       "engine": engine.describe()}) + "\n")
                else:
                    _write(prompt + completion_text(engine.decode(kept.ids), healed) + "\n")
            except BrokenPipeError:  # the reader went with the same Ctrl-C: the interrupt is what ends the run
                quiet_stdout()  # (and nothing fails at exit)
        if ending is exc:
            raise
        raise ending from None
    text = engine.decode(done.info["new_tokens"][0])  # a healed run's starts with the prefix: printed after the
    try:  # prompt less the prefix when streamed, else as the completion after the whole prompt
        if args.json:
            _write(json.dumps({"prompt": prompt, "completion": completion_text(text, healed), "healed": healed,
                               "stats": done.stats, "engine": engine.describe()}) + "\n")
        elif stream is not None:
            _write(stream.finish(text) + "\n")
        else:
            _write(prompt + completion_text(text, healed) + "\n")
    except BrokenPipeError:  # the reader left (`| head`): the trace is still written, then it ends as a closed pipe
        if trace_path:
            try:
                try:
                    keep_trace(finished=True)
                except KeyboardInterrupt:  # a pipeline's Ctrl-C before the signals were held: written all the same
                    keep_trace(finished=True)
                    raise
            except ValueError as error:  # said; the closed pipe still ends it (exit 141, nothing failing at exit)
                print(f"twotower generate: error: {error}", file=sys.stderr)
        raise
    if not args.json:
        print("---", file=sys.stderr)
    budget_note = last_block_note(args, engine.model.config, done.stats.get("new_tokens"))
    if budget_note:  # beside the tokens_per_pass it explains
        print(budget_note, file=sys.stderr)
    if not args.json:
        print(format_footer({**done.stats, **ran_on(engine.describe())}), file=sys.stderr)
    if trace_path:  # after the completion is out: a trace that cannot be written loses nothing else
        save_trace()
    return 0


def _write(text: str) -> None:
    """Text on stdout at once (a pipe's buffer would hold a streamed completion until the end). Any failure of
    stdout (a reader gone, a full disk) is a BrokenPipeError, which keeps the trace (interrupts.stdout_error)."""
    if text and sys.stdout is not None:  # stdout closed (`>&-`): nothing is written, as print() does
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except OSError as exc:
            raise stdout_error(exc) from None


def ran_on(info: dict) -> dict:
    """What the footer's speeds were measured on (Engine.describe): the device and dtype, the denoiser's only
    where they differ from the context tower's (--den-dtype, --den-device); compiled when it was."""
    where = {"device": info["ctx_device"], "dtype": info["dtype"]}
    if info["den_device"] != info["ctx_device"]:
        where["den_device"] = info["den_device"]
    if info["den_dtype"] != info["dtype"]:
        where["den_dtype"] = info["den_dtype"]
    if info.get("compiled"):
        where["compiled"] = True
    return where
