"""Read-only views of the context tower's per-layer state, as the denoiser consumes them.

The denoiser's Mamba-2 layer *l* starts its scan from the context tower's layer-*l* conv and SSM states
(state seeding), and its attention layer *l* puts the context tower's layer-*l* K/V in front of the
block's own. Those context states are built once per block and must stay untouched while the
denoiser runs many steps over them, so instead of `copy.deepcopy` of a `DynamicCache` per step we hand
the transformers Mamba mixer this duck-typed cache: it reads the seed, never writes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from .hf_compat import seen_tokens, set_seen_tokens


@dataclass
class ContextStates:
    """Per-layer context features for the denoiser.

    mamba[l] = (conv_state (N, conv_dim, K), ssm_state (N, heads, head_dim, state)) — N is the number of
    blocks being denoised (batch, or batch·blocks when training every block of a sequence at once).
    attn[l] = (keys, values), each (B, kv_heads, T_ctx, head_dim).
    """

    mamba: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    attn: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @classmethod
    def from_cache(cls, cache: DynamicCache, layer_types: list[str]) -> "ContextStates":
        """Borrow (no copy) the states of a context-tower cache after the last committed token."""
        states = cls()
        for idx, kind in enumerate(layer_types):
            layer = cache.layers[idx]
            if kind == "linear_attention":
                states.mamba[idx] = (layer.conv_states[0], layer.recurrent_states[0])
            elif kind == "full_attention":
                states.attn[idx] = (layer.keys, layer.values)
        return states

    def rows(self, index: torch.Tensor) -> "ContextStates":
        """The states of some batch rows only (index: (n,) long), for a pass over the rows still denoising."""
        return ContextStates(
            mamba={i: (c.index_select(0, index), s.index_select(0, index)) for i, (c, s) in self.mamba.items()},
            attn={i: (k.index_select(0, index), v.index_select(0, index)) for i, (k, v) in self.attn.items()},
        )

    def to(self, device, dtype: torch.dtype | None = None) -> "ContextStates":
        """Move every tensor, once per block, when the towers sit on different devices or run in different
        dtypes: conv states and K/V take the denoiser's dtype; SSM states keep theirs (the config's
        mamba_ssm_cache_dtype, fp32 by default)."""
        return ContextStates(
            mamba={i: (c.to(device, dtype), s.to(device)) for i, (c, s) in self.mamba.items()},
            attn={i: (k.to(device, dtype), v.to(device, dtype)) for i, (k, v) in self.attn.items()},
        )


class SeededMambaCache:
    """The subset of the transformers Cache API that `NemotronHMamba2Mixer.forward` calls.

    Reads return the seeded states; writes go to scratch space and are dropped, so one seed serves every
    denoiser step of a block. `is_recording_past` answers True so the mixer never takes its single-token
    path, which updates the conv state in place.
    """

    def __init__(self, mamba_states: dict[int, tuple[torch.Tensor, torch.Tensor]]):
        self.mamba_states = mamba_states

    def get_conv_state(self, layer_idx: int, state_idx: int = 0):
        return self.mamba_states[layer_idx][0]

    def get_recurrent_state(self, layer_idx: int, state_idx: int = 0):
        # A clone: the recurrent kernels may write into the state they are given.
        return self.mamba_states[layer_idx][1].clone()

    def is_recording_past(self, layer_idx: int) -> bool:
        return True

    def update_conv_state(self, new_inputs: torch.Tensor, layer_idx: int, **kwargs) -> torch.Tensor:
        # (N, conv_dim, K) seed ++ (N, conv_dim, S) block inputs: the causal conv sees the context's tail.
        return torch.cat([self.mamba_states[layer_idx][0].to(new_inputs.dtype), new_inputs], dim=-1)

    def update_recurrent_state(self, final_state: torch.Tensor, layer_idx: int, **kwargs) -> torch.Tensor:
        return final_state

    # transformers >= 5.25: intermediate states are never kept here, and nothing counts tokens
    def get_recurrent_states_to_keep(self, layer_idx: int | None = None) -> int:
        return 0

    def increase_count(self, layer_idx: int, state_idx: int = 0) -> None:
        pass

    # transformers < 5.24: the mixer asks has_previous_state() and reads cache.layers[idx] directly
    def has_previous_state(self, layer_idx: int | None = None, state_idx: int | None = None) -> bool:
        return True

    @property
    def layers(self):
        return {idx: _SeededLayer(conv, ssm) for idx, (conv, ssm) in self.mamba_states.items()}


class _SeededLayer:
    record_past = True  # never the in-place single-token conv update

    def __init__(self, conv: torch.Tensor, ssm: torch.Tensor):
        self.conv_states = {0: conv}
        self._ssm = ssm

    @property
    def recurrent_states(self):
        return {0: self._ssm.clone()}  # a clone: selective_state_update writes in place


def clone_cache_states(cache: DynamicCache) -> list[dict]:
    """Snapshot every layer's mutable tensors (KV length, conv and SSM states, and on transformers >= 5.25 a
    Mamba layer's token count, which sets the next pass's positions) to restore later."""
    snap = []
    for layer in cache.layers:
        entry = {}
        if hasattr(layer, "conv_states") and layer.conv_states.get(0) is not None:
            entry["conv"] = layer.conv_states[0].clone()
            entry["ssm"] = layer.recurrent_states[0].clone()
            entry["seen"] = seen_tokens(layer)
        if getattr(layer, "keys", None) is not None and torch.is_tensor(layer.keys):
            entry["kv_len"] = layer.keys.shape[-2]
        snap.append(entry)
    return snap


def restore_cache_states(cache: DynamicCache, snap: list[dict]) -> None:
    """Put a cache back to a snapshot: KV sliced back, conv / SSM states copied back in place."""
    for layer, entry in zip(cache.layers, snap):
        if "conv" in entry:
            layer.conv_states[0].copy_(entry["conv"])
            layer.recurrent_states[0].copy_(entry["ssm"])
            if entry["seen"] is not None:
                set_seen_tokens(layer, entry["seen"])
        if "kv_len" in entry:
            cut_kv(layer, entry["kv_len"])


def cut_kv(layer, n: int) -> None:
    """Slice an attention layer's cached K/V back to its first n positions."""
    layer.keys = layer.keys[..., :n, :]
    layer.values = layer.values[..., :n, :]
