"""`twotower sweep`: a γ × S (× steps per block) grid of diffusion decoding, each point's throughput
against AR (timed just before that point, in the same run) and its quality: agreement of its greedy tokens with AR's
and the AR tower's mean log-likelihood of its output. The Pareto frontier (maximising both the
throughput ratio and the agreement) is marked. Writes sweep.csv and an interactive sweep.html.

`run_sweep` is the API behind the web app's Sweep panel; timing follows `twotower bench` (greedy, EOS
ignored during the timed run, outputs cut after EOS for quality, only the drain timed).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json

from . import metrics
from .validation import NEW_TOKENS_LIMIT, check_block_size, check_gamma, check_int, check_size, check_steps
from .path_checks import check_not_a_file, make_output_dir, write_text_file

CSV_FIELDS = ("gamma", "block_size", "steps_per_block", "tokens_per_s", "ar_tokens_per_s", "ratio_vs_ar", "nfe",
              "tokens_per_pass", "agreement", "ar_mean_loglik", "ar_self_loglik", "pareto")
FRONT_X, FRONT_Y = "ratio_vs_ar", "agreement"
# short headers for the app's table (its last columns were behind a horizontal scroll); the CSV keeps the names
TABLE_HEADERS = {"gamma": "γ", "block_size": "S", "steps_per_block": "steps", "tokens_per_s": "tokens/s",
                 "ar_tokens_per_s": "AR tokens/s", "ratio_vs_ar": "× AR", "nfe": "NFE",
                 "tokens_per_pass": "tokens / pass", "agreement": "agreement (0–1)", "ar_mean_loglik": "AR log-lik",
                 "ar_self_loglik": "AR's own log-lik", "pareto": "Pareto"}  # format_markdown's words


def parse_list(text: str, kind, flag: str) -> list:
    """'0.5,0.8' -> [0.5, 0.8]; a clear error for anything else."""
    parts = [part.strip() for part in str(text).split(",")]
    if parts[-1] == "" and len(parts) > 1:  # "0.5, 0.8," : a trailing comma is no value left out
        parts.pop()
    if "" in parts and any(parts):  # "0.5,,0.7" ran 0.5 and 0.7: the value between was lost without a word
        raise ValueError(f"{flag} has an empty item (value {parts.index('') + 1} of {str(text).strip()!r}): "
                         "give a value between every two commas")
    parts = [part for part in parts if part]
    values = []
    for part in parts:
        try:
            if "_" in part:  # int() reads "1_0" as 10, Python's digit grouping: more likely a typo than a 10
                raise ValueError(part)
            values.append(kind(part))
        except ValueError:  # the value at fault, not the whole list (3,000 values made a 12,000-character message)
            shown = part if len(part) <= 40 else part[:37] + "..."
            raise ValueError(f"{flag} expects comma-separated {kind.__name__}s: {shown!r} is not one") from None
    if not values:
        raise ValueError(f"{flag} is empty")
    return values


def sweep_grid(gammas, block_sizes, steps=None, cli: bool = False) -> list[tuple[float, int, int]]:
    """(γ, S, steps per block) for every combination; steps None means steps = S (at worst one token per step),
    and steps above S mean S. cli: a refusal starts with the flag typed, as bench's do ("--gammas: ...")."""
    def each(flag, values, check):
        try:
            return [check(value) for value in values]
        except ValueError as exc:
            raise ValueError(f"{flag}: {exc}" if cli else str(exc)) from None

    gammas = each("--gammas", gammas, check_gamma)
    block_sizes = each("--block-sizes", block_sizes, check_block_size)
    if steps is not None and not isinstance(steps, (list, tuple)):
        steps = [steps]
    steps = None if steps is None else each("--steps", steps, lambda k: check_steps("steps per block", k))
    if not gammas or not block_sizes or steps == []:
        raise ValueError("the sweep grid is empty: give at least one γ and one block size")
    # a value given twice is one point, not two timings of it; steps above S are recorded as S, what runs (every
    # pass commits at least one of the block's S positions, so a block never takes more than S passes)
    return list(dict.fromkeys((g, s, min(k, s)) for s in block_sizes for k in (steps or [s]) for g in gammas))


