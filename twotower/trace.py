"""A run's trace: one generation's step events as plain JSON, to read in a notebook or another tool.

`twotower generate --trace FILE`, the Playground's "Save this run" and `run_trace` in Python write the same
object, from the same events the samplers yield (twotower.events.StepEvent), so a trace replays the board
the UI drew. Its shape (version 1):

    {"format": "twotower-trace", "version": 1, "prompt": str, "prompt_ids": [int], "healed": str, "mode": str,
     "settings": {...}, "engine": {...} | null, "finished": bool, "eos_token_id": int | null, "completion": str,
     "new_tokens": [[int]] (per row), "stats": {...} | null, "pieces": {"id": "text"}, "events": [event, ...]}

prompt_ids: the ids the model read; healed: "" or, where token healing took the prompt's last token back
(twotower/token_healing.py), that token's text, which new_tokens' first token's text starts with (completion
is the text after the prompt: new_tokens' text without it).
settings: what the mode reads (`ran_settings`), the model's own value wherever the caller left one unset;
stats: the sampler's own figures (speculative calls γ `draft_threshold`). A run stopped before its end has
"finished": false, "stats": null, and as new_tokens / completion what its token and block events committed.
pieces: every id in the prompt and the events, with its text (specials by name, the mask id as "<mask>"), so
a trace reads without the tokenizer; eos_token_id: its end-of-text id (written since 2026-12-06; read_trace
and trace_events, the Playground's "Open a saved run", read older traces without it).

Each event holds its kind, block, step, block_start, nfe, context_passes, elapsed (s), generated (row 0's
tokens so far), info, and per-row lists (B rows): tokens, masked, confidence, committed, commit_step.
Reading them:
- new tokens are the tokens of the "token" and "block" events in order, cut after a row's first EOS (a
  diffusion block holding EOS carries its cells after it too);
- "step" events show the block being denoised: a masked position holds the mask id, and its confidence is
  that of the denoiser's top prediction there (the rule's input; the token is not recorded); a committed one
  keeps the confidence it was committed with; committed marks this pass's commits, commit_step the pass of
  each; a given token (an anchor, an unread token) has commit_step -1, and confidence 0 until its block event;
- diffusion: the budget's last block is a whole block of S whose first info["needed"] are kept;
- speculative: "block" counts rounds (0: the prefill's token); a round's "step" events are its draft passes,
  its "verify" event the verdict (info: drafted, accepted, rejected_pos, target_token and the towers'
  probabilities), its "block" event the tokens it adds (commit_step: the draft pass, or the number of passes
  for the context tower's own token); a last "token" event is a budget's last token, the context tower's.
Non-finite floats (a NaN confidence) are written as null: JSON has no NaN.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

FORMAT, VERSION = "twotower-trace", 1
# a trace's "format" key, in any JSON spacing (`python -m json.tool` indents it): what --trace may write over
FORMAT_KEY = re.compile(rb'"format"\s*:\s*"' + FORMAT.encode() + rb'"')
EVENT_ARRAYS = ("tokens", "masked", "confidence", "committed", "commit_step")
EVENT_SCALARS = ("kind", "block", "step", "block_start", "nfe", "context_passes", "elapsed", "generated")

# what each mode reads (Engine.stream's keywords)
COMMON_SETTINGS = ("max_new_tokens", "temperature", "top_k", "top_p", "seed", "stop_at_eos")
MODE_SETTINGS = {"diffusion": ("gamma", "block_size", "steps_per_block", "anchor_first"),
                 "speculative": ("gamma", "block_size", "draft_steps", "adaptive", "min_draft_confidence"),
                 "mock_ar": (), "ar": ()}
MODEL_DEFAULTS = ("gamma", "block_size", "steps_per_block", "draft_steps", "min_draft_confidence")  # config.default_*


def ran_settings(mode: str, config, asked: dict) -> dict:
    """The settings a run in `mode` reads, from those asked (Engine.stream's keywords): one left unset (None or
    absent) is the model's own value (config.default_<name>) or Engine.stream's default; one the mode does not
    read (another mode's) is left out, as the run ignored it; a proposal cut the run did not apply reads 0."""
    import inspect

    from .engine import Engine, normalise_mode

    mode = normalise_mode(mode)
    stream_defaults = {name: p.default for name, p in inspect.signature(Engine.stream).parameters.items()}
    out = {}
    for key in COMMON_SETTINGS + MODE_SETTINGS[mode]:
        value = asked.get(key)
        if value is None:
            value = getattr(config, f"default_{key}") if key in MODEL_DEFAULTS else stream_defaults[key]
        out[key] = value
    if mode == "speculative":  # the cut the run applied (none when sampling over several draft passes)
        from spec_decode import proposal_cut

        out["min_draft_confidence"] = proposal_cut(out["temperature"] or 0.0, out["draft_steps"],
                                                   out["min_draft_confidence"])
    return out


def plain(value):
    """A value as JSON has it: tensors and numpy arrays as (nested) lists, tuples as lists, keys as text,
    NaN / ±inf as None."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # torch / numpy, 0-d included
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [plain(v) for v in (sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value)]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # a torch.device or dtype in a stats dict: its name


def event_record(event) -> dict:
    """One StepEvent as a dict (its per-row tensors as lists of B rows)."""
    record = {name: plain(getattr(event, name)) for name in EVENT_SCALARS}
    record.update({name: plain(getattr(event, name)) for name in EVENT_ARRAYS})
    record["info"] = plain(event.info)
    return record


def _emitted(events, eos: int | None) -> list[list[int]]:
    """Each row's tokens from the token and block events so far, cut after its first EOS ([] before any)."""
    from .metrics import cut_after_eos

    parts = [e.tokens.tolist() for e in events if e.kind in ("token", "block")]  # each (B, n) as B lists
    rows = [sum((part[b] for part in parts), []) for b in range(len(parts[0]))] if parts else []
    return [cut_after_eos(row, eos) for row in rows]


def _checked_ids(prompt_ids) -> list[int]:
    ids = prompt_ids.tolist() if hasattr(prompt_ids, "tolist") else prompt_ids
    if isinstance(ids, (str, bytes)) or not hasattr(ids, "__iter__"):
        raise ValueError(f"prompt_ids must be a list of token ids, got {type(prompt_ids).__name__}")
    ids = list(ids)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in ids):
        raise ValueError("prompt_ids must be one prompt's token ids (a flat list of ints)")
    return ids


