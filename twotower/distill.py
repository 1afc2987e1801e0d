"""Self-distillation targets for stage 2: windows whose continuation is the context tower's own greedy text.

Lower-entropy targets, and exactly the text the denoiser must agree with AR on (the model card measures
what they bought). The context tower is frozen in stage 2, so a window's distilled continuation does not
depend on the step that asks for it: `DistillAhead` generates the next K steps' continuations in one
batched AR run. On a GPU a decode step is launch-bound, so K steps' worth costs about as much as one; on a
CPU the cost follows the rows and K = 1 (the `cpu` profile) is the plain per-step twin.
"""

from __future__ import annotations

from typing import Callable

import torch


# Rows one AR run takes at most. transformers' PyTorch Mamba-2 chunk scan (no mamba-ssm on the lent GPU) holds fp32
# intermediates of ~7 MiB a row in the prefill of a 512-token window (measured on the CPU, transformers 5.17:
# 0.97 GiB at 128 rows, 3.53 GiB at 512): 8,192 rows are ~55 GiB, inside an H100's 78 with the training beside.
# The second lease's runs were 2,304 rows; BATCH=256 with 48 batches ahead would be 9,216 (~62 GiB), with 96 twice.
MAX_AR_ROWS = 8192


@torch.no_grad()
def self_distill(model, tokens: torch.Tensor, prefix_len: int, share: float, max_rows: int = MAX_AR_ROWS) -> torch.Tensor:
    """Replace the continuation of the first `share` of the rows of `tokens` (B, T) by the context tower's
    greedy continuation of their first `prefix_len` tokens. Uses the one AR sampler, batched, in runs of at
    most `max_rows` rows (rows are independent: the same tokens as one run)."""
    from .decoding import generate_ar

    n_rows = int(round(share * tokens.shape[0]))
    if n_rows == 0:
        return tokens
    was_training = model.training
    model.eval()
    tokens = tokens.clone()
    for first in range(0, n_rows, max_rows):
        rows = slice(first, min(n_rows, first + max_rows))
        out = generate_ar(model, tokens[rows, :prefix_len], max_new_tokens=tokens.shape[1] - prefix_len)
        tokens[rows] = out.sequences.to(tokens.device)
    model.train(was_training)
    return tokens


class DistillAhead:
    """The distilled window of each step, generated `batches` steps at a time.

    window_at(step) -> (B, T) gives a step's training window (deterministic in the step index). Asking for
    a step not yet generated runs one AR generation over the distilled rows of that step and the next
    batches - 1 ones (up to `last_step`); earlier unused ones are dropped.
    """

    def __init__(self, model, prefix_len: int, share: float, batches: int = 1):
        if batches < 1:
            raise ValueError(f"distill batches must be >= 1, got {batches}")
        self.model, self.prefix_len, self.share, self.batches = model, prefix_len, share, batches
        self._ready: dict[int, torch.Tensor] = {}

    def ready(self, step: int) -> bool:
        """Whether step's window is generated already (asking for one that is not runs the AR generation)."""
        return step in self._ready

    def __call__(self, step: int, window_at: Callable[[int], torch.Tensor], last_step: int | None = None) -> torch.Tensor:
        if step not in self._ready:
            end = step + self.batches if last_step is None else min(step + self.batches, last_step + 1)
            windows = [window_at(s) for s in range(step, max(end, step + 1))]
            n_rows = int(round(self.share * windows[0].shape[0]))
            stacked = torch.cat([w[:n_rows] for w in windows])  # (K·n, T): one AR run for K steps
            distilled = self_distill(self.model, stacked, self.prefix_len, 1.0)
            self._ready = {}
            for i, window in enumerate(windows):
                window = window.clone()
                window[:n_rows] = distilled[i * n_rows:(i + 1) * n_rows]
                self._ready[step + i] = window
        return self._ready.pop(step)
