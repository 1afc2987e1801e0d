"""The verifier's side: where the context tower stands in the output, and exact rollback on the hybrid stack.

Rolling back a rejected draft is easy for attention (slice the K/V back) but a Mamba-2 layer keeps only
its latest conv window and SSM state, which cannot be un-scanned. So each verify pass first snapshots
every layer's small state (twotower.seeded_states.clone_cache_states: conv + SSM state and the K/V
length, independent of the sequence length) and, after a partial acceptance, restores it. The accepted
tokens plus the correction token are then either re-run at once (one extra pass, which also gives the
logits for the next position) or, when they number at most `max_unread`, left *unread*: the next verify pass reads them
in front of the next draft, and the denoiser drafts after them as given block tokens, so a round costs
one context pass instead of two. After a full acceptance nothing is re-run: the verify pass already read
the whole draft, and the bonus token (drawn from the verify pass's last row) stays *unread* — the next
verify pass reads it in front of the next draft, and the denoiser sees it as a given first block token.

Per-position rollback (the default where it is available): the short scan (twotower.short_scan; on a GPU
it runs the verify passes and the 1-token steps) can hand over, for each Mamba layer of the verify pass, what it takes to
give its conv window and SSM state after any prefix of the pass (`PositionStates`). A partial acceptance
then sets every layer to "just after the kept tokens" directly — K/V sliced, Mamba states from the pass —
and only the correction token stays unread, as a bonus token does: no re-scan, no growing run of unread
tokens in front of the next draft. Where a pass did not record every Mamba layer (a model without the
short scan, or a pass longer than its limit) the snapshot path above runs instead; it is also the
reference twin the tests compare against.
"""

from __future__ import annotations

import torch

from twotower.hf_compat import set_seen_tokens
from twotower.seeded_states import clone_cache_states, cut_kv, restore_cache_states


class ContextCursor:
    """The context tower's cache over prompt + every emitted token except the last `unread` ones.

    next_logits (V,) is the target row for the next position; it is known only while nothing is unread
    (otherwise it comes out of the next verify pass). `passes` counts context-tower passes, prefill included.
    """

    def __init__(self, model, prompt: torch.Tensor, max_unread: int = 0, per_position: bool = True):
        self.model = model
        # roll back from the verify pass's per-position states when it has them
        self.per_position = per_position
        # Snapshot path only: after a partial acceptance, when the kept tokens plus the correction number at
        # most `max_unread`, they stay unread instead of being re-run at once (the next verify pass reads them in
        # front of the next draft: one pass saved per round); 0: always re-run. The per-position path leaves
        # only the correction token unread, whatever `max_unread` says, as a full acceptance leaves its bonus.
        self.max_unread = max_unread
        self.cache = model.new_cache(prompt.shape[0])
        self.next_logits: torch.Tensor | None = model.context_forward(prompt, self.cache)[0, -1]  # (V,)
        self.unread: list[int] = []
        self.passes = 1
        self._snapshot: list[dict] | None = None
        self._verified: list[int] = []
        self._positions: dict | None = None  # layer index -> short_scan.PositionStates of the last verify pass

    def emit_next(self, token: int) -> None:
        """`token` (drawn from next_logits) is now the last emitted token; it stays unread, as a bonus does."""
        if self.next_logits is None:
            raise RuntimeError("emit_next() needs the next position's logits (a prefill or a re-scan)")
        self.unread, self.next_logits = [int(token)], None  # next_logits is known only while nothing is unread

    def read_unread(self) -> torch.Tensor:
        """The next position's row (V,): one pass over the unread tokens, or none when nothing is unread (after a
        re-scan next_logits is that row). For a last token, where a draft could add nothing; the cache then
        holds every emitted token."""
        if not self.unread:
            return self.next_logits
        ids = torch.tensor([self.unread], dtype=torch.long)
        self.next_logits = self.model.context_forward(ids, self.cache)[0, -1]
        self.unread = []
        self.passes += 1
        return self.next_logits

    def verify(self, draft: list[int]) -> torch.Tensor:
        """One causal pass over unread + draft; returns the target rows (k + 1, V) for k = len(draft).

        Row i scores draft[i]; row k is the bonus position. The cache now holds the whole draft, until
        `commit` keeps what was accepted.
        """
        if not draft:
            raise ValueError("nothing to verify: the draft is empty")
        self._snapshot = clone_cache_states(self.cache)
        self._verified = self.unread + list(draft)
        ids = torch.tensor([self._verified], dtype=torch.long)
        self.cache.position_record = {} if self.per_position else None
        try:
            logits = self.model.context_forward(ids, self.cache, last_only=False)[0]  # (len(unread) + k, V)
        finally:
            self._positions, self.cache.position_record = self.cache.position_record, None
        self.passes += 1
        if self.unread:  # the row after the last unread token scores draft[0]
            return logits[len(self.unread) - 1 :]
        return torch.cat([self.next_logits[None].to(logits.device), logits], dim=0)

    def commit(self, n_accepted: int, token: int) -> str:
        """Keep unread + draft[:n_accepted] in the cache and make `token` the last emitted one.

        Returns how: "none" (full acceptance), "positions" (per-position rollback), "snapshot" (restored,
        the kept tokens left unread) or "rescan" (restored, then the kept tokens re-run)."""
        if self._snapshot is None:
            raise RuntimeError("commit() must follow verify()")
        n_draft = len(self._verified) - len(self.unread)
        kept = len(self.unread) + n_accepted  # verified tokens that stay in the text
        how = "none"
        if n_accepted == n_draft:  # full acceptance: the cache is already right, the bonus stays unread
            self.unread, self.next_logits = [int(token)], None
        elif self.per_position and (kept == 0 or self._has_every_position()):
            # straight to just after the kept tokens (nothing kept: the snapshot); the correction stays unread
            if kept == 0:
                restore_cache_states(self.cache, self._snapshot)
            else:
                roll_back_to(self.cache, self._snapshot, self._positions, kept)
            self.unread, self.next_logits, how = [int(token)], None, "positions"
        else:
            restore_cache_states(self.cache, self._snapshot)  # back to the state before unread + draft
            keep = self._verified[:kept] + [int(token)]
            if len(keep) <= self.max_unread:  # deferred: the next verify pass reads them first
                self.unread, self.next_logits, how = keep, None, "snapshot"
            else:
                self.next_logits = self.model.context_forward(torch.tensor([keep]), self.cache)[0, -1]
                self.passes += 1
                self.unread, how = [], "rescan"
        self._snapshot, self._verified, self._positions = None, [], None
        return how

    def _has_every_position(self) -> bool:
        """Did the last verify pass record every Mamba layer (the ones the snapshot holds states of)?"""
        if self._positions is None:
            return False
        return {i for i, entry in enumerate(self._snapshot) if "conv" in entry} <= self._positions.keys()


def roll_back_to(cache, snapshot: list[dict], positions: dict, t: int) -> None:
    """Set `cache` to its state after the first t tokens of the last pass: K/V sliced to the snapshot's
    length + t, each Mamba layer's conv window and SSM state from the pass's PositionStates."""
    for i, (layer, entry) in enumerate(zip(cache.layers, snapshot)):
        if "conv" in entry:
            layer.conv_states[0].copy_(positions[i].conv_state(t))
            layer.recurrent_states[0].copy_(positions[i].ssm_state(t))
            if entry["seen"] is not None:
                set_seen_tokens(layer, entry["seen"] + t)
        if "kv_len" in entry:
            cut_kv(layer, entry["kv_len"] + t)
