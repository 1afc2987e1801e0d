"""Engine.stream passes every setting on to the samplers: stop_at_eos, top-k / top-p in diffusion mode, and
the checkpoint's own decoding defaults when a setting is left out; describe() counts each tower's own
parameters; encode_prompt's limit counts tokens, not characters. A mutation audit found each of these
could be dropped with every test still passing: the sampler tests call the samplers directly, and the engine
tests only checked that a run ends."""

import pytest

from tiny_models import decoding_model
from twotower.engine import DEFAULT_MODEL_DIR, Engine
from twotower.tokenizer import ByteTokenizer, load_tokenizer

MODES = ("diffusion", "mock_ar", "ar", "speculative")


def tiny_engine(seed=0, **config):
    """A tiny engine whose heads are sharp (confidences spread over (0, 1), so γ and sampling matter), with
    `config` fields set on the model's config (as a checkpoint's config.json would set them)."""
    model = decoding_model(seed).eval()
    for key, value in config.items():
        setattr(model.config, key, value)
    return Engine(model, ByteTokenizer(), "tiny")


def trace(events):
    """What a run did, without its timings: per event its kind, block, step, tokens and commits."""
    return [(e.kind, e.block, e.step, e.tokens.tolist(), e.committed.tolist(), e.nfe, e.context_passes)
            for e in events]


def new_tokens(events):
    done = list(events)[-1]
    assert done.kind == "done"
    return done.info["new_tokens"][0]


@pytest.fixture(scope="module")
def engine():
    return tiny_engine()


@pytest.fixture(scope="module")
def prompt(engine):
    return engine.encode_prompt("def f(x):")


# ----------------------------------------------------------------------------------------------------
# stop_at_eos
@pytest.mark.parametrize("mode", MODES)
def test_stream_stops_at_the_eos_the_model_emits_only_when_asked(mode, prompt):
    """The tiny model never emits id 2 by itself; so a token its greedy run does emit, a few tokens in, is
    made the tokenizer's EOS. stop_at_eos=True must cut the run just after that token's first occurrence,
    False must run to max_new_tokens (a mutant that always passed eos=None ran on in every mode)."""
    engine = tiny_engine()
    n = 12
    free = new_tokens(engine.stream(mode, prompt, max_new_tokens=n, block_size=4, stop_at_eos=False))
    assert len(free) == n
    # the first token that appears at position >= 2 and not before: the run must end right after it
    cut = next(i for i in range(2, n - 2) if free[i] not in free[:i])
    engine.tokenizer.eos_token_id = free[cut]  # the instance's EOS (ByteTokenizer's class attribute is 2)
    assert engine.eos_token_id == free[cut]
    stopped = new_tokens(engine.stream(mode, prompt, max_new_tokens=n, block_size=4, stop_at_eos=True))
    assert stopped == free[: cut + 1]
    assert new_tokens(engine.stream(mode, prompt, max_new_tokens=n, block_size=4, stop_at_eos=False)) == free


# ----------------------------------------------------------------------------------------------------
# top-k / top-p in diffusion mode
@pytest.mark.parametrize("restriction", [dict(top_k=1), dict(top_p=1e-6)])
def test_diffusion_stream_applies_top_k_and_top_p(engine, prompt, restriction):
    """At temperature 1, top_k=1 (or a top_p that keeps only the most likely token) leaves one candidate
    per position: the draw is the greedy token and the confidence is read from the unscaled logits either
    way, so the run equals the greedy run event for event. The unrestricted draw at the same seed differs,
    which shows the sampling actually happens (a mutant passed top_k=top_p=None to the sampler)."""
    settings = dict(max_new_tokens=12, block_size=4, steps_per_block=4, gamma=0.6)
    greedy = trace(engine.stream("diffusion", prompt, temperature=0.0, **settings))
    sampled = trace(engine.stream("diffusion", prompt, temperature=1.0, seed=5, **settings))
    restricted = trace(engine.stream("diffusion", prompt, temperature=1.0, seed=5, **restriction, **settings))
    assert sampled != greedy
    assert restricted == greedy


# ----------------------------------------------------------------------------------------------------
# the checkpoint's decoding defaults
# γ 0.5, not lower: on this model at γ 0.3 every position of a 3-block clears γ in the first pass, so the
# number of steps would not matter and a stream ignoring default_steps_per_block would go unseen
DEFAULTS = dict(default_gamma=0.5, default_block_size=3, default_steps_per_block=2)


