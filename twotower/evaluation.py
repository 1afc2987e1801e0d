"""`twotower eval`: quality per task on the held-out test split, for every decoding mode, and its
retention against AR (mode score / AR score), laid out like the release's table.

Tasks (greedy decoding, outputs cut after EOS):
  next_line_exact_match / next_line_edit_similarity  prompt = a test file up to a line break, target =
      the next line (a non-blank one); the completion is cut at its first newline; both stripped of
      trailing whitespace (`metrics.exact_match`, `metrics.edit_similarity`).
  syntax_ok  prompt = a file prefix that ends at a line break at top level and compiles on its own; the
      continuation (64 tokens) is judged by `metrics.syntax_ok`, identically for every mode. The true
      file continuation under the same rule is reported as a reference (the check's ceiling).
Diagnostics over every generation of the run (not tasks, no retention): agreement of the mode's tokens
with AR's (`metrics.token_agreement`) and the AR tower's mean log-likelihood of the mode's output.

The prompts come from twotower/eval_prompts.py. Everything here is importable (the model card, bench
--eval and the UI call `evaluate`).
"""

from __future__ import annotations

import functools
import importlib
import json
import platform
import sys
from pathlib import Path

from . import metrics
from .engine import MODES, normalise_mode
from .eval_prompts import CHARS_PER_TOKEN_BOUND, next_line_items, prompt_ids, split_note, syntax_items

MODE_ORDER = ("ar", "mock_ar", "diffusion", "speculative")  # AR first: every other mode is compared with it
TASKS = ("next_line", "syntax")
TASK_METRICS = {
    "next_line": ("next_line_exact_match", "next_line_edit_similarity"),
    "syntax": ("syntax_ok",),
}
METRIC_LABELS = {
    "next_line_exact_match": "next-line exact match",
    "next_line_edit_similarity": "next-line edit similarity",
    "syntax_ok": "syntax-error-free continuations",
}


# ------------------------------------------------------------------------------------------------
# modes and generation
def speculative_unavailable() -> str | None:
    """None when speculative decoding can run, else why not (reported, never raised)."""
    try:
        module = importlib.import_module("spec_decode")
    except Exception as exc:  # a half-written spec_decode must not take the other modes down with it
        return f"speculative mode skipped: spec_decode cannot be imported ({type(exc).__name__}: {exc})"
    if not hasattr(module, "iter_speculative"):
        return "speculative mode skipped: spec_decode has no iter_speculative yet"
    return None


def resolve_modes(modes) -> tuple[list[str], dict[str, str]]:
    """Normalised modes in MODE_ORDER with AR always included, and {mode: reason} for those skipped."""
    if isinstance(modes, str):
        modes = [m for m in modes.split(",") if m.strip()]
    if not modes:  # "--modes ," would otherwise run AR alone, as if that had been asked for
        raise ValueError(f"no mode given; choose among {', '.join(MODES)}")
    wanted = {normalise_mode(m) for m in modes} | {"ar"}
    skipped = {}
    if "speculative" in wanted and (reason := speculative_unavailable()):
        skipped["speculative"] = reason
        wanted.discard("speculative")
    return [m for m in MODE_ORDER if m in wanted], skipped


def resolved_settings(engine, gamma=None, block_size=None, steps_per_block=None, draft_steps=None,
                      min_draft_confidence=None, anchor_first=False) -> dict:
    """The diffusion / speculative settings actually used (config defaults filled in), checked early."""
    from .validation import check_block_size, check_flag, check_fraction, check_gamma, check_steps

    cfg = engine.model.config
    block_size = check_block_size(cfg.default_block_size if block_size is None else block_size)
    steps = check_steps("steps per block", cfg.default_steps_per_block if steps_per_block is None else steps_per_block)
    return {
        "gamma": check_gamma(cfg.default_gamma if gamma is None else gamma),
        "block_size": block_size,
        # what runs: a step commits one token at the least, so a block never takes more than S (a report of S = 4
        # at 64 steps counted 2 passes a block; the sweep records them so too)
        "steps_per_block": min(steps, block_size),
        "draft_steps": check_steps("draft steps", cfg.default_draft_steps if draft_steps is None else draft_steps),
        "min_draft_confidence": check_fraction("--min-draft-confidence", cfg.default_min_draft_confidence
                                               if min_draft_confidence is None else min_draft_confidence),
        # diffusion: each block's first token from the context tower
        "anchor_first": check_flag("anchor_first", anchor_first),
    }


