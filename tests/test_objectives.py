"""The stage-2 training objective against its inference twin: the denoiser trained on every block of a window
at once must see exactly what inference shows each block (clean context through the context tower). Both losses
against their definitions, the mask sampling, and the learning-rate schedules."""

import math

import pytest
import torch

from tiny_models import lively, random_ids, sharp, trained_looking
from twotower import build_model
from twotower.objectives import block_attention_mask, context_features, context_loss, denoiser_loss, mask_blocks
from twotower.training import PROFILES, TrainConfig


def _block_by_block_logits(model, tokens, noisy, t, prefix, size):
    """What inference shows block b: the clean text before it through a cached context pass, then the noisy
    block alone at its own t. (B, nb·S, V) logits, one denoise() call per block."""
    apart = []
    with torch.no_grad():
        for b in range(noisy.shape[1] // size):
            cache = model.new_cache()
            model.context_forward(tokens[:, : prefix + b * size], cache)
            apart.append(model.denoise(noisy[:, b * size : (b + 1) * size], model.context_states(cache), t[:, b]))
    return torch.cat(apart, dim=1)


def _masked_counts(counts, size):
    """A fixed mask: the first counts[r, b] positions of block b of row r (bool (B, nb·S)), and its t (B, nb)."""
    masked = torch.arange(size) < counts[..., None]  # (B, nb, S)
    return masked.flatten(1), counts.float() / size


def test_all_blocks_in_one_pass_equal_block_by_block_inference():
    # lively Mamba (O(1) SSM states, not ~1e-6) and t-dependent conditioning (not its no-op start), t
    # different in every block: a lost boundary state or per-block t in the wrong order shows at 1e-5
    model = build_model("tiny", seed=3).eval()
    model.init_denoiser_from_context()  # resets the time conditioning: trained_looking after it
    trained_looking(lively(model, seed=3), seed=3)
    prefix, size, n_blocks = 8, 4, 5
    tokens = random_ids((2, prefix + size * n_blocks), seed=0)
    masked, t = _masked_counts(torch.tensor([[1, 4, 2, 3, 1], [3, 1, 4, 2, 2]]), size)
    noisy = tokens[:, prefix:].masked_fill(masked, model.config.mask_token_id)
    with torch.no_grad():
        ctx = context_features(model, tokens, prefix, size)
        mask = block_attention_mask(prefix, n_blocks, size, prefix + (n_blocks - 1) * size)
        together = model.denoise(noisy, ctx, t, block_size=size, attn_mask=mask)  # (B, nb·S, V)
        flipped = model.denoise(noisy, ctx, t.flip(-1), block_size=size, attn_mask=mask)
    apart = _block_by_block_logits(model, tokens, noisy, t, prefix, size)
    assert (together - flipped).abs().max() > 1e-3  # the test can see t's order
    torch.testing.assert_close(together, apart, atol=1e-5, rtol=1e-4)


def test_context_loss_is_the_mean_next_token_cross_entropy():
    # stage 1 is a causal LM: position i predicts token i + 1 (a copy task, targets = inputs, trains nothing
    # useful and looked the same to a finiteness check). Sharp heads: the two differ by ~1 nat, not ~1e-3.
    model = sharp(build_model("tiny", seed=2))
    tokens = random_ids((2, 12), seed=0)
    with torch.no_grad():
        loss = context_loss(model, tokens)
        logp = model.context_forward(tokens, None, last_only=False)[:, :-1].log_softmax(-1)  # (B, T-1, V)
    next_token = -logp.gather(-1, tokens[:, 1:, None]).mean()
    same_token = -logp.gather(-1, tokens[:, :-1, None]).mean()
    assert abs(next_token - same_token) > 0.1  # the test can tell the two apart
    assert loss.item() == pytest.approx(next_token.item(), abs=1e-4)


def test_denoiser_loss_is_the_mean_cross_entropy_over_masked_positions(monkeypatch):
    # stage 2 (design note: "cross-entropy on the masked positions only, averaged"): with the mask fixed by
    # hand, the loss is the mean over masked positions of -log p(clean token) under what inference predicts
    # for each block; not over every position, not against a neighbour's token. A ragged tail is cut off.
    import twotower.objectives as objectives

    model = sharp(trained_looking(lively(build_model("tiny", seed=2), seed=2), seed=2))
    prefix, size, n_blocks = 8, 4, 3
    cfg = TrainConfig(**{**PROFILES["cpu"], "prefix_len": prefix, "block_size": size, "dtype": "float32"})
    tokens = random_ids((2, prefix + size * n_blocks + 2), seed=1)
    masked, t = _masked_counts(torch.tensor([[1, 4, 2], [3, 1, 2]]), size)
    masked = masked.view(2, n_blocks, size).roll(1, dims=-1).flatten(1)  # not only leading positions
    targets = tokens[:, prefix : prefix + size * n_blocks]
    noisy = targets.masked_fill(masked, model.config.mask_token_id)
    drawn = []

    def fixed_mask(clean, *args, **kwargs):
        drawn.append(clean)
        return clean.masked_fill(masked, model.config.mask_token_id), masked, t

    monkeypatch.setattr(objectives, "mask_blocks", fixed_mask)
    loss = denoiser_loss(model, tokens, cfg, torch.Generator().manual_seed(0))
    assert len(drawn) == 1 and torch.equal(drawn[0], targets)
    nll = -_block_by_block_logits(model, tokens, noisy, t, prefix, size).log_softmax(-1).gather(
        -1, targets[..., None])[..., 0]  # (B, nb·S)
    assert abs(nll[masked].mean() - nll.mean()) > 0.1  # masked-only differs from every position here
    assert loss.item() == pytest.approx(nll[masked].mean().item(), abs=1e-4)


def test_mask_blocks_masks_at_least_one_position_per_block():
    gen = torch.Generator().manual_seed(0)
    targets = random_ids((64, 6 * 4), 1, high=250)
    noisy, masked, t = mask_blocks(targets, 6, 4, mask_id=4, generator=gen)
    per_block = masked.view(64, 6, 4)
    assert per_block.any(-1).all()
    assert torch.equal(noisy[masked], torch.full_like(noisy[masked], 4)) and torch.equal(noisy[~masked], targets[~masked])
    assert torch.allclose(t, per_block.float().mean(-1))
    assert 0.3 < masked.float().mean() < 0.7  # t ~ U(0, 1): about half masked on average


def test_mask_ratios_are_drawn_for_every_block_of_every_row():
    # t ~ U(0, 1) on its own for each block (std 0.29): one t per row, or one per block position shared by the
    # batch, still masks half the positions on average but trains each window on one or few noise levels.
    # With 64 positions a block's masked share t_actual is its drawn t to within ~0.06.
    targets = random_ids((64, 32 * 64), 2, high=250)
    _, _, t = mask_blocks(targets, 32, 64, mask_id=4, generator=torch.Generator().manual_seed(0))
    assert 0.25 < float(t.std(dim=1).mean()) < 0.33  # across the blocks of one row
    assert 0.25 < float(t.std(dim=0).mean()) < 0.33  # across the rows, block by block


def test_full_mask_share_masks_whole_blocks_and_leaves_the_default_stream_alone():
    targets = random_ids((256, 6 * 16), 3, high=250)
    plain = mask_blocks(targets, 6, 16, mask_id=4, generator=torch.Generator().manual_seed(0))
    zero = mask_blocks(targets, 6, 16, mask_id=4, generator=torch.Generator().manual_seed(0), full_share=0.0)
    assert all(torch.equal(a, b) for a, b in zip(plain, zero))  # the shipped recipe's masks, draw for draw
    _, masked, t = mask_blocks(targets, 6, 16, mask_id=4, generator=torch.Generator().manual_seed(0), full_share=1.0)
    assert masked.all() and torch.equal(t, torch.ones_like(t))
    _, masked, t = mask_blocks(targets, 6, 16, mask_id=4, generator=torch.Generator().manual_seed(0), full_share=0.5)
    full = masked.view(256, 6, 16).all(-1).float().mean()
    assert 0.45 < full < 0.6  # half the blocks, plus the few U(0, 1) masks all 16 (t > ~0.96)
    assert abs(float(t[t < 1].mean()) - 0.5) < 0.1  # the other blocks keep t ~ U(0, 1)


def test_denoiser_loss_trains_only_the_denoiser():
    model = build_model("tiny", seed=1)
    model.init_denoiser_from_context()
    model.train()
    cfg = TrainConfig(**{**PROFILES["cpu"], "prefix_len": 8, "block_size": 4, "dtype": "float32"})
    loss = denoiser_loss(model, random_ids((2, 8 + 4 * 3), 4, high=250), cfg, torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is None for p in model.context_tower.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.denoiser_tower.parameters())


def test_the_step_schedule_warms_up_linearly_to_the_peak_then_follows_a_cosine_to_a_tenth():
    # lr_at drives every step-counted run: the endpoints and shape of "linear warm-up, then cosine decay to
    # 10 % of the peak", from that definition (not lr_at_time, tested below, which budgeted runs use)
    from twotower.training import lr_at

    cfg = TrainConfig(**{**PROFILES["cpu"], "lr": 1e-3, "warmup": 10})
    peak, floor, warmup, total = 1e-3, 1e-4, 10, 110
    lrs = [lr_at(step, total, cfg) for step in range(total + 20)]
    # warm-up: the first step already moves (1/warmup of the peak), equal increments, the peak on its last step
    assert lrs[0] == pytest.approx(peak / warmup)
    steps_up = [b - a for a, b in zip(lrs[:warmup], lrs[1:warmup])]
    assert all(d == pytest.approx(peak / warmup) for d in steps_up)
    assert lrs[warmup - 1] == pytest.approx(peak) == lrs[warmup]  # the cosine starts at the peak
    # the cosine: strictly down to the floor at `total`, halfway between peak and floor at its middle,
    # point-symmetric about that middle, and flat at the floor after `total`
    decay = lrs[warmup : total + 1]
    assert all(a > b for a, b in zip(decay, decay[1:]))
    middle = warmup + (total - warmup) // 2
    assert lrs[middle] == pytest.approx((peak + floor) / 2)
    quarter = (total - warmup) // 4
    assert lrs[middle - quarter] + lrs[middle + quarter] == pytest.approx(peak + floor)
    assert lrs[middle - quarter] == pytest.approx(floor + (peak - floor) * (1 + math.cos(math.pi / 4)) / 2)
    assert all(lr == pytest.approx(floor) for lr in lrs[total:])


def test_the_time_based_schedule_warms_up_then_decays_to_a_tenth():
    from twotower.training import lr_at_time

    cfg = TrainConfig(**PROFILES["cpu"])
    lrs = [lr_at_time(share, 0.1, cfg) for share in (0.0, 0.05, 0.1, 0.55, 1.0, 1.2)]
    assert 0 < lrs[0] < lrs[1] < lrs[2] == pytest.approx(cfg.lr)
    assert lrs[2] > lrs[3] > lrs[4] == pytest.approx(0.1 * cfg.lr) == lrs[5]
