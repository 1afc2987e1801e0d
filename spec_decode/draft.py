"""Drafting: the denoiser fills one block in a few passes, with the diffusion sampler's commit rule.

`draft_block` is the "denoise one block" step of twotower.decoding.iter_mask_diffusion written as a
reusable generator (it could move there and serve both samplers): per pass one denoiser call,
`predict_tokens`, then `select_commits`. What speculative decoding needs on top:
  * which positions are still open is tracked explicitly (`masked`), not read from the mask id, because
    a block may start with an already-emitted token that happens to be the mask id;
  * select_on_top_probability: at temperature > 0 choose the positions to commit by the distribution's
    own confidence (its top probability), not by the sampled token's, so that *whether* a position is
    committed carries no information about *which* token was drawn there. Otherwise the committed
    token is not a draw from q and rejection sampling does not reproduce the target distribution.
    At temperature 0 both confidences are the same number, so greedy drafting is the diffusion rule;
  * keep_commit_logits: the logits each position was committed from, to rebuild q for verification.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch

from twotower.commit import predict_tokens, sampling_distribution, select_commits


@dataclass
class BlockDraft:
    """The state of one block after a denoiser pass. Tensors on the denoiser's device, (B, L)."""

    tokens: torch.Tensor  # long; still-open positions hold the mask id
    masked: torch.Tensor  # bool, still open
    confidence: torch.Tensor  # float: probability of the token last predicted at each position
    commit_step: torch.Tensor  # long: the pass that committed each position, -1 if open or given
    committed: torch.Tensor  # bool: committed by this very pass
    commit_logits: torch.Tensor | None  # (B, L, V) fp32: logits each position was committed from, if kept
    step: int = -1  # index of the pass just run


def draft_block(
    model,
    ctx,
    tokens: torch.Tensor,
    masked: torch.Tensor,
    steps: int,
    gamma: float,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    select_on_top_probability: bool = False,
    keep_commit_logits: bool = False,
) -> Iterator[BlockDraft]:
    """Fill the open positions of `tokens` (B, L) in at most `steps` denoiser passes; yield after each.

    ctx: the context tower's states (model.context_states), read-only. Positions with masked=False are
    given (kept as they are, e.g. a token emitted but not yet read by the context tower).
    """
    mask_id = model.config.mask_token_id
    device = model.den_device
    masked = masked.to(device).clone()
    tokens = tokens.to(device)
    tokens = torch.where(masked, torch.full_like(tokens, mask_id), tokens)
    state = BlockDraft(
        tokens=tokens,
        masked=masked,
        confidence=torch.zeros(tokens.shape, device=device),
        commit_step=torch.full(tokens.shape, -1, dtype=torch.long, device=device),
        committed=torch.zeros_like(masked),
        commit_logits=None,
    )
    if keep_commit_logits:
        state.commit_logits = torch.zeros(*tokens.shape, model.config.vocab_size, device=device)
    for step in range(steps):
        if not state.masked.any():
            break
        open_before = state.masked
        t = open_before.float().mean(-1)  # (B,) fraction of the block still masked
        logits = model.denoise(state.tokens, ctx, t)  # (B, L, V)
        pred, conf = predict_tokens(logits, temperature, generator, top_k, top_p, forbid=mask_id)
        if select_on_top_probability and temperature > 0.0:
            _, select_conf = predict_tokens(logits, 0.0, forbid=mask_id)  # top probability, independent of the draw
        else:
            select_conf = conf
        commit = select_commits(select_conf, open_before, gamma, steps - step)
        state.tokens = torch.where(commit, pred, state.tokens)
        state.masked = open_before & ~commit
        state.commit_step = torch.where(commit, torch.full_like(state.commit_step, step), state.commit_step)
        state.confidence = torch.where(open_before, conf, state.confidence)
        if keep_commit_logits:
            state.commit_logits = torch.where(commit[..., None], logits.float(), state.commit_logits)
        state.committed = commit
        state.step = step
        yield state


def order_safe_positions(commit_step: torch.Tensor) -> torch.Tensor:
    """(k,) commit passes -> (k,) bool: positions whose draw may be verified against their own q.

    Speculative sampling checks draft tokens left to right. Position i's token is a fair draw from the
    q it was committed with, given what the verifier has seen before position i, only if no earlier
    position was committed in a *later* pass: such a position's q (and its acceptance) depends on
    token i, so accepting it would select on token i. Positions committed no earlier than every
    position to their left are safe; the others are verified with q = one_hot(token), which is exact
    for any drafter (it only lowers the acceptance probability from min(1, p/q) to p).
    """
    return commit_step >= torch.cummax(commit_step, dim=0).values


def draft_distributions(commit_logits: torch.Tensor, tokens: torch.Tensor, commit_step: torch.Tensor,
                        temperature: float, top_k=None, top_p=None, forbid: int | None = None) -> torch.Tensor:
    """The q rows to verify a draft against, (k, V), at temperature > 0.

    commit_logits (k, V), tokens (k,), commit_step (k,) of the drafted positions. q is the law the
    token was drawn from (tempered, filtered, mask id forbidden, exactly as `predict_tokens` drew it)
    at order-safe positions, and a point mass on the token elsewhere.
    """
    logits = commit_logits.float()
    if forbid is not None:
        logits = logits.clone()
        logits[..., forbid] = float("-inf")
    q = sampling_distribution(logits, temperature, top_k, top_p)
    point = torch.nn.functional.one_hot(tokens, q.shape[-1]).to(q.dtype)
    return torch.where(order_safe_positions(commit_step)[:, None], q, point)


def adapt_block_size(current: int, drafted: int, accepted: int, maximum: int, minimum: int = 1) -> int:
    """Next draft length from the last round, in [minimum, maximum]: grow by half after a full
    acceptance; otherwise shrink, at least by one and at most halfway towards what was accepted + 1, so
    a run of rejections brings the block down to 1 in a few rounds."""
    if accepted >= drafted:
        return min(maximum, current + max(1, current // 2))
    return max(minimum, min(maximum, current - 1, (current + accepted + 1) // 2))
