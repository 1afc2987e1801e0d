"""Speculative mode end to end on tiny random two-tower models (CPU).

Random towers rarely agree, so acceptance is near zero. An "agreeable" model adds a constant to one
embedding channel and copies the context tower into the denoiser (model.init_denoiser_from_context):
both towers then lean towards the same few tokens, drafts are often right, and full acceptances
(bonus tokens, an unread token leading the next block) happen along with partial ones
(tiny_models.agreeable_model). Sampling's law is tested in test_spec_sampling.py.
"""

import random
from collections import Counter

import pytest
import torch

from spec_decode import ContextCursor, draft_block, generate_speculative, iter_speculative
from spec_decode.draft import confident_prefix_length
from twotower import generate_ar, generate_mask_diffusion
from twotower.decoding import make_generator
from twotower.engine import load_engine
from twotower.short_scan import use_short_scan

from tiny_models import agreeable_model, lively, run_speculative

VOCAB = 261  # the tiny preset's byte vocabulary; ids 0-4 are specials


def test_greedy_equals_ar_property():
    """Token for token equal to greedy AR over random models, prompts, S, draft passes, γ, EOS, adaptive."""
    rng = random.Random(2024)
    cut_rng = random.Random(7)  # its own stream, so the other settings are those the test always drew
    scan_rng = random.Random(11)  # likewise: a third of the models use transformers' scan (snapshot rollback)
    seen = Counter()
    for trial in range(28):
        agreeable = trial % 2 == 1
        model = agreeable_model(rng.randrange(10_000), shift=rng.uniform(0.25, 1.0) if agreeable else 0.0,
                       pattern=rng.choice([None, "M*", "*M-M"]), live=scan_rng.random() < 0.5)
        if scan_rng.random() < 1 / 3:
            use_short_scan(model, max_len=0)
            seen["snapshot rollback"] += 1
        prompt = [rng.randrange(5, VOCAB) for _ in range(rng.randint(1, 10))]
        settings = dict(max_new_tokens=rng.randint(1, 24), block_size=rng.choice([1, 2, 3, 4, 5, 7, 8, 12, 16, 32]),
                        draft_steps=rng.randint(1, 5), draft_threshold=rng.uniform(0.05, 1.0),
                        adaptive=rng.random() < 0.3,
                        min_draft_confidence=cut_rng.choice([0.0, 0.0, cut_rng.uniform(0.01, 0.9)]))
        ar = generate_ar(model, prompt, max_new_tokens=settings["max_new_tokens"])
        eos = None
        if rng.random() < 0.3:  # stop at a token AR emits, to check the cut after EOS
            eos = rng.choice(ar.new_tokens[0])
            ar = generate_ar(model, prompt, max_new_tokens=settings["max_new_tokens"], eos_token_id=eos)
            seen["eos"] += ar.new_tokens[0][-1] == eos
        spec, events = run_speculative(model, prompt, eos_token_id=eos, **settings)
        assert spec.new_tokens == ar.new_tokens, (trial, settings)
        assert torch.equal(spec.sequences, ar.sequences)
        verifies = [e for e in events if e.kind == "verify"]
        for prev, cur in zip(verifies, verifies[1:]):
            seen["bonus then another round"] += prev.info["bonus"]
        for e in verifies:
            n, k = e.info["accepted"], e.info["block_size"]
            seen["bonus"] += e.info["bonus"]
            seen["partial"] += 0 < n < k
            seen["rejected at 0"] += n == 0
            seen["full block of S >= 4"] += e.info["bonus"] and k >= 4
            seen["proposal cut"] += e.info["drafted_before_cut"] > k
        for b in (e for e in events if e.kind == "block"):
            seen[f"rollback: {b.info['rollback']}"] += 1
    for path in ("snapshot rollback", "rollback: positions", "rollback: snapshot", "eos", "bonus", "bonus then another round", "partial", "rejected at 0", "full block of S >= 4",
                 "proposal cut"):
        assert seen[path] > 0, f"path never exercised: {path} ({dict(seen)})"


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_draft_block_is_the_diffusion_block_step(temperature):
    """With the release's selection, draft_block fills a block exactly as iter_mask_diffusion does (same
    seed, same draws), so it could replace that loop's inner step."""
    model, prompt, size, steps = agreeable_model(4), [1, 70, 80, 90, 100], 6, 3
    reference = generate_mask_diffusion(model, prompt, max_new_tokens=size, block_size=size, steps_per_block=steps,
                                        confidence_threshold=0.6, temperature=temperature, seed=11)
    cache = model.new_cache()
    model.context_forward(torch.tensor([prompt]), cache)
    mask_id = model.config.mask_token_id
    states = list(draft_block(model, model.context_states(cache), torch.full((1, size), mask_id),
                              torch.ones(1, size, dtype=torch.bool), steps, 0.6, temperature,
                              make_generator(11, model.den_device)))
    assert states[-1].tokens[0].tolist() == reference.new_tokens[0]
    assert len(states) == reference.stats["nfe"] and states[-1].commit_logits is None


