"""Saving and loading, offline only: config.json + model.safetensors. No pickle, no hub, no remote code."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import NemotronHConfig

from .checkpoint_files import (CONFIG_NAME, INDEX_NAME, WEIGHTS_NAME, broken_link, causal_lm_message, is_set,
                               key_mismatch, missing_weights_message, non_finite_message, non_finite_tensors, one_line,
                               read_json_object, read_json_value, unreadable_safetensors, unset_fields_hint)
from .config import cast_model, check_layer_pattern, ensure_two_tower_fields, held_dtype
from .config_checks import check_built_config
from .model import TwoTowerModel
from .validation import check_device
from .path_checks import check_model_dir, make_output_dir


def save_pretrained(model: TwoTowerModel, directory, dtype: torch.dtype | None = None, extra: dict | None = None) -> Path:
    """Write config.json and model.safetensors (optionally cast, e.g. to bf16 for the shipped model; the
    FP32_SUFFIXES tensors stay fp32). Every argument is checked before anything is written."""
    from .engine import as_dtype

    if not isinstance(model, TwoTowerModel):  # an Engine, or the denoiser alone: an AttributeError halfway
        raise ValueError(f"save_pretrained saves a TwoTowerModel (an Engine's is engine.model), got "
                         f"{type(model).__name__}")
    if dtype is not None:  # "bf16" was read as a device string by Tensor.to; int8 wrote weights no load accepts
        dtype = as_dtype("dtype", dtype)
    if extra is not None and not (isinstance(extra, dict)
                                  and all(isinstance(k, str) and isinstance(v, str) for k, v in extra.items())):
        raise ValueError(f"extra is the weights file's metadata: a dict of text to text, got {extra!r}")
    directory = make_output_dir("directory", directory)  # a file there, or a folder that cannot be made: said
    if (directory / INDEX_NAME).exists():  # a load reads the shards it lists, not the file written here
        raise ValueError(f"{directory} holds a sharded checkpoint ({INDEX_NAME}), which a load would read instead "
                         "of the weights saved here: save into another folder, or move that checkpoint away")
    state = {}
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(held_dtype(name, dtype))  # the routers stay fp32, as the release keeps them
        state[name] = tensor.contiguous()
    # Both files are written in a folder beside their final names and renamed into place at the end: a full
    # disk, a read-only file or Ctrl-C mid-write left a config beside half-written (or the old) weights.
    try:
        staging = Path(tempfile.mkdtemp(prefix=".saving-", dir=directory))
        try:
            model.config.save_pretrained(staging)
            save_file(state, str(staging / WEIGHTS_NAME), metadata={"format": "pt", **(extra or {})})
            for name in (WEIGHTS_NAME, CONFIG_NAME):
                os.replace(staging / name, directory / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except Exception as exc:  # OSError, or safetensors' own error for a write the disk refused
        raise ValueError(f"{directory}: the model could not be written ({one_line(exc)}); "
                         "the files there are as they were") from None
    return directory


# The layer pattern, under each name NemotronHConfig reads it by: a config with none of them would be read as
# transformers' default four-layer stack, and its weights then blamed ("missing tensors") for the config's gap.
PATTERN_FIELDS = ("layers_block_type", "layer_types", "hybrid_override_pattern")
# Fields a config.json must set (any spelling NemotronHConfig accepts): transformers' defaults are another model's
# sizes (hidden 4096), so a width or vocabulary left out builds some other model, and a router's top-k or scaling
# left out loads without a word and routes every token differently (defaults 2 and 1.0; the release: 6 and 2.5).
REQUIRED_FIELDS = {"vocab_size": (), "hidden_size": ()}
MOE_REQUIRED_FIELDS = {"num_experts_per_tok": (), "routed_scaling_factor": ()}


def load_config(directory) -> NemotronHConfig:
    directory = Path(directory)
    path = directory / CONFIG_NAME
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a file: not a model directory")
    if not path.is_file():
        raise ValueError(broken_link(path) or
                         f"{directory} has no config.json: not a model directory{_model_folder_hint(directory)}")
    # read here first: transformers' own errors say "not a valid JSON file" without where, or a TypeError for a list
    raw = read_json_object(path, "cannot be read as a model config")
    model_type = raw.get("model_type", "nemotron_h")  # another model type: transformers would only warn
    if model_type != "nemotron_h":
        raise ValueError(f"{directory}/config.json is a {model_type!r} config, not a NemotronH (two-tower) one")
    if not any(name in raw for name in PATTERN_FIELDS):
        raise ValueError(f"{path} has no layer pattern: set hybrid_override_pattern (e.g. \"MEM*EME\": M Mamba-2, "
                         "E MoE, * attention, - MLP) or layers_block_type")
    if "hybrid_override_pattern" in raw and not any(name in raw for name in PATTERN_FIELDS[:2]):
        try:  # an unknown symbol was transformers' bare KeyError ("cannot be read as a model config: 'X'")
            check_layer_pattern(raw["hybrid_override_pattern"])
        except ValueError as exc:
            raise ValueError(f"{path}: hybrid_override_pattern: {exc}") from None
    for field, aliases in REQUIRED_FIELDS.items():
        if not is_set(raw, field, aliases):
            raise ValueError(f"{path} does not set {field}: transformers' default would build some other model")
    _check_dtype_field(raw, path)
    try:
        config = NemotronHConfig.from_pretrained(str(directory), local_files_only=True)
    except Exception as exc:  # huggingface_hub's StrictDataclassError (a plain Exception) for a field of the wrong
        # type or an unknown layer kind; its text spans several lines
        raise ValueError(f"{directory}/config.json cannot be read as a model config: {one_line(exc)}") from None
    config._attn_implementation = "sdpa"
    config = ensure_two_tower_fields(config)
    if "hybrid_override_pattern" in raw and isinstance(raw["hybrid_override_pattern"], str) \
            and raw["hybrid_override_pattern"] != config.hybrid_override_pattern:
        # transformers reads layers_block_type and drops the other without a word: which one was trained?
        raise ValueError(f"{path}: layers_block_type ({config.hybrid_override_pattern!r}) and hybrid_override_pattern "
                         f"({raw['hybrid_override_pattern']!r}) describe different layer stacks: keep one")
    try:
        check_layer_pattern(config.hybrid_override_pattern)  # an empty stack, or one without attention
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    moe = "moe" in config.layers_block_type
    if moe:
        for field, aliases in MOE_REQUIRED_FIELDS.items():
            if not is_set(raw, field, aliases):
                raise ValueError(f"{path} does not set {field}, which its MoE layers route by: transformers' "
                                 f"default {getattr(config, field)!r} would load without an error and route "
                                 "differently from training")
    check_built_config(config, str(path))
    if "mask_token_id" not in raw:  # (in range: checked above)
        _check_filled_mask_id(directory, config.mask_token_id)
    return config


def _check_dtype_field(raw: dict, path: Path) -> None:
    """torch_dtype / dtype, the dtype the weights were saved in, as torch names it: "bf16" (this project's flags'
    spelling) was "module 'torch' has no attribute 'bf16'" with no field named, and a number loaded unread."""
    for field in ("torch_dtype", "dtype"):
        value = raw.get(field)
        if value is None or value == "auto":
            continue
        if not (isinstance(value, str) and isinstance(getattr(torch, value, None), torch.dtype)):
            raise ValueError(f'{path}: {field} {value!r} is not a dtype: write torch\'s name, "bfloat16", "float32" '
                             'or "float16"')


def _model_folder_hint(directory: Path) -> str:
    """Where the checkpoint may be instead: a Hugging Face cache folder keeps it under snapshots/<revision>, and
    the folder above a checkpoint holds it as a subfolder. A training run's folder (`twotower train --out`) holds
    stage checkpoints, which load only once exported (its context_ckpt was pointed to, then had no tokenizer)."""
    if (directory / "denoiser_ckpt").is_dir():
        return (f" (a training run's folder: export it first, `twotower train --stage export --out {directory} --to "
                "DIR`, then load DIR)")
    if (directory / "context_ckpt").is_dir():
        return (f" (a training run's folder with its context stage only: train its denoiser, `twotower train --stage "
                f"denoiser --out {directory}`, then export it)")
    try:
        below = sorted(p for p in directory.glob("snapshots/*") if (p / CONFIG_NAME).is_file()) \
            or sorted(p for p in directory.iterdir() if (p / CONFIG_NAME).is_file())
    except OSError:
        return ""
    if not below:
        return ""
    where = "a Hugging Face cache folder; its checkpoint is" if below[0].parent.name == "snapshots" else "its subfolder"
    return f" ({where} {below[0]}{' and more' if len(below) > 1 else ''})"


def _check_filled_mask_id(directory: Path, mask: int) -> None:
    """config.json without mask_token_id gets the release's id; beside a tokenizer.json that has a <mask> token of
    another id (and no tokenizer.model, which is read first), the denoiser would read the wrong id without a word:
    its HFTokenizer takes the mask id from the config."""
    from .tokenizer import HF_TOKENIZER_FILE, MASK_TEXT, TOKENIZER_FILE

    tokenizer = directory / HF_TOKENIZER_FILE
    if (directory / TOKENIZER_FILE).is_file() or not tokenizer.is_file():
        return
    try:  # read_json_value: an unreadable or non-JSON file is a ValueError, as in the tokenizer's own diagnosis
        added = read_json_value(tokenizer).get("added_tokens") or []
        ids = [t["id"] for t in added if isinstance(t, dict) and t.get("content") == MASK_TEXT]
    except (ValueError, AttributeError, KeyError, TypeError):
        return  # an unreadable tokenizer.json is reported when the tokenizer loads
    if ids and ids[0] != mask:
        raise ValueError(f"{directory}/config.json has no mask_token_id, so the release's {mask} was assumed, but "
                         f"{tokenizer} has {MASK_TEXT} as id {ids[0]}: set mask_token_id in config.json")


def tensor_names(weights: Path) -> list[str]:
    """The tensor names of a safetensors file, from its header (no tensor read)."""
    from safetensors import safe_open

    try:
        with safe_open(str(weights), framework="pt") as handle:
            return list(handle.keys())
    except Exception as exc:  # safetensors' own error type lives in its Rust module
        raise unreadable_safetensors(weights, exc) from None


def build_on_meta(config, directory) -> TwoTowerModel:
    """The model's skeleton (no memory) from a config that read well but may still describe nothing buildable
    (a negative width, heads that do not divide the hidden size)."""
    try:
        with torch.device("meta"):
            return TwoTowerModel(config)
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError, AssertionError, KeyError) as exc:
        raise ValueError(f"{directory}/config.json describes no model that can be built: {one_line(exc)}") from None


def from_pretrained(directory, device="cpu", dtype: torch.dtype = torch.float32) -> TwoTowerModel:
    """Load a two-tower checkpoint from a local directory: one written by `save_pretrained`, or one in the
    release's layout (sharded with model.safetensors.index.json), which twotower.release_loader reads."""
    from .engine import as_dtype
    from .release_loader import is_release_layout, load_release_checkpoint

    dtype = as_dtype("dtype", dtype)  # "bf16" / "fp32" as load_engine takes them, not a "device string" error
    check_device("device", device)  # no CUDA here: said so, not blamed on the weights file
    # a folder that is not there is said so ("has no config.json" sent a user from the wrong cwd looking for a file)
    directory = check_model_dir(directory, "directory")
    config = load_config(directory)
    weights = directory / WEIGHTS_NAME
    if is_release_layout(directory):  # the release's shards (or names): its own loader
        return load_release_checkpoint(directory, device, device, dtype)
    if not weights.is_file():
        raise ValueError(missing_weights_message(directory))
    model = build_on_meta(config, directory)
    try:
        state = load_file(str(weights), device=str(device))
    except Exception as exc:  # safetensors' own error type lives in its Rust module; a truncated file lands here
        raise unreadable_safetensors(weights, exc) from None
    stored = {k: v.dtype for k, v in state.items()}  # before the cast: an error names the file's dtypes
    state = {k: v.to(held_dtype(k, dtype)) if v.is_floating_point() else v for k, v in state.items()}
    # safetensors' CPU tensors may sit unaligned; BLAS then rounds differently: fresh memory keeps load exact.
    state = {k: v.clone() if v.data_ptr() % 64 else v for k, v in state.items()}
    base_model = causal_lm_message(state, directory)
    if base_model:
        raise ValueError(base_model)
    missing, unexpected = _check_keys(model, state)
    if missing or unexpected:
        raise ValueError(f"{weights}: {key_mismatch(model, missing, unexpected)}{unset_fields_hint(directory)}")
    expected = model.state_dict()
    not_float = [k for k, v in state.items() if expected[k].is_floating_point() and not v.is_floating_point()]
    if not_float:
        raise ValueError(f"{weights}: {not_float[:5]} are stored as {stored[not_float[0]]}; the model expects "
                         "floating-point weights")
    # a diverged run or a damaged file: NaN / inf weights decode as garbage ("0000 ...") with no word said
    broken = non_finite_tensors(state)
    if broken:
        raise ValueError(non_finite_message(weights, broken))
    try:
        model.load_state_dict(state, assign=True)
    except RuntimeError as exc:  # names match but shapes do not: weights of another config
        # torch lists every mismatched tensor on its own line: the first, and how many more
        found = [line.strip() for line in str(exc).splitlines() if line.strip().startswith("size mismatch")] or [str(exc)]
        more = f" (and {len(found) - 1} more tensors)" if len(found) > 1 else ""
        raise ValueError(f"{weights} does not fit {directory}/config.json: {found[0]}{more}"
                         f"{unset_fields_hint(directory)}") from None
    return model.eval()


