"""The short-scan Mamba-2 fast path against its reference twin, transformers' own mixer forward.

Every test runs the same computation twice on the same weights — fast path on (the default) and off
(`use_short_scan(model, 0)`) — and compares outputs and every cache state the run leaves behind.
"""

import pytest
import torch

from tiny_models import lively_tiny, random_ids
from twotower.seeded_states import clone_cache_states
from twotower.short_scan import ShortScanMamba2Mixer, causal_depthwise_conv, use_short_scan
from twotower.objectives import denoiser_loss
from twotower.training import PROFILES, TrainConfig


def both_paths(model, run):
    """run(model) with the fast path, then with transformers' forward; the model is left on the fast path."""
    use_short_scan(model)
    fast = run(model)
    use_short_scan(model, 0)
    try:
        ref = run(model)
    finally:
        use_short_scan(model)
    return fast, ref


def assert_states_close(fast_snap, ref_snap):
    assert len(fast_snap) == len(ref_snap)
    for fast, ref in zip(fast_snap, ref_snap):
        assert fast.keys() == ref.keys()
        for key in fast:
            if torch.is_tensor(fast[key]):
                torch.testing.assert_close(fast[key], ref[key], rtol=1e-4, atol=1e-5)
            else:
                assert fast[key] == ref[key]


def test_every_mamba_layer_of_both_towers_takes_the_fast_path():
    model = lively_tiny(seed=0)
    mixers = [layer.mixer for tower in (model.context_tower, model.denoiser_tower) for layer in tower.layers
              if layer.block_type == "linear_attention"]
    assert mixers and all(isinstance(m, ShortScanMamba2Mixer) and m.max_len > 0 for m in mixers)
    assert "mixer.in_proj.weight" in "".join(model.state_dict())  # the release's names are unchanged