def test_rollback_is_exact():
    """After a partial acceptance (and after a full one with its unread bonus token) the context tower's
    logits and every layer's state equal a fresh run over the same text."""
    model = lively(agreeable_model(3), seed=3)
    gen = torch.Generator().manual_seed(0)
    prompt = torch.randint(5, VOCAB, (1, 7), generator=gen)
    text = prompt[0].tolist()  # prompt + every emitted token, the unread one included
    cursor = ContextCursor(model, prompt, per_position=False)  # the snapshot path: restore, then re-scan

    def fresh(ids):
        cache = model.new_cache()
        return model.context_forward(torch.tensor([ids]), cache, last_only=False)[0], cache

    for n_accepted, k in [(2, 5), (0, 3), (4, 4), (1, 6), (3, 3), (0, 1), (5, 9), (2, 2)]:
        draft = torch.randint(5, VOCAB, (k,), generator=gen).tolist()
        token = int(torch.randint(5, VOCAB, (1,), generator=gen))
        rows = cursor.verify(draft)  # (k + 1, V): row i scores draft[i]
        reference, _ = fresh(text + draft)
        assert torch.allclose(rows, reference[-k - 1:], atol=1e-5)
        cursor.commit(n_accepted, token)
        text += draft[:n_accepted] + [token]
        if n_accepted == k:  # full acceptance: nothing re-run, the bonus token stays unread
            assert cursor.unread == [token] and cursor.next_logits is None
            _assert_same_states(cursor.cache, fresh(text[:-1])[1])
        else:
            reference, cache = fresh(text)
            assert cursor.unread == []
            assert torch.allclose(cursor.next_logits, reference[-1], atol=1e-5)
            _assert_same_states(cursor.cache, cache)
    assert cursor.passes == 1 + 8 + 5  # prefill, 8 verify passes, 5 re-scans after partial acceptances
    # the states are right for what follows, too: extend both by the same tokens
    tail = [7, 8, 9]
    ours = model.context_forward(torch.tensor([cursor.unread + tail]), cursor.cache, last_only=False)[0]
    reference, _ = fresh(text + tail)
    assert torch.allclose(ours, reference[-len(ours):], atol=1e-5)


def test_deferred_rollback_reads_kept_tokens_with_the_next_draft_exactly():
    """With max_unread > 1 a partial acceptance re-runs nothing: the kept tokens stay unread, and the next
    verify pass (unread + draft in one pass) gives the same rows and states as a fresh run."""
    model = lively(agreeable_model(4), seed=4)
    gen = torch.Generator().manual_seed(1)
    prompt = torch.randint(5, VOCAB, (1, 6), generator=gen)
    text = prompt[0].tolist()
    cursor = ContextCursor(model, prompt, max_unread=6, per_position=False)

    def fresh(ids):
        cache = model.new_cache()
        return model.context_forward(torch.tensor([ids]), cache, last_only=False)[0], cache

    deferred = rescanned = 0
    for n_accepted, k in [(1, 4), (0, 3), (2, 2), (3, 5), (4, 6), (0, 2), (1, 1)]:
        draft = torch.randint(5, VOCAB, (k,), generator=gen).tolist()
        token = int(torch.randint(5, VOCAB, (1,), generator=gen))
        rows = cursor.verify(draft)
        reference, _ = fresh(text + draft)
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
        _assert_same_states(cursor.cache, fresh(text[: len(text) - n_unread])[1] if n_unread < len(text) else None)
    assert deferred >= 3 and rescanned >= 1  # both paths ran (the cap of 6 unread tokens forces a re-scan)


