"""Acceptance metrics with vLLM's definitions.

acceptance rate          = accepted draft tokens / drafted tokens
mean acceptance length   = 1 + accepted / verification rounds (the +1 is the token every round adds:
                           the correction at the first rejection, or the bonus after a full acceptance)
A round that accepts all S drafted tokens therefore has acceptance length S + 1. The lengths count what
the verifier accepted; the output can be shorter when it is cut at EOS or at max_new_tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AcceptanceCounter:
    drafted: int = 0
    accepted: int = 0
    acceptance_lengths: list[int] = field(default_factory=list)  # per round: accepted + 1

    @property
    def rounds(self) -> int:
        return len(self.acceptance_lengths)

    def record(self, drafted: int, accepted: int) -> None:
        if not 0 <= accepted <= drafted:
            raise ValueError(f"accepted ({accepted}) must be within 0..drafted ({drafted})")
        self.drafted += drafted
        self.accepted += accepted
        self.acceptance_lengths.append(accepted + 1)

    def summary(self) -> dict:
        return {
            "acceptance_rate": self.accepted / self.drafted if self.drafted else None,
            "mean_acceptance_length": 1 + self.accepted / self.rounds if self.rounds else None,
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_lengths": list(self.acceptance_lengths),
        }


def pass_counts(rounds: int, draft_passes: int, context_passes: int) -> dict:
    """How the passes split up. Context passes = 1 prefill + 1 verify per round + 1 re-scan per round
    that rolled back (a partial acceptance that did not end the generation)."""
    return {
        "draft_passes": draft_passes,
        "verify_passes": rounds,
        "rollback_passes": context_passes - 1 - rounds,
    }
