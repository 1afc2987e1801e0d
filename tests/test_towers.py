"""The two towers against simple reference twins, on tiny random configs.

* the seeded Mamba block scan (a chunk scan from the context's state) against the Mamba-2 recurrence
  written out token by token;
* the context tower extended step by step against one parallel pass;
* the denoiser against a plain NemotronH pass over [context ; block] with a causal-then-full mask;
* what the denoiser may and may not see, and that it never writes the context states.
"""

from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from tiny_models import lively_tiny, random_ids, trained_looking
from twotower import TwoTowerModel, build_model, make_config
from twotower.dense_experts import NAME as DENSE
from twotower.seeded_states import SeededMambaCache, clone_cache_states

MAMBA, ATTENTION = "linear_attention", "full_attention"


@pytest.fixture
def model():
    """Tiny, with Mamba layers that carry signal (see models)."""
    return lively_tiny(seed=0)


class RecordingSeed(SeededMambaCache):
    """A SeededMambaCache that keeps the final SSM state the scan reports, so tests can check it."""

    final_state = None

    def update_recurrent_state(self, final_state, layer_idx, **kwargs):
        self.final_state = final_state
        return final_state


def mamba_recurrence(mixer, x, conv_state, ssm_state):
    """Reference twin: the Mamba-2 mixer run one token at a time from (conv_state, ssm_state).

    x: (B, S, H). conv_state: (B, conv_dim, K), the last K conv inputs. ssm_state: (B, heads, head_dim, N).
    Returns the mixer output (B, S, H) and the final SSM state.
    """
    batch, seq, _ = x.shape
    heads, groups, state = mixer.num_heads, mixer.n_groups, mixer.ssm_state_size
    gate, conv_in, dt = mixer.in_proj(x).split([mixer.intermediate_size, mixer.conv_dim, heads], dim=-1)
    window, h = conv_state.clone(), ssm_state.clone().float()
    weight = mixer.conv1d.weight.squeeze(1)  # (conv_dim, K)
    bias = mixer.conv1d.bias if mixer.conv1d.bias is not None else 0.0
    A = -torch.exp(mixer.A_log.float())  # (heads,)
    outputs = []
    for i in range(seq):
        window = torch.cat([window[..., 1:], conv_in[:, i, :, None]], dim=-1)  # slide in token i
        conv = F.silu((window * weight).sum(-1) + bias)  # (B, conv_dim)
        xs, B, C = conv.split([mixer.intermediate_size, groups * state, groups * state], dim=-1)
        xs = xs.view(batch, heads, -1)  # (B, heads, head_dim)
        B = B.view(batch, groups, state).repeat_interleave(heads // groups, dim=1)  # (B, heads, N)
        C = C.view(batch, groups, state).repeat_interleave(heads // groups, dim=1)
        # the chunk scan clamps the step at time_step_min; the same clamp here
        step = F.softplus(dt[:, i] + mixer.dt_bias).clamp(min=mixer.time_step_limit[0])  # (B, heads)
        h = h * torch.exp(step * A)[..., None, None] + step[..., None, None] * xs[..., None] * B[:, :, None, :]
        y = (h * C[:, :, None, :]).sum(-1) + mixer.D[:, None] * xs  # (B, heads, head_dim)
        outputs.append(y.reshape(batch, -1))
    y = torch.stack(outputs, dim=1)  # (B, S, heads·head_dim)
    return mixer.out_proj(mixer.norm(y, gate)), h


@pytest.mark.parametrize("block", [1, 3, 8, 13])  # tiny chunk_size is 8: shorter, equal, longer, ragged
@torch.no_grad()
def test_seeded_block_scan_matches_token_by_token_recurrence(model, block):
    mixer_idx = model.layer_types.index(MAMBA)
    mixer = model.context_tower.layers[mixer_idx].mixer
    hidden = model.config.hidden_size
    gen = torch.Generator().manual_seed(block)
    prefix, x = torch.randn(2, 11, hidden, generator=gen), torch.randn(2, block, hidden, generator=gen)

    cache = model.new_cache()
    whole = mixer(torch.cat([prefix, x], dim=1))  # no cache: one scan from zero state
    mixer(prefix, cache=cache)  # the context: leaves conv / SSM state after the prefix
    layer = cache.layers[mixer_idx]
    seed = (layer.conv_states[0].clone(), layer.recurrent_states[0].clone())

    seeded = RecordingSeed({mixer_idx: seed})
    scanned = mixer(x, cache=seeded)
    reference, final_state = mamba_recurrence(mixer, x, *seed)
    forgetful = mixer(x, cache=SeededMambaCache({mixer_idx: (seed[0], torch.zeros_like(seed[1]))}))
    # 100x the tolerance below (the D·x skip term dominates the output; the seed's share is still clear)
    assert (scanned - forgetful).abs().max() > 1e-3, "the SSM seed barely matters: the test would not test seeding"

    assert torch.allclose(scanned, reference, rtol=1e-4, atol=1e-5), (scanned - reference).abs().max()
    assert torch.allclose(scanned, whole[:, -block:], rtol=1e-4, atol=1e-5)
    if block > 1:  # one token takes the recurrent kernel, which reports no final state
        assert torch.allclose(seeded.final_state, final_state, rtol=1e-4, atol=1e-5)
    assert torch.equal(seed[0], layer.conv_states[0]) and torch.equal(seed[1], layer.recurrent_states[0])


def test_mamba_step_clamp_is_time_step_min_on_every_transformers_version(model):
    """transformers <= 5.24 clamped the chunk scan's step at config.time_step_min; 5.25 reads
    config.time_step_limit, (0, inf) in the shipped config. Every checkpoint here was trained under the first
    rule, so both towers pin it (twotower.hf_compat.pin_time_step_clamp), a model rebuilt from its config too;
    on the default model leaving it to 5.25 moved the logits of a 9-token prompt by up to 8e-4."""
    from transformers.models.nemotron_h.modeling_nemotron_h import NemotronHMamba2Mixer

    rebuilt = TwoTowerModel(model.config)
    for tower in (model.context_tower, model.denoiser_tower, rebuilt.context_tower, rebuilt.denoiser_tower):
        mixers = [layer.mixer for layer in tower.layers if isinstance(layer.mixer, NemotronHMamba2Mixer)]
        assert mixers and all(m.time_step_limit == (model.config.time_step_min, float("inf")) for m in mixers)


def test_has_read_tokens_follows_the_cache(model):
    """The compiled-decode router's question, answered from K/V shapes (no device sync on any version)."""
    from twotower.hf_compat import has_read_tokens

    cache = model.new_cache()
    assert not has_read_tokens(cache)
    model.context_forward(random_ids((2, 3), seed=0), cache)
    assert has_read_tokens(cache) and int(cache.get_seq_length()) == 3


@pytest.mark.parametrize("prompt_len", [1, 3, 9])  # shorter than the conv kernel, and past a chunk
@torch.no_grad()
def test_context_extension_step_by_step_equals_one_parallel_pass(model, prompt_len):
    ids = random_ids((2, prompt_len + 10), seed=prompt_len)
    full = model.context_forward(ids, None, last_only=False)  # (B, T, V), no cache at all
    for pieces in ([1] * 10, [3, 1, 6]):  # token by token; blocks shorter and longer than the conv kernel
        cache = model.new_cache()
        parts, pos = [model.context_forward(ids[:, :prompt_len], cache, last_only=False)], prompt_len
        for n in pieces:
            parts.append(model.context_forward(ids[:, pos : pos + n], cache, last_only=False))
            pos += n
        stepped = torch.cat(parts, dim=1)
        assert stepped.shape == full.shape
        assert torch.allclose(stepped, full, atol=1e-5), (pieces, (stepped - full).abs().max())
        assert cache.get_seq_length() == ids.shape[1]


def full_sequence_twin(model, prompt, block):
    """Reference twin of `denoise` for a denoiser that is a copy of the context tower: one NemotronH pass
    over [prompt ; block], attention causal over the prompt and unmasked for block queries, Mamba causal."""
    P, T = prompt.shape[1], prompt.shape[1] + block.shape[1]
    allowed = torch.ones(T, T, dtype=torch.bool).tril()
    allowed[P:, :] = True  # a block position sees the whole context and the whole block
    mask = torch.zeros(1, 1, T, T).masked_fill(~allowed, float("-inf"))
    out = model.denoiser_tower(input_ids=torch.cat([prompt, block], dim=1),
                               attention_mask={"full_attention": mask, "linear_attention": None})
    return model.lm_head(out.last_hidden_state[:, P:]).float()


@pytest.mark.parametrize("block_len", [1, 5, 16])
@torch.no_grad()
def test_denoiser_equals_full_sequence_twin(model, block_len):
    model.init_denoiser_from_context()  # time conditioning at its no-op start
    prompt, block = random_ids((2, 9), 1), random_ids((2, block_len), 2)
    block[:, ::3] = model.config.mask_token_id
    cache = model.new_cache()
    model.context_forward(prompt, cache)
    ctx = model.context_states(cache)
    reference = full_sequence_twin(model, prompt, block)
    for t in (0.0, 0.4, 1.0):  # gates at 1, shift = scale = 0: t changes nothing yet
        logits = model.denoise(block, ctx, torch.full((2,), t))
        assert torch.allclose(logits, reference, atol=1e-5), (t, (logits - reference).abs().max())
    if block_len == 1:  # one position: the denoiser is exactly the context tower's next step
        denoised = model.denoise(block, ctx, torch.ones(2))  # before the cache (and ctx's views) moves on
        assert torch.allclose(denoised, model.context_forward(block, cache), atol=1e-5)


def block_logits(model, prompt, block, t=0.5):
    cache = model.new_cache()
    model.context_forward(prompt, cache)
    with torch.no_grad():
        return model.denoise(block, model.context_states(cache), torch.full((prompt.shape[0],), t))


def silence(model, kind):
    """Zero the output projection of every `kind` layer in both towers: its mixer then adds nothing.
    (A NemotronH cache needs one attention layer, so paths are isolated this way, not by the pattern.)"""
    with torch.no_grad():
        for tower in (model.context_tower, model.denoiser_tower):
            for layer in tower.layers:
                if layer.block_type == kind:
                    proj = layer.mixer.o_proj if kind == ATTENTION else layer.mixer.out_proj
                    proj.weight.zero_()
    return model


@pytest.mark.parametrize("path", ["both", "attention only", "mamba only"])
def test_denoiser_sees_the_context(path):
    # std 0.3 weights: at the default 0.02 a far token's trace through a Mamba-only stack is ~1e-7,
    # products of small weights, not a missing path (the last context token moves the block by ~0.25).
    model = lively_tiny(seed=1, initializer_range=0.3)
    if path != "both":
        silence(model, MAMBA if path == "attention only" else ATTENTION)
    prompt, block = random_ids((1, 8), 3), random_ids((1, 6), 4)
    changed = prompt.clone()
    changed[0, 0] = 5 if prompt[0, 0] != 5 else 6  # the first context token: furthest from the block
    delta = (block_logits(model, prompt, block) - block_logits(model, changed, block)).abs().amax(-1)
    assert (delta > 1e-4).all(), delta


@pytest.mark.parametrize("path", ["both", "attention only", "mamba only"])
def test_denoiser_is_bidirectional_in_the_block_and_mamba_stays_causal(path):
    model = lively_tiny(seed=2)
    if path != "both":
        silence(model, MAMBA if path == "attention only" else ATTENTION)
    prompt, block = random_ids((1, 8), 5), random_ids((1, 6), 6)
    later = block.clone()
    later[0, -1] = model.config.mask_token_id  # the last block position becomes the mask
    delta = (block_logits(model, prompt, block) - block_logits(model, prompt, later)).abs().amax(-1)[0]
    if path == "mamba only":  # only Mamba mixes positions: a later token cannot reach an earlier one
        assert delta[:-1].max() < 1e-5 and delta[-1] > 1e-2, delta  # float noise of the chunked scan only
    else:
        assert (delta[:-1] > 1e-4).all(), delta


@pytest.mark.parametrize("block_len", [1, 7])  # one token takes the mixer's in-place recurrent path
def test_denoising_never_writes_the_context_states(model, block_len):
    prompt = random_ids((2, 10), 7)
    cache = model.new_cache()
    model.context_forward(prompt, cache)
    before = clone_cache_states(cache)
    attn_before = {i: (l.keys.clone(), l.values.clone()) for i, l in enumerate(cache.layers) if hasattr(l, "keys")
                   and torch.is_tensor(l.keys)}
    ctx = model.context_states(cache)
    with torch.no_grad():
        first = model.denoise(random_ids((2, block_len), 8), ctx, torch.ones(2))
        for seed in range(3):
            model.denoise(random_ids((2, block_len), 9 + seed), ctx, torch.full((2,), 0.5))
        again = model.denoise(random_ids((2, block_len), 8), ctx, torch.ones(2))
    assert torch.equal(first, again), "a denoiser pass changed what the next pass sees"
    for layer, snap in zip(cache.layers, before):
        if "conv" in snap:
            assert torch.equal(layer.conv_states[0], snap["conv"]) and torch.equal(layer.recurrent_states[0], snap["ssm"])
    for idx, (keys, values) in attn_before.items():
        assert torch.equal(cache.layers[idx].keys, keys) and torch.equal(cache.layers[idx].values, values)


@torch.no_grad()
def test_time_conditioning_and_gates():
    model = lively_tiny(seed=3)
    prompt, block = random_ids((1, 8), 10), random_ids((1, 6), 11)
    assert torch.equal(block_logits(model, prompt, block, 0.1), block_logits(model, prompt, block, 0.9))
    trained_looking(model)  # as after training: t now modulates
    assert not torch.allclose(block_logits(model, prompt, block, 0.1), block_logits(model, prompt, block, 0.9))
    model.reset_time_conditioning()
    for table in model.scale_shift_tables:
        table[2].zero_()  # gate 0 everywhere: no mixer output reaches the residual stream
    other = random_ids((1, 8), 12)
    assert torch.equal(block_logits(model, prompt, block), block_logits(model, other, block))


def test_presets_have_the_promised_shapes():
    tiny = make_config("tiny")
    assert set(tiny.layers_block_type) == {MAMBA, ATTENTION, "moe", "mlp"}  # every layer kind is tested
    default = build_model("default")
    assert 9e6 < default.num_parameters("context") < 12e6 and 9e6 < default.num_parameters("denoiser") < 12e6
    with torch.device("meta"):  # the real shape, without allocating 120 GB
        release = TwoTowerModel(make_config("release"))
    assert Counter(release.layer_types) == {MAMBA: 23, "moe": 23, ATTENTION: 6}
    assert 29e9 < release.num_parameters("context") < 33e9
    cfg = release.config
    assert (cfg.hidden_size, cfg.vocab_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim) == (
        2688, 131072, 32, 2, 128)
    assert (cfg.n_routed_experts, cfg.num_experts_per_tok, cfg.mask_token_id) == (128, 6, 3)
    with pytest.raises(ValueError, match="unknown preset"):
        make_config("huge")
    for pattern, message in (("M-", "no attention layer"), ("MX*", "use a non-empty string of M"), ("", "non-empty")):
        with pytest.raises(ValueError, match=message):
            make_config("tiny", hybrid_override_pattern=pattern)


def test_misspelt_config_field_is_refused_with_a_suggestion():
    """PretrainedConfig keeps any keyword as an attribute: a misspelt override used to build the preset's own
    value silently. Every real field, the two-tower ones and the pattern's alias still pass."""
    with pytest.raises(ValueError, match=r"unknown config field 'hiden_size' \(did you mean 'hidden_size'\?\)"):
        make_config("tiny", hiden_size=64)
    with pytest.raises(ValueError, match=r"unknown config fields 'default_gama' .*'default_gamma'.*, 'zzz';"):
        make_config("tiny", zzz=1, default_gama=0.5)
    cfg = make_config("tiny", hidden_size=48, default_gamma=0.5, hybrid_override_pattern="M*", max_position_embeddings=64)
    assert (cfg.hidden_size, cfg.default_gamma, cfg.layers_block_type, cfg.max_position_embeddings) == (
        48, 0.5, [MAMBA, ATTENTION], 64)


@pytest.mark.parametrize("n_tokens", [1, 5, 17, 40])  # 40: past dense_experts.MAX_TOKENS, the loop
@torch.no_grad()
def test_cpu_dense_experts_equal_transformers_experts(model, n_tokens):
    """On CPU the towers run every expert on every token ("dense", measured faster here); its twins are
    transformers' per-expert loop and its grouped GEMM (the GPU path). Same routing, same weights: the
    same context logits and denoiser logits."""
    assert model.config._experts_implementation == DENSE
    ids = random_ids((1, 6 + n_tokens), seed=3)
    outputs = {}
    for impl in ("dense", "eager", "grouped_mm"):
        model.config._experts_implementation = impl
        cache = model.new_cache()
        model.context_forward(ids[:, :6], cache)
        logits = model.context_forward(ids[:, 6:], cache, last_only=False)
        block = torch.full((1, n_tokens), model.config.mask_token_id)
        outputs[impl] = (logits, model.denoise(block, model.context_states(cache), torch.ones(1)))
    model.config._experts_implementation = DENSE
    for twin in ("eager", "grouped_mm"):
        for fast, ref in zip(outputs["dense"], outputs[twin]):
            torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_dense_experts_see_weights_changed_in_place(model):
    """The dense kernel keeps a re-laid-out copy of down_proj: editing the weights must not leave it stale."""
    moe = next(layer.mixer for layer in model.context_tower.layers if layer.block_type == "moe")
    x = torch.randn(1, 5, model.config.hidden_size, generator=torch.Generator().manual_seed(2))
    moe(x)  # builds the copy
    moe.experts.down_proj.mul_(-3.0)
    dense = moe(x)
    model.config._experts_implementation = "eager"
    eager = moe(x)
    model.config._experts_implementation = DENSE
    torch.testing.assert_close(dense, eager, rtol=1e-4, atol=1e-4)


def test_dense_experts_train_like_the_loop():
    """Under autograd the dense kernel gives the loop's gradients (its down-projection copy is rebuilt
    each call, so the gradient reaches the experts' own tensor)."""
    grads = {}
    for impl in ("dense", "eager"):
        model = lively_tiny(seed=0)
        model.config._experts_implementation = impl
        moe = next(layer.mixer for layer in model.context_tower.layers if layer.block_type == "moe")
        moe.requires_grad_(True)
        x = torch.randn(2, 7, model.config.hidden_size, generator=torch.Generator().manual_seed(1))
        moe(x).pow(2).sum().backward()
        grads[impl] = (moe.experts.up_proj.grad, moe.experts.down_proj.grad)
    for fast, ref in zip(grads["dense"], grads["eager"]):
        torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype, n_tokens, dense", [(torch.float32, 32, True), (torch.float32, 33, False),
                                                    (torch.bfloat16, 64, True), (torch.bfloat16, 129, False)])