@pytest.mark.parametrize("pattern", [None, "M*", "*M-M"])
def test_per_position_rollback_is_exact(pattern):
    """A partial acceptance rolls the cache to just after the kept tokens from the verify pass's own
    per-position states: no re-scan, only the correction token unread, and every layer's state and the
    next pass's rows equal a fresh run over the same text (the snapshot path above is the twin)."""
    model = lively(agreeable_model(5, pattern=pattern), seed=5)  # O(1) SSM states: a 1e-5 comparison then means something
    gen = torch.Generator().manual_seed(2)
    prompt = torch.randint(5, VOCAB, (1, 5), generator=gen)
    text = prompt[0].tolist()
    cursor = ContextCursor(model, prompt, max_unread=16)

    def fresh(ids):
        cache = model.new_cache()
        return model.context_forward(torch.tensor([ids]), cache, last_only=False)[0], cache

    for n_accepted, k in [(2, 5), (0, 3), (4, 4), (1, 6), (3, 3), (0, 1), (5, 9), (2, 2), (7, 16), (1, 1)]:
        draft = torch.randint(5, VOCAB, (k,), generator=gen).tolist()
        token = int(torch.randint(5, VOCAB, (1,), generator=gen))
        rows = cursor.verify(draft)
        reference, _ = fresh(text + draft)
        assert torch.allclose(rows, reference[-k - 1:], atol=1e-5)
        passes = cursor.passes
        cursor.commit(n_accepted, token)
        text += draft[:n_accepted] + [token]
        assert cursor.unread == [token] and cursor.passes == passes  # nothing re-run, one token unread
        _assert_same_states(cursor.cache, fresh(text[:-1])[1])
    tail = [7, 8, 9]
    ours = model.context_forward(torch.tensor([cursor.unread + tail]), cursor.cache, last_only=False)[0]
    reference, _ = fresh(text + tail)
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


