"""Rolling the context tower back after a verify pass (spec_decode.ContextCursor): the snapshot path (restore,
then re-scan the kept tokens), the deferred one (kept tokens read with the next draft) and the per-position one
(the verify pass's own states) each leave logits and every layer's state equal to a fresh run over the same
text, and keep greedy output equal to AR (speculative mode end to end: test_spec_decode.py)."""

from collections import Counter

import pytest
import torch

from spec_decode import ContextCursor, generate_speculative
from twotower import generate_ar

from tiny_models import VOCAB, agreeable_model, lively, run_speculative


def fresh(model, ids):
    """The context tower's logits (T, V) over `ids` from an empty cache, and that cache: the reference a rolled
    back cursor must equal. Through transformers' own Mamba forward (the short scan off): a text of 64 tokens or
    fewer ran through the same short scan as the rollback, which was then checked against itself."""
    mixers = [layer.mixer for layer in model.context_tower.layers if hasattr(layer.mixer, "max_len")]
    kept = [mixer.max_len for mixer in mixers]
    for mixer in mixers:
        mixer.max_len = 0
    try:
        cache = model.new_cache()
        return model.context_forward(torch.tensor([ids]), cache, last_only=False)[0], cache
    finally:
        for mixer, max_len in zip(mixers, kept):
            mixer.max_len = max_len


