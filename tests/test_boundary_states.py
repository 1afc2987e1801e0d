"""One-pass block-boundary states (twotower/boundary_states.py) against their reference twin, the cached pass
per block (objectives.context_features_stepwise): the same Mamba states and K/V for stage 2 to train on."""

import pytest
import torch

from tiny_models import lively
from twotower import build_model, from_pretrained
from twotower.boundary_states import mamba_boundary_states
from twotower.objectives import context_features, context_features_stepwise, denoiser_loss
from twotower.training import PROFILES, TrainConfig


def _assert_same_features(model, tokens, prefix, block, atol):
    fast = context_features(model, tokens, prefix, block)
    ref = context_features_stepwise(model, tokens, prefix, block)
    assert fast.mamba.keys() == ref.mamba.keys() and fast.attn.keys() == ref.attn.keys()
    # SSM states ~1e-3 or more, not the ~1e-6 of a tiny tower at its initialisation, which no absolute
    # tolerance could tell from zero (a one-pass that lost the SSM state passed)
    assert all(ref.mamba[i][1].abs().max() > 1e-4 for i in ref.mamba)
    for i in ref.mamba:
        for got, want in zip(fast.mamba[i], ref.mamba[i]):
            assert got.shape == want.shape and got.dtype == want.dtype
            torch.testing.assert_close(got, want, atol=atol, rtol=1e-4)
    for i in ref.attn:
        for got, want in zip(fast.attn[i], ref.attn[i]):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=atol, rtol=1e-4)


# prefixes off the chunk grid and shorter than the conv window, one block (no block pass), a ragged tail
@pytest.mark.parametrize("prefix,block,n_blocks,tail", [(64, 16, 5, 0), (37, 16, 3, 7), (2, 8, 4, 0), (20, 16, 1, 0)])
def test_one_pass_matches_a_cached_pass_per_block(prefix, block, n_blocks, tail):
    torch.manual_seed(0)
    model = lively(build_model("tiny"))  # O(1) Mamba dynamics: the states compared carry signal
    tokens = torch.randint(5, model.config.vocab_size, (3, prefix + n_blocks * block + tail))
    _assert_same_features(model, tokens, prefix, block, atol=1e-5)


def test_shipped_model_states_and_loss_match_the_reference(monkeypatch):
    model = from_pretrained("assets/default")
    cfg = TrainConfig(**PROFILES["cpu"])
    tokens = torch.randint(5, model.config.vocab_size, (2, cfg.prefix_len + 4 * cfg.block_size),
                           generator=torch.Generator().manual_seed(1))
    _assert_same_features(model, tokens, cfg.prefix_len, cfg.block_size, atol=1e-4)
    # the stage-2 loss a training step takes, with either: same masks (same generator seed), same loss
    import twotower.objectives as objectives

    loss = denoiser_loss(model, tokens, cfg, torch.Generator().manual_seed(2))
    monkeypatch.setattr(objectives, "context_features", context_features_stepwise)
    ref = denoiser_loss(model, tokens, cfg, torch.Generator().manual_seed(2))
    assert abs(loss.item() - ref.item()) < 1e-4


def test_boundary_states_refuse_a_window_too_short():
    model = build_model("tiny")
    mixer = next(layer.mixer for layer in model.context_tower.layers if hasattr(layer.mixer, "A_log"))
    with pytest.raises(ValueError, match="boundary states need"):
        mamba_boundary_states(mixer, torch.zeros(1, 20, model.config.hidden_size), 16, 8, 3)
    with pytest.raises(ValueError, match="boundary states need"):
        mamba_boundary_states(mixer, torch.zeros(1, 20, model.config.hidden_size), 0, 8, 1)
