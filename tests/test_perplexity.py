"""`twotower.perplexity.context_perplexity`, the model card's perplexity figure, against stand-in context towers
whose cross-entropy is known by construction: uniform logits over V give loss log V (perplexity V) whatever the
text; a tower that gives the true next token probability p gives loss -log p, which holds only when each
window's targets are its inputs shifted by one.
"""

import math

import pytest
import torch

from tiny_models import UniformTower
from twotower import perplexity
from twotower.tokenizer import ByteTokenizer


V, P = 8, 0.7  # the oracle's vocabulary, and the probability it gives the true next token


def successor(token):
    """The synthetic stream's rule: s[k + 1] = (5 s[k] + 3) mod 8 visits all 8 ids; no token is followed by itself."""
    return (5 * token + 3) % V


class OracleTower:
    """Knows the stream's rule: P on the true next token, the rest spread evenly, so each prediction's
    cross-entropy is exactly -log P, if and only if it is scored against the token that follows its input."""

    def __init__(self):
        self.inputs = []

    def context_forward(self, ids, cache, last_only=True):
        self.inputs.append(ids[0].tolist())
        probs = torch.full((ids.shape[1], V), (1 - P) / (V - 1), dtype=torch.float64)
        probs[torch.arange(ids.shape[1]), [successor(t) for t in ids[0].tolist()]] = P
        logits = (probs.log() + 5.0).float()[None]  # unnormalised: the cross-entropy must normalise them
        return logits[:, -1:] if last_only else logits


class SumTokenizer:
    """decode: a token id t is t characters, so a window's character count is the sum of the ids decoded."""

    def decode(self, ids):
        return "x" * sum(ids)


def synthetic_stream(length, start=1):
    stream = [start]
    while len(stream) < length:
        stream.append(successor(stream[-1]))
    return stream


def test_uniform_logits_over_v_give_perplexity_v_on_the_test_split(monkeypatch):
    """Perplexity V for a tower that knows nothing, over the real test split's stream (files + EOS, byte ids);
    the windows are consecutive, non-overlapping slices of window + 1 tokens of that stream."""
    real, streams = perplexity.token_stream, []

    def recording(tokenizer, split):
        streams.append((split, real(tokenizer, split)))
        return streams[-1][1]

    monkeypatch.setattr(perplexity, "token_stream", recording)
    tokenizer, tower, window = ByteTokenizer(), UniformTower(ByteTokenizer.vocab_size), 32
    result = perplexity.context_perplexity(tower, tokenizer, "test", window=window, max_windows=3)
    [(split, stream)] = streams
    assert split == "test"
    starts = [w * (window + 1) for w in range(3)]
    assert tower.inputs == [stream[s : s + window] for s in starts]  # the last token of a window is only a target
    assert (result["split"], result["tokens"]) == ("test", 3 * window)
    assert result["loss"] == pytest.approx(math.log(ByteTokenizer.vocab_size), rel=1e-6)
    assert result["perplexity"] == pytest.approx(ByteTokenizer.vocab_size, rel=1e-5)
    chars = sum(len(tokenizer.decode(stream[s + 1 : s + window + 1])) for s in starts)  # the predicted tokens' text
    bits = 3 * window * math.log(ByteTokenizer.vocab_size) / chars / math.log(2)
    assert result["bits_per_char"] == pytest.approx(bits, rel=1e-6)


def test_loss_is_each_windows_next_token_cross_entropy(monkeypatch):
    """A tower right with probability P scores loss -log P and perplexity 1 / P: a target off by one position
    (or a window that overlaps the previous one's target) would be scored at (1 - P) / 7 instead."""
    window = 7
    stream = synthetic_stream(4 * (window + 1) + 3)  # 4 whole windows and a tail too short for a fifth
    seen = []
    monkeypatch.setattr(perplexity, "token_stream", lambda tokenizer, split: seen.append((tokenizer, split)) or stream)
    tokenizer, tower = SumTokenizer(), OracleTower()
    result = perplexity.context_perplexity(tower, tokenizer, "valid", window=window)
    assert seen == [(tokenizer, "valid")] and result["split"] == "valid"  # the split asked for, read once
    starts = [w * (window + 1) for w in range(4)]
    assert tower.inputs == [stream[s : s + window] for s in starts]  # the 3-token tail is left out
    assert result["tokens"] == 4 * window
    assert result["loss"] == pytest.approx(-math.log(P), rel=1e-5)  # float32 logits and cross-entropy: ~4e-7 apart
    assert result["perplexity"] == pytest.approx(1 / P, rel=1e-5)
    # bits per character: the summed cross-entropy over the characters of the predicted tokens (not the inputs)
    chars = sum(sum(stream[s + 1 : s + window + 1]) for s in starts)
    assert chars != sum(sum(stream[s : s + window]) for s in starts)  # so the two readings give different figures
    assert result["bits_per_char"] == pytest.approx(4 * window * -math.log(P) / chars / math.log(2), rel=1e-5)


@pytest.mark.parametrize("max_windows, scored", [(2, 2), (1, 1), (10, 4), (None, 4)])
def test_max_windows_caps_the_windows_scored_from_the_start(monkeypatch, max_windows, scored):
    """max_windows keeps the first N windows (the card's figure is reproducible from its window count), and asking
    for more windows than the stream holds scores what there is."""
    window = 5
    stream = synthetic_stream(4 * (window + 1) + 2)
    monkeypatch.setattr(perplexity, "token_stream", lambda tokenizer, split: stream)
    tower = OracleTower()
    result = perplexity.context_perplexity(tower, SumTokenizer(), window=window, max_windows=max_windows)
    assert tower.inputs == [stream[s : s + window] for s in range(0, scored * (window + 1), window + 1)]
    assert result["tokens"] == scored * window and result["split"] == "test"  # "test" by default
    assert result["perplexity"] == pytest.approx(1 / P, rel=1e-5)


def test_a_split_shorter_than_one_window_is_refused_with_its_size(monkeypatch):
    """A loss over no tokens was a ZeroDivisionError: now a ValueError that says how short the split is."""
    monkeypatch.setattr(perplexity, "token_stream", lambda tokenizer, split: [1, 2, 3])
    with pytest.raises(ValueError, match="the test split holds 3 tokens, a window needs 257"):
        perplexity.context_perplexity(UniformTower(V), ByteTokenizer())
    with pytest.raises(ValueError, match=r"max_windows = 0"):
        perplexity.context_perplexity(UniformTower(V), ByteTokenizer(), window=2, max_windows=0)