def _assert_same_states(cache, reference):
    # the tokens the cache has read, which give the next pass its positions and causal mask: from transformers
    # 5.25 on, layer 0's count, where layer 0 is a Mamba layer its own counter, which a rollback must set back
    assert int(cache.get_seq_length()) == int(reference.get_seq_length())
    for ours, ref in zip(cache.layers, reference.layers):
        if hasattr(ours, "conv_states") and ours.conv_states.get(0) is not None:
            # lively models: SSM states ~1e-3 (not ~1e-7, which no absolute tolerance could tell from zero)
            assert ref.recurrent_states[0].abs().max() > 1e-4
            torch.testing.assert_close(ours.conv_states[0], ref.conv_states[0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(ours.recurrent_states[0], ref.recurrent_states[0], rtol=1e-4, atol=1e-8)
        if torch.is_tensor(getattr(ours, "keys", None)) and ours.keys.numel():
            assert ours.keys.shape == ref.keys.shape
            torch.testing.assert_close(ours.keys, ref.keys, rtol=1e-4, atol=1e-5)


def test_rollback_is_exact():
    """After a partial acceptance (and after a full one with its unread bonus token) the context tower's
    logits and every layer's state equal a fresh run over the same text."""
    model = lively(agreeable_model(3), seed=3)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(5, VOCAB, (1, 7), generator=gen)
    text = prompt[0].tolist()  # prompt + every emitted token, the unread one included
    cursor = ContextCursor(model, prompt, per_position=False)  # the snapshot path: restore, then re-scan

    for n_accepted, k in [(2, 5), (0, 3), (4, 4), (1, 6), (3, 3), (0, 1), (5, 9), (2, 2)]:
        draft = torch.randint(5, VOCAB, (k,), generator=gen).tolist()
        token = int(torch.randint(5, VOCAB, (1,), generator=gen))
        rows = cursor.verify(draft)  # (k + 1, V): row i scores draft[i]
        reference, _ = fresh(model, text + draft)
        assert torch.allclose(rows, reference[-k - 1:], atol=1e-5)
        cursor.commit(n_accepted, token)
        text += draft[:n_accepted] + [token]
        if n_accepted == k:  # full acceptance: nothing re-run, the bonus token stays unread
            assert cursor.unread == [token] and cursor.next_logits is None
            _assert_same_states(cursor.cache, fresh(model, text[:-1])[1])
        else:
            reference, cache = fresh(model, text)
            assert cursor.unread == []
            assert torch.allclose(cursor.next_logits, reference[-1], atol=1e-5)
            _assert_same_states(cursor.cache, cache)
    assert cursor.passes == 1 + 8 + 5  # prefill, 8 verify passes, 5 re-scans after partial acceptances
    # the states are right for what follows, too: extend both by the same tokens
    tail = [7, 8, 9]
    ours = model.context_forward(torch.tensor([cursor.unread + tail]), cursor.cache, last_only=False)[0]
    reference, _ = fresh(model, text + tail)
    assert torch.allclose(ours, reference[-len(ours):], atol=1e-5)


def test_deferred_rollback_reads_kept_tokens_with_the_next_draft_exactly():
    """With max_unread > 1 a partial acceptance re-runs nothing: the kept tokens stay unread, and the next
    verify pass (unread + draft in one pass) gives the same rows and states as a fresh run."""
    model = lively(agreeable_model(4), seed=4)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(5, VOCAB, (1, 6), generator=gen)
    text = prompt[0].tolist()
    cursor = ContextCursor(model, prompt, max_unread=6, per_position=False)

    deferred = rescanned = 0
    for n_accepted, k in [(1, 4), (0, 3), (2, 2), (3, 5), (4, 6), (0, 2), (1, 1)]:
        draft = torch.randint(5, VOCAB, (k,), generator=gen).tolist()
        token = int(torch.randint(5, VOCAB, (1,), generator=gen))
        rows = cursor.verify(draft)
        reference, _ = fresh(model, text + draft)
        assert rows.shape[0] == k + 1 and torch.allclose(rows, reference[-k - 1:], atol=1e-5)
        passes = cursor.passes
        cursor.commit(n_accepted, token)
        text += draft[:n_accepted] + [token]
        n_unread = len(cursor.unread)
        assert cursor.unread == text[len(text) - n_unread:]
        if n_accepted < k and n_unread > 1:
            deferred += 1
            assert cursor.passes == passes  # nothing re-run
        elif n_accepted < k:
            rescanned += 1
        _assert_same_states(cursor.cache, fresh(model, text[: len(text) - n_unread])[1] if n_unread < len(text) else None)
    assert deferred >= 3 and rescanned >= 1  # both paths ran (the cap of 6 unread tokens forces a re-scan)


@pytest.mark.parametrize("pattern, prompt_len", [(None, 5), ("M*", 5), ("*M-M", 5), (None, 100)])
def test_per_position_rollback_is_exact(pattern, prompt_len):
    """A partial acceptance rolls the cache to just after the kept tokens from the verify pass's own
    per-position states: no re-scan, only the correction token unread, and every layer's state and the
    next pass's rows equal a fresh run over the same text (the snapshot path above is the twin). A rejection
    at the last draft position of a long draft (15 of 16) too, and a prompt past the short scan's 64 tokens."""
    model = lively(agreeable_model(5, pattern=pattern), seed=5)  # O(1) SSM states: a 1e-5 comparison then means something
    gen = torch.Generator().manual_seed(2)
    prompt = torch.randint(5, VOCAB, (1, prompt_len), generator=gen)
    text = prompt[0].tolist()
    cursor = ContextCursor(model, prompt, max_unread=16)

    for n_accepted, k in [(2, 5), (0, 3), (4, 4), (1, 6), (3, 3), (0, 1), (5, 9), (2, 2), (7, 16), (1, 1), (4, 5),
                          (15, 16)]:
        draft = torch.randint(5, VOCAB, (k,), generator=gen).tolist()
        token = int(torch.randint(5, VOCAB, (1,), generator=gen))
        rows = cursor.verify(draft)
        reference, _ = fresh(model, text + draft)
        assert torch.allclose(rows, reference[-k - 1:], atol=1e-5)
        passes = cursor.passes
        cursor.commit(n_accepted, token)
        text += draft[:n_accepted] + [token]
        assert cursor.unread == [token] and cursor.passes == passes  # nothing re-run, one token unread
        _assert_same_states(cursor.cache, fresh(model, text[:-1])[1])
    tail = [7, 8, 9]
    ours = model.context_forward(torch.tensor([cursor.unread + tail]), cursor.cache, last_only=False)[0]
    reference, _ = fresh(model, text + tail)
    assert torch.allclose(ours, reference[-len(ours):], atol=1e-5)


def test_per_position_rollback_and_its_snapshot_twin_give_the_same_output():
    """Both rollbacks keep greedy output = AR; per-position rollback re-runs nothing and leaves one token unread."""
    model = agreeable_model(1, shift=0.8, live=True)
    prompt = [1, 50, 60, 70, 80]
    ar = generate_ar(model, prompt, max_new_tokens=40).new_tokens
    runs = {}
    for per_position in (True, False):
        events = []
        result = generate_speculative(model, prompt, max_new_tokens=40, block_size=6, draft_steps=1,
                                      per_position_rollback=per_position, step_callback=events.append)
        assert result.new_tokens == ar and result.stats["per_position_rollback"] is per_position
        runs[per_position] = Counter(e.info["rollback"] for e in events if e.kind == "block")
    assert runs[True]["positions"] > 0 and not runs[True]["snapshot"] and not runs[True]["rescan"]
    assert runs[False]["snapshot"] + runs[False]["rescan"] > 0 and not runs[False]["positions"]


def test_gpu_policy_runs_verify_passes_through_the_short_scan(monkeypatch):
    """On a GPU the short scan runs the verify passes and the 1-token steps (`takes_short_scan`: those clamp
    the step size as every other pass does); denoiser passes and the prefill keep transformers' path (its
    kernels). Played here with the policy told it is on "cuda": every verify pass still records each
    position, every partial acceptance rolls back from them, and the two paths' states mix without changing
    a token of AR's output."""
    import twotower.short_scan as short_scan

    real, calls = short_scan.takes_short_scan, Counter()

    def as_on_gpu(device_type, seq_len, max_len, masked, recording):
        took = real("cuda", seq_len, max_len, masked, recording)
        kind = "verify" if recording else "step" if seq_len == 1 else "other"
        calls["short scan" if took else "transformers", kind] += 1
        return took

    monkeypatch.setattr(short_scan, "takes_short_scan", as_on_gpu)
    model, prompt = agreeable_model(1, shift=0.8, live=True), [1, 50, 60, 70, 80]
    ar = generate_ar(model, prompt, max_new_tokens=40).new_tokens
    result, events = run_speculative(model, prompt, max_new_tokens=40, block_size=6, draft_steps=1)
    assert result.new_tokens == ar
    rollbacks = Counter(e.info["rollback"] for e in events if e.kind == "block")
    assert rollbacks["positions"] > 0 and not rollbacks["snapshot"] and not rollbacks["rescan"]
    assert calls["short scan", "verify"] > 0 and calls["short scan", "step"] > 0 and calls["transformers", "other"] > 0
    assert not calls["transformers", "verify"] and not calls["transformers", "step"] and not calls["short scan", "other"]
    assert real("cpu", 1, 64, False, False) and real("cuda", 1, 64, False, False)
    assert not real("cuda", 8, 64, False, False) and real("cuda", 8, 64, False, True)
    assert not real("cuda", 65, 64, False, True) and not real("cpu", 8, 64, True, False)


def test_per_position_rollback_falls_back_without_the_short_scan():
    """With transformers' own scan everywhere (max_len 0) no pass records positions: the snapshot path runs."""
    from twotower.short_scan import use_short_scan

    model = agreeable_model(5)
    use_short_scan(model, max_len=0)
    cursor = ContextCursor(model, torch.tensor([[9, 10, 11]]), max_unread=0)
    cursor.verify([20, 21, 22])
    passes = cursor.passes
    cursor.commit(1, 30)
    assert cursor.unread == [] and cursor.passes == passes + 1  # re-scanned, as before per-position rollback
