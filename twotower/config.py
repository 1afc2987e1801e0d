"""Two-tower configuration: a NemotronHConfig plus the two-tower fields, and named presets.

Both towers share one layer stack description (the release builds them from the same config), so the
config *is* a `transformers.NemotronHConfig`; the two-tower fields ride along as extra attributes and
survive `save_pretrained` / `from_pretrained` in config.json.
"""

from __future__ import annotations

import torch
from transformers import NemotronHConfig

from .checkpoint_files import one_line
from .config_checks import check_built_config

ARCHITECTURE = "NemotronHTwoTowerForCausalLM"
# Tensors held in fp32 whatever dtype the model is cast to: the MoE router's weight and score-correction bias, as
# transformers keeps them (`_keep_in_fp32_modules_strict`; its router computes in fp32 anyway). A bf16 router
# weight picks other experts at near-ties: rare in our 8-expert model, likelier in the release's 128.
FP32_SUFFIXES = ("e_score_correction_bias", "mixer.gate.weight")


def held_dtype(name: str, dtype: torch.dtype) -> torch.dtype:
    """The dtype that tensor `name` (floating point) is held in when the model is cast to `dtype`."""
    return torch.float32 if name.endswith(FP32_SUFFIXES) else dtype


def cast_model(model: torch.nn.Module, dtype: torch.dtype, prefixes: tuple[str, ...] = ()) -> torch.nn.Module:
    """`model.to(dtype)` that keeps FP32_SUFFIXES in fp32, tensor by tensor (a cast back from bf16 would have
    rounded them). prefixes: cast only the tensors whose names start with one of them."""
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if tensor.is_floating_point() and name.startswith(prefixes or ("",)):
                tensor.data = tensor.data.to(held_dtype(name, dtype))
    return model

# Fields that NemotronHConfig does not know; each preset may override them.
TWO_TOWER_FIELDS = {
    "mask_token_id": 3,  # the release uses id 3; our tokenizer has a dedicated mask piece
    "default_gamma": 0.8,  # γ: commit every masked position whose confidence reaches it
    "default_block_size": 16,  # S
    "default_steps_per_block": 16,
    "default_draft_steps": 2,  # speculative mode: denoiser passes per drafted block (the verifier fixes errors)
    "default_min_draft_confidence": 0.0,  # speculative mode: propose only the draft prefix this confident
    "time_embed_dim": 256,  # sinusoidal width fed to t_embedder (PixArt uses 256)
}

PRESETS: dict[str, dict] = {
    # Unit tests: a few ms per pass, every layer kind present (Mamba-2, MoE, attention, MLP).
    "tiny": dict(
        vocab_size=261,  # 5 specials + 256 bytes: the ByteTokenizer covers it
        hidden_size=32,
        hybrid_override_pattern="M*EM-*",
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        mamba_num_heads=4,
        mamba_head_dim=8,
        n_groups=2,
        ssm_state_size=8,
        conv_kernel=4,
        chunk_size=8,
        intermediate_size=64,
        n_routed_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=32,
        moe_shared_expert_intermediate_size=32,
        mask_token_id=4,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        time_embed_dim=32,
    ),
    # The embedded default model: ~10 M parameters per tower, the release's pattern in miniature.
    "default": dict(
        vocab_size=8192,
        hidden_size=256,
        hybrid_override_pattern="MEM*EMEM*EME",
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,
        mamba_num_heads=8,
        mamba_head_dim=32,
        n_groups=2,
        ssm_state_size=32,
        conv_kernel=4,
        chunk_size=16,
        intermediate_size=512,
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=192,
        moe_shared_expert_intermediate_size=384,
        mask_token_id=4,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ),
    # The released shape (Nemotron-Labs-TwoTower-30B-A3B): per tower, 52 layers, 2688 wide.
    "release": dict(
        vocab_size=131072,
        hidden_size=2688,
        hybrid_override_pattern="MEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEM*EMEMEMEM*EMEMEMEME",
        num_attention_heads=32,
        num_key_value_heads=2,
        head_dim=128,
        mamba_num_heads=64,
        mamba_head_dim=64,
        n_groups=8,
        ssm_state_size=128,
        conv_kernel=4,
        chunk_size=128,
        intermediate_size=1856,
        n_routed_experts=128,
        num_experts_per_tok=6,
        moe_intermediate_size=1856,
        moe_shared_expert_intermediate_size=3712,
        n_group=1,
        topk_group=1,
        routed_scaling_factor=2.5,
        mask_token_id=3,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    ),
}


LAYER_SYMBOLS = {"M": "Mamba-2", "*": "attention", "E": "MoE", "-": "MLP"}


def check_layer_pattern(pattern) -> str:
    """A hybrid_override_pattern the towers can run: known symbols, and at least one attention layer,
    because transformers' NemotronH cache counts the positions it has seen in its attention layers."""
    known = ", ".join(f"{k} ({v})" for k, v in LAYER_SYMBOLS.items())
    if not isinstance(pattern, str) or not pattern or set(pattern) - set(LAYER_SYMBOLS):
        raise ValueError(f"layer pattern {pattern!r}: use a non-empty string of {known}")
    if "*" not in pattern:
        raise ValueError(f"layer pattern {pattern!r} has no attention layer (*); the towers need at least one")
    return pattern


def known_config_fields() -> set[str]:
    """Every field a config may set: NemotronHConfig's own (its arguments, and what its to_dict writes), the
    pattern's alias and the two-tower fields."""
    import inspect

    own = set(inspect.signature(NemotronHConfig.__init__).parameters) - {"self", "kwargs"}
    return own | set(NemotronHConfig().to_dict()) | {"hybrid_override_pattern"} | set(TWO_TOWER_FIELDS)


def check_config_fields(overrides: dict) -> None:
    """Refuse a misspelt override: PretrainedConfig stores any keyword as an attribute, so `hiden_size=64`
    would build the preset's width without a word."""
    import difflib

    known = known_config_fields()
    unknown = sorted(set(overrides) - known)
    if unknown:
        hints = [f"{name!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(name, known, 1))
                 else repr(name) for name in unknown]
        raise ValueError(f"unknown config field{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; "
                         "fields are NemotronHConfig's and the two-tower ones (twotower.config.TWO_TOWER_FIELDS)")


def make_config(preset: str = "tiny", **overrides) -> NemotronHConfig:
    """Build the config of a named preset; keyword arguments override any field."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    check_config_fields(overrides)
    fields = {**TWO_TOWER_FIELDS, **PRESETS[preset], **overrides}
    check_layer_pattern(fields["hybrid_override_pattern"])
    fields.setdefault("architectures", [ARCHITECTURE])
    where = f"preset {preset!r}" + (" with " + ", ".join(f"{k}={v!r}" for k, v in overrides.items()) if overrides else "")
    try:
        config = NemotronHConfig(**fields)
    except Exception as exc:  # huggingface_hub's StrictDataclassError (a plain Exception), over several lines
        raise ValueError(f"{where}: {one_line(exc)}") from None
    # SDPA: the denoiser's unmasked attention over [context ; block] runs as one fused call.
    config._attn_implementation = "sdpa"
    check_built_config(config, where)  # an override is checked as a config.json is
    return config


def ensure_two_tower_fields(config: NemotronHConfig) -> NemotronHConfig:
    """Fill the two-tower fields on a plain NemotronH config (e.g. a backbone's), keeping present ones."""
    for key, value in TWO_TOWER_FIELDS.items():
        if getattr(config, key, None) is None:
            setattr(config, key, value)
    config.architectures = [ARCHITECTURE]
    return config
