"""Speculative mode end to end on tiny random two-tower models (CPU).

Random towers rarely agree, so acceptance is near zero. An "agreeable" model adds a constant to one
embedding channel and copies the context tower into the denoiser (model.init_denoiser_from_context):
both towers then lean towards the same few tokens, drafts are often right, and full acceptances
(bonus tokens, an unread token leading the next block) happen along with partial ones
(tiny_models.agreeable_model). Sampling's law is tested in test_spec_sampling.py, the context tower's rollback
after a verify pass in test_spec_rollback.py.
"""

import random
from collections import Counter

import pytest
import torch

from spec_decode import draft_block, generate_speculative, iter_speculative
from spec_decode.draft import confident_prefix_length
from twotower import generate_ar, generate_mask_diffusion
from twotower.decoding import make_generator
from twotower.engine import load_engine
from twotower.short_scan import use_short_scan

from tiny_models import VOCAB, agreeable_model, run_speculative


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
    # a last token (one left in the budget after a round) is the context tower's own: no round, at most a pass
    last = [e for e in events[1:] if e.kind == "token"]
    assert last == [] or (last == [events[-2]] and last[0].info["source"] == "last token" and last[0].nfe == stats["nfe"])
    assert stats["last_token_passes"] <= len(last) and stats["last_tokens"] == len(last)
    assert stats["context_passes"] == 1 + stats["rounds"] + rollbacks + stats["last_token_passes"] == events[-1].context_passes
    assert stats["rollback_passes"] == rollbacks
    # the prefill's token comes first, outside the rounds; then the committed tokens of the rounds replay to
    # the output, with consistent offsets and counts
    assert kinds[0] == "token" and events[0].block == 0 < events[1].block
    emitted = sum((e.tokens[0].tolist() for e in events if e.kind in ("token", "block")), [])
    assert emitted == result.new_tokens[0]
    assert stats["new_tokens"] == len(result.new_tokens[0]) <= 1 + sum(stats["acceptance_lengths"]) + len(last)
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
    # the prefill's token, 4 rounds of 4 accepted + 1 bonus, then 4 tokens left: the last round drafts 3 and its
    # bonus is the 25th token (drafting all 4 would have cut its bonus: a drafted position verified for nothing)
    assert result.stats["acceptance_lengths"] == [5] * 4 + [4]
    assert len(result.new_tokens[0]) == 25 == 1 + sum(result.stats["acceptance_lengths"])
    assert [e.info["block_size"] for e in events if e.kind == "verify"] == [4] * 4 + [3]
    assert result.stats["acceptance_rate"] == 1.0 and result.stats["rollback_passes"] == 0
    assert result.stats["context_passes"] == 1 + 5


def test_one_token_left_is_the_context_towers_own_without_a_round():
    model = agreeable_model(0, shift=1.0)
    result, events = run_speculative(model, [1, 50, 60, 70], max_new_tokens=6, block_size=4, draft_steps=1)
    # 1 (prefill) + 5 (4 accepted + bonus) = 6: no round left; with 7, one token is left: a draft could add
    # nothing (a round's own token would be cut), so the context tower reads the bonus token and gives the 7th
    assert result.stats["acceptance_lengths"] == [5] and result.stats["context_passes"] == 2
    result, events = run_speculative(model, [1, 50, 60, 70], max_new_tokens=7, block_size=4, draft_steps=1)
    assert [e.kind for e in events] == ["token", "step", "verify", "block", "token", "done"]
    assert len(result.new_tokens[0]) == 7 and result.stats["acceptance_lengths"] == [5]
    assert result.stats["context_passes"] == 3 and result.stats["last_token_passes"] == 1
    assert result.stats["rollback_passes"] == 0 and result.stats["nfe"] == events[-2].nfe == 1
    assert events[-2].info == {"source": "last token"} and events[-2].commit_step.tolist() == [[-1]]
    assert result.new_tokens == generate_ar(model, [1, 50, 60, 70], max_new_tokens=7).new_tokens


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
    with pytest.raises(ValueError, match="speculative mode runs one prompt at a time .got a batch of 2"):
        iter_speculative(model, [[1, 2], [1, 2, 3, 4, 5]])  # not "batch prompts of equal length" first
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
        routers = [t for n, t in [*model.denoiser_tower.named_buffers(), *model.denoiser_tower.named_parameters()]
                   if n.endswith(("e_score_correction_bias", "mixer.gate.weight"))]
        assert len(routers) >= 2 and all(t.dtype == torch.float32 for t in routers)
        prompt = [rng.randrange(5, VOCAB) for _ in range(rng.randint(1, 8))]
        settings = dict(max_new_tokens=20, block_size=rng.choice([2, 4, 8]), draft_steps=rng.randint(1, 3))
        spec = generate_speculative(model, prompt, **settings)
        assert spec.new_tokens == generate_ar(model, prompt, max_new_tokens=20).new_tokens, (trial, settings)
        accepted += spec.stats["accepted"]
    assert accepted > 10  # the bf16 drafts were right often enough for acceptance to matter


def test_the_python_api_drafts_with_the_checkpoints_own_settings():
    """generate_speculative defaulted to 4 draft passes, S = 16 and γ = 0.8 whatever the checkpoint said, while
    the CLI and the app took the config's (the shipped model: 1 pass): a script ran at half the documented speed."""
    from twotower import build_model
    from spec_decode import generate_speculative

    model = build_model("tiny", seed=0, default_draft_steps=3, default_block_size=5, default_gamma=0.6,
                        default_min_draft_confidence=0.25)
    stats = generate_speculative(model, [5, 6, 7], max_new_tokens=6).stats
    assert (stats["draft_steps"], stats["block_size"], stats["draft_threshold"], stats["min_draft_confidence"]) == (
        3, 5, 0.6, 0.25)
    given = generate_speculative(model, [5, 6, 7], max_new_tokens=6, draft_steps=2, block_size=4).stats
    assert (given["draft_steps"], given["block_size"]) == (2, 4)