def run_sweep(engine, prompts, gammas, block_sizes, steps=None, max_new_tokens: int = 64, progress=None,
              repeats: int = 1, max_prompt_tokens: int = 512, anchor_first: bool = False,
              heal: bool = False) -> list[dict]:
    """Measure every grid point over `prompts` (texts, or lists of token ids); returns one dict per point
    with the CSV_FIELDS. progress(i, n, point) is called after point i of n (1-based); a point's
    `pareto` flag is final only in the returned list (the front needs every point). anchor_first: every
    point runs anchored diffusion (each block's first token from the context tower). heal: each text prompt's
    last token healed (twotower/token_healing.py), in AR and diffusion alike, as the app's Sweep does for its
    typed prompts; off, the prompts' tokens are read as they are (the CLI's, as bench and eval)."""
    n, points = len(sweep_grid(gammas, block_sizes, steps)), []
    for point in iter_sweep(engine, prompts, gammas, block_sizes, steps, max_new_tokens, repeats, max_prompt_tokens,
                            anchor_first, heal=heal):
        points.append(point)
        if progress is not None:
            progress(len(points), n, point)
    return points


def iter_sweep(engine, prompts, gammas, block_sizes, steps=None, max_new_tokens: int = 64, repeats: int = 1,
               max_prompt_tokens: int = 512, anchor_first: bool = False, ticks: bool = False, heal: bool = False):
    """run_sweep's points one at a time, as each is measured (the UI draws them and can stop between two);
    when the generator is exhausted, every point it yielded has its final `pareto` flag. ticks: also yield None
    before every timed generation (a point is AR and diffusion on every prompt, each `repeats` times: a minute
    or more), where the app's Sweep hands control back to Gradio, which can then close the run of a page that
    went away."""
    from .bench import summarise, timed_generation
    from .eval_prompts import prompt_ids
    from .evaluation import ar_mean_loglik
    from .token_healing import stream_keywords

    max_new_tokens = check_int("max_new_tokens", max_new_tokens, maximum=NEW_TOKENS_LIMIT)
    repeats = check_int("repeats", repeats)
    grid = sweep_grid(gammas, block_sizes, steps)
    if isinstance(prompts, str):
        prompts = [prompts]
    if not prompts:
        raise ValueError("the sweep needs at least one prompt")
    ids = [p if isinstance(p, (list, tuple)) else prompt_ids(engine, p, max_prompt_tokens) for p in prompts]
    # healed: each text prompt's ids less its last token, and the first token's choices (keyed by position: two
    # prompts may read the same ids); the ids are the text's last tokens, whose end is all healing reads
    healings = [engine.heal(p, x) if heal and isinstance(p, str) else None for p, x in zip(prompts, ids)]
    ids = [x if h is None else h.ids for x, h in zip(ids, healings)]
    eos = engine.eos_token_id

    def timed(mode, i, settings):  # one generation of prompt i, after a tick where asked for
        if ticks:
            yield None
        return timed_generation(engine, mode, ids[i], max_new_tokens, {**settings, **stream_keywords(healings[i])})

    def measure(mode, settings):
        rounds = []
        for _ in range(repeats):
            rounds.append([])
            for i in range(len(ids)):
                rounds[-1].append((yield from timed(mode, i, settings)))
        outputs = [metrics.cut_after_eos(g["rows"][0], eos) for g in rounds[0]]  # greedy: every round agrees
        return summarise(rounds), outputs

    first = {"gamma": grid[0][0], "block_size": grid[0][1], "steps_per_block": grid[0][2], "anchor_first": anchor_first}
    yield from timed("ar", 0, {})  # warm-up
    yield from timed("diffusion", 0, first)
    ar_outputs = ar_self = None
    points = []
    for gamma, size, steps_per_block in grid:
        # AR is timed beside every point, not once for the grid: the host's speed drifts over a sweep of
        # minutes, and each ratio compares two runs made moments apart (greedy AR writes the same tokens each time)
        ar, outputs = yield from measure("ar", {})
        if ar_outputs is None:
            ar_outputs = outputs
            ar_self = metrics.mean(ar_mean_loglik(engine.model, x, o) for x, o in zip(ids, ar_outputs))
        rec, outputs = yield from measure("diffusion", {"gamma": gamma, "block_size": size,
                                                        "steps_per_block": steps_per_block, "anchor_first": anchor_first})
        point = {
            "gamma": gamma, "block_size": size, "steps_per_block": steps_per_block,
            "tokens_per_s": rec["tokens_per_s"], "ar_tokens_per_s": ar["tokens_per_s"],
            "ratio_vs_ar": metrics.ratio(rec["tokens_per_s"], ar["tokens_per_s"]),
            "nfe": rec["nfe"], "tokens_per_pass": rec["tokens_per_pass"],
            "agreement": metrics.mean(metrics.token_agreement(o, a) for o, a in zip(outputs, ar_outputs)),
            "ar_mean_loglik": metrics.mean(ar_mean_loglik(engine.model, x, o) for x, o in zip(ids, outputs)),
            "ar_self_loglik": ar_self, "pareto": False,
        }
        points.append(point)
        yield point
    for point, on_front in zip(points, front_flags(points)):
        point["pareto"] = on_front


