"""Loading the released checkpoint layout into the native two-tower model, offline, with no remote code.

The release layout is a directory with config.json (NemotronH fields, the layer pattern as the string
`hybrid_override_pattern`) and sharded safetensors listed by model.safetensors.index.json (weight_map:
tensor name -> shard file). Its tensor names are the engine's except for:

* MoE experts: the release keeps them as a list of modules, `...mixer.experts.<j>.up_proj.weight`
  (inter, hidden) and `...mixer.experts.<j>.down_proj.weight` (hidden, inter); transformers stacks them
  into `...mixer.experts.up_proj` (E, inter, hidden) / `...mixer.experts.down_proj` (E, hidden, inter).
* the small rename table `TOWER_RENAMES` for names inside a tower (remote-code `backbone.` wrapper,
  mamba_ssm's `embedding` for transformers' `embeddings`).

The model is built on the meta device and every tensor is read straight onto its own device (context
tower + context_lm_head on ctx_device, the rest on den_device): there is never a full copy on the CPU.
Each layer's stacked expert tensor is allocated once on its device and each expert is copied into its
slot as soon as it is read, so a layer's experts never exist twice. Everything that can be checked
without reading weights (missing shards, unknown or missing names, shapes) is checked first.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from .checkpoint import build_on_meta, load_config
from .checkpoint_files import (CONFIG_NAME, INDEX_NAME, absent_parts_note, broken_link, causal_lm_message,
                               non_finite_message, non_finite_tensors, read_json_object, unreadable_safetensors,
                               unset_fields_hint)
from .config import ARCHITECTURE, held_dtype
from .model import TwoTowerModel

SINGLE_FILE_NAME = "model.safetensors"
TOWER_PREFIXES = ("context_tower.", "denoiser_tower.")
CONTEXT_PREFIXES = ("context_tower.", "context_lm_head.")
# (release prefix, engine prefix) for names inside a tower, applied in order.
TOWER_RENAMES = (("backbone.", ""), ("embedding.", "embeddings."))
EXPERT_KEY = re.compile(r"^(?P<base>.+\.mixer\.experts)\.(?P<index>\d+)\.(?P<proj>up_proj|down_proj)\.weight$")


def experts_hint(directory, n_experts: int) -> str:
    """What a count of experts that does not fit the checkpoint comes from: config.json's n_routed_experts, left to
    transformers' default (unset_fields_hint) or set to another number (the message blamed the weights alone)."""
    unset = unset_fields_hint(directory)
    if unset:
        return unset
    return (f"; {Path(directory) / CONFIG_NAME} sets n_routed_experts = {n_experts}: set it to the checkpoint's "
            "number of experts")


def release_to_engine_name(key: str) -> tuple[str, int | None]:
    """Release tensor name -> (engine name, expert index or None for a whole tensor)."""
    for prefix in TOWER_PREFIXES:
        if key.startswith(prefix):
            inner = key[len(prefix):]
            for old, new in TOWER_RENAMES:
                if inner.startswith(old):
                    inner = new + inner[len(old):]
            key = prefix + inner
            break
    match = EXPERT_KEY.match(key)
    if match:
        return f"{match['base']}.{match['proj']}", int(match["index"])
    return key, None


def read_weight_map(directory: Path) -> dict[str, str]:
    """Tensor name -> shard file name, from the index (or from a single model.safetensors)."""
    index = directory / INDEX_NAME
    if index.is_file():
        lead = "is not a safetensors index (expected a 'weight_map' object)"
        weight_map = read_json_object(index, lead).get("weight_map")
        if weight_map is None:
            raise ValueError(f"{index} {lead}: it has no 'weight_map'")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: 'weight_map' must map tensor names to shard files, got a "
                             f"{type(weight_map).__name__}")
        if not weight_map:
            raise ValueError(f"{index}: 'weight_map' is empty")
        for key, shard in weight_map.items():  # 5 or "" read as "shard file <folder>/5 is missing"
            if not isinstance(shard, str) or not shard.strip():
                raise ValueError(f"{index}: 'weight_map' gives {shard!r} as the shard of {key!r}, not a file name")
        for shard in set(map(str, weight_map.values())):
            # shards are files of this folder: an index must not send the loader elsewhere on the disk
            if Path(shard).is_absolute() or ".." in Path(shard).parts:
                raise ValueError(f"{index} names the shard {shard!r} outside the model folder")
        return {str(k): str(v) for k, v in weight_map.items()}
    single = directory / SINGLE_FILE_NAME
    if single.is_file():
        with _open_shard(single) as handle:
            return {key: SINGLE_FILE_NAME for key in handle.keys()}
    raise ValueError(f"{directory} has neither {INDEX_NAME} nor {SINGLE_FILE_NAME}: not a release checkpoint")


