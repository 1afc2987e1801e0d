"""The step event: the one record that every consumer of the samplers reads (API callback, CLI, UI, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .metrics import cut_after_eos


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


# ------------------------------------------------------------------------------------------------------------
# Building events: the samplers' only way to, each field named (block_start and generated sit side by side)
def draft_event(mode: str, state, *, block: int, block_start: int, generated: int, nfe: int, ctx_passes: int,
                elapsed: float, lead: int = 0, info: dict | None = None) -> StepEvent:
    """A "step" event: a denoiser pass's state (twotower.decoding.BlockDraft), its positions from `lead` on
    (speculative's leading unread token is emitted already), on the CPU."""
    return StepEvent(mode=mode, kind="step", block=block, step=state.step, block_start=block_start,
                     tokens=state.tokens[:, lead:].cpu(), masked=state.masked[:, lead:].cpu(),
                     confidence=state.confidence[:, lead:].cpu(), committed=state.committed[:, lead:].cpu(),
                     commit_step=state.commit_step[:, lead:].cpu(), nfe=nfe, context_passes=ctx_passes,
                     elapsed=elapsed, generated=generated, info=info or {})


def commit_event(mode: str, tokens: torch.Tensor, confidence: torch.Tensor, commit_step: torch.Tensor, *,
                 block: int, generated: int, nfe: int, ctx_passes: int, elapsed: float, just_committed: bool,
                 info: dict | None = None) -> StepEvent:
    """A "block" event: tokens (B, n), on the CPU, join the output so that it holds `generated` tokens.
    just_committed: whether this event is the one that commits them (a speculative round's; a diffusion
    block's were committed by its step events)."""
    flags = torch.full(tokens.shape, just_committed, dtype=torch.bool)
    return StepEvent(mode=mode, kind="block", block=block, step=-1, block_start=generated - tokens.shape[1],
                     tokens=tokens, masked=torch.zeros_like(flags), confidence=confidence, committed=flags,
                     commit_step=commit_step, nfe=nfe, context_passes=ctx_passes, elapsed=elapsed,
                     generated=generated, info=info or {})


def token_event(mode: str, index: int, token: torch.Tensor, conf: torch.Tensor, ctx_passes: int, elapsed: float,
                info: dict | None = None, commit_step: int = 0, block: int | None = None, nfe: int = 0) -> StepEvent:
    """A "token" event: new token number `index` (0-based) of each row, token (B, 1) from the context tower
    alone, with its confidence conf (B,); no denoiser pass makes it (nfe: the passes made so far, 0 in AR).
    commit_step: 0 for AR's steps; -1 (given, not from a denoiser step) where denoiser commits share the board.
    block: its row on the board (default: `index`, one row per token as in AR)."""
    ones = torch.ones_like(token, dtype=torch.bool)
    return StepEvent(mode=mode, kind="token", block=index if block is None else block, step=0, block_start=index,
                     tokens=token, masked=~ones, confidence=conf.cpu()[:, None], committed=ones,
                     commit_step=torch.full_like(token, commit_step), nfe=nfe, context_passes=ctx_passes,
                     elapsed=elapsed, generated=index + 1, info=info or {})


def finish_sequences(prompt: torch.Tensor, new: torch.Tensor, eos: int | None, pad: int) -> tuple[torch.Tensor, list[list[int]]]:
    """Cut each row after its first EOS: (B, P + N) with pad after EOS, and per-row new-token lists."""
    rows = []
    new = new.clone()
    for b in range(new.shape[0]):
        row = cut_after_eos(new[b].tolist(), eos)
        new[b, len(row):] = pad
        rows.append(row)
    return torch.cat([prompt.to(new.device), new], dim=1), rows


def run_stats(mode, row_tokens: list[int], nfe, ctx_passes, t_start, t_first, t_end) -> dict:
    """row_tokens: each row's new tokens (cut at its EOS). new_tokens is the longest row (batch 1: the row);
    a batch adds batch_tokens, their sum, and its rates are the batch's: tokens/s over all rows, tokens per
    pass per row (a pass serves every row)."""
    total, batch_tokens = t_end - t_start, sum(row_tokens)
    stats = {
        "mode": mode,
        "new_tokens": max(row_tokens),
        "nfe": nfe,
        "context_passes": ctx_passes,
        "tokens_per_pass": batch_tokens / (nfe * len(row_tokens)) if nfe else None,
        "total_s": total,
        "time_to_first_token_s": (t_first - t_start) if t_first else None,
        "tokens_per_s": batch_tokens / total if total > 0 else None,
    }
    if len(row_tokens) > 1:
        stats.update(batch_size=len(row_tokens), batch_tokens=batch_tokens)
    return stats


def done_event(mode, prompt, new, eos, pad, nfe, ctx_passes, t_start, t_first, t_end, info=None) -> StepEvent:
    """The "done" event: prompt (B, P) and new (B, N) tokens, each row cut at its EOS; the run's stats, and
    `info` added to them (the settings that ran). Times are the sampler's clock readings (its own clock: the
    tests give a sampler a fake one)."""
    sequences, rows = finish_sequences(prompt, new, eos, pad)
    # every row counts, each cut at its own EOS
    stats = run_stats(mode, [len(r) for r in rows], nfe, ctx_passes, t_start, t_first, t_end)
    stats.update(info or {})
    empty = torch.zeros(prompt.shape[0], 0, dtype=torch.long)
    return StepEvent(mode=mode, kind="done", block=-1, step=-1, block_start=new.shape[1], tokens=empty,
                     masked=empty.bool(), confidence=empty.float(), committed=empty.bool(), commit_step=empty, nfe=nfe,
                     context_passes=ctx_passes, elapsed=stats["total_s"], generated=len(rows[0]),
                     info={"new_tokens": rows}, sequences=sequences.cpu(), stats=stats)


COMMITTING_KINDS = ("token", "block")  # the events whose tokens join the output; "step" events are drafts


def committed_tokens(event: StepEvent) -> tuple[int, list[int]]:
    """Where in row 0's generated tokens an event's committed tokens go, and the tokens: (offset, ids).
    A "token" or "block" event adds its tokens at `block_start` (each mode emits its tokens once, in order);
    any other event commits nothing to the output: (offset, []). Tokens past an EOS are in a diffusion block
    as it was drafted; the result (`new_tokens`) ends at the EOS, and so must whoever reads these."""
    if event.kind not in COMMITTING_KINDS:
        return event.block_start, []
    return event.block_start, event.tokens[0].tolist()