def steps_note(asked, settings: dict) -> str | None:
    """A note for --steps above S, which bench and eval record as the S steps a block takes at most."""
    if asked is None or asked <= settings["steps_per_block"]:
        return None
    return (f"note: --steps {asked} is above S = {settings['block_size']}: a block takes at most S steps, and the "
            f"report records {settings['steps_per_block']}")


def greedy_tokens(engine, mode: str, ids, max_new_tokens: int, settings: dict) -> tuple[list[int], dict]:
    """One greedy generation, cut after EOS (what a user sees): its token ids and the sampler's stats."""
    from .decoding import drain  # here: the CLI parses its arguments before torch loads (twotower/__init__.py)

    result = drain(engine.stream(mode, ids, max_new_tokens=max_new_tokens, temperature=0.0, seed=0,
                                 stop_at_eos=True, **settings))
    return list(result.new_tokens[0]), result.stats


def pass_totals(stats: list[dict]) -> dict:
    """Pass counts summed over a mode's generations: tokens per denoiser pass (the issue's "≥ 4 tokens per
    pass", here over every eval prompt rather than the bench's few) and, for speculative, the mean acceptance
    length, both as ratios of totals (vLLM's definition), not means of per-generation ratios."""
    tokens, nfe = sum(s["new_tokens"] for s in stats), sum(s["nfe"] for s in stats)
    out = {"new_tokens": tokens, "nfe": nfe, "tokens_per_pass": tokens / nfe if nfe else None}
    rounds = sum(s.get("rounds") or 0 for s in stats)
    if rounds:
        out["mean_acceptance_length"] = 1 + sum(s["accepted"] for s in stats) / rounds
    return out


def ar_mean_loglik(model, prompt, continuation) -> float | None:
    """Mean log-probability the AR (context) tower gives each token of `continuation` after `prompt`."""
    import torch

    continuation = list(continuation)
    if not continuation:
        return None
    with torch.inference_mode():
        ids = torch.tensor([list(prompt) + continuation])  # (1, P + C)
        logits = model.context_forward(ids, None, last_only=False)[0]  # (P + C, V), fp32
        logprobs = torch.log_softmax(logits[len(prompt) - 1 : -1], dim=-1)  # (C, V): position p predicts p + 1
        target = torch.tensor(continuation, device=logprobs.device)[:, None]  # (C, 1)
        return logprobs.gather(-1, target).mean().item()