@pytest.mark.parametrize("model_args, settings", [
    (dict(seed=0, shift=0.4), dict(block_size=4, draft_steps=2, max_new_tokens=30)),
    (dict(seed=5), dict(block_size=3, draft_steps=3, max_new_tokens=12)),
    (dict(seed=1, shift=0.8), dict(block_size=5, draft_steps=1, max_new_tokens=23)),
    (dict(seed=0, shift=0.4), dict(block_size=3, draft_steps=2, max_new_tokens=30, adaptive=True)),
    (dict(seed=0, shift=0.3), dict(block_size=4, draft_steps=3, max_new_tokens=20, temperature=0.8, seed=3, top_k=20)),
    (dict(seed=0, shift=0.4), dict(block_size=8, draft_steps=1, max_new_tokens=30, min_draft_confidence=0.3)),
])
def test_metrics_match_events(model_args, settings):
    model = agreeable_model(**model_args)
    result, events = run_speculative(model, [1, 50, 60, 70], **settings)
    stats = result.stats
    kinds = [e.kind for e in events]
    assert kinds[-1] == "done" and kinds.count("done") == 1
    verifies = [e for e in events if e.kind == "verify"]
    blocks = [e for e in events if e.kind == "block"]
    steps = [e for e in events if e.kind == "step"]
    assert len(verifies) == len(blocks) == stats["rounds"] == stats["verify_passes"]
    assert len(steps) == stats["nfe"] == stats["draft_passes"] == events[-1].nfe
    assert stats["drafted"] == sum(e.info["block_size"] for e in verifies)
    assert stats["accepted"] == sum(e.info["accepted"] for e in verifies)
    assert stats["acceptance_lengths"] == [e.info["accepted"] + 1 for e in verifies]
    assert stats["acceptance_rate"] == pytest.approx(stats["accepted"] / stats["drafted"])
    assert stats["mean_acceptance_length"] == pytest.approx(1 + stats["accepted"] / stats["rounds"])
    assert stats["proposed_lengths"] == [e.info["block_size"] for e in verifies]
    by_position = stats["acceptance_by_position"]
    assert [r["position"] for r in by_position] == list(range(1, max(stats["proposed_lengths"]) + 1))
    assert sum(r["drafted"] for r in by_position) == stats["drafted"]  # each drafted token counted once
    assert sum(r["accepted"] for r in by_position) == stats["accepted"]
    assert stats["draft_s"] > 0 and stats["verify_s"] > 0
    assert stats["draft_s"] + stats["verify_s"] <= events[-1].elapsed
    rollbacks = sum(b.info["rollback"] == "rescan" for b in blocks)
    assert rollbacks <= sum(not v.info["bonus"] for v in verifies[:-1])  # only partial rounds, never the last
    assert stats["context_passes"] == 1 + stats["rounds"] + rollbacks == events[-1].context_passes
    assert stats["rollback_passes"] == rollbacks
    # the prefill's token comes first, outside the rounds; then the committed tokens of the rounds replay to
    # the output, with consistent offsets and counts
    assert kinds[0] == "token" and kinds.count("token") == 1 and events[0].block == 0 < events[1].block
    emitted = events[0].tokens[0].tolist() + sum((b.tokens[0].tolist() for b in blocks), [])
    assert emitted == result.new_tokens[0]
    assert stats["new_tokens"] == len(result.new_tokens[0]) <= 1 + sum(stats["acceptance_lengths"])
    generated = 0
    for event in events[:-1]:
        assert event.block_start == generated  # every event of a round starts where the output stood
        if event.kind in ("block", "token"):
            generated += event.tokens.shape[1]
        assert event.generated == generated
        assert event.mode == "speculative"
    # per round: draft passes, then the verify event over exactly the drafted tokens
    for v in verifies:
        round_steps = [s for s in steps if s.block == v.block]
        assert len(round_steps) == v.info["draft_passes"] and round_steps[-1].step == v.step - 1
        assert v.tokens[0].tolist() == v.info["drafted"] == round_steps[-1].tokens[0, :v.info["block_size"]].tolist()
        assert round_steps[-1].tokens.shape[1] == v.info["drafted_before_cut"] >= v.info["block_size"]
        cut = result.stats["min_draft_confidence"]
        # only confident tokens were proposed (but always at least one) ...
        assert v.info["block_size"] == 1 or bool((v.confidence[0] >= cut).all())
        if v.info["drafted_before_cut"] > v.info["block_size"]:  # ... up to the first unconfident one
            assert float(round_steps[-1].confidence[0, v.info["block_size"]]) < cut
        assert not round_steps[-1].masked.any()
        assert int(v.committed.sum()) == v.info["accepted"]
        if v.info["bonus"]:  # a fully accepted block of S tokens has acceptance length S + 1
            assert v.info["accepted"] + 1 == v.info["block_size"] + 1 and v.info["rejected_pos"] is None
        else:
            pos = v.info["rejected_pos"]
            assert pos == v.info["accepted"] and v.info["draft_token"] == v.info["drafted"][pos]
            assert v.info["draft_token"] != v.info["target_token"] or settings.get("temperature")
    if not settings.get("adaptive"):
        assert all(v.info["block_size"] <= settings["block_size"] for v in verifies)


def test_confident_prefix_length():
    conf = torch.tensor([0.9, 0.7, 0.2, 0.95])
    assert [confident_prefix_length(conf, c) for c in (0.0, 0.1, 0.2, 0.5, 0.8, 0.99)] == [4, 4, 4, 2, 1, 1]
    assert confident_prefix_length(torch.tensor([0.3]), 0.5) == 1  # a round always proposes a token


def test_proposal_cut_keeps_greedy_output_and_verifies_fewer_tokens():
    model, prompt = agreeable_model(0, shift=0.4), [1, 50, 60, 70]
    full, _ = run_speculative(model, prompt, max_new_tokens=40, block_size=8, draft_steps=1)
    cut, _ = run_speculative(model, prompt, max_new_tokens=40, block_size=8, draft_steps=1, min_draft_confidence=0.5)
    assert cut.new_tokens == full.new_tokens == generate_ar(model, prompt, max_new_tokens=40).new_tokens
    assert cut.stats["drafted"] / cut.stats["rounds"] < full.stats["drafted"] / full.stats["rounds"]
    assert cut.stats["acceptance_rate"] > full.stats["acceptance_rate"]


def test_first_token_comes_from_the_prefill():
    """The prompt's prefill scores the first new position, so speculative emits the context tower's token
    there before any denoiser pass, as AR does: one new token takes no round, and an EOS there ends it."""
    model, prompt = agreeable_model(0, shift=0.4), [1, 50, 60, 70]
    ar = generate_ar(model, prompt, max_new_tokens=1).new_tokens
    for settings in (dict(max_new_tokens=1), dict(max_new_tokens=10, eos_token_id=ar[0][0])):
        result, events = run_speculative(model, prompt, block_size=4, draft_steps=1, **settings)
        assert result.new_tokens == ar and [e.kind for e in events] == ["token", "done"]
        assert events[0].commit_step.tolist() == [[-1]]  # given: no denoiser pass committed it
        assert result.stats["rounds"] == result.stats["nfe"] == 0 and result.stats["context_passes"] == 1