def _check_keys(model, state):
    expected = set(model.state_dict().keys())
    return sorted(expected - set(state)), sorted(set(state) - expected)


def from_backbone(directory, device="cpu", dtype: torch.dtype = torch.float32) -> TwoTowerModel:
    """Two-tower model from a local NemotronH causal LM: context tower = the checkpoint (frozen), the
    denoiser starts as a copy of it with time-conditioning gates at 1 (a no-op change at initialisation)."""
    from transformers import NemotronHForCausalLM

    from .engine import as_dtype

    dtype = as_dtype("dtype", dtype)  # "bf16" was transformers' error blamed on the folder, "bfloat16" a device
    check_device("device", device)  # no CUDA here: said before the weights are read
    directory = check_model_dir(directory, "directory")
    if not (directory / "config.json").is_file():
        raise ValueError(f"{directory} has no config.json: not a model directory")
    weights = directory / WEIGHTS_NAME
    if weights.is_file() and any(name.startswith("context_tower.") for name in tensor_names(weights)):
        # transformers loaded it anyway, every tensor "unexpected", and returned two randomly initialised towers
        raise ValueError(f"{directory} holds a two-tower checkpoint, not a NemotronH causal LM: load it with "
                         "from_pretrained (or load_engine / --model)")
    try:
        backbone, report = NemotronHForCausalLM.from_pretrained(str(directory), local_files_only=True, dtype=dtype,
                                                                output_loading_info=True)
    except Exception as exc:  # no weights file, a damaged one, a bad field (huggingface_hub's StrictDataclassError
        # is a plain Exception), an unknown layer symbol (a KeyError)
        raise ValueError(f"{directory} cannot be loaded as a NemotronH causal LM: {one_line(exc)}") from None
    missing = report.get("missing_keys") or []
    if missing:  # weights of another model: the towers would start from random values
        raise ValueError(f"{directory}'s weights are not a NemotronH causal LM of its config.json: {len(missing)} "
                         f"tensor(s) missing (e.g. {sorted(missing)[0]})")
    config = ensure_two_tower_fields(backbone.config)
    config._attn_implementation = "sdpa"
    model = cast_model(TwoTowerModel(config), dtype)
    model.context_tower.load_state_dict(backbone.model.state_dict())
    model.context_lm_head.load_state_dict(backbone.lm_head.state_dict())
    model.init_denoiser_from_context()
    return model.to(device).eval()