def front_flags(points) -> list[bool]:
    """Whether each point is on the Pareto frontier of `points` (throughput ratio and agreement, both maximised);
    the UI flags a sweep's points so far with it, the finished sweep all of them."""
    return metrics.pareto_front(points, FRONT_X, FRONT_Y)


def sweep_figure(points):
    """Throughput ratio (x) against agreement with AR (y), one colour per block size, frontier drawn."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for size in sorted({p["block_size"] for p in points}):
        group = [p for p in points if p["block_size"] == size]
        fig.add_trace(go.Scatter(
            x=[p[FRONT_X] for p in group], y=[p[FRONT_Y] for p in group], mode="markers", name=f"S = {size}",
            marker={"size": 10}, customdata=[[p["gamma"], p["steps_per_block"], p["tokens_per_pass"],
                                              p["ar_mean_loglik"], p["tokens_per_s"]] for p in group],
            hovertemplate=(f"S = {size}, γ = %{{customdata[0]}}, steps = %{{customdata[1]}}<br>"
                           "× AR = %{x:.2f}, agreement = %{y:.3f}<br>tokens / pass = %{customdata[2]:.2f}, "
                           "tokens/s = %{customdata[4]:.1f}<br>AR log-lik = %{customdata[3]:.3f}<extra></extra>")))
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p[FRONT_X])
    fig.add_trace(go.Scatter(x=[p[FRONT_X] for p in front], y=[p[FRONT_Y] for p in front], mode="lines+markers",
                             name="Pareto frontier", line={"dash": "dash", "color": "black"},
                             marker={"size": 16, "symbol": "circle-open", "color": "black"}, hoverinfo="skip"))
    # the label sits above the plot area ("top"), where no point can hide it (inside it covered points near 1x)
    fig.add_vline(x=1.0, line_dash="dot", line_color="grey", annotation_text="AR speed", annotation_position="top")
    fig.update_layout(title="γ × S sweep: throughput against agreement with AR", template="plotly_white",
                      xaxis_title="tokens/s ÷ AR tokens/s (same run)", yaxis_title="agreement with AR's greedy tokens (share, 0–1)",
                      legend_title="block size")
    # agreement is a share: its whole range, whatever the points (one point drew an axis from -0.5 to 1)
    fig.update_yaxes(range=[-0.02, 1.02])
    return fig


def csv_text(points, fields=CSV_FIELDS) -> str:
    """The points as CSV, one column per field (the app adds one of its own: `disturbed`)."""
    handle = io.StringIO()
    writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: p[k] for k in fields} for p in points)
    return handle.getvalue()


def format_markdown(points) -> str:
    def num(value, digits):
        return "n/a" if value is None else f"{value:.{digits}f}"

    lines = ["| γ | S | steps | × AR | tokens / pass | agreement | AR log-lik | Pareto |", "|---|---|---|---|---|---|---|---|"]
    for p in points:
        lines.append(f"| {p['gamma']} | {p['block_size']} | {p['steps_per_block']} | {num(p['ratio_vs_ar'], 2)} | "
                     f"{num(p['tokens_per_pass'], 2)} | {num(p['agreement'], 3)} | {num(p['ar_mean_loglik'], 3)} | "
                     f"{'★' if p['pareto'] else ''} |")
    return "\n".join(lines) + "\n"


BASELINE_SPREAD = 1.5  # AR's speed beside the points varying more than this: the host's speed moved meanwhile


def baseline_note(points) -> str:
    """A warning when AR's speed, timed beside each point, varied more than BASELINE_SPREAD× over the sweep ("" when
    not): each × AR divides by the AR run beside it, so a host whose speed moved (another program, a throttled
    core) moves the ratios too, and points whose × AR differ by less than that spread are not ranked by it."""
    speeds = [p["ar_tokens_per_s"] for p in points if p.get("ar_tokens_per_s")]
    if len(speeds) < 2 or max(speeds) < BASELINE_SPREAD * min(speeds):
        return ""
    return (f"⚠ AR's speed, timed beside each point, ranged from {min(speeds):.1f} to {max(speeds):.1f} tokens/s "
            f"({max(speeds) / min(speeds):.2f}×): this host's speed moved during the sweep, and × AR moved with it; "
            "sweep again on a quiet host, or with more timed runs per point, before ranking close points.")


def format_header(report: dict) -> str:
    """The lines above the table, as bench's report opens: the model, the machine and the run's settings."""
    from .run_setup import counted, machine_line

    stopped = (f" Interrupted: {report['interrupted_after']} were measured, the Pareto flags are theirs."
               if report.get("interrupted_after") else "")
    spread = baseline_note(report.get("points") or [])
    return (f"## γ × S sweep: {report['model']}\n\n{machine_line(report)}; "
            f"{counted(report['n_prompts'], 'prompt')} ({report['prompt_source']}), {report['max_new_tokens']} new "
            f"tokens each (EOS ignored while timed), median of {counted(report['repeats'], 'round')} per point, AR "
            f"timed beside each point{'; each prompt healed' if report.get('heal') else ''}.{stopped}\n"
            + (f"\n{spread}\n" if spread else ""))


def add_arguments(parser) -> None:
    from .run_setup import add_anchor_argument, add_engine_arguments

    add_engine_arguments(parser)
    parser.add_argument("--gammas", default="0.5,0.7,0.8,0.9,0.95", help="comma-separated γ values (default: %(default)s)")
    parser.add_argument("--block-sizes", default="4,8,16,32", help="comma-separated block sizes S (default: %(default)s)")
    parser.add_argument("--steps", default=None, help="comma-separated steps per block (default: steps = S)")
    parser.add_argument("--prompts", default=None, help="file of prompts: one per line, or JSONL (.jsonl)")
    parser.add_argument("--n-prompts", type=int, default=8, help="prompts from the test split (ignored with --prompts)"
                        " (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="prompt selection seed")
    parser.add_argument("--max-prompt-tokens", type=int, default=512, help="keep each prompt's last N tokens")
    parser.add_argument("--max-new-tokens", type=int, default=64,
                        help="new tokens per prompt, EOS ignored while timed (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=1, help="timed rounds per point; the median is used (default: %(default)s)")
    parser.add_argument("--out-dir", default="sweep-results",
                        help="where sweep.csv and sweep.html go, or sweep-interrupted.csv and .html for an "
                             "interrupted sweep (default: %(default)s)")
    add_anchor_argument(parser)  # every grid point anchored
    parser.add_argument("--heal", action="store_true",
                        help="heal each prompt's last token (token healing, as the app's Sweep does; default: the "
                             "prompts' tokens as they are, as bench and eval read theirs)")
    parser.add_argument("--json", action="store_true", help="print the points as one JSON object")


def _measured(args, engine, prompts, gammas, block_sizes, steps, n_points) -> tuple[list[dict], BaseException | None]:
    """main's grid, with its progress bar: (the points, None), or after Ctrl-C (or SIGTERM) the points measured so
    far, their Pareto flags among themselves, and the interrupt to end on once they are reported."""
    from .run_setup import preset_note_once, progress_bar

    measured = []
    with progress_bar(n_points, "sweep", "point") as bar:
        say_preset = preset_note_once(args, bar)

        def progress(i, n, point):
            measured.append(point)
            say_preset()  # after the first point
            # (drawn by the update: a log gets one line for the point, not two)
            bar.set_postfix(gamma=point["gamma"], S=point["block_size"], ratio=f"{point['ratio_vs_ar'] or 0:.2f}",
                            refresh=False)
            bar.update(1)

        try:
            return run_sweep(engine, prompts, gammas, block_sizes, steps, args.max_new_tokens, progress,
                             args.repeats, args.max_prompt_tokens, args.anchor_first, heal=args.heal), None
        except KeyboardInterrupt as exc:  # the points measured are reported and written, then it ends as one
            if not measured:
                raise
            return [{**p, "pareto": on} for p, on in zip(measured, front_flags(measured))], exc


def is_plotly_page(head: bytes) -> bool:
    """`written`'s test for sweep.html: a page plotly's to_html wrote (its script's name comes first)."""
    head = head.lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html")) and b"plotly" in head


def main(args) -> int:
    from .run_setup import device_info, engine_from_args, output_file, print_report, provenance, starts_with
    from .eval_prompts import held_out_prompts_said, load_prompt_file

    gammas = parse_list(args.gammas, float, "--gammas")
    block_sizes = parse_list(args.block_sizes, int, "--block-sizes")
    steps = parse_list(args.steps, int, "--steps") if args.steps is not None else None  # "": refused as empty
    n_points = len(sweep_grid(gammas, block_sizes, steps, cli=True))  # checks the grid before loading anything
    for name in ("n_prompts", "max_prompt_tokens", "max_new_tokens", "repeats"):  # run_sweep checks them again
        check_size("--" + name.replace("_", "-"), getattr(args, name))
    if args.prompts is not None:  # before the model loads: a bad file costs no loading time (and makes no --out-dir)
        prompts, source = load_prompt_file(args.prompts), str(args.prompts)
    else:
        prompts = None  # the test split's, where the model's tokenizer breaks the file: read once it has loaded
    wanted = check_not_a_file("--out-dir", args.out_dir)
    made = [folder for folder in (wanted, *wanted.parents) if not folder.exists()]  # the leaf first
    out_dir = make_output_dir("--out-dir", wanted)  # before the run: a bad path loses no measurement
    # an interrupted sweep's points go to files of their own: sweep.csv and sweep.html are whole grids (a Ctrl-C
    # after one point replaced a finished sweep's six, unmarked); neither is written over a file of another kind
    paths = {stem: (out_dir / f"{stem}.csv", out_dir / f"{stem}.html") for stem in ("sweep", "sweep-interrupted")}
    for csv_path, html_path in paths.values():
        output_file("--out-dir's file", csv_path, args, ("a sweep's CSV", starts_with(",".join(CSV_FIELDS[:2]))))
        output_file("--out-dir's file", html_path, args, ("a sweep's plot", is_plotly_page))
    started = provenance(args)  # the commit the run starts from: edits made while it runs are not in it
    try:
        engine = engine_from_args(args)
        if prompts is None:
            prompts, source = held_out_prompts_said(engine.tokenizer.encode, args.n_prompts, args.seed)
        points, interrupted = _measured(args, engine, prompts, gammas, block_sizes, steps, n_points)
    except BaseException:  # a model that fails to load, or Ctrl-C before a point: the folders it made go
        with contextlib.suppress(OSError):  # (rmdir takes an empty folder only: the first one not empty stops it)
            for folder in made:
                folder.rmdir()
        raise
    csv_path, html_path = paths["sweep" if interrupted is None else "sweep-interrupted"]
    # the points are printed before the files are written: a write that fails (disk full, the folder
    # removed meanwhile) is a one-line error that leaves every measurement on the screen
    report = {**device_info(engine), **started, "model": engine.name, "n_prompts": len(prompts),
              "prompt_source": source, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
              "anchor_first": args.anchor_first, "heal": args.heal, "ar_timing": "per_point", "points": points,
              "csv": str(csv_path), "html": str(html_path)}
    if interrupted is not None:
        report["interrupted_after"] = f"{len(points)} of {n_points} grid points"
    report["baseline_warning"] = baseline_note(points) or None  # the text report's ⚠ line (--json had none)
    lost = print_report(json.dumps(report, indent=1) if args.json else
                          format_header(report) + "\n" + format_markdown(points))
    write_text_file("--out-dir's file", csv_path, csv_text(points))
    write_text_file("--out-dir's file", html_path, sweep_figure(points).to_html(include_plotlyjs=True))  # offline
    if not args.json:
        print(f"wrote {csv_path} and {html_path}")
    if interrupted is not None:
        raise interrupted
    if lost is not None:
        raise lost
    return 0