@pytest.mark.parametrize("batch", [1, 3])
@torch.no_grad()
def test_context_tower_prefill_extend_and_steps_match(batch):
    """Prefill (short enough for the fast path), a multi-token extension (a verify pass), then single-token
    AR steps that update the conv / SSM states in place: same logits, same cache states."""
    model = lively_tiny(seed=1)
    ids = random_ids((batch, 30), seed=2)

    def run(m):
        cache = m.new_cache(batch)
        out = [m.context_forward(ids[:, :12], cache, last_only=False),
               m.context_forward(ids[:, 12:27], cache, last_only=False)]
        out += [m.context_forward(ids[:, i:i + 1], cache) for i in range(27, 30)]
        return out, clone_cache_states(cache)

    (fast, fast_snap), (ref, ref_snap) = both_paths(model, run)
    for a, b in zip(fast, ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
    assert_states_close(fast_snap, ref_snap)


@pytest.mark.parametrize("block_len", [1, 4, 16])
@torch.no_grad()
def test_denoiser_pass_from_seeded_states_matches(block_len):
    model = lively_tiny(seed=3)
    ids = random_ids((2, 20), seed=4)
    cache = model.new_cache(2)
    model.context_forward(ids, cache)
    before = clone_cache_states(cache)
    block = random_ids((2, block_len), seed=5)
    block[:, ::2] = model.config.mask_token_id
    t = torch.tensor([0.5, 0.9])
    fast, ref = both_paths(model, lambda m: m.denoise(block, m.context_states(cache), t))
    torch.testing.assert_close(fast, ref, rtol=1e-4, atol=1e-4)
    assert_states_close(clone_cache_states(cache), before)  # the seed is read, never written


def test_training_loss_and_gradients_match():
    """Stage 2 scans every block of a window as its own sequence from seeded states, under autograd."""
    model = lively_tiny(seed=5)
    model.train()
    cfg = TrainConfig(**{**PROFILES["cpu"], "prefix_len": 8, "block_size": 4, "dtype": "float32"})
    tokens = random_ids((2, 8 + 3 * 4), seed=6)

    def run(m):
        m.zero_grad(set_to_none=True)
        loss = denoiser_loss(m, tokens, cfg, torch.Generator().manual_seed(0))
        loss.backward()
        mixer = m.denoiser_tower.layers[0].mixer
        return loss.detach(), mixer.in_proj.weight.grad.clone(), mixer.A_log.grad.clone()

    for a, b in zip(*both_paths(model, run)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@torch.no_grad()
def test_sequences_longer_than_max_len_use_transformers():
    model = lively_tiny(seed=7)
    mixer = model.context_tower.layers[0].mixer
    x = torch.randn(1, mixer.max_len + 1, model.config.hidden_size)
    calls = []
    original = ShortScanMamba2Mixer.__mro__[1].forward
    ShortScanMamba2Mixer.__mro__[1].forward = lambda self, *a, **k: calls.append(1) or original(self, *a, **k)
    try:
        mixer(x)
        mixer(x[:, :5])
    finally:
        ShortScanMamba2Mixer.__mro__[1].forward = original
    assert calls == [1]


def test_causal_depthwise_conv_equals_conv1d():
    x, w = torch.randn(2, 6, 9), torch.randn(6, 4)
    ref = torch.nn.functional.conv1d(x, w[:, None], groups=6, padding=3)[..., :9]
    torch.testing.assert_close(causal_depthwise_conv(x, w), ref)


def test_cache_reads_fall_back_to_the_layer_view_of_older_transformers():
    """transformers 5.17-5.23 (the GPU machine's 5.17) have no get_conv_state / get_recurrent_state /
    is_recording_past: twotower.hf_compat reads cache.layers[i] there. Checked on a stand-in cache of that
    older shape, and on the seeded cache's own view of it (the denoiser's states, never written)."""
    from types import SimpleNamespace

    from twotower.hf_compat import get_conv_state, get_recurrent_state, is_recording_past
    from twotower.seeded_states import SeededMambaCache

    conv, ssm = torch.randn(2, 6, 4), torch.randn(2, 3, 5, 7)
    old = SimpleNamespace(layers={3: SimpleNamespace(conv_states={0: conv}, recurrent_states={0: ssm}, record_past=False)},
                          has_previous_state=lambda idx: idx == 3)
    assert get_conv_state(old, 3) is conv and get_recurrent_state(old, 3) is ssm and not is_recording_past(old, 3)
    seeded = SeededMambaCache({3: (conv, ssm)})
    view = seeded.layers[3]
    assert seeded.has_previous_state(3) and view.record_past and view.conv_states[0] is conv
    state = view.recurrent_states[0]
    state.add_(1.0)  # as selective_state_update does in place: the seed must not move
    assert torch.equal(seeded.mamba_states[3][1], ssm) and not torch.equal(state, ssm)


@torch.no_grad()
def test_a_token_read_alone_gets_the_logits_it_gets_inside_a_pass():
    """Trained steps fall below time_step_min (the default model's reach ~3e-5), where transformers' chunk
    scan clamps them and its 1-token update did not: AR (a token a step) then parted from a verify pass over
    the same text. Here half the heads step at ~5e-5 with live x, B and C: one pass over the text and the
    same text a token at a time must give the same logits and end in the same cache states."""
    model = lively_tiny(seed=3)
    for tower in (model.context_tower, model.denoiser_tower):
        for layer in tower.layers:
            if layer.block_type == "linear_attention":
                layer.mixer.dt_bias[::2] = -10.0  # softplus(-10) ≈ 4.5e-5 < time_step_min = 1e-3
                layer.mixer.in_proj.weight.mul_(10.0)
    assert model.config.time_step_min > 1e-4
    ids = random_ids((1, 24), seed=4)

    def one_pass_and_steps(m):
        whole_cache, step_cache = m.new_cache(1), m.new_cache(1)
        whole = m.context_forward(ids, whole_cache, last_only=False)[0, 8:]
        steps = [m.context_forward(ids[:, :9], step_cache)[0, -1]]
        steps += [m.context_forward(ids[:, i:i + 1], step_cache)[0, -1] for i in range(9, 24)]
        return whole, torch.stack(steps), clone_cache_states(whole_cache), clone_cache_states(step_cache)

    whole, steps, whole_snap, step_snap = one_pass_and_steps(model)
    torch.testing.assert_close(steps, whole, rtol=1e-4, atol=1e-5)
    assert_states_close(step_snap, whole_snap)
    use_short_scan(model, 0)  # transformers' own forward: its 1-token update does not clamp, so it parts
    try:
        ref_whole, ref_steps, _, _ = one_pass_and_steps(model)
    finally:
        use_short_scan(model)
    assert (ref_steps - ref_whole).abs().max() > 1e-4  # the difference the test guards is visible here (~3e-4)


@torch.no_grad()
def test_in_bf16_the_fast_path_is_as_close_to_fp32_as_its_twin():
    """bf16 is the release's dtype, and every twin comparison above runs fp32. In bf16 the two paths round
    differently, so they are not compared with each other: each is compared with the fp32 model, and the short
    scan may stray from it by little more than transformers' own bf16 path does (1-token steps after a prefill)."""
    import copy

    from twotower.config import cast_model

    base = lively_tiny(seed=1)
    ids = random_ids((2, 40), seed=2)

    def steps(m):
        cache = m.new_cache(2)
        m.context_forward(ids[:, :8], cache)
        return torch.stack([m.context_forward(ids[:, i:i + 1], cache)[:, 0] for i in range(8, 40)], 1).float()

    exact = steps(base)
    fast, twin = both_paths(cast_model(copy.deepcopy(base), torch.bfloat16), steps)
    fast_error, twin_error = (fast - exact).abs().max().item(), (twin - exact).abs().max().item()
    assert 0 < twin_error and fast_error <= 2 * twin_error + 1e-3, (fast_error, twin_error)
