"""transformers 5.17 - 5.25 compatibility: NemotronH's cache keyword was renamed
(past_key_values / cache_params -> cache) and DynamicCache gained get_conv_state /
get_recurrent_state / is_recording_past in between. 5.25 counts the tokens a Mamba layer has seen
(`cumulative_length_linear`, which `get_seq_length` now reads from layer 0, a Mamba layer in the default
pattern) and takes the Mamba step's lower clamp from config.time_step_limit."""

from __future__ import annotations

import inspect

import torch
from transformers import NemotronHModel
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

# keyword of NemotronHModel.forward / NemotronHMamba2Mixer.forward that takes the cache
MODEL_CACHE_KW = "cache" if "cache" in inspect.signature(NemotronHModel.forward).parameters else "past_key_values"
MIXER_CACHE_KW = "cache" if "cache" in inspect.signature(NemotronHMamba2Mixer.forward).parameters else "cache_params"


def get_conv_state(cache, layer_idx: int):
    if hasattr(cache, "get_conv_state"):
        return cache.get_conv_state(layer_idx, state_idx=0)
    return cache.layers[layer_idx].conv_states[0] if cache.has_previous_state(layer_idx) else None


def get_recurrent_state(cache, layer_idx: int):
    if hasattr(cache, "get_recurrent_state"):
        return cache.get_recurrent_state(layer_idx, state_idx=0)
    return cache.layers[layer_idx].recurrent_states[0] if cache.has_previous_state(layer_idx) else None


def is_recording_past(cache, layer_idx: int) -> bool:
    if hasattr(cache, "is_recording_past"):
        return cache.is_recording_past(layer_idx)
    return getattr(cache.layers[layer_idx], "record_past", False)


def has_read_tokens(cache) -> bool:
    """Whether the cache has read any token, from an attention layer's K/V shape where there is one: 5.25's
    get_seq_length is a tensor on the cache's device, and comparing it would wait on a GPU every decode call."""
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        if torch.is_tensor(keys):
            return keys.shape[-2] > 0
    return int(cache.get_seq_length()) > 0


def count_token(cache, layer_idx: int) -> None:
    """An in-place 1-token conv update bypasses the cache's counter; 5.25 counts it (increase_count)."""
    if hasattr(cache, "increase_count"):
        cache.increase_count(layer_idx, 0)


def seen_tokens(layer) -> torch.Tensor | None:
    """A copy of the tokens a Mamba cache layer has counted (5.25+; a 0-dim tensor on the cache's device, kept
    a tensor so that a snapshot never waits on a GPU), None where layers do not count."""
    count = getattr(layer, "cumulative_length_linear", None)
    return count.clone() if count is not None else None


def set_seen_tokens(layer, count: torch.Tensor) -> None:
    """Put a counting Mamba cache layer's count back (rollback: a snapshot's count, plus the tokens kept); the
    callers skip layers whose snapshot holds no count (seen_tokens gave None)."""
    layer.cumulative_length_linear.copy_(count)


def pin_time_step_clamp(tower) -> None:
    """Clamp each Mamba step at config.time_step_min in transformers' chunk scan, as transformers <= 5.24
    hard-coded it and as every checkpoint here was trained; 5.25 reads config.time_step_limit ((0, inf) by
    default) instead, which would change a trained model's outputs wherever softplus(dt) < time_step_min.
    The short scan reads the same attribute (short_scan.py), so the two paths stay twins on any version."""
    for layer in tower.layers:
        if isinstance(layer.mixer, NemotronHMamba2Mixer):
            layer.mixer.time_step_limit = (tower.config.time_step_min, float("inf"))