def score_item(engine, task: str, item: dict, modes, settings: dict, budget: dict, max_prompt_tokens: int,
               syntax_tokens: int) -> dict:
    """One prompt in every mode (AR first: the others are compared with it): per mode its task scores and
    diagnostics and the sampler's stats; for a syntax prompt the true continuation's verdict, for a
    next-line prompt each mode's first line. Plain Python values: a worker process returns it as is."""
    ids = prompt_ids(engine, item["prompt"], max_prompt_tokens)
    outputs, scores, stats, loglik_memo, first_lines = {}, {}, {}, {}, {}
    for mode in modes:
        tokens, stats[mode] = greedy_tokens(engine, mode, ids, budget[task], settings)
        outputs[mode] = tokens
        text = engine.decode(tokens)
        if task == "next_line":
            line = first_lines[mode] = metrics.first_line(text)
            mode_scores = {"next_line_exact_match": metrics.exact_match(line, item["target"]),
                           "next_line_edit_similarity": metrics.edit_similarity(line, item["target"])}
        else:
            # stopped at EOS: the file ends there, its last line whole (it was cut and never judged)
            ended = bool(tokens) and tokens[-1] == engine.eos_token_id
            mode_scores = {"syntax_ok": float(metrics.syntax_ok(item["prompt"], text, ended=ended))}
        mode_scores["agreement_with_ar"] = metrics.token_agreement(tokens, outputs["ar"])
        key = tuple(tokens)  # speculative (greedy) repeats AR's output: score it once
        if key not in loglik_memo:
            loglik_memo[key] = ar_mean_loglik(engine.model, ids, tokens)
        mode_scores["ar_mean_loglik"] = loglik_memo[key]
        scores[mode] = mode_scores
    record = {"scores": scores, "stats": stats}
    if task == "syntax":
        true_text = item["reference"][: syntax_tokens * CHARS_PER_TOKEN_BOUND]
        true_tokens = engine.tokenizer.encode(true_text)[:syntax_tokens]
        whole = len(item["reference"]) <= len(true_text) and len(true_tokens) < syntax_tokens  # the file's end
        record["reference_ok"] = float(metrics.syntax_ok(item["prompt"], engine.decode(true_tokens), ended=whole))
    else:
        record["completions"] = first_lines
    return record


# flags one task alone reads: (the task, the default); a value of their own for a task not run is noted
TASK_FLAGS = {"--next-line-tokens": ("next_line", 32), "--syntax-prompts": ("syntax", None),
              "--syntax-tokens": ("syntax", 64)}


def check_eval_inputs(tasks, n_next_line, n_syntax, next_line_tokens, syntax_tokens, max_prompt_tokens,
                      workers) -> list[str]:
    """The tasks (in TASKS' order) and counts an eval reads, checked; `twotower eval` calls it before the model
    loads (a release checkpoint is ~118 GiB to read before a bad count was refused)."""
    from .validation import check_int, check_size

    if isinstance(tasks, str):
        tasks = tasks.split(",")
    tasks = [t.strip() for t in tasks or () if t.strip()]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; choose among {', '.join(TASKS)}")
    if not tasks:
        raise ValueError(f"no task given; choose among {', '.join(TASKS)}")
    tasks = [t for t in TASKS if t in set(tasks)]
    counts = {"--n-prompts": n_next_line, "--next-line-tokens": next_line_tokens, "--max-prompt-tokens": max_prompt_tokens}
    if "syntax" in tasks:  # the syntax task's counts matter only when it runs
        counts.update({"--syntax-prompts": n_syntax, "--syntax-tokens": syntax_tokens})
    for name, value in counts.items():
        check_size(name, value)
    check_int("--workers", workers)
    return tasks


