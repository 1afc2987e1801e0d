"""Speculative decoding's pure pieces on hand-made tensors: accept/reject rules, draft laws, metrics."""

import itertools

import pytest
import torch
from scipy.stats import chisquare

from spec_decode import (
    AcceptanceCounter,
    acceptance_by_position,
    merge_by_position,
    adapt_block_size,
    draft_distributions,
    greedy_verdict,
    order_safe_positions,
    rejection_verdict,
    residual_distribution,
)

P_MIN = 1e-3  # chi-square p-value below which a sampler is declared wrong (fixed seeds: deterministic)


def _one_hot_rows(ids, vocab=6):
    rows = torch.full((len(ids), vocab), -5.0)
    rows[torch.arange(len(ids)), torch.tensor(ids)] = 5.0
    return rows


@pytest.mark.parametrize(
    "draft, target_argmax, n, token",
    [
        ([3, 1, 2], [3, 1, 0, 4], 2, 0),  # disagree at position 2: the target's own token replaces it
        ([3, 1, 0], [3, 1, 0, 4], 3, 4),  # full acceptance: bonus from the last row
        ([5, 1, 0], [3, 1, 0, 4], 0, 3),  # first token already wrong (checked against row 0)
        ([2], [2, 5], 1, 5),
        ([2, 2, 2, 3], [2, 2, 2, 2, 1], 3, 2),  # a later agreement after a disagreement does not count
    ],
)
def test_greedy_verdict(draft, target_argmax, n, token):
    verdict = greedy_verdict(torch.tensor(draft), _one_hot_rows(target_argmax))
    assert int(verdict.n_accepted) == n and int(verdict.token) == token


def test_greedy_verdict_rejects_bad_shapes():
    with pytest.raises(ValueError, match="k \\+ 1"):
        greedy_verdict(torch.tensor([1, 2]), torch.zeros(2, 6))


def test_residual_distribution():
    p = torch.tensor([0.5, 0.3, 0.2, 0.0])
    q = torch.tensor([0.2, 0.4, 0.1, 0.3])
    expected = torch.tensor([0.3, 0.0, 0.1, 0.0]) / 0.4
    assert torch.allclose(residual_distribution(p, q), expected)
    assert torch.allclose(residual_distribution(p, p), p)  # no residual mass: fall back to p
    assert torch.allclose(residual_distribution(torch.stack([p, p]), torch.stack([q, p])), torch.stack([expected, p]))


P0 = torch.tensor([0.40, 0.25, 0.15, 0.10, 0.10, 0.00])  # target; token 5 impossible
Q0 = torch.tensor([0.10, 0.30, 0.05, 0.25, 0.10, 0.20])  # draft; over-proposes 1, 3 and the impossible 5
P1 = torch.tensor([0.05, 0.05, 0.50, 0.10, 0.00, 0.30])
Q1 = torch.tensor([0.30, 0.10, 0.20, 0.20, 0.20, 0.00])  # never proposes 5, which the target likes


def _chi2_pvalue(counts: torch.Tensor, probs: torch.Tensor) -> float:
    """Chi-square goodness of fit; zero-probability cells must be empty, cells < 5 expected are pooled."""
    assert counts[probs == 0].sum() == 0, "a token of probability 0 was emitted"
    expected = probs.double() * counts.sum().item()
    big = expected >= 5
    obs = torch.cat([counts[big], counts[~big].sum(0, keepdim=True)]).double()
    exp = torch.cat([expected[big], expected[~big].sum(0, keepdim=True)]).double()
    keep = exp > 0
    obs, exp = obs[keep], exp[keep]
    return float(chisquare(obs.numpy(), (exp * obs.sum() / exp.sum()).numpy()).pvalue)


def test_rejection_step_reproduces_target():
    gen = torch.Generator().manual_seed(0)
    draws, counts, rejected = 8000, torch.zeros(6), 0
    for _ in range(draws):
        x = torch.multinomial(Q0, 1, generator=gen)
        verdict = rejection_verdict(x, torch.stack([P0, P1]), Q0[None], gen)
        first = int(x) if int(verdict.n_accepted) == 1 else int(verdict.token)
        rejected += int(verdict.n_accepted) == 0
        counts[first] += 1
    assert _chi2_pvalue(counts, P0) > P_MIN
    expected_rejections = 1 - torch.minimum(P0, Q0).sum().item()  # 0.55
    assert abs(rejected / draws - expected_rejections) < 0.03


