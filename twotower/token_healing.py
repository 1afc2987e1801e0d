"""Token healing: a prompt that stops inside a token the tokenizer would have merged is taken back one token,
and the first generated token must start with that token's text.

Why: this project's tokenizer merges across line breaks and words (`'):\\n    '`, `'return'` are single pieces),
so a prompt typed as `def add(a, b):` or `    ret` ends on a piece the model only ever saw *not* followed by
the merge's rest (`'):'` then never `'\\n    '`). Greedy AR's next-line exact match on such prompts was 1.1 %
(93 held-out prompts), 19.4 % with healing; on prompts that end on a token boundary it was 14.0 % either way
(benchmarks/token_healing/). The prompt's last token is taken off and the first token is chosen among those
whose text starts with its text (the token itself included, so the prompt's own tokens stay possible):
the model re-spells the prompt's last token its own way. One token only: `'for i in ra'` encodes as
`'for'`, `' i in'`, `' r'`, `'a'`, and healing `'a'` cannot reach `range`, which this tokenizer spells inside the
single token `' i in range'`.

The constraint is one (V,) bool row per prompt, applied by every sampler to the logits of the first generated
position only (`constrain`), so all four modes honour it the same way and speculative still equals AR.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

# the vocabulary's texts per tokenizer object, built once: the shipped tokenizer's 8,192 took 19 ms here; a
# Hugging Face tokenizer.json took ~2.7 µs an id (a reviewer's 8k-piece one), so ~0.4 s for the release's 131k
_TEXTS: "weakref.WeakKeyDictionary[object, list[str | None]]" = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class Healing:
    ids: list[int]  # the prompt's tokens but its last: what the model reads
    prefix: str  # the last token's text: the completion's text starts with it
    allowed: torch.Tensor  # (V,) bool: the tokens the first generated token may be (their text starts with prefix)

    @property
    def choices(self) -> int:
        return int(self.allowed.sum())


def token_texts(tokenizer) -> list[str | None]:
    """Each id's text, None where it has none of its own: special ids, and byte-fallback pieces (a byte of a
    character, which decodes alone to U+FFFD). Cached per tokenizer object."""
    texts = _TEXTS.get(tokenizer)
    if texts is None:
        specials = {getattr(tokenizer, f"{name}_token_id", None) for name in ("pad", "bos", "eos", "unk", "mask")}
        texts = []
        for i in range(tokenizer.vocab_size):
            text = None if i in specials else tokenizer.decode([i])
            texts.append(text if text and "\ufffd" not in text else None)
        _TEXTS[tokenizer] = texts
    return texts


def allowed_first_tokens(texts: list[str | None], prefix: str, vocab_size: int) -> torch.Tensor:
    """(vocab_size,) bool: the ids whose text starts with `prefix`. A model head wider than its tokenizer has
    ids with no text: never allowed."""
    allowed = torch.zeros(vocab_size, dtype=torch.bool)
    hits = [i for i, text in enumerate(texts[:vocab_size]) if text is not None and text.startswith(prefix)]
    allowed[hits] = True
    return allowed


def heal_prompt(tokenizer, text: str, ids: list[int], vocab_size: int) -> Healing | None:
    """The healing of a prompt (its text and its ids), or None where there is nothing to heal: a one-token
    prompt (the model needs one to read), a last token with no text of its own (a special, a byte of a
    character), or one that no other token extends (no merge could have been cut)."""
    if len(ids) < 2:
        return None
    texts = token_texts(tokenizer)
    last = ids[-1]
    prefix = texts[last] if 0 <= last < len(texts) else None
    # the text must end with the last piece, spelt as in context (a tokenizer whose decode of one id is not that
    # id's text after another would otherwise heal to a different string); only the end is read, so `ids` may be
    # a long text's last tokens (the eval's left-truncated prompts)
    if not prefix or not text.endswith(prefix) or tokenizer.decode(ids[-2:]) != tokenizer.decode(ids[-2:-1]) + prefix:
        return None
    allowed = allowed_first_tokens(texts, prefix, vocab_size)
    if int(allowed.sum()) < 2:  # only the token itself: healing could change nothing
        return None
    return Healing(ids=list(ids[:-1]), prefix=prefix, allowed=allowed)


def constrain(logits: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """logits (V,) or (B, V) with every id that `allowed` (V,) or (B, V) refuses at -inf: a new tensor; None
    allows every id. Confidence is then the probability among the allowed tokens."""
    if allowed is None:
        return logits
    return logits.masked_fill(~allowed.to(logits.device), float("-inf"))


def constrain_position_0(logits: torch.Tensor, open_: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """The denoiser's logits (N, V), one row per open position of `open_` (B, L) in row-major order, with
    `allowed` (B, V) applied to each row's position 0 where it is open (the block that starts the completion)."""
    at_0 = open_[:, 0]  # (B,) rows whose position 0 is still open
    if not bool(at_0.any()):
        return logits
    row_of = open_.flatten().cumsum(0).view(open_.shape) - 1  # (B, L): each open position's row in logits
    rows = row_of[:, 0][at_0]  # (n,)
    logits = logits.clone()
    logits[rows] = constrain(logits[rows], allowed[at_0.to(allowed.device)])
    return logits


def check_allowed(allowed, batch: int, config) -> torch.Tensor | None:
    """The samplers' `first_token_allowed` for `batch` prompts of a model of this config: None, or a bool tensor
    (V,) or (B, V) with some id other than the mask id allowed in each row (the denoiser never commits the mask
    id: a row of it alone left every logit at -inf), returned as (B, V) on the CPU without the mask id."""
    vocab_size, mask_token_id = config.vocab_size, getattr(config, "mask_token_id", None)
    if allowed is None:
        return None
    if not isinstance(allowed, torch.Tensor) or allowed.dtype != torch.bool:
        raise ValueError("first_token_allowed must be a bool tensor over the vocabulary (Engine.heal gives one), "
                         f"got {type(allowed).__name__ if not isinstance(allowed, torch.Tensor) else allowed.dtype}")
    if allowed.dim() == 1:
        allowed = allowed[None].expand(batch, -1)
    if allowed.dim() != 2 or allowed.shape != (batch, vocab_size):
        raise ValueError(f"first_token_allowed has shape {tuple(allowed.shape)}; expected ({vocab_size},) or "
                         f"({batch}, {vocab_size}): one row over the vocabulary per prompt")
    allowed = allowed.cpu().clone()
    if mask_token_id is not None and 0 <= mask_token_id < vocab_size:
        allowed[:, mask_token_id] = False
    if not bool(allowed.any(-1).all()):
        raise ValueError("first_token_allowed allows no token in some row (the mask id does not count): the first "
                         "token could not be chosen")
    return allowed


def stream_keywords(healing: Healing | None) -> dict:
    """What `Engine.stream` (or a sampler) takes for a healing: its constraint, or nothing."""
    return {} if healing is None else {"first_token_allowed": healing.allowed}


def prompt_less_prefix(prompt: str, prefix: str) -> str:
    """The typed prompt without the healed last token's text, which the completion's first token writes again."""
    return prompt[: len(prompt) - len(prefix)] if prefix and prompt.endswith(prefix) else prompt


def completion_text(text: str, prefix: str) -> str:
    """The completion after the user's prompt: the generated text without the healed prefix it starts with
    (it always does: the first token was chosen so), the text as is where nothing was healed."""
    return text[len(prefix):] if prefix and text.startswith(prefix) else text