# ------------------------------------------------------------------------------------------------
def evaluate(engine, modes=MODE_ORDER, tasks=TASKS, n_next_line: int = 500, n_syntax: int = 100,
             gamma=None, block_size=None, steps_per_block=None, next_line_tokens: int = 32,
             syntax_tokens: int = 64, max_prompt_tokens: int = 512, seed: int = 0, progress=None,
             anchor_first: bool = False, workers: int = 1, engine_factory=None) -> dict:
    """Score every mode on the same prompts; returns a JSON-ready report (eval_report.format_markdown lays it out).

    progress(done, total) is called after each prompt's generations. workers > 1 scores the prompts in that
    many processes, each with its own engine from `engine_factory()` (picklable: a worker is spawned); the
    report is the one a single process gives, prompt for prompt (twotower/eval_workers.py).
    """
    modes, skipped = resolve_modes(modes)
    tasks = check_eval_inputs(tasks, n_next_line, n_syntax, next_line_tokens, syntax_tokens, max_prompt_tokens,
                              workers)
    if workers > 1 and engine_factory is None:
        raise ValueError("workers > 1 needs an engine_factory: each worker process loads its own engine")
    settings = resolved_settings(engine, gamma, block_size, steps_per_block, anchor_first=anchor_first)
    encode = engine.tokenizer.encode  # prompts end where the file's own tokens break (eval_prompts)
    items = {"next_line": next_line_items(n_next_line, seed, encode=encode) if "next_line" in tasks else [],
             "syntax": syntax_items(n_syntax, seed, encode=encode) if "syntax" in tasks else []}
    budget = {"next_line": next_line_tokens, "syntax": syntax_tokens}
    jobs = [(task, item) for task in tasks for item in items[task]]
    scoring = dict(modes=modes, settings=settings, budget=budget, max_prompt_tokens=max_prompt_tokens,
                   syntax_tokens=syntax_tokens)
    workers = min(workers, max(1, len(jobs)))  # a process per prompt at most: each one loads a whole engine
    if workers > 1:
        from .eval_workers import records_in_workers

        records = records_in_workers(engine_factory, workers, jobs, scoring)
    else:
        records = (score_item(engine, task, item, **scoring) for task, item in jobs)
    scored = []  # (task, item, record) in the jobs' order, whoever scored them: what an interrupt keeps
    try:
        for job, record in zip(jobs, records):
            scored.append((*job, record))  # one step: an interrupt never leaves a prompt half counted
            if progress is not None:
                progress(len(scored) * len(modes), len(jobs) * len(modes))
        interrupted = None
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the prompts scored in every mode are reported
        if not scored:
            raise
        interrupted = exc
    settings = {**settings, "next_line_tokens": next_line_tokens, "syntax_tokens": syntax_tokens,
                "max_prompt_tokens": max_prompt_tokens, "seed": seed, "temperature": 0.0}
    report = scored_report(engine.name, modes, skipped, settings, scored)
    if interrupted is not None:
        report["interrupted_after"] = f"{len(scored)} of {len(jobs)} prompts"
        raise EvalInterrupted(report, interrupted) from None
    return report


class EvalInterrupted(KeyboardInterrupt):
    """An eval stopped by Ctrl-C or SIGTERM after some prompts: `report`, as `evaluate` returns it, over the
    prompts scored in every mode (its "interrupted_after" says how many), and `signal`, the interrupt to end
    on once the report is out."""

    def __init__(self, report: dict, signal: KeyboardInterrupt):
        super().__init__(report["interrupted_after"])
        self.report, self.signal = report, signal


def scored_report(model_name: str, modes, skipped: dict, settings: dict, scored: list) -> dict:
    """The report over `scored` [(task, item, score_item's record)]: a task is in it when a prompt of it was
    scored (an interrupted eval may have reached none of the syntax prompts)."""
    tasks = [task for task in TASKS if any(t == task for t, _, _ in scored)]
    per_item = {mode: {k: [] for k in ("next_line_exact_match", "next_line_edit_similarity", "syntax_ok",
                                       "agreement_with_ar", "ar_mean_loglik")} for mode in modes}
    reference_ok, examples, stats_of = [], [], {mode: [] for mode in modes}
    for task, item, record in scored:
        for mode in modes:
            for name, value in record["scores"][mode].items():
                per_item[mode][name].append(value)
            stats_of[mode].append(record["stats"][mode])
        if task == "syntax":
            reference_ok.append(record["reference_ok"])
        elif len(examples) < 3:
            examples.append({"file": item["file"], "line": item["line"], "prompt_tail": item["prompt"][-160:],
                             "target": item["target"], "completions": record["completions"]})
    scores = {mode: {k: metrics.mean(v) for k, v in per_mode.items() if v} for mode, per_mode in per_item.items()}
    items_of = {task: [item for t, item, _ in scored if t == task] for task in tasks}
    return {
        "model": model_name,
        "settings": settings,
        "modes": modes,
        "skipped": skipped,
        "tasks": tasks,
        "n_prompts": {task: len(items_of[task]) for task in tasks},
        "files": {task: len({it["file"] for it in items_of[task]}) for task in tasks},
        # line breaks inside one of the file's tokens, skipped for the prompts above (eval_prompts)
        "passed_over": {task: sum(it.get("passed_over", 0) for it in items_of[task]) for task in tasks},
        "python": platform.python_version(),  # the corpus, so the prompts, is this interpreter's standard library
        "scores": scores,
        "reference": {"syntax_ok": metrics.mean(reference_ok)} if "syntax" in tasks else {},
        # prompts of one file are alike: the intervals resample files, not prompts (narrower than they are)
        "retention": retention_report(scores, tasks, per_item, {task: [it["file"] for it in items_of[task]]
                                                                for task in tasks}),
        "passes": {mode: pass_totals(stats_of[mode]) for mode in modes},
        "examples": examples,
    }