def is_release_layout(directory) -> bool:
    """Whether a folder's weights need this loader: an index of shards, or a single model.safetensors whose
    names are the release's (experts one by one, `backbone.` / `embedding.` names) rather than the engine's."""
    directory = Path(directory)
    if (directory / INDEX_NAME).is_file():
        return True
    single = directory / SINGLE_FILE_NAME
    if not single.is_file():
        return False
    with _open_shard(single) as handle:  # the header only: names, no tensor is read
        return any(release_to_engine_name(key) != (key, None) for key in handle.keys())


def _open_shard(path: Path, device: str = "cpu"):
    try:
        return safe_open(str(path), framework="pt", device=device)
    except Exception as exc:  # safetensors' error type lives in its Rust module: a truncated or corrupt file
        raise unreadable_safetensors(path, exc) from None


def _plan_reads(directory: Path, weight_map: dict[str, str], expected: dict[str, torch.Tensor]):
    """Check names, shards and shapes from the index and shard headers only; return the reads per shard.

    Returns {shard: [(release key, engine name, expert index or None)]} in shard order.
    """
    for shard in dict.fromkeys(weight_map.values()):
        if not (directory / shard).is_file():
            first = next(k for k, v in weight_map.items() if v == shard)
            link = broken_link(directory / shard)
            if link:
                raise ValueError(f"shard file {link} (the index lists {first!r} in it)")
            what = "is a folder, not a file" if (directory / shard).exists() else "is missing"
            raise ValueError(f"shard file {directory / shard} {what} (the index lists {first!r} in it)")
    # the file that lists the names (the index, or the single file), at the head of each message about them
    where = directory / INDEX_NAME if (directory / INDEX_NAME).is_file() else directory / SINGLE_FILE_NAME
    base_model = causal_lm_message(weight_map, directory)
    if base_model:
        raise ValueError(base_model)
    # names or shapes that do not fit may come from config.json fields left to transformers' defaults: said so
    reads: dict[str, list] = {}
    experts_seen: dict[str, set[int]] = {}
    covered, whole = set(), set()
    for key, shard in weight_map.items():
        name, expert = release_to_engine_name(key)
        if name not in expected:
            raise ValueError(f"{where}: unknown tensor {key!r} in {shard}: the model has no {name!r}"
                             f"{unset_fields_hint(directory)}")
        if expert is not None:
            n_experts = expected[name].shape[0]
            if expected[name].dim() != 3 or expert >= n_experts:
                raise ValueError(f"{where}: unknown tensor {key!r} in {shard}: expert {expert} of a "
                                 f"{n_experts}-expert layer{experts_hint(directory, n_experts)}")
            if expert in experts_seen.setdefault(name, set()) or name in whole:
                raise ValueError(f"{where}: tensor {key!r} is listed twice")
            experts_seen[name].add(expert)
        elif name in covered:
            raise ValueError(f"{where}: tensor {key!r} ({name!r}) is listed twice")
        else:
            whole.add(name)
        covered.add(name)
        reads.setdefault(shard, []).append((key, name, expert))
    uncovered = [name for name in expected if name not in covered]
    if uncovered:
        first = uncovered[0]
        more = f" and {len(uncovered) - 1} more" if len(uncovered) > 1 else ""
        raise ValueError(f"{where}: the checkpoint has no tensor for {first!r} {tuple(expected[first].shape)}{more}"
                         f"{absent_parts_note(expected, uncovered)}{unset_fields_hint(directory)}")
    for name, tensor in expected.items():
        if name in experts_seen and len(experts_seen[name]) != tensor.shape[0]:
            missing = min(set(range(tensor.shape[0])) - experts_seen[name])
            raise ValueError(f"{where}: the checkpoint has no expert {missing} for {name!r}"
                             f"{experts_hint(directory, tensor.shape[0])}")
    for shard, entries in reads.items():
        with _open_shard(directory / shard) as handle:
            present = set(handle.keys())
            for key, name, expert in entries:
                if key not in present:
                    raise ValueError(f"{directory / shard} does not hold {key!r} although the index says so")
                shape = tuple(handle.get_slice(key).get_shape())
                want = tuple(expected[name].shape[1:] if expert is not None else expected[name].shape)
                if shape != want:
                    raise ValueError(f"{directory}: tensor {key!r} in {shard} has shape {shape}, the model expects "
                                     f"{want}{unset_fields_hint(directory)}")
                stored = handle.get_slice(key).get_dtype()  # "F32", "BF16", "I64", ...
                if expected[name].is_floating_point() and not stored.startswith(("F", "BF")):
                    raise ValueError(f"{directory}: tensor {key!r} in {shard} is stored as {stored}; the model "
                                     "expects floating-point weights")
    return reads