def test_rejection_block_reproduces_joint_target():
    """Two drafted positions: the emitted pair is distributed as p0 x p1 (the next round samples the
    second token from p1 when the first is rejected), including the bonus path."""
    gen = torch.Generator().manual_seed(1)
    p = torch.stack([P0, P1, P0])  # rows: position 0, position 1, bonus
    q = torch.stack([Q0, Q1])
    counts = torch.zeros(36)
    for _ in range(8000):
        x = torch.stack([torch.multinomial(Q0, 1, generator=gen)[0], torch.multinomial(Q1, 1, generator=gen)[0]])
        verdict = rejection_verdict(x, p, q, gen)
        n, token = int(verdict.n_accepted), int(verdict.token)
        out = x[:n].tolist() + [token]
        if len(out) == 1:
            out.append(int(torch.multinomial(P1, 1, generator=gen)))
        counts[out[0] * 6 + out[1]] += 1
    assert _chi2_pvalue(counts, (P0[:, None] * P1[None]).flatten()) > P_MIN


def test_point_mass_draft_is_exact():
    """q = one_hot(x) verifies any draft, even a deterministic one that the target rarely picks."""
    gen = torch.Generator().manual_seed(2)
    counts = torch.zeros(6)
    x = torch.tensor([3])
    for _ in range(4000):
        verdict = rejection_verdict(x, torch.stack([P0, P1]), torch.eye(6)[3][None], gen)
        counts[3 if int(verdict.n_accepted) == 1 else int(verdict.token)] += 1
    assert _chi2_pvalue(counts, P0) > P_MIN


def test_order_safe_positions():
    def safe(steps):
        return order_safe_positions(torch.tensor(steps)).tolist()

    assert safe([0, 0, 0]) == [True, True, True]  # one pass: every position independent
    assert safe([0, 1, 2]) == [True, True, True]  # left to right
    assert safe([0, 1, 0]) == [True, True, False]  # position 1 was drawn knowing position 2
    assert safe([1, 0, 1]) == [True, False, True]
    assert safe([2, 1, 0, 2]) == [True, False, False, True]


def _exact_output_law(p0, p1, q1, q0_given_x1, verify_x1_with_point_mass):
    """Exact law of the first two emitted tokens when position 1 is drafted first and position 0 is
    drafted knowing it (a bidirectional two-pass draft), enumerating every draft."""
    vocab = p0.shape[0]
    law = torch.zeros(vocab, vocab, dtype=torch.float64)
    for x1, x0 in itertools.product(range(vocab), range(vocab)):
        q0 = q0_given_x1[x1]
        weight = q1[x1] * q0[x0]
        if weight == 0:
            continue
        v1 = torch.eye(vocab, dtype=torch.float64)[x1] if verify_x1_with_point_mass else q1
        a0 = min(1.0, p0[x0] / q0[x0])
        a1 = min(1.0, p1[x1] / v1[x1])
        second = (1 - a1) * residual_distribution(p1, v1)
        second[x1] += a1
        law[x0] += weight * a0 * second
        law += weight * (1 - a0) * residual_distribution(p0, q0)[:, None] * p1[None]
    return law


def test_out_of_order_draft_needs_point_mass():
    """Why draft_distributions uses one_hot at positions order_safe_positions rejects: verifying such a
    position against its own q biases the output; a point mass makes it exact."""
    p0 = torch.tensor([0.6, 0.3, 0.1], dtype=torch.float64)
    p1 = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    q1 = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q0_given_x1 = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]], dtype=torch.float64)
    target = p0[:, None] * p1[None]
    exact = _exact_output_law(p0, p1, q1, q0_given_x1, verify_x1_with_point_mass=True)
    naive = _exact_output_law(p0, p1, q1, q0_given_x1, verify_x1_with_point_mass=False)
    assert torch.allclose(exact, target, atol=1e-12)
    assert (naive - target).abs().max() > 0.01


def test_draft_distributions_rows():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.0, 3.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    tokens = torch.tensor([0, 2, 3])
    q = draft_distributions(logits, tokens, torch.tensor([0, 1, 0]), temperature=0.5, forbid=3)
    law = (logits.clone().index_fill_(1, torch.tensor([3]), float("-inf")) / 0.5).softmax(-1)
    assert torch.allclose(q[:2], law[:2])  # safe positions: the tempered law with the mask id forbidden
    assert torch.equal(q[2], torch.eye(4)[3])  # position 2 drawn before position 1: point mass
    assert torch.allclose(q.sum(-1), torch.ones(3))


