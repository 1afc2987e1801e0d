"""The verifier's side: where the context tower stands in the output, and exact rollback on the hybrid stack.

Rolling back a rejected draft is easy for attention (slice the K/V back) but a Mamba-2 layer keeps only
its latest conv window and SSM state, which cannot be un-scanned. So each verify pass first snapshots
every layer's small state (twotower.seeded_states.clone_cache_states: conv + SSM state and the K/V
length, independent of the sequence length) and, after a partial acceptance, restores it. The accepted
tokens plus the correction token are then either re-run at once (one extra pass, which also gives the
logits for the next position) or, with `max_unread` > 1, left *unread*: the next verify pass reads them
in front of the next draft, and the denoiser drafts after them as given block tokens, so a round costs
one context pass instead of two. After a full acceptance nothing is re-run: the verify pass already read
the whole draft, and the bonus token (drawn from the verify pass's last row) stays *unread* — the next
verify pass reads it in front of the next draft, and the denoiser sees it as a given first block token.
"""

from __future__ import annotations

import torch

from twotower.seeded_states import clone_cache_states, restore_cache_states


class ContextCursor:
    """The context tower's cache over prompt + every emitted token except the last `unread` ones.

    next_logits (V,) is the target row for the next position; it is known only while nothing is unread
    (otherwise it comes out of the next verify pass). `passes` counts context-tower passes, prefill included.
    """

    def __init__(self, model, prompt: torch.Tensor, max_unread: int = 0):
        self.model = model
        # After a partial acceptance, up to `max_unread` kept tokens stay unread instead of being re-run at
        # once: the next verify pass reads them in front of the next draft (one pass saved per round).
        # 0: always re-run now (only a bonus token after a full acceptance is ever left unread).
        self.max_unread = max_unread
        self.cache = model.new_cache(prompt.shape[0])
        self.next_logits: torch.Tensor | None = model.context_forward(prompt, self.cache)[0, -1]  # (V,)
        self.unread: list[int] = []
        self.passes = 1
        self._snapshot: list[dict] | None = None
        self._verified: list[int] = []

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
        logits = self.model.context_forward(ids, self.cache, last_only=False)[0]  # (len(unread) + k, V)
        self.passes += 1
        if self.unread:  # the row after the last unread token scores draft[0]
            return logits[len(self.unread) - 1 :]
        return torch.cat([self.next_logits[None].to(logits.device), logits], dim=0)

    def commit(self, n_accepted: int, token: int) -> None:
        """Keep unread + draft[:n_accepted] in the cache and make `token` the last emitted one."""
        if self._snapshot is None:
            raise RuntimeError("commit() must follow verify()")
        n_draft = len(self._verified) - len(self.unread)
        if n_accepted == n_draft:  # full acceptance: the cache is already right, the bonus stays unread
            self.unread, self.next_logits = [int(token)], None
        else:
            restore_cache_states(self.cache, self._snapshot)  # back to the state before unread + draft
            keep = self._verified[: len(self.unread) + n_accepted] + [int(token)]
            if len(keep) <= self.max_unread:  # deferred: the next verify pass reads them first
                self.unread, self.next_logits = keep, None
            else:
                self.next_logits = self.model.context_forward(torch.tensor([keep]), self.cache)[0, -1]
                self.passes += 1
                self.unread = []
        self._snapshot, self._verified = None, []
