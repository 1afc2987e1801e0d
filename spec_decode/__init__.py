"""Speculative mode: the denoiser drafts a block, the context tower verifies it in one causal pass.

Greedy output equals twotower.decoding.iter_ar token for token; at temperature > 0 it is distributed as
AR sampling (speculative rejection sampling). See speculative.py for the round structure,
context_cursor.py for the exact rollback of the hybrid (Mamba + attention) cache.
"""

from .context_cursor import ContextCursor
from .draft import BlockDraft, adapt_block_size, draft_block, draft_distributions, order_safe_positions
from .metrics import AcceptanceCounter, acceptance_by_position, merge_by_position, pass_counts
from .speculative import CUT_OFF_WHEN_SAMPLING, CUT_REASON, generate_speculative, iter_speculative, proposal_cut
from .verify import Verdict, greedy_verdict, rejection_verdict, residual_distribution

__all__ = [
    "CUT_OFF_WHEN_SAMPLING", "CUT_REASON", "AcceptanceCounter", "BlockDraft", "ContextCursor", "Verdict",
    "acceptance_by_position",
    "adapt_block_size", "draft_block", "draft_distributions", "generate_speculative", "greedy_verdict", "iter_speculative",
    "merge_by_position", "order_safe_positions", "pass_counts", "proposal_cut", "rejection_verdict", "residual_distribution",
]
