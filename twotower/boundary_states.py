"""The context tower's Mamba states at every block boundary of a training window, from one pass over it.

Stage 2 needs, for each block b of a window (prefix P, then nb blocks of S), the states the context tower
holds after P + b·S tokens (objectives.context_features). Reading them off a cache means one cached pass per
block: on an H200 that was ~0.65 s of a ~0.65 s step, ~25 k kernel launches for ~0.2 s of GPU work
(benchmarks/train_step/). The states are a function of each Mamba mixer's input alone, so one pass over the
window (cached, for the attention layers' K/V) records every mixer's input (a forward pre-hook), and the
states at all boundaries follow in closed form, per layer, as in mamba's ssd_minimal.py:

    conv state after e tokens = the K pre-convolution inputs e−K … e−1 (zeros before the start)
    SSM state after e tokens  = Σ_{s < e} e^{cs_{e−1} − cs_s} dt_s x_s B_sᵀ        cs_t = Σ_{r ≤ t} dt_r·A

The per-block cached passes stay as objectives.context_features_stepwise, the reference twin
tests/test_boundary_states.py compares this against.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

from .short_scan import state_from_steps, step_sizes


def record_mixer_inputs(tower):
    """Forward pre-hooks that keep each Mamba mixer's input (B, L, hidden) by layer index; returns (inputs,
    handles): call handle.remove() on each when the pass is done."""
    inputs: dict[int, torch.Tensor] = {}
    handles = []
    for idx, layer in enumerate(tower.layers):
        if isinstance(layer.mixer, NemotronHMamba2Mixer):
            def keep(module, args, kwargs, idx=idx):
                inputs[idx] = args[0] if args else kwargs["hidden_states"]
            handles.append(layer.mixer.register_forward_pre_hook(keep, with_kwargs=True))
    return inputs, handles


def mamba_boundary_states(mixer: NemotronHMamba2Mixer, hidden: torch.Tensor, prefix_len: int, block_size: int,
                          n_blocks: int):
    """The mixer's conv and SSM states after P + b·S tokens of `hidden` (B, L, hidden_size), b = 0 … nb−1.

    Returns conv (B, nb, conv_dim, K) in the input projection's dtype (as a cache keeps it) and ssm
    (B, nb, heads, head_dim, state) in fp32. Needs L ≥ P + (nb−1)·S and P ≥ 1.
    """
    batch, length, _ = hidden.shape
    P, S, nb = prefix_len, block_size, n_blocks
    if P < 1 or length < P + (nb - 1) * S:
        raise ValueError(f"boundary states need a prefix >= 1 and {P} + {nb - 1}·{S} tokens, got {length}")
    heads, head_dim, groups, state = mixer.num_heads, mixer.head_dim, mixer.n_groups, mixer.ssm_state_size
    k = mixer.conv_kernel_size
    used = P + (nb - 1) * S  # the last boundary: no state after the last block is needed
    _, xbc, dt = mixer.in_proj(hidden[:, :used]).split([mixer.intermediate_size, mixer.conv_dim, heads], dim=-1)
    xbc = xbc.transpose(1, 2)  # (B, conv_dim, L)
    padded = F.pad(xbc, (k, 0))  # padded[..., e : e + K] = the K inputs in front of position e
    conv = padded[..., P : used + k].unfold(-1, k, S).transpose(1, 2)  # (B, nb, conv_dim, K), window b from P + b·S

    # one depthwise conv1d over the window (short_scan's unfold-einsum suits short passes; over a whole window
    # at batch 1 it issued ~23 k aten ops on this CPU)
    conv1d = mixer.conv1d
    act = F.conv1d(xbc.to(conv1d.weight.dtype), conv1d.weight, conv1d.bias, padding=k - 1, groups=mixer.conv_dim)
    act = F.silu(act[..., :used]).transpose(1, 2)  # (B, L, conv_dim)
    x, B, _ = act.split([mixer.intermediate_size, groups * state, groups * state], dim=-1)
    # the clamped steps of every decoding pass (short_scan.step_sizes); heads first, as short_scan.py lays out
    # the same quantities
    dt = step_sizes(mixer, dt).float().transpose(1, 2)  # (B, heads, L)
    x = x.float().view(batch, used, heads, head_dim).transpose(1, 2)  # (B, heads, L, p)
    B = B.float().view(batch, used, groups, state).repeat_interleave(heads // groups, dim=2)  # (B, L, heads, n)
    B = B.transpose(1, 2)  # (B, heads, L, n)
    a = dt * -torch.exp(mixer.A_log.float())[:, None]  # (B, heads, L): log-decay of each step

    # segments ending at the boundaries: the prefix, then nb − 1 blocks of S; each one's own end state from zero
    def end_state(seg_a, seg_dt, seg_x, seg_B):  # (..., T), (..., T), (..., T, p), (..., T, n)
        cs = torch.cumsum(seg_a, dim=-1)
        return state_from_steps(seg_x, seg_dt, cs, seg_B), cs[..., -1]  # (..., p, n), (...): its whole log-decay

    # (B, h, L−P, ...) -> (B, h, nb−1, S, ...)
    blocks = lambda t: t[:, :, P:].reshape(batch, heads, nb - 1, S, *t.shape[3:])
    first, first_total = end_state(a[:, :, :P], dt[:, :, :P], x[:, :, :P], B[:, :, :P])  # (B, h, p, n), (B, h)
    rest, rest_total = end_state(blocks(a), blocks(dt), blocks(x), blocks(B))  # (B, h, nb−1, p, n), (B, h, nb−1)
    local = torch.cat([first[:, :, None], rest], dim=2)  # (B, heads, nb, head_dim, state)
    total = torch.cat([first_total[..., None], rest_total], dim=-1)  # (B, heads, nb)
    # boundary c holds Σ_{c' ≤ c} e^{(log-decay of segments c'+1 … c)} local_{c'}
    ends = torch.cumsum(total, dim=-1)  # (B, heads, nb)
    gap = ends[..., :, None] - ends[..., None, :]  # (B, heads, c, c')
    causal = torch.ones(nb, nb, dtype=torch.bool, device=hidden.device).tril()
    decay = gap.masked_fill(~causal, float("-inf")).exp()  # zero for c' > c
    ssm = torch.einsum("bhcd,bhdpn->bchpn", decay, local)  # (B, nb, heads, head_dim, state)
    return conv, ssm
