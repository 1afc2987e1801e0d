"""Saving and loading, offline only: config.json + model.safetensors. No pickle, no hub, no remote code."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import NemotronHConfig

from .config import FP32_SUFFIXES, ensure_two_tower_fields
from .model import TwoTowerModel
from .validation import check_device, check_fraction, check_gamma, check_int

WEIGHTS_NAME = "model.safetensors"


def save_pretrained(model: TwoTowerModel, directory, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write config.json and model.safetensors (optionally cast, e.g. to bf16 for the shipped model; the
    FP32_SUFFIXES tensors stay fp32)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(directory)
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point() and not name.endswith(FP32_SUFFIXES):
            tensor = tensor.to(dtype)  # the router's score-correction bias stays fp32, as the release keeps it
        state[name] = tensor.contiguous()
    save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", **(extra or {})})
    return directory


def load_config(directory) -> NemotronHConfig:
    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory} has no config.json: not a model directory")
    try:  # another model type first: transformers would only warn, then read what fields it knows
        model_type = json.loads((directory / "config.json").read_text()).get("model_type", "nemotron_h")
    except Exception:  # not JSON, not an object: from_pretrained's error below says so
        model_type = "nemotron_h"
    if model_type != "nemotron_h":
        raise ValueError(f"{directory}/config.json is a {model_type!r} config, not a NemotronH (two-tower) one")
    try:
        config = NemotronHConfig.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # OSError for a file that is not JSON; huggingface_hub's StrictDataclassError (a
        # plain Exception) for a field of the wrong type or an unknown layer kind
        raise ValueError(f"{directory}/config.json cannot be read as a model config: {exc}") from None
    config._attn_implementation = "sdpa"
    config = ensure_two_tower_fields(config)
    mask = config.mask_token_id
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask < config.vocab_size:
        raise ValueError(f"{directory}/config.json: mask_token_id {mask!r} is not an id below the vocabulary "
                         f"size {config.vocab_size}")
    # the decoding defaults every run without explicit settings reads: a bad one is the file's fault, so say so
    # here rather than as if the user had typed it
    checks = {"default_gamma": check_gamma, "default_block_size": lambda v: check_int("block size", v),
              "default_steps_per_block": lambda v: check_int("steps", v),
              "default_draft_steps": lambda v: check_int("draft steps", v),
              "default_min_draft_confidence": lambda v: check_fraction("the confidence", v)}
    for key, check in checks.items():
        try:
            check(getattr(config, key))
        except ValueError as exc:
            raise ValueError(f"{directory}/config.json: {key}: {exc}") from None
    # the router picks its top-k among the routed experts: more than there are builds fine, then fails in
    # the first forward pass (transformers' "selected index k out of range")
    top_k, experts = getattr(config, "num_experts_per_tok", None), getattr(config, "n_routed_experts", None)
    if isinstance(top_k, int) and isinstance(experts, int) and not 1 <= top_k <= experts:
        raise ValueError(f"{directory}/config.json: num_experts_per_tok {top_k} must be between 1 and "
                         f"n_routed_experts {experts}")
    return config


def build_on_meta(config, directory) -> TwoTowerModel:
    """The model's skeleton (no memory) from a config that read well but may still describe nothing buildable
    (a negative width, heads that do not divide the hidden size)."""
    try:
        with torch.device("meta"):
            return TwoTowerModel(config)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, AssertionError) as exc:
        raise ValueError(f"{directory}/config.json describes no model that can be built: {exc}") from None


def from_pretrained(directory, device="cpu", dtype: torch.dtype = torch.float32) -> TwoTowerModel:
    """Load a two-tower checkpoint written by `save_pretrained` from a local directory."""
    from .engine import as_dtype

    dtype = as_dtype("dtype", dtype)  # "bf16" / "fp32" as load_engine takes them, not a "device string" error
    check_device("device", device)  # no CUDA here: said so, not blamed on the weights file
    directory = Path(directory)
    config = load_config(directory)
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise ValueError(f"{directory} has no {WEIGHTS_NAME}")
    model = build_on_meta(config, directory)
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:  # safetensors' own error type lives in its Rust module; a truncated file lands here
        raise ValueError(f"{weights} cannot be read as safetensors: {exc}") from exc
    stored = {k: v.dtype for k, v in state.items()}  # before the cast: an error names the file's dtypes
    state = {k: v.to(dtype) if v.is_floating_point() and not k.endswith(FP32_SUFFIXES) else v for k, v in state.items()}
    # safetensors' CPU tensors may sit unaligned; BLAS then rounds differently: fresh memory keeps load exact.
    state = {k: v.clone() if v.data_ptr() % 64 else v for k, v in state.items()}
    missing, unexpected = _check_keys(model, state)
    if missing or unexpected:
        raise ValueError(f"{weights}: missing tensors {missing[:5]}, unexpected tensors {unexpected[:5]}")
    expected = model.state_dict()
    not_float = [k for k, v in state.items() if expected[k].is_floating_point() and not v.is_floating_point()]
    if not_float:
        raise ValueError(f"{weights}: {not_float[:5]} are stored as {stored[not_float[0]]}; the model expects "
                         "floating-point weights")
    # a diverged run or a damaged file: NaN / inf weights decode as garbage ("0000 ...") with no word said
    broken = [k for k, v in state.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if broken:
        raise ValueError(f"{weights}: {broken[:5]}{' and more' if len(broken) > 5 else ''} hold NaN or infinite "
                         "values: the checkpoint is damaged or its training diverged")
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:  # names match but shapes do not: weights of another config
        # torch lists every mismatched tensor on its own line: the first, and how many more
        found = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("size mismatch")] or [str(exc)]
        more = f" (and {len(found) - 1} more tensors)" if len(found) > 1 else ""
        raise ValueError(f"{weights} does not fit {directory}/config.json: {found[0]}{more}") from None
    return model.eval()


def _check_keys(model, state):
    expected = set(model.state_dict().keys())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def from_backbone(directory, device="cpu", dtype: torch.dtype = torch.float32) -> TwoTowerModel:
    """Two-tower model from a local NemotronH causal LM: context tower = the checkpoint (frozen), the
    denoiser starts as a copy of it with time-conditioning gates at 1 (a no-op change at initialisation)."""
    from transformers import NemotronHForCausalLM

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory} has no config.json: not a model directory")
    backbone = NemotronHForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=dtype)
    config = ensure_two_tower_fields(backbone.config)
    config._attn_implementation = "sdpa"
    model = TwoTowerModel(config).to(dtype)
    model.context_tower.load_state_dict(backbone.model.state_dict())
    model.context_lm_head.load_state_dict(backbone.lm_head.state_dict())
    model.init_denoiser_from_context()
    return model.to(device).eval()