def _load_dtype(name: str, tensor_dtype: torch.dtype, dtype: torch.dtype) -> torch.dtype:
    if not tensor_dtype.is_floating_point:
        return tensor_dtype
    return held_dtype(name, dtype)


def load_release_checkpoint(directory, ctx_device="cpu", den_device="cpu", dtype: torch.dtype = torch.bfloat16) -> TwoTowerModel:
    """Open a checkpoint in the release layout as a TwoTowerModel, each tensor on its tower's device."""
    try:
        devices = {"ctx": torch.device(ctx_device), "den": torch.device(den_device)}
    except (RuntimeError, TypeError):
        raise ValueError(f"not a device: {ctx_device!r} / {den_device!r} (examples: cpu, cuda:0)") from None
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating torch dtype such as torch.bfloat16, got {dtype!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"model directory not found: {directory}")
    config = load_config(directory)  # plain NemotronHConfig: `auto_map` / remote code is never used
    weight_map = read_weight_map(directory)
    model = build_on_meta(config, directory)
    expected = model.state_dict()
    reads = _plan_reads(directory, weight_map, expected)

    state: dict[str, torch.Tensor] = {}
    partial: dict[str, tuple[torch.Tensor, set[int]]] = {}  # stacked expert tensor being filled
    for shard, entries in reads.items():
        handles = {}  # one memory-mapped handle per target device, so reads land on that device directly
        for key, name, expert in entries:
            device = devices["ctx" if name.startswith(CONTEXT_PREFIXES) else "den"]
            if device not in handles:
                handles[device] = _open_shard(directory / shard, str(device))
            tensor = handles[device].get_tensor(key)
            want = _load_dtype(name, tensor.dtype, dtype)
            if expert is not None:
                if name not in partial:
                    partial[name] = (torch.empty(expected[name].shape, dtype=want, device=device), set())
                stacked, filled = partial[name]
                stacked[expert].copy_(tensor)  # (inter, hidden) or (hidden, inter) into slot `expert`, cast
                del tensor  # the part is gone before the next one is read
                filled.add(expert)
                if len(filled) == stacked.shape[0]:
                    state[name] = partial.pop(name)[0]
            elif tensor.dtype != want:
                state[name] = tensor.to(want)
            elif tensor.device.type == "cpu" and tensor.data_ptr() % 64:
                # safetensors' CPU buffers are not 64-byte aligned, where CPU BLAS rounds differently (1e-7)
                # from the same weights in fresh memory: realign, one tensor at a time.
                state[name] = tensor.clone()
            else:
                state[name] = tensor
        del handles
    broken = non_finite_tensors(state)  # a diverged run or a damaged shard decodes as "0000 ..." without a word
    if broken:
        raise ValueError(non_finite_message(directory, broken))
    model.load_state_dict(state, strict=True, assign=True)
    still_meta = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if still_meta:
        raise ValueError(f"tensors left without data after loading: {still_meta[:5]}")
    return model.eval()


