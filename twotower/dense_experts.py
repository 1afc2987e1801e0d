"""A "dense" MoE experts kernel for small models on CPU, registered with transformers' ExpertsInterface.

transformers' eager experts loop over the experts that were hit: per expert a gather, two matmuls, the
activation, a scale and a scatter-add — about ten ops each, eight experts for any 16-token pass of the
default model, ~2.9 ms per MoE layer on this project's CPU where the arithmetic is ~0.3 ms. Here every
expert runs on every token as two matmuls over the experts stacked side by side, and the routing
weights (zero for the experts a token does not use) scale the hidden activations in between:

    out = Σ_e w_e · down_e(act(up_e(x)))  =  [down_1 … down_E] · (w ⊙ act([up_1; …; up_E] · x))

by linearity of down_e. That is E / top-k times the arithmetic of the routed experts, which is cheap
only while the experts are small and the device is a CPU, so the choice is made per call, from the
tensors themselves (as twotower/short_scan.py does): CPU inputs of up to MAX_TOKENS tokens (more in
bf16, LOW_PRECISION_MAX_TOKENS) run dense,
longer CPU inputs take transformers' loop, inputs on a GPU its grouped GEMM. The model sets this kernel
once (`TwoTowerModel.__init__`) and may then move anywhere. transformers' "eager" loop and grouped GEMM
are the reference twins (tests/test_towers.py compares them).
"""

from __future__ import annotations

import torch
from torch.nn import functional as F
from transformers.integrations.moe import ALL_EXPERTS_FUNCTIONS, grouped_mm_experts_forward

NAME = "dense"
# Dense costs E/top-k times the routed arithmetic (4x for the default model) to save ~10 ops per expert;
# past a few dozen tokens the extra arithmetic costs more than the ops saved, so longer inputs (prompt
# prefill, training windows) take transformers' loop.
MAX_TOKENS = 32
# In bf16 (a `--den-dtype bf16` denoiser) the dense matmuls go through oneDNN's bf16 GEMM and stay ahead of
# the loop much longer: one MoE layer of the default model, 64 tokens, 1 thread: dense 0.86 ms, loop 2.3 ms
# (fp32: dense 1.3-1.8 ms, loop ~1.0 ms). A batch-4 denoiser pass is 64 tokens.
LOW_PRECISION_MAX_TOKENS = 128


def dense_experts_forward(self, hidden_states: torch.Tensor, top_k_index: torch.Tensor,
                          top_k_weights: torch.Tensor) -> torch.Tensor:
    """hidden_states (T, H), top_k_index / top_k_weights (T, k) -> (T, H), in hidden_states' dtype (as eager)."""
    if hidden_states.device.type != "cpu":  # the GPU kernel
        return grouped_mm_experts_forward(self, hidden_states, top_k_index, top_k_weights)
    # a prompt prefill: the loop's routed-only arithmetic wins; compiled decoding stays dense for any
    # batch (the loop's .item() would break the graph; twotower/compiled.py keeps prefill out of it)
    limit = MAX_TOKENS if hidden_states.dtype == torch.float32 else LOW_PRECISION_MAX_TOKENS
    if hidden_states.shape[0] > limit and not torch.compiler.is_compiling():
        return _loop_forward(self)(self, hidden_states, top_k_index, top_k_weights)
    n_experts, inter, hidden = self.up_proj.shape  # up_proj (E, I, H), down_proj (E, H, I)
    weights = torch.zeros(hidden_states.shape[0], n_experts, dtype=top_k_weights.dtype, device=hidden_states.device)
    weights.scatter_(1, top_k_index, top_k_weights)  # (T, E); duplicate indices never occur in a top-k
    up = F.linear(hidden_states, self.up_proj.reshape(n_experts * inter, hidden))  # (T, E·I)
    act = self.act_fn(up).view(-1, n_experts, inter) * weights[..., None].to(up.dtype)  # (T, E, I)
    return F.linear(act.view(-1, n_experts * inter), _stacked_down(self)).to(hidden_states.dtype)  # (T, H)


def _loop_forward(experts):
    """transformers' own per-expert loop: the experts class's forward before the interface wrapped it."""
    return type(experts).forward.__wrapped__


def _stacked_down(experts) -> torch.Tensor:
    """down_proj (E, H, I) as one (H, E·I) matrix. Inference keeps the copy (rebuilt if the weights are
    replaced or changed in place); with autograd on it is rebuilt each call so gradients reach down_proj."""
    weight = experts.down_proj
    n_experts, hidden, inter = weight.shape
    if (torch.is_grad_enabled() and weight.requires_grad) or torch.compiler.is_compiling():
        return weight.permute(1, 0, 2).reshape(hidden, n_experts * inter)
    try:
        version = weight._version
    except RuntimeError:  # created under inference_mode: no version counter (and no in-place edits outside it)
        version = None
    key = (weight.data_ptr(), version, weight.device, weight.dtype)
    cached = getattr(experts, "_dense_down_cache", None)
    if cached is None or cached[0] != key:
        cached = (key, weight.detach().permute(1, 0, 2).reshape(hidden, n_experts * inter).contiguous())
        experts._dense_down_cache = cached
    return cached[1]


ALL_EXPERTS_FUNCTIONS.register(NAME, dense_experts_forward)
