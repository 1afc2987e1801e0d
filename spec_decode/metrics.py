"""Acceptance metrics with vLLM's definitions.

acceptance rate          = accepted draft tokens / drafted tokens
mean acceptance length   = 1 + accepted / verification rounds (the +1 is the token every round adds:
                           the correction at the first rejection, or the bonus after a full acceptance)
A round that accepts all S drafted tokens therefore has acceptance length S + 1. The lengths count what
the verifier accepted; the output can be shorter when it is cut at EOS (never at max_new_tokens: a round
drafts fewer than the budget leaves, and a budget's last token, when one is left, is no round).

acceptance by position   = per draft position i: of the rounds that drafted position i, the share whose
                           accepted prefix reached it (vLLM's per-position rate). It is what position i adds
                           to the mean acceptance length, so it tells where a longer draft stops paying:
                           with one draft length k for every round, 1 + sum over i of the shares = the mean
                           acceptance length.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class AcceptanceCounter:
    acceptance_lengths: list[int] = field(default_factory=list)  # per round: accepted + 1
    proposed: list[int] = field(default_factory=list)  # per round: drafted tokens put to the verifier

    @property
    def rounds(self) -> int:
        return len(self.acceptance_lengths)

    @property
    def drafted(self) -> int:
        return sum(self.proposed)

    @property
    def accepted(self) -> int:
        return sum(self.acceptance_lengths) - self.rounds

    @classmethod
    def of(cls, rounds) -> "AcceptanceCounter":
        """The counts of recorded rounds, each a dict with "drafted" and "accepted" (the audit's rows): the UI's
        figures for a run stopped before its stats, by the same definitions as a finished run's."""
        counter = cls()
        for r in rounds:
            counter.record(r["drafted"], r["accepted"])
        return counter

    def record(self, drafted: int, accepted: int) -> None:
        if not 0 <= accepted <= drafted:
            raise ValueError(f"accepted ({accepted}) must be within 0..drafted ({drafted})")
        self.acceptance_lengths.append(accepted + 1)
        self.proposed.append(drafted)

    def summary(self) -> dict:
        return {
            "acceptance_rate": self.accepted / self.drafted if self.drafted else None,
            "mean_acceptance_length": 1 + self.accepted / self.rounds if self.rounds else None,
            "rounds": self.rounds,
            "drafted": self.drafted,
            "accepted": self.accepted,
            "acceptance_lengths": list(self.acceptance_lengths),
            "proposed_lengths": list(self.proposed),
            "acceptance_by_position": acceptance_by_position(self.proposed, [n - 1 for n in self.acceptance_lengths]),
        }


def acceptance_by_position(proposed: list[int], accepted: list[int]) -> list[dict]:
    """Per draft position i = 1 .. max(proposed): rounds that drafted it, rounds that accepted it, the share.

    proposed / accepted: per round, the drafted and the accepted token counts (accepted[r] <= proposed[r]).
    Counts, not only shares, so that several generations' tables add up (see merge_by_position).
    """
    if len(proposed) != len(accepted):
        raise ValueError(f"need one accepted count per round ({len(proposed)} proposed, {len(accepted)} accepted)")
    rows = []
    for i in range(1, max(proposed, default=0) + 1):
        drafted = sum(k >= i for k in proposed)
        taken = sum(n >= i for n in accepted)
        rows.append({"position": i, "drafted": drafted, "accepted": taken, "share": taken / drafted})
    return rows


def merge_by_position(tables: list[list[dict]]) -> list[dict]:
    """acceptance_by_position over several generations: counts added per position, shares recomputed."""
    drafted, accepted = {}, {}
    for table in tables:
        for row in table:
            drafted[row["position"]] = drafted.get(row["position"], 0) + row["drafted"]
            accepted[row["position"]] = accepted.get(row["position"], 0) + row["accepted"]
    return [{"position": i, "drafted": drafted[i], "accepted": accepted[i], "share": accepted[i] / drafted[i]}
            for i in sorted(drafted)]


def pass_counts(rounds: int, draft_passes: int, context_passes: int, last_token_passes: int = 0) -> dict:
    """How the passes split up. Context passes = 1 prefill + 1 verify per round + the re-scans + the pass of a
    last token (one left in the budget: no draft, the context tower's own; 0 or 1): a partial acceptance re-runs
    its kept tokens only on the snapshot path, and only when they would not fit in front of the next draft
    (context_cursor.ContextCursor.commit); per-position rollback re-runs nothing."""
    return {
        "draft_passes": draft_passes,
        "verify_passes": rounds,
        "rollback_passes": context_passes - 1 - rounds - last_token_passes,
        "last_token_passes": last_token_passes,
    }
