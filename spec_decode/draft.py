"""Drafting: the denoiser fills one block in a few passes, with the diffusion sampler's commit rule.

`draft_block` (twotower.decoding) is the one "denoise one block" loop that both samplers run: per pass
one denoiser call, `predict_tokens`, then `select_commits`. What speculative decoding needs on top:
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

import torch

from twotower.commit import sampling_distribution
from twotower.decoding import BlockDraft, draft_block  # noqa: F401  (re-exported for spec_decode users)


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


def confident_prefix_length(confidence: torch.Tensor, min_confidence: float) -> int:
    """(k,) draft confidences -> how many leading drafted tokens to verify: the longest prefix whose
    confidence is at least `min_confidence`, and never fewer than one (a round must propose a token).

    Low-confidence draft tokens are rarely accepted, yet the verify pass pays for every token it reads;
    stopping the proposal there trades a few accepted tokens for a shorter pass. 0 verifies the whole draft.
    """
    low = (confidence < min_confidence).nonzero()
    return max(1, int(low[0, 0]) if low.numel() else int(confidence.shape[0]))
