"""The step event: the one record that every consumer of the samplers reads (API callback, CLI, UI, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class StepEvent:
    """One thing the sampler did, emitted the moment it is done.

    kind: "step"   a denoiser pass over the current block (diffusion, mock-AR, speculative draft)
          "token"  one token from the context tower alone (AR; speculative's first, from the prefill, and its
                   last when a round leaves one token of the budget)
          "verify" a speculative verification round (see `info`)
          "block"  a block finished: its tokens are committed (the context tower reads them before the next
                   block; the last block is never read); in speculative mode, the tokens a round emitted
          "done"   generation ended; `sequences` and `stats` hold the result
    Tensors are on the CPU, batch-first: tokens / masked / confidence / committed / commit_step are
    (B, S) for the current block (S = 1 for AR), with the mask id at still-masked positions. commit_step is
    -1 at open positions and at given ones (an anchored first token, speculative's token from the prefill);
    in a speculative "block" event the context tower's own token carries the round's draft passes.
    An event is never changed after it is yielded: a recorded run replays as it ran.
    """

    mode: str
    kind: str
    block: int
    step: int
    block_start: int  # offset of the block's first token among the generated tokens
    tokens: torch.Tensor
    masked: torch.Tensor
    confidence: torch.Tensor
    committed: torch.Tensor  # committed at this very step
    commit_step: torch.Tensor  # step at which each position was committed, -1 while masked
    nfe: int  # denoiser passes so far
    context_passes: int  # context-tower passes so far (prefill included)
    elapsed: float  # seconds since the call started
    generated: int = 0  # tokens committed so far (row 0)
    info: dict = field(default_factory=dict)
    sequences: torch.Tensor | None = None  # only on "done": (B, prompt + new), pad after EOS
    stats: dict | None = None  # only on "done"


@dataclass
class GenerationResult:
    sequences: torch.Tensor  # (B, prompt + new), pad after EOS
    new_tokens: list[list[int]]  # per row, up to and including EOS
    stats: dict
    events: list[StepEvent] | None = None


COMMITTING_KINDS = ("token", "block")  # the events whose tokens join the output; "step" events are drafts


def committed_tokens(event: StepEvent) -> tuple[int, list[int]]:
    """Where in row 0's generated tokens an event's committed tokens go, and the tokens: (offset, ids).
    A "token" or "block" event adds its tokens at `block_start` (each mode emits its tokens once, in order);
    any other event commits nothing to the output: (offset, []). Tokens past an EOS are in a diffusion block
    as it was drafted; the result (`new_tokens`) ends at the EOS, and so must whoever reads these."""
    if event.kind not in COMMITTING_KINDS:
        return event.block_start, []
    return event.block_start, event.tokens[0].tolist()
