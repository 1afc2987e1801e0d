"""The two training objectives: stage 1's causal LM loss, stage 2's masked block diffusion loss.

Stage 2 trains every block of a window at once (design note, "Training every block of a sequence in one
pass"): the frozen context tower runs once over the clean window, giving the K/V of every position and, in
closed form from each Mamba mixer's input, the Mamba states at each block boundary (`context_features`; its
reference twin `context_features_stepwise` reads them off a cache, one pass per block); the denoiser then
sees all nb noisy blocks in one pass — Mamba layers scan each block from its boundary state, attention is
block-causal over the context keys and block-diagonal over the noisy keys (`block_attention_mask`).
The loop around them, the profiles and checkpoints are twotower/training.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from .training import TrainConfig


# --------------------------------------------------------------------------------------------------
# stage 2: the context features of every block boundary, and the block-diagonal attention mask
@torch.no_grad()
def context_features(model, tokens: torch.Tensor, prefix_len: int, block_size: int):
    """Run the frozen context tower once over `tokens` (B, P + nb·S) for what inference shows block b.

    Returns ContextStates with mamba states per block boundary as (B·nb, ...) — the states after P + b·S
    tokens, from each mixer's recorded input in closed form (twotower/boundary_states.py) — and attention K/V
    over P + (nb−1)·S positions (the last block is never context for another block).
    """
    from .boundary_states import mamba_boundary_states, record_mixer_inputs
    from .hf_compat import MODEL_CACHE_KW
    from .seeded_states import ContextStates

    bsz, total = tokens.shape
    n_blocks = (total - prefix_len) // block_size
    cache = model.new_cache(bsz)
    inputs, handles = record_mixer_inputs(model.context_tower)
    try:
        model.context_tower(input_ids=tokens[:, : prefix_len + (n_blocks - 1) * block_size], use_cache=True,
                            **{MODEL_CACHE_KW: cache})
    finally:
        for handle in handles:
            handle.remove()
    states = ContextStates.from_cache(cache, model.layer_types)
    for i, (conv_end, ssm_end) in states.mamba.items():
        mixer = model.context_tower.layers[i].mixer
        conv, ssm = mamba_boundary_states(mixer, inputs[i], prefix_len, block_size, n_blocks)
        # (B, nb, ...) -> (B·nb, ...) in denoise()'s block order, in the dtypes a cache keeps
        states.mamba[i] = (conv.flatten(0, 1).to(conv_end.dtype), ssm.flatten(0, 1).to(ssm_end.dtype))
    return states


@torch.no_grad()
def context_features_stepwise(model, tokens: torch.Tensor, prefix_len: int, block_size: int):
    """context_features' reference twin: the prefix in one pass, then one cached pass per block, reading the
    Mamba states off the cache at each boundary (tests/test_boundary_states.py compares the two).

    Returns ContextStates with mamba states stacked per block boundary as (B·nb, ...) and attention K/V
    over P + (nb−1)·S positions, exactly what inference shows block b (clean text before it).
    """
    from .hf_compat import MODEL_CACHE_KW
    from .seeded_states import ContextStates

    bsz, total = tokens.shape
    n_blocks = (total - prefix_len) // block_size
    cache = model.new_cache(bsz)
    model.context_tower(input_ids=tokens[:, :prefix_len], use_cache=True, **{MODEL_CACHE_KW: cache})
    boundaries = []  # the Mamba states in front of each block, cloned: the cache moves on
    for b in range(n_blocks):
        seen = ContextStates.from_cache(cache, model.layer_types)
        boundaries.append({i: (conv.clone(), ssm.clone()) for i, (conv, ssm) in seen.mamba.items()})
        if b < n_blocks - 1:
            seg = tokens[:, prefix_len + b * block_size : prefix_len + (b + 1) * block_size]
            model.context_tower(input_ids=seg, use_cache=True, **{MODEL_CACHE_KW: cache})
    # K/V cover P + (nb-1)·S positions: the last block is never context for another block.
    states = ContextStates.from_cache(cache, model.layer_types)
    for i in states.mamba:
        conv = torch.stack([bd[i][0] for bd in boundaries], dim=1)  # (B, nb, conv_dim, K)
        ssm = torch.stack([bd[i][1] for bd in boundaries], dim=1)  # (B, nb, heads, head_dim, state)
        states.mamba[i] = (conv.flatten(0, 1), ssm.flatten(0, 1))  # (B·nb, ...) in denoise()'s block order
    return states


def block_attention_mask(prefix_len: int, n_blocks: int, block_size: int, ctx_len: int, device=None) -> torch.Tensor:
    """Bool (T, ctx_len + T), True = may attend. Query in block b sees context keys < P + b·S and the
    keys of its own noisy block (both directions)."""
    seq = n_blocks * block_size
    q_block = torch.arange(seq, device=device) // block_size  # (T,)
    ctx_pos = torch.arange(ctx_len, device=device)
    sees_ctx = ctx_pos[None, :] < (prefix_len + q_block[:, None] * block_size)
    sees_block = q_block[:, None] == q_block[None, :]
    return torch.cat([sees_ctx, sees_block], dim=1)


def mask_blocks(targets: torch.Tensor, n_blocks: int, block_size: int, mask_id: int, generator=None,
                full_share: float = 0.0):
    """Per block a mask ratio t ~ U(0, 1), each position masked with probability t (at least one).

    full_share: that share of blocks gets t = 1 instead (every position masked): the first pass of every
    block at decoding time, and the only pass of a one-pass speculative draft, which U(0, 1) rarely shows.
    targets: (B, nb·S). Returns noisy (B, nb·S), masked (B, nb·S) bool, t_actual (B, nb).
    """
    bsz = targets.shape[0]
    t = torch.rand(bsz, n_blocks, 1, generator=generator)
    if full_share > 0:  # drawn only when asked: the default recipe's random stream stays as it was
        t = torch.where(torch.rand(bsz, n_blocks, 1, generator=generator) < full_share, torch.ones_like(t), t)
    masked = torch.rand(bsz, n_blocks, block_size, generator=generator) < t
    forced = torch.randint(0, block_size, (bsz, n_blocks, 1), generator=generator)
    masked |= torch.zeros_like(masked).scatter_(-1, forced, True) & ~masked.any(-1, keepdim=True)
    # drawn on the generator's device (the CPU: the same masks whatever trains), used on the tokens' device
    masked = masked.view(bsz, -1).to(targets.device)
    noisy = targets.masked_fill(masked, mask_id)
    return noisy, masked, masked.view(bsz, n_blocks, block_size).float().mean(-1)


def masked_block_logits(model, tokens: torch.Tensor, cfg: TrainConfig, generator=None, full_mask_share: float = 0.0):
    """Noise every block of the windows in `tokens` (B, P + nb·S) and run the denoiser over them in one pass.
    Returns the logits of the N masked positions (N, V), their clean tokens (N,) and the mask (B, nb·S).
    full_mask_share: see mask_blocks. Shared by the loss and by probes of what the denoiser predicts
    (benchmarks/calibration/)."""
    prefix, S = cfg.prefix_len, cfg.block_size
    n_blocks = (tokens.shape[1] - prefix) // S
    tokens = tokens[:, : prefix + n_blocks * S]
    ctx = context_features(model, tokens, prefix, S)
    targets = tokens[:, prefix:]
    noisy, masked, t = mask_blocks(targets, n_blocks, S, model.config.mask_token_id, generator, full_mask_share)
    attn_mask = block_attention_mask(prefix, n_blocks, S, prefix + (n_blocks - 1) * S, tokens.device)
    logits = model.denoise(noisy, ctx, t, block_size=S, attn_mask=attn_mask, head_positions=masked)  # (N, V)
    return logits, targets[masked], masked


def denoiser_loss(model, tokens: torch.Tensor, cfg: TrainConfig, generator=None, full_mask_share: float = 0.0):
    """Masked block diffusion loss on every block of the windows in `tokens` (B, P + nb·S), taken as they
    are: run_stage swaps in the self-distilled windows first (twotower.distill.DistillAhead).
    full_mask_share: see mask_blocks (training passes cfg.full_mask_share; validation keeps U(0, 1))."""
    logits, targets, _ = masked_block_logits(model, tokens, cfg, generator, full_mask_share)
    return F.cross_entropy(logits, targets)


def context_loss(model, tokens: torch.Tensor):
    hidden = model.context_tower(input_ids=tokens[:, :-1]).last_hidden_state
    logits = model.context_lm_head(hidden).float()
    return F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
