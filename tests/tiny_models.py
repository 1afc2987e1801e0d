"""Random tiny two-tower models in which every path carries signal, for the engine tests.

At NemotronH's initialisation a tiny tower hides whole mechanisms from a test: dt_bias ≈ -6 makes Mamba steps
of ~0.005, so the SSM state after a prompt is ~1e-6 and a comparison to 1e-5 cannot tell a missing state from
a correct one (a test that zeroed the seeded SSM state still passed); the time conditioning starts as a no-op,
so a wrong t goes unseen; and a random head gives near-uniform confidences, so γ is never reached.

Also the helpers more than one test file shares: towers forced to predict given tokens, the record of a timed
generation, the tiny training run, a byte-level tokenizer.json, and the tiny preset's MoE layer.
"""

import types

import torch

from twotower import build_model
from twotower.config import PRESETS

MAMBA = "linear_attention"
# The tiny preset's MoE layer ("E" in its pattern M*EM-*; one per tower): the tests that name an expert or a
# router tensor take its index from here, so a new pattern moves them all at once.
MOE_LAYER = PRESETS["tiny"]["hybrid_override_pattern"].index("E")
VOCAB = PRESETS["tiny"]["vocab_size"]  # the tiny preset's byte vocabulary (261); ids 0-4 are specials


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


def force_tokens(monkeypatch, model, script):
    """Both towers predict script[row][k] with certainty, k counting the context tower's passes after the prefill
    (the block, or AR token, being written): which row writes EOS in which block is then chosen by the test.
    Returns the list of the context tower's passes (each its length), which grows as the model runs."""
    vocab, passes, forward = model.config.vocab_size, [], model.context_forward

    def certain(rows):  # (n, V) logits
        wanted = torch.tensor([script[row][len(passes) - 1] for row in rows])
        return torch.full((len(rows), vocab), -1e4).scatter_(1, wanted[:, None], 1e4)

    def context_forward(ids, cache, last_only=True):
        passes.append(ids.shape[1])
        forward(ids, cache, last_only)  # still run: the cache must advance as it would
        return certain(range(ids.shape[0]))[:, None]

    def denoise(block, ctx, t, *args, head_positions=None, **kwargs):
        return certain(head_positions.nonzero()[:, 0].tolist())  # one row per open position, row-major

    monkeypatch.setattr(model, "context_forward", context_forward)
    monkeypatch.setattr(model, "denoise", denoise)
    return passes


def timed_record(tokens=10, *, rows=None, seconds=1.0, ttft_s=0.1, nfe=4, context_passes=3):
    """One timed generation as bench.timed_generation records it. rows: each batch row's new tokens, by default
    one row (batch 1) of `tokens` tokens; new_tokens counts one row's tokens, tokens all rows'."""
    rows = [[7] * tokens] if rows is None else rows
    return {"rows": rows, "new_tokens": len(rows[0]), "tokens": sum(len(r) for r in rows), "nfe": nfe,
            "context_passes": context_passes, "seconds": seconds, "ttft_s": ttft_s}


def tiny_training_run(monkeypatch, tmp_path):
    """run_stage on the tiny preset, random token streams and a small profile: seconds, no corpus.
    Returns (the training module, the run folder, which holds the shipped tokenizer)."""
    from pathlib import Path

    import numpy as np

    import twotower
    from twotower import data, training

    monkeypatch.setitem(training.PROFILES, "test", dict(
        seq_len=48, batch_size=4, lr=3e-3, context_steps=40, denoiser_steps=40, prefix_len=16, block_size=8,
        warmup=4, eval_every=1000, save_every=1000, dtype="float32", distill_share=0.0))
    monkeypatch.setattr(twotower, "build_model", lambda preset, seed=0: build_model("tiny", seed=seed))
    rng = np.random.default_rng(0)
    monkeypatch.setattr(data, "encode_split", lambda tok, split, cache: rng.integers(5, 261, 5000).astype(np.uint16))
    run = tmp_path / "run"
    run.mkdir()
    shipped_tokenizer = Path(__file__).resolve().parents[1] / "assets/default/tokenizer.model"
    (run / "tokenizer.model").write_bytes(shipped_tokenizer.read_bytes())  # run_stage trains none then
    return training, run


def byte_level_tokenizer_json(path, specials=("<pad>", "<s>", "</s>", "<unk>", "<mask>")):
    """A Hugging Face tokenizer.json as the release ships one (byte-level, so any text encodes), trained
    offline on a few lines: its 5 specials + 256 byte symbols fill the tiny preset's 261 ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=261, special_tokens=list(specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(["def f(x):\n    return x + 1\n"] * 4, trainer)
    tokenizer.save(str(path))


def sweep_tick(out) -> bool:
    """Whether a Sweep's yield is a tick before a timed run (nothing redrawn; the CSV on screen yielded again)."""
    import gradio as gr

    return len(out) == 4 and out[0] == gr.skip() and out[1] == gr.skip() and out[3] == gr.skip()
