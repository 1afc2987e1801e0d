"""What a built NemotronH two-tower config must hold before a model is made of it: sizes, activations, token
ids, decoding defaults and the router's grouping. NemotronHConfig stores most values unchecked, and a bad one
failed later (a negative width as torch's "negative dimension", an unknown activation as a bare KeyError, a mask
id past the vocabulary as an IndexError at the first denoiser step, a top-k above the experts at the first MoE
layer). Shared by checkpoint.load_config (a config.json) and config.make_config (a preset's overrides)."""

from __future__ import annotations

import math

from transformers.activations import ACT2FN

from .validation import check_fraction, check_gamma, check_int, check_steps

# Sizes that must be positive integers. Most fail to build at 0 or below, but chunk_size builds fine and fails in
# the first scan longer than one token (ZeroDivisionError), and a 0 width builds zero-size tensors with a warning.
POSITIVE_FIELDS = ("vocab_size", "hidden_size", "num_attention_heads", "num_key_value_heads", "head_dim",
                   "mamba_num_heads", "mamba_head_dim", "n_groups", "ssm_state_size", "conv_kernel", "chunk_size",
                   "expand", "intermediate_size", "moe_intermediate_size", "moe_shared_expert_intermediate_size",
                   "n_routed_experts", "time_embed_dim")


def check_built_config(config, where: str) -> None:
    """Raise a ValueError that starts with `where` (a config.json's path, or the preset and its overrides)."""
    for field in POSITIVE_FIELDS:
        value = getattr(config, field, None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where} describes no model that can be built: {field} must be a positive integer, "
                             f"got {value!r}")
    for field in ("layer_norm_epsilon", "routed_scaling_factor"):
        value = getattr(config, field, None)
        if isinstance(value, (int, float)) and not (math.isfinite(value) and value > 0):
            raise ValueError(f"{where}: {field} must be a positive number, got {value!r}")
    for field in ("mamba_hidden_act", "mlp_hidden_act"):  # an unknown name: a bare KeyError while building
        value = getattr(config, field, None)
        if value not in ACT2FN:
            raise ValueError(f"{where}: {field} {value!r} is not an activation transformers knows (such as "
                             "silu, relu2, gelu)")
    mask = config.mask_token_id
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask < config.vocab_size:
        raise ValueError(f"{where}: mask_token_id {mask!r} is not an id below the vocabulary "
                         f"size {config.vocab_size}")
    eos = config.eos_token_id
    if isinstance(eos, int) and not isinstance(eos, bool) and not 0 <= eos < config.vocab_size:
        # the release's tokenizer.json takes its EOS from here: every run would fail as if the user had passed it
        raise ValueError(f"{where}: eos_token_id {eos} is not an id below the vocabulary size {config.vocab_size}")
    # the decoding defaults every run without explicit settings reads: a bad one is the file's fault, so say so
    # here rather than as if the user had typed it
    checks = {"default_gamma": check_gamma, "default_block_size": lambda v: check_int("block size", v),
              "default_steps_per_block": lambda v: check_steps("steps", v),
              "default_draft_steps": lambda v: check_steps("draft steps", v),
              "default_min_draft_confidence": lambda v: check_fraction("the confidence", v)}
    for key, check in checks.items():
        try:
            check(getattr(config, key))
        except ValueError as exc:
            raise ValueError(f"{where}: {key}: {exc}") from None
    # the router picks its top-k among the routed experts: more than there are builds fine, then fails in
    # the first forward pass (transformers' "selected index k out of range")
    top_k, experts = getattr(config, "num_experts_per_tok", None), getattr(config, "n_routed_experts", None)
    if isinstance(top_k, int) and isinstance(experts, int) and not 1 <= top_k <= experts:
        raise ValueError(f"{where}: num_experts_per_tok {top_k} must be between 1 and "
                         f"n_routed_experts {experts}")
    check_divisions(where, config)
    if "moe" in config.layers_block_type:
        check_expert_groups(where, config)


def check_divisions(where: str, config) -> None:
    """Sizes one layer splits by another: each builds fine and failed in the first forward pass with a shape
    RuntimeError (a config.json, or a preset's override, that the load had accepted)."""
    pairs = [("num_attention_heads", "num_key_value_heads", "each key/value head serves a whole number of heads",
              "full_attention"),
             ("mamba_num_heads", "n_groups", "the Mamba heads split evenly into the B/C groups", "linear_attention")]
    for field, by, why, layer in pairs:
        value, divisor = getattr(config, field, None), getattr(config, by, None)
        uses = layer in config.layers_block_type and isinstance(value, int) and isinstance(divisor, int)
        if uses and value % divisor:
            raise ValueError(f"{where}: {field} {value} must be a multiple of {by} {divisor} ({why})")
    width = getattr(config, "time_embed_dim", None)
    if isinstance(width, int) and width % 2:  # half cosine, half sine features
        raise ValueError(f"{where}: time_embed_dim {width} must be even (the denoiser's step features are half "
                         "cosines, half sines)")


def check_expert_groups(where: str, config) -> None:
    """The router's grouped top-k (n_group groups of experts, the best topk_group groups, top-k inside them): a
    config it cannot run builds fine and fails in the first forward pass with a reshape or topk RuntimeError."""
    groups, keep = config.n_group, config.topk_group
    experts, top_k = config.n_routed_experts, config.num_experts_per_tok
    if not isinstance(groups, int) or groups < 1 or experts % groups:
        raise ValueError(f"{where}: n_group {groups!r} must be a positive integer that divides n_routed_experts "
                         f"{experts}")
    if experts // groups < 2:  # each group is scored by its two best experts
        raise ValueError(f"{where}: n_group {groups} leaves fewer than 2 experts per group (n_routed_experts "
                         f"{experts})")
    if not isinstance(keep, int) or not 1 <= keep <= groups:
        raise ValueError(f"{where}: topk_group {keep!r} must be between 1 and n_group {groups}")
    if top_k > keep * (experts // groups):
        raise ValueError(f"{where}: num_experts_per_tok {top_k} is more than the {keep * (experts // groups)} experts "
                         f"that topk_group {keep} of n_group {groups} groups leave to choose from")
