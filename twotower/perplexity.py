"""The context tower's perplexity on a corpus split: non-overlapping windows over the split's token stream
(each file followed by EOS, as in training), mean cross-entropy of every next-token prediction."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .data import token_stream


@torch.inference_mode()
def context_perplexity(model, tokenizer, split: str = "test", window: int = 256, max_windows: int | None = None) -> dict:
    ids = torch.tensor(token_stream(tokenizer, split))
    n_windows = len(ids) // (window + 1)
    if max_windows is not None:
        n_windows = min(n_windows, max_windows)
    if n_windows < 1:  # a loss over no tokens: say why instead of dividing by zero
        raise ValueError(f"no window to score: the {split} split holds {len(ids)} tokens, a window needs {window + 1}"
                         + ("" if max_windows is None or max_windows >= 1 else f" (max_windows = {max_windows})"))
    total, count, chars = 0.0, 0, 0
    for w in range(n_windows):
        chunk = ids[w * (window + 1) : (w + 1) * (window + 1)][None]  # (1, window + 1)
        logits = model.context_forward(chunk[:, :-1], None, last_only=False)  # (1, window, V)
        total += float(F.cross_entropy(logits[0], chunk[0, 1:].to(logits.device), reduction="sum"))
        count += window
        chars += len(tokenizer.decode(chunk[0, 1:].tolist()))
    loss = total / count
    return {"split": split, "tokens": count, "loss": loss, "perplexity": math.exp(loss),
            "bits_per_char": total / max(1, chars) / math.log(2)}
