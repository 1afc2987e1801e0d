"""A closed-form path for transformers' Mamba-2 mixer on the short sequences decoding runs: every such pass
on the CPU, and on a GPU the 1-token steps (for their step-size clamp) and the verify passes that record
per-position states (takes_short_scan says which).

Decoding never scans long sequences after the prompt: an AR step is 1 token, a denoiser pass one block
(S ≤ 32 positions), a verify pass a draft plus a few unread tokens. Without the mamba-ssm / causal-conv1d
kernels, transformers runs these through its reference chunk scan, written for any length: on this
project's CPU one 16-token mixer call issued ~430 aten ops (~2.8 ms), and the per-op cost, not the
arithmetic, was the bill. For T tokens in one go the scan has a closed form (the quadratic "attention"
form of SSD, as in mamba's ssd_minimal.py), which is a couple of dozen ops:

    a_t  = dt_t · A                   cs_t = a_1 + … + a_t            (per head; A < 0, so cs falls)
    y_t  = e^{cs_t} C_t·h_0  +  Σ_{s ≤ t} e^{cs_t − cs_s} dt_s (C_t·B_s) x_s  +  D x_t
    h_T  = e^{cs_T} h_0      +  Σ_s       e^{cs_T − cs_s} dt_s x_s B_sᵀ

`ShortScanMamba2Mixer` is transformers' `NemotronHMamba2Mixer` with that arithmetic for T ≤ `max_len`
on CPU (on a GPU: for speculative verify passes and 1-token steps, see `takes_short_scan`), and the same cache calls
in the same order (so DynamicCache, the denoiser's SeededMambaCache and rollback see exactly what they
saw before). Everything else — longer sequences (prompt prefill, training windows), attention masks,
other GPU passes, or `max_len = 0` — goes to transformers' own forward,
which is also the reference twin that tests/test_short_scan.py compares against. One deliberate difference:
1-token steps clamp the step size as the chunk scan does (step_sizes), so they run here on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

from .hf_compat import MIXER_CACHE_KW, count_token, get_conv_state, get_recurrent_state, is_recording_past

DEFAULT_MAX_LEN = 64  # the T×T decay matrix per head stays tiny; prefill beyond this uses the chunk scan


class ShortScanMamba2Mixer(NemotronHMamba2Mixer):
    """Same parameters and state-dict names as the transformers mixer (the class is swapped in place)."""

    max_len: int = DEFAULT_MAX_LEN

    def forward(self, hidden_states: torch.Tensor, cache=None, attention_mask=None, **kwargs):
        cache = kwargs.pop("cache_params", None) if cache is None else cache  # transformers < 5.24 passes cache_params
        recording = getattr(cache, "position_record", None) is not None
        if not takes_short_scan(hidden_states.device.type, hidden_states.shape[1], self.max_len,
                                attention_mask is not None, recording):
            return super().forward(hidden_states, attention_mask=attention_mask, **{MIXER_CACHE_KW: cache}, **kwargs)
        return short_scan_forward(self, hidden_states, cache)


def takes_short_scan(device_type: str, seq_len: int, max_len: int, masked: bool, recording: bool) -> bool:
    """Which passes the closed form runs. On the CPU every short unmasked pass (the per-op cost it removes is
    the CPU's bill). On a GPU a speculative verify pass that asks for per-position states (`recording`):
    the mamba-ssm kernels, when installed, cannot give the state after each token, and without per-position
    states a partial acceptance falls back to the snapshot path (context_cursor.py); and every 1-token
    step, whose transformers update leaves the step size unclamped (step_sizes). Every other GPU pass keeps
    transformers' path and its kernels."""
    if masked or not 0 < seq_len <= max_len:
        return False
    return device_type == "cpu" or recording or seq_len == 1


def step_sizes(mixer, dt_raw: torch.Tensor) -> torch.Tensor:
    """softplus(dt + dt_bias) clamped to mixer.time_step_limit, (..., heads), for every pass of any length.

    transformers clamps in its chunk scan (prefill, training, any multi-token pass: the law every model here
    was trained under, hf_compat.pin_time_step_clamp) but not in its 1-token update (selective_state_update).
    A trained model has steps far below time_step_min (down to ~3e-5 on the default model), so a token read
    alone and the same token read inside a pass got different logits (up to ~0.1): AR, which reads one token
    a step, then parted from speculative decoding, whose verify pass reads the draft in one go, on about 6 %
    of 64-token generations. One clamp everywhere makes them the same computation, as trained."""
    low, high = mixer.time_step_limit
    return F.softplus(dt_raw + mixer.dt_bias).clamp(min=low, max=high)


def short_scan_forward(mixer: NemotronHMamba2Mixer, hidden_states: torch.Tensor, cache) -> torch.Tensor:
    """The mixer's forward for a short sequence, hidden_states (B, T, H) -> (B, T, H)."""
    batch, seq_len, _ = hidden_states.shape
    dtype = hidden_states.dtype
    heads, head_dim, groups, state = mixer.num_heads, mixer.head_dim, mixer.n_groups, mixer.ssm_state_size
    conv_state = recurrent_state = None
    if cache is not None:
        conv_state = get_conv_state(cache, mixer.layer_idx)
        recurrent_state = get_recurrent_state(cache, mixer.layer_idx)
    gate, xbc, dt = mixer.in_proj(hidden_states).split([mixer.intermediate_size, mixer.conv_dim, heads], dim=-1)
    xbc = xbc.transpose(1, 2)  # (B, conv_dim, T)
    weight = mixer.conv1d.weight.squeeze(1)  # (conv_dim, K)
    single_step = conv_state is not None and seq_len == 1 and not is_recording_past(cache, mixer.layer_idx)
    # a verify pass asks for what it takes to roll this layer back to any position (see PositionStates)
    record = getattr(cache, "position_record", None) if conv_state is not None and seq_len > 1 else None
    if single_step:  # as causal_conv1d_update: slide the token into the cached window, in place
        conv_state.copy_(torch.cat([conv_state[..., 1:], xbc.to(conv_state.dtype)], dim=-1))
        count_token(cache, mixer.layer_idx)
        xbc = (conv_state.to(weight.dtype) * weight).sum(-1, keepdim=True)  # (B, conv_dim, 1)
    else:
        if cache is not None:  # the cache returns its window in front of the new inputs (and keeps the tail)
            xbc = cache.update_conv_state(xbc, mixer.layer_idx, conv_kernel_size=mixer.conv_kernel_size)
        window = xbc  # (B, conv_dim, K + T) with a cache that had a window: K cached inputs, then the T new ones
        xbc = causal_depthwise_conv(xbc.to(weight.dtype), weight)[..., -seq_len:]
    if mixer.conv1d.bias is not None:
        xbc = xbc + mixer.conv1d.bias[:, None]
    xbc = F.silu(xbc).transpose(1, 2)  # (B, T, conv_dim)
    x, B, C = xbc.split([mixer.intermediate_size, groups * state, groups * state], dim=-1)

    recurrent_step = recurrent_state is not None and seq_len == 1  # transformers' selective_state_update case
    dt = step_sizes(mixer, dt)  # (B, T, heads), clamped on every pass: see step_sizes
    x = x.float().view(batch, seq_len, heads, head_dim).transpose(1, 2)  # (B, heads, T, head_dim)

    def per_head(t):  # (B, T, groups·state) -> (B, heads, T, state); group g serves H/G consecutive heads
        t = t.float().view(batch, seq_len, groups, 1, state).transpose(1, 2)  # (B, groups, T, 1, state)
        return t.expand(-1, -1, -1, heads // groups, -1).transpose(2, 3).reshape(batch, heads, seq_len, state)

    h0 = recurrent_state.float() if recurrent_state is not None else None  # (B, heads, head_dim, state)
    dt_h, B_h, A = dt.float().transpose(1, 2), per_head(B), -torch.exp(mixer.A_log.float())  # dt_h (B, heads, T)
    y, final = ssd_closed_form(x, dt_h, A, B_h, per_head(C), h0)
    if record is not None and h0 is not None and window.shape[-1] == conv_state.shape[-1] + seq_len:
        record[mixer.layer_idx] = PositionStates(window, x, dt_h, A, B_h, h0)
    y = y + mixer.D.float()[:, None, None] * x  # (B, heads, T, head_dim)
    y = y.transpose(1, 2).reshape(batch, seq_len, -1)  # (B, T, heads·head_dim)

    if cache is not None:
        if recurrent_step:  # as selective_state_update: the state is updated in place
            recurrent_state.copy_(final.to(recurrent_state.dtype))
        else:
            cache.update_recurrent_state(final, layer_idx=mixer.layer_idx)
    y = mixer.norm(y, gate)
    return mixer.out_proj(y.to(dtype))


class PositionStates:
    """What one mixer call over T tokens needs to give its cache states after any t of them (0 ≤ t ≤ T).

    Speculative decoding's verify pass reads a draft and keeps only a prefix of it; with these the cache is
    rolled back to that prefix exactly, with no second pass over the kept tokens (context_cursor.py):
        conv window after t tokens = the K inputs ending at token t of [cached window ; new inputs]
        SSM state after t tokens   = e^{cs_t} h_0 + Σ_{s ≤ t} e^{cs_t − cs_s} dt_s x_s B_sᵀ
    (the `final` of ssd_closed_form, stopped at t). Holds the tensors the pass made anyway, and a copy of h_0.
    """

    def __init__(self, window, x, dt, A, B, h0):
        self.window, self.x, self.dt, self.A, self.B = window, x, dt, A, B  # window (B, conv_dim, K + T)
        self.h0 = h0.clone()  # h0 may be the cache's own fp32 state, which the pass then overwrites in place
        self._cs = None

    @property
    def cs(self) -> torch.Tensor:  # (b, h, T), as in ssd_closed_form; only a rollback needs it, so not in the pass
        if self._cs is None:
            self._cs = torch.cumsum(self.dt * self.A[:, None], dim=-1)
        return self._cs

    def conv_state(self, t: int) -> torch.Tensor:  # (B, conv_dim, K)
        k = self.window.shape[-1] - self.x.shape[-2]
        return self.window[..., t:t + k]

    def ssm_state(self, t: int) -> torch.Tensor:  # (b, h, p, n)
        if t == 0:
            return self.h0
        cs = self.cs[..., :t]
        state = state_from_steps(self.x[..., :t, :], self.dt[..., :t], cs, self.B[..., :t, :])
        return state + self.h0 * cs[..., -1].exp()[..., None, None]


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """conv1d(x, weight, groups=channels, padding=K−1)[..., :L] without oneDNN's per-call set-up.

    x (B, C, L), weight (C, K) -> (B, C, L): output l reads inputs l−K+1 … l (zeros before the start).
    """
    k = weight.shape[-1]
    windows = F.pad(x, (k - 1, 0)).unfold(-1, k, 1)  # (B, C, L, K)
    return torch.einsum("bclk,ck->bcl", windows, weight)


def ssd_closed_form(x, dt, A, B, C, h0=None):
    """Mamba-2's scan over T steps in one shot (fp32), heads first.

    x (b, h, T, p), dt (b, h, T), A (h,), B / C (b, h, T, n), h0 (b, h, p, n) or None.
    Returns y (b, h, T, p) without the D skip, and the final state (b, h, p, n).
    """
    cs = torch.cumsum(dt * A[:, None], dim=-1)  # (b, h, T): log-decay from the start through step t
    seg = cs[..., :, None] - cs[..., None, :]  # (b, h, t, s): log-decay from s to t
    causal = torch.ones(seg.shape[-2:], dtype=torch.bool, device=seg.device).tril()
    decay = seg.masked_fill(~causal, float("-inf")).exp()  # zero above the diagonal, no inf·0
    scores = (C @ B.transpose(-1, -2)) * decay * dt[..., None, :]  # (b, h, t, s)
    y = scores @ x  # (b, h, T, p)
    final = state_from_steps(x, dt, cs, B)  # (b, h, p, n)
    if h0 is not None:
        from_start = cs.exp()  # (b, h, T)
        y = y + (C @ h0.transpose(-1, -2)) * from_start[..., None]
        final = final + h0 * from_start[..., -1, None, None]
    return y, final


def state_from_steps(x, dt, cs, B):
    """The SSM state the steps alone leave behind (from a zero state): Σ_s e^{cs_T − cs_s} dt_s x_s B_sᵀ.

    x (..., T, p), dt / cs (..., T) (cs: the running log-decay, as in ssd_closed_form), B (..., T, n)
    -> (..., p, n). The scan's final state, a rollback's state after t steps, a training window's block ends.
    """
    to_end = (cs[..., -1:] - cs).exp() * dt  # (..., T): weight of step s in the state after the last one
    return (x * to_end[..., None]).transpose(-1, -2) @ B


def use_short_scan(model, max_len: int = DEFAULT_MAX_LEN) -> None:
    """Swap every Mamba-2 mixer of both towers to the fast path (max_len 0: transformers' forward only)."""
    for tower in (model.context_tower, model.denoiser_tower):
        for layer in tower.layers:
            if isinstance(layer.mixer, NemotronHMamba2Mixer):
                layer.mixer.__class__ = ShortScanMamba2Mixer
                layer.mixer.max_len = max_len