def run_trace(events, *, prompt: str, prompt_ids, mode: str, settings: dict, tokenizer, mask_token_id: int,
              engine: dict | None = None, healed: str = "") -> dict:
    """The trace of one generation. events: every event it yielded, in order ("done" last when it finished);
    settings: `ran_settings(...)` of the run (stored as given); healed: the healing's prefix, "" for none."""
    from .engine import normalise_mode
    from .token_healing import completion_text

    if not isinstance(healed, str):
        raise ValueError(f"healed is the healed token's text (\"\" for none), got {type(healed).__name__}")
    if isinstance(events, (str, bytes)) or not hasattr(events, "__iter__"):
        raise ValueError(f"run_trace takes a run's StepEvents (a list, or Engine.stream), got {type(events).__name__}")
    events = list(events)
    if not events:
        raise ValueError("nothing to trace: the run yielded no event (generate first)")
    odd = next((e for e in events if not all(hasattr(e, name) for name in EVENT_SCALARS + EVENT_ARRAYS)), None)
    if odd is not None:  # token ids, or a GenerationResult, read as "'int' object has no attribute 'kind'"
        raise ValueError(f"run_trace takes a run's StepEvents, not {type(odd).__name__} values")
    mode = normalise_mode(mode)
    if any(e.mode != mode for e in events):  # another mode's events, or two runs concatenated
        raise ValueError(f"run_trace takes one {mode} run's events; these include {sorted({e.mode for e in events})}")
    if sum(e.kind == "done" for e in events) > 1 or any(e.kind == "done" for e in events[:-1]):
        raise ValueError("run_trace takes one run's events: a 'done' event comes last, once")
    if not all(callable(getattr(tokenizer, name, None)) for name in ("decode", "piece")):
        raise ValueError(f"run_trace needs the run's tokenizer (decode and piece), got {type(tokenizer).__name__}")
    prompt_ids = _checked_ids(prompt_ids)
    done = events[-1] if events[-1].kind == "done" else None
    # a stopped run's tokens are cut where the run would have cut them: at EOS unless it ran on past it
    eos = getattr(tokenizer, "eos_token_id", None) if (settings or {}).get("stop_at_eos", True) else None
    new_tokens = plain(done.info["new_tokens"]) if done is not None else _emitted(events, eos)
    ids = set(prompt_ids) | {int(i) for e in events for i in e.tokens.flatten().tolist()}
    # the board's own text of each id (specials by name, an id past the tokenizer as "<id N: no piece>")
    pieces = {str(i): "<mask>" if i == mask_token_id else tokenizer.piece(i) for i in sorted(ids)}
    return {
        "format": FORMAT, "version": VERSION, "prompt": prompt, "prompt_ids": prompt_ids, "healed": healed,
        "mode": mode, "settings": plain(settings), "engine": plain(engine), "finished": done is not None,
        "eos_token_id": getattr(tokenizer, "eos_token_id", None),
        "completion": completion_text(tokenizer.decode(new_tokens[0]), healed) if new_tokens else "",
        "new_tokens": new_tokens,
        "stats": plain(done.stats) if done is not None else None, "pieces": pieces,
        "events": [event_record(e) for e in events],
    }