def test_full_acceptance_gives_length_s_plus_one():
    model = agreeable_model(0, shift=1.0)  # both towers emit one token over and over: every draft is right
    result, events = run_speculative(model, [1, 50, 60, 70], max_new_tokens=25, block_size=4, draft_steps=2)
    assert result.stats["acceptance_lengths"] == [5] * 5  # 5 rounds of 4 accepted + 1 bonus = 25 tokens
    assert result.stats["acceptance_rate"] == 1.0 and result.stats["rollback_passes"] == 0
    assert result.stats["context_passes"] == 1 + 5


def test_adaptive_block_grows_and_shrinks():
    _, events = run_speculative(agreeable_model(0, shift=1.0), [1, 50], max_new_tokens=60, block_size=4, draft_steps=1, adaptive=True)
    sizes = [e.info["block_size"] for e in events if e.kind == "verify"]
    assert max(sizes) == 8 and sizes[0] == 4  # grows to 2·S while every draft is accepted
    _, events = run_speculative(agreeable_model(5), [1, 50], max_new_tokens=12, block_size=8, draft_steps=1, adaptive=True)
    sizes = [e.info["block_size"] for e in events if e.kind == "verify"]
    assert sizes[:4] == [8, 4, 2, 1]  # random towers: rejections shrink it to 1


def test_bad_input_raises_clear_errors():
    model = agreeable_model(0)
    with pytest.raises(ValueError, match="one prompt at a time"):
        iter_speculative(model, [[1, 2, 3], [1, 2, 4]])
    for kwargs, message in [(dict(block_size=0), "block size"), (dict(draft_steps=0), "draft steps"),
                            (dict(draft_threshold=0.0), "γ"), (dict(temperature=-1.0), "temperature"),
                            (dict(max_new_tokens=0), "max_new_tokens"), (dict(eos_token_id=VOCAB), "vocabulary")]:
        with pytest.raises(ValueError, match=message):
            iter_speculative(model, [1, 2, 3], **kwargs)  # raised at the call, before any iteration
    with pytest.raises(ValueError, match="outside the vocabulary"):
        iter_speculative(model, [1, VOCAB])


def test_engine_streams_speculative_mode():
    engine = load_engine(preset="tiny")
    prompt = engine.encode_prompt("def f(x):")
    events = list(engine.stream("speculative", prompt, max_new_tokens=6, block_size=4, steps_per_block=2))
    ar = list(engine.stream("ar", prompt, max_new_tokens=6))
    assert events[-1].kind == "done" and events[-1].stats["mode"] == "speculative"
    assert events[-1].info["new_tokens"] == ar[-1].info["new_tokens"]


def test_a_bf16_draft_keeps_greedy_output_equal_to_fp32_ar():
    """Only the verifier (the context tower) decides the output: with the denoiser in bf16 and the context
    tower in fp32, greedy speculative decoding still equals fp32 AR token for token."""
    rng = random.Random(7)
    accepted = 0
    for trial in range(6):
        model = agreeable_model(rng.randrange(10_000), shift=rng.uniform(0.3, 1.0))
        model.set_denoiser_dtype(torch.bfloat16)
        assert (model.ctx_dtype, model.den_dtype) == (torch.float32, torch.bfloat16)
        biases = [b for n, b in model.denoiser_tower.named_buffers() if "e_score_correction_bias" in n]
        assert biases and all(b.dtype == torch.float32 for b in biases)
        prompt = [rng.randrange(5, VOCAB) for _ in range(rng.randint(1, 8))]
        settings = dict(max_new_tokens=20, block_size=rng.choice([2, 4, 8]), draft_steps=rng.randint(1, 3))
        spec = generate_speculative(model, prompt, **settings)
        assert spec.new_tokens == generate_ar(model, prompt, max_new_tokens=20).new_tokens, (trial, settings)
        accepted += spec.stats["accepted"]
    assert accepted > 10  # the bf16 drafts were right often enough for acceptance to matter