def retention_report(scores: dict, tasks, per_item: dict | None = None, clusters: dict | None = None) -> dict:
    """{mode: {"tasks": {metric: ratio | None}, "notes": {metric: why None}, "aggregate": mean, "ci": ...}} for
    non-AR modes; "ci" (95 % paired-bootstrap intervals, metrics.bootstrap_retention) when per-prompt scores
    are given; clusters ({task: each prompt's file}) resample whole files."""
    report = {}
    for mode, mode_scores in scores.items():
        if mode == "ar":
            continue
        ratios, notes = {}, {}
        for task in tasks:
            for name in TASK_METRICS[task]:
                ratios[name], note = metrics.retention(mode_scores.get(name), scores["ar"].get(name))
                if note:
                    notes[name] = note
        report[mode] = {"tasks": ratios, "notes": notes, "aggregate": metrics.aggregate_retention(ratios.values())}
        if per_item is not None:
            groups = {task: list(TASK_METRICS[task]) for task in tasks}
            ci = metrics.bootstrap_retention(per_item[mode], per_item["ar"], groups, clusters=clusters)
            report[mode]["ci"] = {**ci, "resampled": "files" if clusters else "prompts"}
    return report


# ------------------------------------------------------------------------------------------------
def add_arguments(parser) -> None:
    from .run_setup import add_engine_arguments, add_settings_arguments

    add_engine_arguments(parser)
    add_settings_arguments(parser)
    parser.add_argument("--modes", default=",".join(MODE_ORDER),
                        help=f"comma-separated modes among {', '.join(MODES)} (AR is always run: it is the baseline)")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated tasks among {', '.join(TASKS)}")
    parser.add_argument("--n-prompts", type=int, default=500, help="next-line prompts (default 500)")
    parser.add_argument("--syntax-prompts", type=int, default=TASK_FLAGS["--syntax-prompts"][1],
                        help="syntax prompts (default min(100, --n-prompts))")
    parser.add_argument("--next-line-tokens", type=int, default=TASK_FLAGS["--next-line-tokens"][1],
                        help="max new tokens for next-line completion")
    parser.add_argument("--syntax-tokens", type=int, default=TASK_FLAGS["--syntax-tokens"][1],
                        help="new tokens per syntax continuation")
    parser.add_argument("--max-prompt-tokens", type=int, default=512, help="keep each prompt's last N tokens")
    parser.add_argument("--seed", type=int, default=0, help="prompt selection seed")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of markdown")
    parser.add_argument("--out", default=None,
                        help="also write the report to this file: its JSON where the name ends in .json, else the "
                             "markdown table")
    parser.add_argument("--workers", type=int, default=1,
                        help="score the prompts in N processes, an engine each (0: one per core); same report")


