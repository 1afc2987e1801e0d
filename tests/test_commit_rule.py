"""The pure step functions of the samplers, on hand-made tensors (no model): the release's commit rule,
token prediction (greedy, Gumbel-max sampling, the forbidden mask id) and top-k / top-p filtering."""

import math
import random

import pytest
import torch

from twotower.commit import filter_logits, predict_tokens, sampling_distribution, select_commits


def expected_commit_count(conf_row, masked_row, gamma, steps_left) -> int:
    """The release's k, written from the spec: max(#conf >= γ or 1, ceil(masked / steps left)), capped."""
    n_masked = int(masked_row.sum())
    above = int(((conf_row >= gamma) & masked_row).sum())
    return min(n_masked, max(above, 1, math.ceil(n_masked / steps_left)))


def test_commit_rule_on_a_hand_made_block():
    conf = torch.tensor([[0.90, 0.20, 0.85, 0.10, 0.95]])
    masked = torch.tensor([[True, True, True, True, False]])  # position 4 is already committed
    # γ = 0.8, 8 steps left: the two confident masked positions, never the committed one.
    assert select_commits(conf, masked, 0.8, 8).tolist() == [[True, False, True, False, False]]
    # Nothing reaches γ: still one commit, the most confident masked position.
    assert select_commits(conf, masked, 0.99, 8).tolist() == [[True, False, False, False, False]]
    # ceil(4 masked / 2 steps left) = 2 beats the single position above γ = 0.88.
    assert select_commits(conf, masked, 0.88, 2).tolist() == [[True, False, True, False, False]]
    # Last step: every masked position.
    assert select_commits(conf, masked, 0.99, 1).tolist() == [[True, True, True, True, False]]


def test_commit_rule_rows_are_independent_and_a_full_row_commits_nothing():
    conf = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.1, 0.9]])
    masked = torch.tensor([[False, False, False], [True, True, True]])
    commit = select_commits(conf, masked, 0.5, 3)
    assert commit.tolist() == [[False, False, False], [False, False, True]]


def test_commit_rule_rejects_zero_steps_left():
    with pytest.raises(ValueError, match="steps_left"):
        select_commits(torch.rand(1, 4), torch.ones(1, 4, dtype=torch.bool), 0.8, 0)


def test_commit_rule_properties_over_random_blocks():
    """Over many random γ / S / steps: k as specified, the most confident first, ≥ 1 commit per step,
    never an already committed position, and the block is full after at most steps_per_block steps."""
    rng = random.Random(0)
    gen = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch, size, steps = rng.randint(1, 3), rng.randint(1, 24), rng.randint(1, 24)
        gamma = rng.choice([1.0, rng.uniform(0.01, 1.0)])
        masked = torch.ones(batch, size, dtype=torch.bool)
        for step in range(steps):
            conf = torch.rand(batch, size, generator=gen)
            if rng.random() < 0.3:  # ties, as a peaked model produces them
                conf = (conf * 4).round() / 4
            commit = select_commits(conf, masked, gamma, steps - step)
            assert not (commit & ~masked).any(), "a committed position was committed again"
            for b in range(batch):
                if not masked[b].any():
                    assert not commit[b].any()
                    continue
                k = int(commit[b].sum())
                assert k >= 1
                assert k == expected_commit_count(conf[b], masked[b], gamma, steps - step)
                left = masked[b] & ~commit[b]
                if left.any():  # the k chosen are the k most confident of the masked ones
                    assert conf[b][commit[b]].min() >= conf[b][left].max()
            masked &= ~commit
            if not masked.any():
                break
        assert not masked.any(), f"block of {size} not full after {steps} steps"


def test_greedy_prediction_never_picks_the_forbidden_id():
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 9.0, 1.0]])
    tokens, conf = predict_tokens(logits, forbid=2)
    assert tokens.tolist() == [1, 0]
    # Confidence: probability of the pick under the unscaled distribution without the forbidden id.
    allowed = logits.clone()
    allowed[:, 2] = float("-inf")
    assert torch.allclose(conf, allowed.softmax(-1).gather(-1, tokens[:, None]).squeeze(-1))


def test_confidence_is_unscaled_at_any_temperature():
    logits = torch.randn(64, 10, generator=torch.Generator().manual_seed(1))
    for temperature in (0.3, 1.0, 2.5):
        gen = torch.Generator().manual_seed(2)
        tokens, conf = predict_tokens(logits, temperature, gen, forbid=3)
        assert not (tokens == 3).any()
        probs = logits.masked_fill(torch.arange(10) == 3, float("-inf")).softmax(-1)
        assert torch.allclose(conf, probs.gather(-1, tokens[:, None]).squeeze(-1))


@pytest.mark.parametrize("temperature,top_k,top_p", [(1.0, None, None), (0.7, 3, None), (1.3, None, 0.8), (1.0, 4, 0.9)])
def test_gumbel_sampling_matches_the_target_distribution(temperature, top_k, top_p):
    """Gumbel-max draws follow `sampling_distribution` (tempered, top-k / top-p filtered)."""
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0])
    n = 40_000
    gen = torch.Generator().manual_seed(3)
    tokens, _ = predict_tokens(logits.expand(n, -1), temperature, gen, top_k, top_p)
    freq = torch.bincount(tokens, minlength=8).float() / n
    target = sampling_distribution(logits, temperature, top_k, top_p)
    assert (freq[target == 0] == 0).all(), "a filtered-out token was drawn"
    assert torch.allclose(freq, target, atol=0.012), (freq, target)


def test_gumbel_noise_reaches_far_enough_for_a_token_30_logits_behind(monkeypatch):
    """float32 uniforms (clamped at 1 - 1e-7) capped the noise near 16: a token more than ~20 logits behind the
    best had probability 0, not e^-30 of it. Here the uniform draw that makes it win is handed in."""
    real_rand = torch.rand

    def extremes(shape, **kwargs):  # the best token draws a median noise, the far one the largest there is
        u = real_rand(shape, **kwargs)
        u[..., 0], u[..., 1] = 0.5, 1 - torch.finfo(u.dtype).eps / 2
        return u

    monkeypatch.setattr(torch, "rand", extremes)
    tokens, _ = predict_tokens(torch.tensor([[0.0, -30.0]]), 1.0, torch.Generator().manual_seed(0))
    assert tokens.tolist() == [1]


def test_seeded_sampling_is_reproducible():
    logits = torch.randn(32, 50, generator=torch.Generator().manual_seed(4))
    draw = lambda seed: predict_tokens(logits, 1.0, torch.Generator().manual_seed(seed))[0]  # noqa: E731
    assert torch.equal(draw(5), draw(5))
    assert not torch.equal(draw(5), draw(6))


def test_top_k_and_top_p_filtering():
    logits = torch.log(torch.tensor([0.05, 0.5, 0.15, 0.3]))
    kept = lambda out: torch.isfinite(out).nonzero().flatten().tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [1, 3]
    assert kept(filter_logits(logits, top_k=0)) == [0, 1, 2, 3]  # 0 = off
    assert kept(filter_logits(logits, top_p=0.5)) == [1]  # the top token alone reaches 0.5
    assert kept(filter_logits(logits, top_p=0.75)) == [1, 3]  # smallest set with mass >= 0.75
    assert kept(filter_logits(logits, top_p=0.85)) == [1, 2, 3]
    assert kept(filter_logits(logits, top_p=1.0)) == [0, 1, 2, 3]
    # The two filters compose: top-k first, then the nucleus of what is left.
    assert kept(filter_logits(logits, top_k=3, top_p=0.6)) == [1, 3]
