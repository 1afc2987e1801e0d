"""`twotower bench`: throughput of AR, mock-AR, diffusion and speculative decoding on the same prompts.

Method: greedy, a fixed `max_new_tokens` with EOS ignored (every mode generates the same number of
tokens), one untimed warm-up per mode and batch size, then `--repeats` rounds in which the modes take
turns over every prompt. A round's tokens/s is its tokens over its seconds; the report gives the median
round. Events are drained without rendering; only the drain is timed, with the devices synchronised
before each clock read. Batch 1 is what an interactive user feels; `--batch-size N` is the throughput
number (the release's 2.42x is a batch figure); speculative decoding is batch-1 only.

`timed_generation` and `summarise` serve sweep and the app too; the engine set-up is twotower/run_setup.py.
"""

from __future__ import annotations

import functools
import json
import math
import sys
from time import perf_counter

from . import metrics
from .engine import MODES
from .run_setup import (add_engine_arguments, add_settings_arguments, device_info, engine_from_args,
                        output_file, preset_note_once, print_report, progress_bar, provenance, read_only,
                        report_file, report_text)
from .validation import check_fraction, check_size
from .path_checks import write_text_file
# the report's words live in bench_report.py; these names stay importable from here (scripts/write_benchmarks.py)
from .bench_report import (MARKDOWN_START, SPECULATIVE_BATCH_NOTE, _cut, _num, _passes, _share,  # noqa: F401
                           format_markdown, ratio_range, round_ratios)

SPECULATIVE_STATS = ("mean_acceptance_length", "rounds", "accepted", "draft_s", "verify_s", "acceptance_by_position",
                     "rollbacks")
RECORD_FIELDS = ("tokens_per_s", "ratio_vs_ar", "nfe", "context_passes", "tokens_per_pass", "tokens_per_context_pass",
                 "time_to_first_token_s", "new_tokens", "generations", "tokens_per_s_repeats", "identical_to_ar")


def synchronize(engine) -> None:
    """Wait for queued GPU work, so that a clock read after it counts the work."""
    import torch

    for dev in {engine.model.ctx_device, engine.model.den_device}:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)


def mean_ms(fn, n: int = 30, warmup: int = 3) -> float:
    """Mean milliseconds of `fn()` over n calls after `warmup` untimed ones (CPU; the pass-cost scripts in
    benchmarks/ time single model passes with it)."""
    for _ in range(warmup):
        fn()
    start = perf_counter()
    for _ in range(n):
        fn()
    return (perf_counter() - start) / n * 1000


def timed_generation(engine, mode: str, ids, max_new_tokens: int, settings: dict) -> dict:
    """One greedy generation with EOS ignored, timed around draining its events (nothing rendered).

    ids: a list of token ids (batch 1) or a list of equal-length lists (a batch).
    """
    synchronize(engine)
    start, first, done = perf_counter(), None, None
    for event in engine.stream(mode, ids, max_new_tokens=max_new_tokens, temperature=0.0, seed=0,
                               stop_at_eos=False, **settings):
        if first is None and event.generated > 0:
            synchronize(engine)
            first = perf_counter() - start
        if event.kind == "done":
            done = event
    synchronize(engine)
    seconds = perf_counter() - start
    rows = done.info["new_tokens"]
    record = {"rows": rows, "new_tokens": len(rows[0]), "tokens": sum(len(r) for r in rows), "nfe": done.stats["nfe"],
              "context_passes": done.stats["context_passes"], "seconds": seconds, "ttft_s": first}
    if "acceptance_by_position" in done.stats:  # speculative: the sampler's own clocks and acceptance counts
        record.update({key: done.stats[key] for key in SPECULATIVE_STATS})
    return record


# ------------------------------------------------------------------------------------------------
def make_batches(prompts: list[list[int]], batch_size: int) -> list[list[list[int]]]:
    """ceil(n / B) batches of B rows, cycling through the prompts when there are fewer than B; each row
    keeps the batch's shortest length of tokens, cut from the left (a batch needs equal lengths)."""
    batches = []
    for k in range(math.ceil(len(prompts) / batch_size)):
        rows = [prompts[(k * batch_size + j) % len(prompts)] for j in range(batch_size)]
        length = min(len(r) for r in rows)
        batches.append([r[-length:] for r in rows])
    return batches


