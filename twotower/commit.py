"""Pure step functions of the samplers: token prediction and the commit rule. No model needed.

Kept apart from the decoding loops so tests can drive them with hand-made tensors.
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Top-k then nucleus filtering on (..., V) logits; removed entries become -inf."""
    if top_k is not None and 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0.0 < top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        # drop a token when the mass before it already reaches top_p (the first token always stays)
        drop_sorted = (cum - sorted_logits.softmax(-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sampling_distribution(logits: torch.Tensor, temperature: float, top_k=None, top_p=None) -> torch.Tensor:
    """The distribution a token is drawn from at temperature > 0 (after top-k / top-p), as probabilities."""
    return filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)


def predict_tokens(
    logits: torch.Tensor,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    forbid: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pick a token per position and its confidence.

    logits: (..., V). Greedy at temperature 0, else Gumbel-max on the tempered, filtered logits (the
    same law as multinomial sampling). `forbid` (the mask id) can never be chosen. Confidence is the
    probability of the chosen token under the *unscaled* distribution, as the release does.
    Returns tokens (...) long and confidence (...) float.
    """
    logits = logits.float()
    if forbid is not None:
        logits = logits.clone()
        logits[..., forbid] = float("-inf")
    if temperature <= 0.0:
        tokens = logits.argmax(-1)
    else:
        scores = filter_logits(logits / temperature, top_k, top_p)
        # float64 draws: float32 uniforms (a step of 2^-24 below 1) capped the Gumbel noise near 16, so a token
        # more than ~20 logits behind the best could never be drawn, and the law was not exactly the softmax
        # speculative sampling's rejection step assumes (a mass of up to ~1e-5 moved)
        wide = torch.float32 if scores.device.type == "mps" else torch.float64  # MPS has no float64
        uniform = torch.rand(scores.shape, generator=generator, device=scores.device, dtype=wide)
        gumbel = -torch.log(-torch.log(uniform.clamp_(min=torch.finfo(wide).tiny)))
        tokens = (scores.to(wide) + gumbel).argmax(-1)
    confidence = logits.softmax(-1).gather(-1, tokens[..., None]).squeeze(-1)
    return tokens, confidence


def select_commits(confidence: torch.Tensor, masked: torch.Tensor, gamma: float, steps_left: int) -> torch.Tensor:
    """The release's commit rule, per row of a block.

    confidence, masked: (B, S). Among still-masked positions commit the k most confident, with
    k = max(#(confidence >= gamma), 1, ceil(#masked / steps_left)); on the last step (steps_left == 1)
    that is every masked position. Returns a (B, S) bool tensor of positions to commit now.
    """
    if steps_left < 1:
        raise ValueError("steps_left must be >= 1")
    n_masked = masked.sum(-1)  # (B,)
    conf = confidence.masked_fill(~masked, float("-inf"))
    above = ((conf >= gamma) & masked).sum(-1)
    schedule = torch.div(n_masked + steps_left - 1, steps_left, rounding_mode="floor")  # ceil
    k = torch.maximum(torch.maximum(above, torch.ones_like(above)), schedule).minimum(n_masked)
    order = conf.argsort(dim=-1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(conf.shape[-1], device=conf.device).expand_as(order))
    return (rank < k[:, None]) & masked