# ----------------------------------------------------------------------------------------------------
# Writing the layout (synthetic checkpoints for tests and for trying the loader without the release)
def _engine_to_release_name(name: str, legacy_names: bool) -> str:
    if legacy_names:
        for prefix in TOWER_PREFIXES:
            if name.startswith(prefix):
                inner = name[len(prefix):]
                if inner.startswith("embeddings."):
                    inner = "embedding." + inner[len("embeddings."):]
                return f"{prefix}backbone.{inner}"
    return name


def _release_tensors(model: TwoTowerModel, dtype: torch.dtype | None, legacy_names: bool):
    """(release name, tensor) in release order: each layer's experts as up/down pairs, expert by expert."""
    state = model.state_dict()
    for name, tensor in state.items():
        tensor = tensor.detach().to("cpu")
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(held_dtype(name, dtype))
        if name.endswith(".mixer.experts.down_proj"):
            continue  # written beside up_proj below
        if name.endswith(".mixer.experts.up_proj"):
            base = _engine_to_release_name(name[: -len(".up_proj")], legacy_names)
            down = state[name[: -len("up_proj")] + "down_proj"].detach().to("cpu").to(tensor.dtype)
            for j in range(tensor.shape[0]):  # safetensors refuses tensors sharing storage, or not contiguous
                yield f"{base}.{j}.up_proj.weight", tensor[j].clone(memory_format=torch.contiguous_format)
                yield f"{base}.{j}.down_proj.weight", down[j].clone(memory_format=torch.contiguous_format)
            continue
        yield _engine_to_release_name(name, legacy_names), tensor.contiguous()


def write_release_layout(model: TwoTowerModel, directory, n_shards: int = 3, dtype: torch.dtype | None = None,
                         legacy_names: bool = False) -> Path:
    """Write `model` in the release layout: config.json with `hybrid_override_pattern`, experts split into
    lists, tensors spread over about `n_shards` shards of similar size, and model.safetensors.index.json.

    legacy_names=True writes tower names the remote-code way (`backbone.`, `embedding`) to exercise
    `TOWER_RENAMES`.
    """
    if not isinstance(n_shards, int) or n_shards < 1:
        raise ValueError(f"n_shards must be a positive integer, got {n_shards!r}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config.to_dict()
    config.pop("layers_block_type", None)
    config.update(
        hybrid_override_pattern=model.config.hybrid_override_pattern,
        num_hidden_layers=model.config.num_hidden_layers,
        architectures=[ARCHITECTURE],
        model_type="nemotron_h",
        # The release ships remote code; the loader must never need it.
        auto_map={"AutoConfig": "configuration_nemotron_h.NemotronHConfig",
                  "AutoModelForCausalLM": f"modeling_nemotron_h.{ARCHITECTURE}"},
    )
    (directory / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True, default=str))

    tensors = list(_release_tensors(model, dtype, legacy_names))
    if len(tensors) < n_shards:
        raise ValueError(f"{len(tensors)} tensors cannot fill {n_shards} shards")
    sizes = [t.numel() * t.element_size() for _, t in tensors]
    total = sum(sizes)
    groups: list[list[int]] = [[] for _ in range(n_shards)]
    done = 0
    for i, size in enumerate(sizes):  # shard k takes the tensors that start in its 1/n of the bytes
        groups[min(n_shards - 1, done * n_shards // total)].append(i)
        done += size
    groups = [g for g in groups if g]
    weight_map = {}
    for k, group in enumerate(groups):
        shard = f"model-{k + 1:05d}-of-{len(groups):05d}.safetensors"
        save_file({tensors[i][0]: tensors[i][1] for i in group}, str(directory / shard), metadata={"format": "pt"})
        weight_map.update({tensors[i][0]: shard for i in group})
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (directory / INDEX_NAME).write_text(json.dumps(index, indent=2))
    return directory