def summarise(rounds: list[list[dict]]) -> dict:
    """Median over rounds of tokens/s and time to first token; per-generation means of the counts.

    tokens_per_pass is one sequence's new tokens per denoiser pass (a batched pass advances every row).
    """
    generations = [g for rnd in rounds for g in rnd]
    new_tokens = metrics.mean(g["new_tokens"] for g in generations)
    nfe = metrics.mean(g["nfe"] for g in generations)
    context_passes = metrics.mean(g["context_passes"] for g in generations)
    per_round = [sum(g["tokens"] for g in rnd) / sum(g["seconds"] for g in rnd) for rnd in rounds]
    return {
        "status": "ok",
        "tokens_per_s": metrics.median(per_round),
        "ratio_vs_ar": None,  # filled once AR is known
        "nfe": nfe,
        "context_passes": context_passes,
        "tokens_per_pass": new_tokens / nfe if nfe else None,
        "tokens_per_context_pass": new_tokens / context_passes if context_passes else None,
        "time_to_first_token_s": metrics.median(metrics.mean(g["ttft_s"] for g in rnd) for rnd in rounds),
        "new_tokens": new_tokens,
        "generations": len(generations),
        "tokens_per_s_repeats": per_round,
        # after the first token, per token and row: AR's is its step cost, the unit of break_even below
        "decode_ms_per_token": metrics.median(decode_ms_per_token(rnd) for rnd in rounds),
        **(speculative_summary(rounds) if "acceptance_by_position" in generations[0]
           else {"mean_acceptance_length": None}),
    }


def decode_ms_per_token(generations: list[dict]) -> float | None:
    """Milliseconds per token after each row's first one (prefill and first step excluded)."""
    tokens = sum(g["tokens"] - len(g["rows"]) for g in generations)
    return 1000 * sum(g["seconds"] - g["ttft_s"] for g in generations) / tokens if tokens > 0 else None


def speculative_summary(rounds: list[list[dict]]) -> dict:
    """vLLM's mean acceptance length (1 + accepted / rounds, over every round of every generation), the sampler's
    milliseconds per verification round spent drafting and verifying (median over repeats), and the
    acceptance by draft position over the prompts (the first repeat: greedy repeats are identical)."""
    from spec_decode.metrics import merge_by_position  # here: bench runs without spec_decode too

    def per_round_ms(key):  # None where no round ran (a budget of 2 tokens: the prefill's and the last): "0.0 ms
        # a round" and a break-even length of 0.00 were printed for rounds that never happened
        if not any(g["rounds"] for rnd in rounds for g in rnd):
            return None
        return metrics.median(1000 * sum(g[key] for g in rnd) / max(1, sum(g["rounds"] for g in rnd)) for rnd in rounds)

    # totals, as vLLM (and spec_decode.metrics, and eval) define it: averaging each generation's own ratio
    # weighed a generation of 2 rounds as much as one of 20 (the tables read 3.83 where the rounds give 3.79)
    generations = [g for rnd in rounds for g in rnd]
    accepted, n_rounds = sum(g["accepted"] for g in generations), sum(g["rounds"] for g in generations)
    return {"mean_acceptance_length": 1 + accepted / n_rounds if n_rounds else None,
            "acceptance_rate": accepted / sum(row["drafted"] for g in generations for row in g["acceptance_by_position"])
            if n_rounds else None,
            "draft_ms_per_round": per_round_ms("draft_s"), "verify_ms_per_round": per_round_ms("verify_s"),
            "acceptance_by_position": merge_by_position([g["acceptance_by_position"] for g in rounds[0]]),
            "rollbacks": {how: sum(g["rollbacks"].get(how, 0) for g in rounds[0])  # rounds by rollback path
                          for how in sorted({h for g in rounds[0] for h in g["rollbacks"]})}}


def break_even_acceptance_length(spec: dict, ar: dict) -> float | None:
    """The mean acceptance length at which speculative decoding matches AR: a round's drafting and
    verifying, in units of AR's per-token decode step. Above it speculative is faster (prefill aside)."""
    step = ar.get("decode_ms_per_token")
    if not step or spec.get("draft_ms_per_round") is None:
        return None
    return (spec["draft_ms_per_round"] + spec["verify_ms_per_round"]) / step


