"""Pure accept / reject rules of speculative decoding: tensors in, tensors out, no model.

A round drafts k tokens. The context tower then gives k + 1 target rows: row i is its distribution for
drafted position i (given the text before it), row k the "bonus" position after a fully accepted draft.
Both rules return a `Verdict`: how many drafted tokens are accepted (a prefix), and the one token the
target adds after them — its correction at the first rejected position, or the bonus token.
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Verdict(NamedTuple):
    n_accepted: torch.Tensor  # () long, 0..k: the accepted prefix length
    token: torch.Tensor  # () long: the target's token at position n_accepted (correction, or bonus when n == k)


def greedy_verdict(draft: torch.Tensor, target_logits: torch.Tensor) -> Verdict:
    """Accept the longest prefix equal to the target's argmax, then append the target's own argmax.

    draft: (k,) token ids; target_logits: (k + 1, V). The output is then exactly greedy AR decoding.
    """
    _check_rows(draft, target_logits)
    target = target_logits.argmax(-1)  # (k + 1,)
    agree = (draft.to(target.device) == target[:-1]).long()
    n_accepted = agree.cumprod(0).sum()  # length of the all-agree prefix
    return Verdict(n_accepted, target[n_accepted])


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)) over the last dim: what to sample from after rejecting a draft token.

    A rejection can only happen where q(x) > p(x), so the residual has positive mass then; if rounding
    leaves none (p == q), p itself is the right law.
    """
    residual = (p - q).clamp_min(0.0)
    mass = residual.sum(-1, keepdim=True)
    return torch.where(mass > 0, residual / mass.clamp_min(1e-30), p)


def rejection_verdict(
    draft: torch.Tensor,
    target_probs: torch.Tensor,
    draft_probs: torch.Tensor,
    generator: torch.Generator | None = None,
) -> Verdict:
    """Standard speculative rejection sampling (Leviathan et al. 2023; Chen et al. 2023).

    draft: (k,) tokens, draft[i] drawn from draft_probs[i]; target_probs: (k + 1, V) = p; draft_probs:
    (k, V) = q. Accept draft[i] with probability min(1, p(x) / q(x)), left to right; at the first
    rejection sample from norm(max(0, p - q)); after a full acceptance sample the bonus from p[k].
    The emitted tokens are then distributed exactly as sampling from p one token at a time.
    A point mass q = one_hot(x) is valid for any draft (see draft.draft_distributions).
    """
    _check_rows(draft, target_probs)
    k = draft.shape[0]
    if draft_probs.shape != (k, target_probs.shape[-1]):
        raise ValueError(f"draft_probs must be ({k}, {target_probs.shape[-1]}), got {tuple(draft_probs.shape)}")
    device = target_probs.device
    draft = draft.to(device)
    draft_probs = draft_probs.to(device)
    rows = torch.arange(k, device=device)
    p_x = target_probs[rows, draft]  # (k,)
    q_x = draft_probs[rows, draft]
    uniform = torch.rand(k, generator=generator, device=device)
    # u < p/q without dividing; strict, so a token the target gives zero probability is never accepted
    accepted = uniform * q_x < p_x
    n_accepted = accepted.long().cumprod(0).sum()
    n = int(n_accepted)
    law = target_probs[k] if n == k else residual_distribution(target_probs[n], draft_probs[n])
    token = torch.multinomial(law, 1, generator=generator)[0]
    return Verdict(n_accepted, token)


def _check_rows(draft: torch.Tensor, target: torch.Tensor) -> None:
    if draft.dim() != 1 or target.dim() != 2 or target.shape[0] != draft.shape[0] + 1:
        raise ValueError(f"need draft (k,) and target rows (k + 1, V); "
                         f"got {tuple(draft.shape)} and {tuple(target.shape)}")