def is_trace_head(head: bytes) -> bool:
    """Whether a file's first bytes are a trace's: its "format" key among them (the first key as written here, in
    any spacing; a trace rewritten with its keys sorted has it after the events, and is not told from another file)."""
    return FORMAT_KEY.search(head) is not None


def trace_json(trace: dict) -> str:
    return json.dumps(trace, ensure_ascii=False, allow_nan=False)


def write_trace(name: str, path: Path, trace: dict) -> None:
    """Write a trace; a failure (disk full, the folder removed meanwhile) is a one-line error naming `name`."""
    from .path_checks import write_text_file

    write_text_file(name, Path(path), trace_json(trace))


# ------------------------------------------------------------------------------------------------------------
# Reading a trace back: the events it was written from, for the Playground's "Open a saved run" and notebooks
TRACE_LIMIT_BYTES = 64 * 2**20  # a 512-token diffusion run at S = 64 writes a few MB; past this, not a trace


def read_trace(text: str | bytes) -> dict:
    """A trace written by run_trace (`generate --trace`, "Save this run"), checked: ValueError names what is
    wrong (not JSON, another format or version, a field missing or of the wrong kind) in words a user can act on."""
    if isinstance(text, bytes):
        if len(text) > TRACE_LIMIT_BYTES:
            raise ValueError(f"the file is {len(text) / 2**20:.0f} MB; a run's trace is at most "
                             f"{TRACE_LIMIT_BYTES // 2**20} MB")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("the file is not UTF-8 text: not a run's trace (JSON)") from None

    def no_constant(name):  # json.loads reads NaN and Infinity, which a trace never holds (plain writes null)
        raise ValueError(f"the file holds {name}, which JSON has no value for: not a run's trace")

    try:
        trace = json.loads(text, parse_constant=no_constant)
    except json.JSONDecodeError as exc:
        raise ValueError(f"the file is not JSON ({exc.msg}, line {exc.lineno}): not a run's trace") from None
    except RecursionError:
        raise ValueError("the file's JSON is nested too deeply: not a run's trace") from None
    if not isinstance(trace, dict) or trace.get("format") != FORMAT:
        raise ValueError(f"the file is JSON but not a run's trace (no \"format\": \"{FORMAT}\"; `generate --trace` "
                         "and the Playground's Save this run write one)")
    if type(trace.get("version")) is not int or trace["version"] != VERSION:
        raise ValueError(f"the trace is of version {trace.get('version')!r}; this build reads version {VERSION}")
    json_names = {str: "string", list: "array", dict: "object"}
    kinds = {"prompt": str, "prompt_ids": list, "healed": str, "mode": str, "settings": dict, "pieces": dict,
             "events": list, "new_tokens": list}
    for name, kind in kinds.items():
        if not isinstance(trace.get(name), kind):
            raise ValueError(f"the trace's \"{name}\" is missing or not a JSON {json_names[kind]}")
    if not trace["events"]:
        raise ValueError("the trace holds no event: nothing to replay")
    if not all(isinstance(text, str) for text in trace["pieces"].values()):
        raise ValueError("the trace's \"pieces\" are not all text")
    if trace.get("stats") is not None and not isinstance(trace["stats"], dict):
        raise ValueError("the trace's \"stats\" is not a JSON object")
    from .engine import normalise_mode

    try:
        trace["mode"] = normalise_mode(trace["mode"])
    except ValueError as exc:
        raise ValueError(f"the trace's mode: {exc}") from None
    return trace


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**62


