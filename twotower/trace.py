"""A run's trace: one generation's step events as plain JSON, to read in a notebook or another tool.

`twotower generate --trace FILE`, the Playground's "Save this run" and `run_trace` in Python write the same
object, from the same events the samplers yield (twotower.events.StepEvent), so a trace replays the board
the UI drew. Its shape (version 1):

    {"format": "twotower-trace", "version": 1, "prompt": str, "prompt_ids": [int], "mode": str,
     "settings": {...}, "engine": {...} | null, "completion": str, "new_tokens": [[int]] (per row),
     "stats": {...}, "pieces": {"id": "text of that token"}, "events": [event, ...]}

and each event holds its kind, block, step, block_start, nfe, context_passes, elapsed (s), generated, info,
and its per-row lists (B rows of the block's S positions): tokens, masked, confidence, committed,
commit_step. "pieces" maps every id that appears to its text (the mask id to "<mask>"), so a trace reads
without the tokenizer. Non-finite floats (a NaN confidence) are written as null: JSON has no NaN.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FORMAT, VERSION = "twotower-trace", 1
EVENT_ARRAYS = ("tokens", "masked", "confidence", "committed", "commit_step")
EVENT_SCALARS = ("kind", "block", "step", "block_start", "nfe", "context_passes", "elapsed", "generated")


def plain(value):
    """A value as JSON has it: tensors and numpy arrays as (nested) lists, tuples as lists, keys as text,
    NaN / ±inf as None."""
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # torch / numpy, 0-d included
        value = value.tolist()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)  # a torch.device or dtype in a stats dict: its name


def event_record(event) -> dict:
    """One StepEvent as a dict (its per-row tensors as lists of B rows)."""
    record = {name: plain(getattr(event, name)) for name in EVENT_SCALARS}
    record.update({name: plain(getattr(event, name)) for name in EVENT_ARRAYS})
    record["info"] = plain(event.info)
    return record


def _ids_in(events, prompt_ids) -> set[int]:
    ids = set(int(i) for i in prompt_ids)
    for event in events:
        ids.update(int(i) for i in event.tokens.flatten().tolist())
        if event.sequences is not None:
            ids.update(int(i) for i in event.sequences.flatten().tolist())
    return ids


def run_trace(events, *, prompt: str, prompt_ids, mode: str, settings: dict, tokenizer, mask_token_id: int,
              engine: dict | None = None) -> dict:
    """The trace of one finished generation. events: every event it yielded, "done" last (a stopped run has no
    "done": its trace says "finished": false and carries what was committed so far in no "new_tokens")."""
    if isinstance(events, (str, bytes)) or not hasattr(events, "__iter__"):
        raise ValueError(f"run_trace takes a run's StepEvents (a list, or Engine.stream), got {type(events).__name__}")
    events = list(events)
    if not events:
        raise ValueError("nothing to trace: the run yielded no event (generate first)")
    odd = next((e for e in events if not all(hasattr(e, name) for name in EVENT_SCALARS + EVENT_ARRAYS)), None)
    if odd is not None:  # token ids, or a GenerationResult, read as "'int' object has no attribute 'kind'"
        raise ValueError(f"run_trace takes a run's StepEvents, not {type(odd).__name__} values")
    done = events[-1] if events[-1].kind == "done" else None
    new_tokens = plain(done.info["new_tokens"]) if done is not None else None
    # the board's own text of each id (specials by name, an id past the tokenizer as "<id N: no piece>")
    pieces = {str(i): "<mask>" if i == mask_token_id else tokenizer.piece(i)
              for i in sorted(_ids_in(events, prompt_ids))}
    return {
        "format": FORMAT, "version": VERSION, "prompt": prompt, "prompt_ids": plain(list(prompt_ids)),
        "mode": mode, "settings": plain(settings), "engine": plain(engine), "finished": done is not None,
        "completion": tokenizer.decode(new_tokens[0]) if new_tokens else None, "new_tokens": new_tokens,
        "stats": plain(done.stats) if done is not None else None, "pieces": pieces,
        "events": [event_record(e) for e in events],
    }


def trace_json(trace: dict) -> str:
    return json.dumps(trace, ensure_ascii=False, allow_nan=False)


def write_trace(name: str, path: Path, trace: dict) -> None:
    """Write a trace; a failure (disk full, the folder removed meanwhile) is a one-line error naming `name`."""
    from .validation import write_text_file

    write_text_file(name, Path(path), trace_json(trace))
