"""Random tiny two-tower models in which every path carries signal, for the engine tests.

At NemotronH's initialisation a tiny tower hides whole mechanisms from a test: dt_bias ≈ -6 makes Mamba steps
of ~0.005, so the SSM state after a prompt is ~1e-6 and a comparison to 1e-5 cannot tell a missing state from
a correct one (a test that zeroed the seeded SSM state still passed); the time conditioning starts as a no-op,
so a wrong t goes unseen; and a random head gives near-uniform confidences, so γ is never reached.
"""

import types

import torch

from twotower import build_model

MAMBA = "linear_attention"


def random_ids(shape, seed, low=5, high=261):
    """Byte-range token ids (above the specials), reproducible per seed."""
    return torch.randint(low, high, shape, generator=torch.Generator().manual_seed(seed))


@torch.no_grad()
def lively(model, seed=0):
    """Mamba dynamics as after training, in both towers: steps ≈ 0.7, decay 0.5-0.97 per token, O(1) x, B, C."""
    gen = torch.Generator().manual_seed(seed)
    for tower in (model.context_tower, model.denoiser_tower):
        for layer in tower.layers:
            if layer.block_type == MAMBA:
                mixer = layer.mixer
                mixer.dt_bias.zero_()  # softplus(0 + dt) ≈ 0.7
                mixer.A_log.copy_(torch.empty(mixer.num_heads).uniform_(-3.0, 0.0, generator=gen))  # A in [-1, -0.05]
                mixer.in_proj.weight.normal_(std=0.3, generator=gen)
    return model


@torch.no_grad()
def trained_looking(model, seed=0):
    """Time conditioning away from its no-op start: shift / scale / gate now depend on t and on the layer."""
    gen = torch.Generator().manual_seed(seed)
    model.t_block[1].weight.normal_(std=0.2, generator=gen)
    for table in model.scale_shift_tables:
        table.normal_(std=0.1, generator=gen)
        table[2] += 1.0  # gates near 1: every mixer still contributes
    return model


@torch.no_grad()
def sharp(model, scale=50.0):
    """Both heads scaled up: confidences spread over (0, 1) as a trained model's do, so every branch of the
    commit rule (above γ, the schedule, the last step) runs."""
    model.lm_head.weight.mul_(scale)
    model.context_lm_head.weight.mul_(scale)
    return model


def lively_tiny(seed=0, **overrides):
    """The tiny preset with lively Mamba layers; time conditioning still at its no-op start."""
    return lively(build_model("tiny", seed=seed, **overrides), seed)


def decoding_model(seed=0):
    """Everything on: lively Mamba, t-dependent conditioning, sharp heads."""
    return sharp(trained_looking(lively_tiny(seed), seed))


def every_mode_outputs(model, prompt):
    """The sequences of every decoding mode, greedy and sampled, at small sizes: what a fast path's reference
    twin must reproduce token for token (tests/test_compiled.py, tests/test_weight_layout.py)."""
    from spec_decode import generate_speculative
    from twotower import generate_ar, generate_mask_diffusion, generate_mock_ar

    with torch.no_grad():
        return {
            "ar": generate_ar(model, prompt, 12).sequences,
            "mock_ar": generate_mock_ar(model, prompt, 6).sequences,
            "diffusion": generate_mask_diffusion(model, prompt, 12, 4, 4, confidence_threshold=0.6).sequences,
            "speculative": generate_speculative(model, prompt, 12, block_size=4, draft_steps=1).sequences,
            "diffusion_sampled": generate_mask_diffusion(model, prompt, 8, 4, 4, temperature=1.0, seed=2).sequences,
            "speculative_sampled": generate_speculative(model, prompt, 8, block_size=4, temperature=1.0, seed=2).sequences,
        }


def agreeable_model(seed: int, shift: float = 0.0, pattern: str | None = None, live: bool = False) -> torch.nn.Module:
    """A tiny two-tower model for speculative tests. Random towers rarely agree, so acceptance is near zero;
    shift > 0 adds a constant to one embedding channel and copies the context tower into the denoiser, so both
    lean towards the same few tokens and drafts are often right. live: Mamba states that matter to the output
    (lively, before the denoiser copies the context tower), so that a wrong rollback of a state changes tokens."""
    overrides = {"hybrid_override_pattern": pattern} if pattern else {}
    model = build_model("tiny", seed=seed, **overrides)
    if live:
        lively(model, seed)
    if shift:
        with torch.no_grad():
            model.context_tower.embeddings.weight[:, 0] += shift
        model.init_denoiser_from_context()
    return model


def run_speculative(model, prompt, **kwargs):
    """generate_speculative with its events collected: (result, events)."""
    from spec_decode import generate_speculative

    events = []
    result = generate_speculative(model, prompt, step_callback=events.append, **kwargs)
    return result, events


class UniformTower:
    """A stand-in context tower that gives every one of `vocab` ids the same logit (not 0, so a missing
    log-softmax shows): the cross-entropy of any text is log V. It records the ids of every call in `inputs`,
    and carries the decoding defaults an eval reads from a model's config."""

    config = types.SimpleNamespace(default_gamma=0.9, default_block_size=4, default_steps_per_block=4,
                                   default_draft_steps=2, default_min_draft_confidence=0.0)

    def __init__(self, vocab: int):
        self.vocab, self.inputs = vocab, []

    def context_forward(self, ids, cache, last_only=True):
        assert cache is None
        self.inputs.append(ids[0].tolist())
        return torch.full((ids.shape[0], 1 if last_only else ids.shape[1], self.vocab), 3.0)