def test_acceptance_counter():
    counter = AcceptanceCounter()
    for drafted, accepted in [(4, 4), (4, 1), (2, 0)]:
        counter.record(drafted, accepted)
    summary = counter.summary()
    assert summary["acceptance_rate"] == 5 / 10
    assert summary["mean_acceptance_length"] == 1 + 5 / 3
    assert summary["acceptance_lengths"] == [5, 2, 1]  # a fully accepted block of S = 4 has length S + 1
    assert summary["rounds"] == 3
    with pytest.raises(ValueError):
        counter.record(2, 3)
    assert AcceptanceCounter().summary()["acceptance_rate"] is None


def test_acceptance_by_position():
    rows = acceptance_by_position([4, 4, 2], [4, 1, 0])
    assert [(r["position"], r["drafted"], r["accepted"]) for r in rows] == [(1, 3, 2), (2, 3, 1), (3, 2, 1), (4, 2, 1)]
    assert rows[0]["share"] == 2 / 3 and rows[3]["share"] == 1 / 2
    assert acceptance_by_position([], []) == []
    with pytest.raises(ValueError, match="one accepted count per round"):
        acceptance_by_position([4, 4], [1])
    # one draft length for every round: 1 + the shares = the mean acceptance length
    counter = AcceptanceCounter()
    for accepted in [0, 3, 5, 1, 5, 2]:
        counter.record(5, accepted)
    summary = counter.summary()
    assert summary["proposed_lengths"] == [5] * 6
    shares = [r["share"] for r in summary["acceptance_by_position"]]
    assert shares == sorted(shares, reverse=True)  # a prefix: a later position is never accepted more often
    assert 1 + sum(shares) == pytest.approx(summary["mean_acceptance_length"])
    # tables of several generations add up count by count
    merged = merge_by_position([acceptance_by_position([4, 4, 2], [4, 1, 0]), acceptance_by_position([1], [1])])
    assert [(r["drafted"], r["accepted"]) for r in merged] == [(4, 3), (3, 1), (2, 1), (2, 1)]
    assert merged[0]["share"] == 3 / 4


def test_adapt_block_size():
    assert adapt_block_size(4, drafted=4, accepted=4, maximum=32) == 6  # grow after a full acceptance
    assert adapt_block_size(30, drafted=30, accepted=30, maximum=32) == 32  # bounded above
    assert adapt_block_size(16, drafted=16, accepted=0, maximum=32) == 8  # shrink halfway to accepted + 1
    assert adapt_block_size(8, drafted=8, accepted=7, maximum=32) == 7  # any rejection shrinks
    assert adapt_block_size(1, drafted=1, accepted=0, maximum=32) == 1  # bounded below
    size, sizes = 16, []
    for _ in range(6):
        size = adapt_block_size(size, size, 0, maximum=32)
        sizes.append(size)
    assert sizes == [8, 4, 2, 1, 1, 1]


def _round_probabilities_per_element(drafted, n, token, p, q):
    """round_probabilities' reference twin: one float() per value, as the round used to read them."""
    k = drafted.shape[0]
    rejected = n < k
    draft_token = int(drafted[n]) if rejected else None
    return {
        "draft_token": draft_token,
        "p_draft_of_draft": float(q[n, draft_token]) if rejected else None,
        "p_target_of_draft": float(p[n, draft_token]) if rejected else None,
        "p_draft_of_target": float(q[n, token]) if rejected else None,
        "p_target_of_target": float(p[n, token]),
        "p_target": [float(p[i, int(t)]) for i, t in enumerate(drafted)],
    }


@pytest.mark.parametrize("k, n", [(5, 0), (5, 2), (5, 4), (5, 5), (1, 0), (1, 1), (0, 0)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_round_probabilities_gathers_what_per_element_reads_gave(k, n, dtype):
    """The round's probabilities come back in one copy (a GPU sync each, before): the same values, at a
    rejection (n < k), after a full acceptance (n = k: the bonus token), and for an empty proposal."""
    from spec_decode.speculative import round_probabilities

    gen = torch.Generator().manual_seed(10 * k + n)
    p = torch.randn(k + 1, 11, generator=gen).softmax(-1).to(dtype)  # (k + 1, V)
    q = torch.randn(k, 11, generator=gen).softmax(-1).to(dtype)  # (k, V)
    drafted = torch.randint(0, 11, (k,), generator=gen)
    token = (int(drafted[n]) + 3) % 11 if n < k else 7  # a correction differs from the drafted token
    got = round_probabilities(drafted, n, token, p, q)
    assert got == _round_probabilities_per_element(drafted, n, token, p, q)
    assert len(got["p_target"]) == k and (got["p_draft_of_draft"] is None) == (n == k)