def test_stream_without_settings_uses_the_checkpoints_defaults(prompt):
    """A config with its own γ, S and steps: stream() without them must run exactly as with them spelled
    out. Each setting alone changes the run here (checked below), so a stream that fell back to the
    engine-wide 0.8 / 16 / 16 for any one of them is seen."""
    engine = tiny_engine(**DEFAULTS)
    run = lambda **kw: trace(engine.stream("diffusion", prompt, max_new_tokens=12, **kw))  # noqa: E731
    explicit = run(gamma=0.5, block_size=3, steps_per_block=2)
    assert run() == explicit
    for other in (dict(gamma=0.8, block_size=3, steps_per_block=2), dict(gamma=0.5, block_size=16, steps_per_block=2),
                  dict(gamma=0.5, block_size=3, steps_per_block=16), dict(gamma=0.8, block_size=16, steps_per_block=16)):
        assert run(**other) != explicit, other


def test_speculative_stream_uses_the_checkpoints_draft_defaults(prompt):
    """The same for speculative mode's own defaults: draft passes and the draft's confidence floor."""
    engine = tiny_engine(**DEFAULTS, default_draft_steps=3, default_min_draft_confidence=0.5)
    run = lambda **kw: trace(engine.stream("speculative", prompt, max_new_tokens=12, **kw))  # noqa: E731
    explicit = run(gamma=0.5, block_size=3, draft_steps=3, min_draft_confidence=0.5)
    assert run() == explicit
    assert run(gamma=0.5, block_size=3, draft_steps=1, min_draft_confidence=0.5) != explicit
    assert run(gamma=0.5, block_size=3, draft_steps=3, min_draft_confidence=0.0) != explicit


# ----------------------------------------------------------------------------------------------------
# describe() and the prompt limit
def test_describe_counts_each_towers_own_parameters(engine):
    """Each count is checked against num_parameters and against a sum over the parameter names (so neither
    a describe() that reported the context count under params_denoiser nor a num_parameters that ignored its
    argument passes); the denoiser also holds the time conditioning, so its count is the larger."""
    info = engine.describe()
    by_name = {"context": 0, "denoiser": 0}
    for name, p in engine.model.named_parameters():
        by_name["context" if name.startswith(("context_tower.", "context_lm_head.")) else "denoiser"] += p.numel()
    assert info["params_context"] == engine.model.num_parameters("context") == by_name["context"]
    assert info["params_denoiser"] == engine.model.num_parameters("denoiser") == by_name["denoiser"]
    assert info["params_denoiser"] > info["params_context"]


def test_prompt_limit_counts_sentencepiece_tokens_not_characters():
    """With the shipped sentencepiece tokenizer a word is one or a few tokens: a limit set between a prompt's
    token count and its character count accepts a prompt of exactly the limit in tokens and refuses one token
    more, with the message (a limit compared with characters, or with >=, refuses the first)."""
    tokenizer = load_tokenizer(DEFAULT_MODEL_DIR)
    text = "def add(a, b):\n    return a + b\n"
    n = len(tokenizer.encode(text))
    assert n < len(text)  # the limit below lies strictly between the two counts
    engine = Engine(None, tokenizer, "assets/default", max_prompt_tokens=n)
    assert engine.encode_prompt(text) == tokenizer.encode(text)
    longer = text + "x"
    assert len(tokenizer.encode(longer)) == n + 1
    with pytest.raises(ValueError, match=rf"the prompt is {n + 1} tokens long; the limit is {n} tokens"):
        engine.encode_prompt(longer)


# ----------------------------------------------------------------------------------------------------
# refusals of a tokenizer that does not fit the model (the audit found neither under test)
def test_a_tokenizer_with_more_ids_than_the_model_is_refused(tmp_path):
    """The shipped tokenizer (8,192 ids) beside a model of 300 ids: ids past the embedding would fail in the
    first forward pass; load_engine names both counts instead."""
    from twotower import build_model
    from twotower.checkpoint import save_pretrained
    from twotower.engine import load_engine

    shipped = load_tokenizer(DEFAULT_MODEL_DIR)
    model = build_model("tiny", vocab_size=300, mask_token_id=shipped.mask_token_id)
    save_pretrained(model, tmp_path)
    (tmp_path / "tokenizer.model").write_bytes((DEFAULT_MODEL_DIR / "tokenizer.model").read_bytes())
    with pytest.raises(ValueError, match=f"the tokenizer in .* has {shipped.vocab_size} ids but config.json's "
                                         "vocab_size is 300: they come from different models"):
        load_engine(model_dir=tmp_path)


def test_a_model_too_small_for_the_byte_tokenizer_is_refused():
    """Without a tokenizer file the byte tokenizer stands in, which needs its 261 ids."""
    from twotower import make_config

    with pytest.raises(ValueError, match="vocab 200 is too small for the byte tokenizer"):
        load_tokenizer(None, make_config("tiny", vocab_size=200))
    assert load_tokenizer(None, make_config("tiny", vocab_size=ByteTokenizer.vocab_size)).vocab_size == 261