@torch.no_grad()
def test_dense_experts_token_limit_depends_on_the_dtype(model, monkeypatch, dtype, n_tokens, dense):
    """bf16 inputs stay dense for longer passes (oneDNN's bf16 GEMM); past the limit the loop takes over."""
    from twotower import dense_experts

    import copy

    experts = copy.deepcopy(next(layer.mixer for layer in model.context_tower.layers if layer.block_type == "moe").experts)
    looped = []
    monkeypatch.setattr(dense_experts, "_loop_forward", lambda e: lambda *a: looped.append(1) or a[1])
    x = torch.randn(n_tokens, model.config.hidden_size).to(dtype)
    idx = torch.zeros(n_tokens, experts.up_proj.shape[0] // 4 or 1, dtype=torch.long)
    dense_experts.dense_experts_forward(experts.to(dtype), x, idx, torch.ones(idx.shape, dtype=dtype))
    assert bool(looped) is not dense


@pytest.mark.parametrize("seed, message", [("a", "seed must be an integer, got 'a'"), (None, "must be an integer"),
                                           (-1, "seed must be >= 0"), (2**70, "<= 9223372036854775807")])
def test_build_model_refuses_a_bad_seed_in_its_own_words(seed, message):
    """torch's words were "invalid literal for int() with base 10" and "Overflow when unpacking long long"."""
    from twotower import build_model

    with pytest.raises(ValueError, match=message):
        build_model("tiny", seed=seed)