def trained_on_python(model_dir) -> str | None:
    """The Python whose standard library the model was trained on (its training_info.json), or None: the test
    split is this interpreter's, and another version's files (or a file renamed between versions) may split
    otherwise, so the report says when the two differ."""
    from .path_checks import read_json

    if model_dir is None:
        return None
    try:
        return str(read_json(Path(model_dir) / "training_info.json")["corpus"]["python_version"])
    except (ValueError, KeyError, TypeError):  # none, damaged, or a record without its corpus
        return None


def main(args) -> int:
    from .eval_report import MARKDOWN_START, format_markdown
    from .eval_workers import resolve_workers
    from .engine import check_decoding_settings
    from .run_setup import (device_info, engine_from_args, loaded_model_dir, output_file, preset_note_once,
                            print_report, progress_bar, provenance, read_only, report_file, report_text)
    from .path_checks import write_text_file

    started = provenance(args)  # the commit the run starts from: edits made while it runs are not in it
    workers = resolve_workers(args.workers)
    out = output_file("--out", args.out, args, ("an eval report", report_file(MARKDOWN_START, "eval")))
    # mistyped modes, tasks, counts and settings are said before the model loads (evaluate checks them again)
    modes, _ = resolve_modes(args.modes)
    n_syntax = args.syntax_prompts if args.syntax_prompts is not None else min(100, args.n_prompts)
    tasks = check_eval_inputs(args.tasks, args.n_prompts, n_syntax, args.next_line_tokens, args.syntax_tokens,
                              args.max_prompt_tokens, workers)
    unread = [flag for flag, (task, default) in TASK_FLAGS.items()
              if task not in tasks and getattr(args, flag[2:].replace("-", "_")) != default]
    if unread:  # as bench says of its --eval flags
        task = "syntax" if "syntax" not in tasks else "next-line"
        print(f"note: {read_only(unread, f'with the {task} task')}: ignored", file=sys.stderr)
    check_decoding_settings(args.gamma, args.block_size, args.steps, cli=True)
    engine = engine_from_args(args)
    note = steps_note(args.steps, resolved_settings(engine, args.gamma, args.block_size, args.steps))
    if note and "diffusion" in modes:  # (no other mode reads --steps)
        print(note, file=sys.stderr)
    with progress_bar(0, "eval", "gen") as bar:
        say_preset = preset_note_once(args, bar)

        def progress(done, total):
            say_preset()
            bar.total = total
            bar.update(done - bar.n)

        stopped = None  # an interrupt after some prompts: their scores are reported and written, then it ends as one
        try:
            report = evaluate(engine, args.modes, [t.strip() for t in args.tasks.split(",")], args.n_prompts,
                              n_syntax, args.gamma, args.block_size, args.steps, args.next_line_tokens,
                              args.syntax_tokens, args.max_prompt_tokens, args.seed, progress, args.anchor_first,
                              workers, functools.partial(engine_from_args, args))
        except EvalInterrupted as exc:
            report, stopped = exc.report, exc
    report = {**device_info(engine), **started, **report}
    trained = trained_on_python(loaded_model_dir(args))
    if trained:
        report["trained_on_python"] = trained
    markdown = format_markdown(report)
    # first: a failed write loses nothing; a reader gone loses no file
    lost = print_report(json.dumps(report, indent=1) if args.json else markdown)
    if out is not None:  # a .json file gets the JSON (--json --out r.json wrote the markdown table there)
        write_text_file("--out", out, report_text(report, markdown, out))
    if stopped is None:  # more prompts asked than the split holds: all of them ran, which the count alone hid
        for task, flag, asked in (("next_line", "--n-prompts", args.n_prompts), ("syntax", "--syntax-prompts", n_syntax)):
            held = report.get("n_prompts", {}).get(task)
            note = None if held is None else split_note(flag, asked, held, task.replace("_", "-") + " ")
            if note:
                print(note, file=sys.stderr)
    if stopped is not None:
        raise stopped.signal
    if lost is not None:
        raise lost
    return 0