def identical_share(rounds: list[list[dict]], ar_rounds: list[list[dict]]) -> float:
    """Share of a mode's generations whose new tokens equal AR's on the same input in the same round.

    Greedy speculative decoding must score 1.0 (its output is AR's); for the other modes it says how
    often a whole generation comes out as AR's would."""
    pairs = [(g["rows"], a["rows"]) for rnd, ar_rnd in zip(rounds, ar_rounds) for g, a in zip(rnd, ar_rnd, strict=True)]
    return sum(rows == ar_rows for rows, ar_rows in pairs) / len(pairs)


def not_measured(status: str, note: str) -> dict:
    return {"status": status, "note": note, **{k: None for k in RECORD_FIELDS}}


def run_bench(engine, prompts: list[list[int]], modes, batch_size: int, repeats: int, max_new_tokens: int,
              settings: dict, progress=None) -> dict[str, dict]:
    """{mode: batch-1 record + "batch": record at batch_size (None when it is 1)}; progress(done, total)."""
    sizes = [1] if batch_size == 1 else [1, batch_size]
    plans = {}
    for size in sizes:
        inputs = [b[0] if size == 1 else b for b in make_batches(prompts, size)]
        plans[size] = (inputs, [m for m in modes if size == 1 or m != "speculative"])
    total = sum(len(inputs) * len(ms) * repeats for inputs, ms in plans.values())
    done, results, interrupted = 0, {}, None
    for size, (inputs, size_modes) in plans.items():
        rounds = {mode: [] for mode in size_modes}
        try:
            # warm-up: kernels, allocator, caches; a compiled model on every input, so that no compile (a new
            # shape or branch) lands in a timed round
            for mode in size_modes:
                for ids in inputs if engine.model.is_compiled_for_decoding else inputs[:1]:
                    timed_generation(engine, mode, ids, max_new_tokens, settings)
            for _ in range(repeats):
                for mode in size_modes:  # modes take turns, so drift in machine load hits them alike
                    rounds[mode].append([])
                    for ids in inputs:
                        rounds[mode][-1].append(timed_generation(engine, mode, ids, max_new_tokens, settings))
                        done += 1
                        if progress is not None:
                            progress(done, total)
        except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the rounds every mode finished are reported
            whole = min(sum(len(r) == len(inputs) for r in rounds[mode]) for mode in size_modes)
            if whole == 0 and size == 1:
                raise
            interrupted = exc
            rounds = {mode: rounds[mode][:whole] for mode in size_modes}
            if whole == 0:  # during the batch's rounds: batch 1 is whole, the batch is not measured
                break
        records = {mode: summarise(rounds[mode]) for mode in size_modes}
        for mode, record in records.items():
            record["ratio_vs_ar"] = metrics.ratio(record["tokens_per_s"], records["ar"]["tokens_per_s"])
            record["ratio_vs_ar_rounds"] = round_ratios(record, records["ar"])
            record["identical_to_ar"] = None if mode == "ar" else identical_share(rounds[mode], rounds["ar"])
        if "speculative" in records:
            records["speculative"]["break_even_acceptance_length"] = break_even_acceptance_length(
                records["speculative"], records["ar"])
        results[size] = records
        if interrupted is not None:
            break
    out = {}
    for mode in modes:
        record = dict(results[1][mode])
        if batch_size > 1 and batch_size not in results:
            record["batch"] = not_measured("interrupted", "interrupted before a whole round at this batch")
        elif batch_size > 1:
            record["batch"] = results[batch_size].get(mode) or not_measured("n/a", SPECULATIVE_BATCH_NOTE)
        else:
            record["batch"] = None
        out[mode] = record
    if interrupted is not None:
        raise BenchInterrupted(out, f"{whole} of {repeats} round(s) at batch {size}", interrupted)
    return out


class BenchInterrupted(KeyboardInterrupt):
    """An interrupted bench with whole rounds to report: `records` as run_bench returns them (from the rounds
    every mode finished), `after` saying how far it got, `signal` the interrupt to end on once they are out."""

    def __init__(self, records: dict, after: str, signal: KeyboardInterrupt):
        super().__init__(after)
        self.records, self.after, self.signal = records, after, signal


EVAL_DEFAULTS = {"eval_prompts": 100, "workers": 1}  # flags read only with --eval; a value of its own is noted


