"""transformers 5.17 - 5.24 compatibility: NemotronH's cache keyword was renamed
(past_key_values / cache_params -> cache) and DynamicCache gained get_conv_state /
get_recurrent_state / is_recording_past in between."""

from __future__ import annotations

import inspect

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
