"""Checks on user input, shared by the API, the CLI and the UI: every bad value gets a ValueError that
says what was wrong and what is allowed, never a shape error from deep inside a tower."""

from __future__ import annotations

import math

import torch


def as_batch(input_ids, vocab_size: int) -> torch.Tensor:
    """Accept a tensor (T,) or (B, T), a list of ids or a list of equal-length lists; return (B, T) long."""
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids
    else:
        if not isinstance(input_ids, (list, tuple)) or len(input_ids) == 0:
            raise ValueError("the prompt is empty: give at least one token")
        if isinstance(input_ids[0], (list, tuple, torch.Tensor)):
            lengths = {len(row) for row in input_ids}
            if len(lengths) > 1:
                raise ValueError(
                    f"batched prompts must have the same token length (got lengths {sorted(lengths)}); "
                    "run them separately or batch prompts of equal length"
                )
        try:
            ids = torch.tensor(input_ids)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"prompt ids must be integers: {exc}") from None
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (T,) or (batch, T), got {tuple(ids.shape)}")
    if ids.dtype.is_floating_point or ids.dtype == torch.bool:
        raise ValueError("prompt ids must be integers")
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token")
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab_size})")
    return ids.long()


def check_int(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {value}")
    return value


def check_gamma(gamma) -> float:
    if not isinstance(gamma, (int, float)) or isinstance(gamma, bool) or math.isnan(gamma) or not 0.0 < gamma <= 1.0:
        raise ValueError(f"confidence threshold γ must be in (0, 1], got {gamma!r}")
    return float(gamma)


def check_sampling(temperature, top_k=None, top_p=None) -> tuple[float, int | None, float | None]:
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or math.isnan(temperature) or temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature!r}")
    if top_k is not None:
        top_k = check_int("top_k", top_k, minimum=0) or None
    if top_p is not None:
        if not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
    return float(temperature), top_k, top_p


def check_token_id(name: str, value, vocab_size: int) -> int | None:
    if value is None:
        return None
    value = check_int(name, value, minimum=0)
    if value >= vocab_size:
        raise ValueError(f"{name} {value} is outside the vocabulary [0, {vocab_size})")
    return value
