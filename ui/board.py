"""What the Playground draws, folded from the engine's step events (pure data, no HTML, no model).

The sampler emits one StepEvent per thing it did; `fold` turns a prefix of those events into a `Board`:
one `Row` per block (its cells, which are still masked, the step at which each was committed) plus
the running counters. The live view folds each event as it arrives; the step scrubber folds a prefix
of the recorded events, so a replayed step is drawn by the same code as the live one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

# Event kinds that are one "step" of the scrubber: a denoiser pass, an AR token, a verification.
FRAME_KINDS = ("step", "verify", "token")


@dataclass
class Row:
    """One block of the generation (row 0 of the batch): S cells, or 1 for an AR token."""

    block: int
    start: int  # offset of the block's first token among the generated tokens
    tokens: list[int]
    masked: list[bool]
    commit_step: list[int]  # step within the block at which each cell was committed, -1 while masked
    confidence: list[float]
    done: bool = False  # committed to the context tower
    rejected_pos: int | None = None  # speculative: first draft cell the context tower rejected
    replaced_by: int | None = None  # speculative: the context tower's token at rejected_pos
    wanted: int | None = None  # the budget's last block: the cells it adds (those past them are dropped)


@dataclass
class Board:
    mode: str = ""
    rows: dict[int, Row] = field(default_factory=dict)
    active: int | None = None  # block being denoised right now
    frames: int = 0  # frame events folded in (the scrubber's position)
    nfe: int = 0
    context_passes: int = 0
    generated: int = 0
    elapsed: float = 0.0
    stats: dict | None = None  # the sampler's statistics, once "done"
    new_tokens: list[int] | None = None  # final tokens (cut after EOS), once "done"
    stopped: bool = False  # Stop was pressed: the active block will never finish

    @property
    def done(self) -> bool:
        return self.stats is not None

    def ordered_rows(self) -> list[Row]:
        return [self.rows[b] for b in sorted(self.rows)]

    def finished_tokens(self) -> list[int]:
        """Tokens of the blocks committed to the context tower: what the completion shows while running."""
        return [t for row in self.ordered_rows() if row.done for t in row.tokens]

    def masked_count(self) -> int:
        return sum(sum(row.masked) for row in self.rows.values())


def _row_from_event(event, done: bool) -> Row:
    # Events hold (B, S) tensors; the view shows row 0 of the batch.
    return Row(
        block=int(event.block),
        start=int(event.block_start),
        tokens=[int(t) for t in event.tokens[0].tolist()],
        masked=[bool(m) for m in event.masked[0].tolist()],
        commit_step=[int(s) for s in event.commit_step[0].tolist()],
        confidence=[float(c) for c in event.confidence[0].tolist()],
        done=done,
        wanted=(event.info or {}).get("needed") if event.kind == "step" else None,
    )


def _count(value) -> int | None:
    """Speculative info fields may hold a count or the list of tokens it counts."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return len(value)
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def fold_event(board: Board, event) -> Board:
    """Apply one event to the board in place and return it."""
    board.mode = board.mode or event.mode
    board.nfe, board.context_passes = int(event.nfe), int(event.context_passes)
    board.elapsed = float(event.elapsed)
    if event.kind == "done":
        board.stats = dict(event.stats or {})
        board.new_tokens = [int(t) for t in event.info.get("new_tokens", [[]])[0]]
        board.generated = len(board.new_tokens)
        board.active = None
        return board
    board.generated = int(event.generated)
    previous = board.rows.get(int(event.block))
    if event.kind == "block":
        row = _row_from_event(event, done=True)
        if previous is not None:  # keep the speculative rejection mark on the committed row
            row.rejected_pos, row.replaced_by = previous.rejected_pos, previous.replaced_by
        board.rows[row.block] = row
        board.active = None
    elif event.kind == "token":
        board.rows[int(event.block)] = _row_from_event(event, done=True)
        board.active = None
    else:  # "step" or "verify": the block is still being worked on
        row = _row_from_event(event, done=False)
        if event.kind == "verify":
            info = event.info or {}
            pos = info.get("rejected_pos")
            row.rejected_pos = None if pos is None or int(pos) < 0 else int(pos)
            target = info.get("target_token")
            row.replaced_by = None if target is None or row.rejected_pos is None else int(target)
        board.rows[row.block] = row
        board.active = row.block
    if event.kind in FRAME_KINDS:
        board.frames += 1
    return board


def fold(events: Iterable, upto_frame: int | None = None) -> Board:
    """Fold events into a fresh board; stop right after the `upto_frame`-th frame event (1-based).

    upto_frame=None (or past the last frame) folds everything, "block" and "done" events included.
    """
    board = Board()
    for event in events:
        if upto_frame is not None and event.kind in FRAME_KINDS and board.frames >= upto_frame:
            break
        fold_event(board, event)
    return board


def count_frames(events: Iterable) -> int:
    return sum(1 for e in events if e.kind in FRAME_KINDS)


def verify_rounds(events: Iterable) -> list[dict]:
    """One record per speculative verification round, for the audit table and histogram."""
    rounds = []
    for event in events:
        if event.kind != "verify":
            continue
        info = dict(event.info or {})
        drafted_tokens = [int(t) for t, m in zip(event.tokens[0].tolist(), event.masked[0].tolist()) if not m]
        if isinstance(info.get("drafted"), (list, tuple)):
            drafted_tokens = [int(t) for t in info["drafted"]]
        accepted = _count(info.get("accepted"))
        drafted = _count(info.get("drafted"))
        rounds.append({
            "block": int(event.block),
            "drafted_tokens": drafted_tokens,
            "drafted": drafted if drafted is not None else len(drafted_tokens),
            "accepted": accepted if accepted is not None else 0,
            "rejected_pos": info.get("rejected_pos"),
            "draft_token": info.get("draft_token"),
            "target_token": info.get("target_token"),
            "p_draft_of_draft": info.get("p_draft_of_draft"),
            "p_target_of_draft": info.get("p_target_of_draft"),
            "p_draft_of_target": info.get("p_draft_of_target"),
            "p_target_of_target": info.get("p_target_of_target"),
            "bonus": info.get("bonus"),
        })
    return rounds