def trace_events(trace: dict) -> list:
    """The StepEvents a trace was written from (read_trace's result): per-row lists back to tensors, null
    confidences back to NaN, the run's statistics on its "done" event. Folding them draws the board the run drew."""
    import torch

    from .events import StepEvent

    dtypes = {"tokens": torch.long, "masked": torch.bool, "confidence": torch.float32, "committed": torch.bool,
              "commit_step": torch.long}
    events = []
    for number, record in enumerate(trace["events"], start=1):
        try:
            arrays = {}
            for name, dtype in dtypes.items():
                rows = record[name]
                if name == "confidence":
                    rows = [[math.nan if c is None else c for c in row] for row in rows]
                arrays[name] = torch.tensor(rows, dtype=dtype)
                if arrays[name].dim() != 2:
                    raise ValueError(f"{name} is not a list of rows")
            shapes = {tuple(a.shape) for a in arrays.values()}
            if len(shapes) != 1:
                raise ValueError(f"its arrays differ in shape ({sorted(shapes)})")
            kind = record["kind"]
            if kind not in ("step", "token", "verify", "block", "done"):
                raise ValueError(f"kind {kind!r} is none of step, token, verify, block, done")
            info = record.get("info") or {}
            if not isinstance(info, dict):
                raise ValueError("info is not an object")
            for key in ("needed", "rejected_pos", "target_token"):  # what the board reads of it
                if info.get(key) is not None and not _is_int(info[key]):
                    raise ValueError(f"info's {key} is not a whole number")
            if kind == "done":
                rows = info.get("new_tokens")
                if (not isinstance(rows, list) or not rows or not all(isinstance(row, list) for row in rows)
                        or not all(_is_int(t) for row in rows for t in row)):
                    raise ValueError("a done event's new_tokens is not a list of rows of token ids")
            events.append(StepEvent(
                mode=trace["mode"], kind=kind, block=int(record["block"]), step=int(record["step"]),
                block_start=int(record["block_start"]), nfe=int(record["nfe"]),
                context_passes=int(record["context_passes"]), elapsed=float(record["elapsed"]),
                generated=int(record.get("generated") or 0), info=info,
                stats=(trace.get("stats") or {}) if kind == "done" else None, **arrays))
        except (KeyError, TypeError, ValueError, RuntimeError, OverflowError) as exc:
            what = f"its field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise ValueError(f"the trace's event {number} cannot be read: {what}") from None
    return events