def add_arguments(parser) -> None:
    from .evaluation import MODE_ORDER

    add_engine_arguments(parser)
    add_settings_arguments(parser)
    parser.add_argument("--modes", default=",".join(MODE_ORDER),
                        help=f"comma-separated modes among {', '.join(MODES)} (AR always runs: it is the baseline)")
    parser.add_argument("--prompts", default=None, help="file of prompts: one per line, or JSONL (.jsonl)")
    parser.add_argument("--n-prompts", type=int, default=16, help="prompts from the test split (ignored with --prompts)"
                        " (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="prompt selection seed")
    parser.add_argument("--max-prompt-tokens", type=int, default=512, help="keep each prompt's last N tokens")
    parser.add_argument("--max-new-tokens", type=int, default=128,
                        help="new tokens per prompt, EOS ignored while timed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds; the median is reported (default: %(default)s)")
    # --batch as `twotower plan` spells the same number (it once reached here as an abbreviation)
    parser.add_argument("--batch-size", "--batch", type=int, default=8, help="the larger batch measured besides batch 1 (default: %(default)s)")
    parser.add_argument("--draft-steps", type=int, default=None,
                        help="speculative: denoiser passes per drafted block (default: the model's)")
    parser.add_argument("--adaptive", action="store_true",
                        help="speculative: adapt the drafted length to the recent acceptance lengths")
    parser.add_argument("--min-draft-confidence", type=float, default=None,
                        help="speculative: propose only the draft prefix whose confidence reaches this (default: the model's)")
    parser.add_argument("--snapshot-rollback", action="store_true",
                        help="speculative: roll back by snapshot (and re-read the kept tokens) instead of from the "
                             "verify pass's per-position states: the reference twin, for comparison")
    parser.add_argument("--eval", action="store_true", help="also measure quality retention of diffusion vs AR")
    parser.add_argument("--eval-prompts", type=int, default=EVAL_DEFAULTS["eval_prompts"],
                        help="next-line prompts for --eval (syntax: a quarter)")
    parser.add_argument("--workers", type=int, default=EVAL_DEFAULTS["workers"],
                        help="--eval: score its prompts in N processes, an engine each (0: one per core); same scores")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a markdown table")
    parser.add_argument("--out", default=None,
                        help="also write the report to this file: its JSON where the name ends in .json, else the "
                             "markdown table")


def unread_mode_flags(args, modes) -> str:
    """The mode flags given that no mode of the run reads ("" when every one is read): the speculative ones without
    speculative, --anchor-first without diffusion (timed, or --eval's)."""
    spec = [flag for flag, given in (("--draft-steps", args.draft_steps is not None), ("--adaptive", args.adaptive),
                                     ("--min-draft-confidence", args.min_draft_confidence is not None),
                                     ("--snapshot-rollback", args.snapshot_rollback)) if given]
    parts = [read_only(spec, "by speculative")] if spec and "speculative" not in modes else []
    if args.anchor_first and "diffusion" not in modes and not args.eval:
        parts.append("--anchor-first is read only by diffusion")
    return "; ".join(parts)


def main(args) -> int:
    from .eval_prompts import held_out_prompts_said, load_prompt_file, prompt_ids
    from .eval_workers import resolve_workers
    from .engine import check_decoding_settings
    from .evaluation import evaluate, resolve_modes, resolved_settings, steps_note

    for name in ("n_prompts", "max_prompt_tokens", "max_new_tokens", "repeats", "batch_size", "eval_prompts"):
        check_size("--" + name.replace("_", "-"), getattr(args, name))
    workers = resolve_workers(args.workers)
    unread = [f"--{name.replace('_', '-')}" for name, default in EVAL_DEFAULTS.items()
              if getattr(args, name) != default and not args.eval]
    if unread:  # as generate and train say of flags they do not read
        print(f"note: {read_only(unread, 'with --eval')}: ignored", file=sys.stderr)
    out = output_file("--out", args.out, args, ("a bench report", report_file(MARKDOWN_START, "bench")))
    modes, skipped = resolve_modes(args.modes)  # the modes and a prompt file are checked before the model loads
    check_decoding_settings(args.gamma, args.block_size, args.steps, args.draft_steps, cli=True)  # checked again later
    unread = unread_mode_flags(args, modes)
    if unread:  # as generate says of another mode's flags (the header said "anchored" of a run with no diffusion)
        print(f"note: {unread}: ignored", file=sys.stderr)
        args.anchor_first = args.anchor_first and ("diffusion" in modes or args.eval)
    if args.min_draft_confidence is not None:
        check_fraction("--min-draft-confidence", args.min_draft_confidence)
    if args.prompts is not None:  # "" is refused by name, not taken as "no file"
        texts, source = load_prompt_file(args.prompts), str(args.prompts)
    else:
        texts = None  # the test split's, where the model's tokenizer breaks the file: read once it has loaded
    started = provenance(args)  # the commit the run starts from: edits made while it runs are not in it
    engine = engine_from_args(args)
    if texts is None:
        texts, source = held_out_prompts_said(engine.tokenizer.encode, args.n_prompts, args.seed)
    settings = resolved_settings(engine, args.gamma, args.block_size, args.steps, args.draft_steps,
                                 args.min_draft_confidence, args.anchor_first)
    note = steps_note(args.steps, settings)
    if note and ("diffusion" in modes or args.eval):  # the report says what ran (no other mode reads --steps)
        print(note, file=sys.stderr)
    settings["adaptive"] = bool(args.adaptive)
    settings["snapshot_rollback"] = bool(args.snapshot_rollback)
    prompts = [prompt_ids(engine, text, args.max_prompt_tokens) for text in texts]
    with progress_bar(0, "bench", "gen") as bar:
        say_preset = preset_note_once(args, bar)

        def progress(done, total):
            say_preset()
            bar.total = total
            bar.update(done - bar.n)

        # an interrupt after whole rounds (or in --eval): what was measured is reported and written, then the
        # command ends as the interrupt does (SIGTERM's Terminated included: the exit code says which)
        signal, after = None, None
        try:
            records = run_bench(engine, prompts, modes, args.batch_size, args.repeats, args.max_new_tokens, settings,
                                progress)
        except BenchInterrupted as exc:
            records, signal, after = exc.records, exc.signal, exc.after
    for mode, reason in skipped.items():
        records[mode] = {**not_measured("skipped", reason), "batch": not_measured("skipped", reason) if args.batch_size > 1 else None}
    lengths = [len(p) for p in prompts]
    report = {
        **device_info(engine), **started, "model": engine.name, "model_info": engine.describe(), **settings,
        "batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens, "stop_at_eos": False, "temperature": 0.0,
        "repeats": args.repeats, "prompt_source": source, "n_prompts": len(prompts),
        "prompt_tokens": {"min": min(lengths), "max": max(lengths), "mean": sum(lengths) / len(lengths)},
        "modes": {m: records[m] for m in ("ar", "mock_ar", "diffusion", "speculative") if m in records},
    }
    if after is not None:
        report["interrupted_after"] = after + ("; the quality eval (--eval) did not run" if args.eval else "")
    quality = None
    if args.eval and signal is None:
        try:
            quality = evaluate(engine, ("ar", "diffusion"), n_next_line=args.eval_prompts,
                               n_syntax=max(1, args.eval_prompts // 4), max_prompt_tokens=args.max_prompt_tokens,
                               seed=args.seed, workers=workers,
                               engine_factory=functools.partial(engine_from_args, args),
                               **{k: settings[k] for k in ("gamma", "block_size", "steps_per_block", "anchor_first")})
        except KeyboardInterrupt as exc:  # in the eval: every round is reported, with the prompts the eval scored
            # (EvalInterrupted, which carries the signal) or none
            quality, signal = getattr(exc, "report", None), getattr(exc, "signal", exc)
            report["eval_interrupted_after"] = quality["interrupted_after"] if quality else "no prompt"
    if quality is not None:
        report["retention"] = quality["retention"]["diffusion"]["tasks"]
        report["retention_aggregate"] = quality["retention"]["diffusion"]["aggregate"]
        report["retention_notes"] = quality["retention"]["diffusion"]["notes"]
        report["eval_scores"] = {m: quality["scores"][m] for m in ("ar", "diffusion")}
        report["eval_n_prompts"] = quality["n_prompts"]
        report["retention_ci"] = quality["retention"]["diffusion"].get("ci")  # its intervals, over files
    markdown = format_markdown(report)
    # first: a failed write loses nothing; a reader gone loses no file
    lost = print_report(json.dumps(report, indent=1) if args.json else markdown)
    if out is not None:  # a .json file gets the JSON (--json --out r.json wrote the markdown table there)
        write_text_file("--out", out, report_text(report, markdown, out))
    if signal is not None:
        raise signal
    if lost is not None:
        raise lost
    return 0
