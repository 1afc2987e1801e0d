"""What is wrong with a checkpoint folder's files, said in words: the messages a broken config.json,
weights file or index gets (safetensors and huggingface_hub speak of headers and dataclasses, or span
several lines). checkpoint.py and release_loader.py raise them; nothing here loads a model."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"  # the release's sharded layout (twotower/release_loader.py)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")  # weights this loader never reads (pickle runs code)
# Fields that shape some weight: when a checkpoint does not fit its config.json, the ones the file leaves unset
# (transformers' defaults stood in for them) are the likely cause, and the message says so.
SHAPE_FIELDS = {"head_dim": (), "num_attention_heads": (), "num_key_value_heads": (), "mamba_num_heads": (),
                "mamba_head_dim": (), "n_groups": ("mamba_n_groups",), "ssm_state_size": (),
                "conv_kernel": ("mamba_d_conv",), "expand": ("mamba_expand",), "intermediate_size": (),
                "n_routed_experts": ("num_local_experts",), "moe_intermediate_size": (),
                "moe_shared_expert_intermediate_size": (), "n_shared_experts": (), "time_embed_dim": ()}


def broken_link(path) -> str | None:
    """"<path> is a broken link (to <target>): an incomplete download?" where `path` is a link to nothing, else
    None. A Hugging Face cache folder links every file into ../../blobs: with the blob gone, `ls` lists the file
    that the loader called missing."""
    path = Path(path)
    if not path.is_symlink() or path.exists():
        return None
    import os

    return f"{path} is a broken link (to {os.readlink(path)}): an incomplete download?"


def is_set(raw: dict, field: str, aliases=()) -> bool:
    """Does the raw config.json set `field` under its own name or one of the aliases NemotronHConfig reads?"""
    return any(name in raw for name in (field, *aliases))


def one_line(text) -> str:
    """A library's message on one line (huggingface_hub's validation errors span several)."""
    return " ".join(str(text).split())


def read_json_value(path: Path):
    """The JSON value in a file, or a ValueError saying in words what is wrong with it (the message alone, no path:
    callers put the file's name and their own lead in front). A config.json, an index, a tokenizer.json."""
    if path.is_dir():
        raise ValueError("it is a folder, not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError("not a text file") from None
    except OSError as exc:
        raise ValueError(str(exc.strerror or exc)) from None
    if not text.strip():
        raise ValueError("the file is empty")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None


def read_json_object(path: Path, lead: str) -> dict:
    """A JSON object from a file, or a ValueError "<path> <lead>: <what is wrong>" (lead: "cannot be read as a
    model config")."""
    try:
        raw = read_json_value(path)
    except ValueError as exc:
        raise ValueError(f"{path} {lead}: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path} {lead}: it holds a JSON {type(raw).__name__}, not an object")
    return raw


def unset_shape_fields(directory) -> list[str]:
    """The weight-shaping fields a checkpoint's config.json leaves unset (transformers' defaults stand in)."""
    try:
        raw = read_json_object(Path(directory) / CONFIG_NAME, "")
    except ValueError:
        return []
    return [field for field, aliases in SHAPE_FIELDS.items() if not is_set(raw, field, aliases)]


def unset_fields_hint(directory) -> str:
    """'; config.json does not set ...' for a load that failed on shapes or names, or '' when it sets them all."""
    unset = unset_shape_fields(directory)
    if not unset:
        return ""
    return (f"; {Path(directory) / CONFIG_NAME} does not set {', '.join(unset)}, so transformers' defaults stood "
            "in: set them as the checkpoint was trained")


def key_mismatch(model, missing: list[str], unexpected: list[str]) -> str:
    """Missing and unexpected tensor names on one line: the first few of each with how many more, and the two
    causes a user can act on: a whole part absent (an AR-only checkpoint has no denoiser_tower) and every name
    under a wrapper prefix ("model.context_tower...")."""
    def listed(names):
        return f"{names[:5]}{f' and {len(names) - 5} more' if len(names) > 5 else ''}"

    def part(name):  # the top-level module a tensor belongs to: context_tower, lm_head, ...
        return name.split(".", 1)[0]

    text = f"missing tensors {listed(missing)}, unexpected tensors {listed(unexpected)}"
    prefixes = {part(name) for name in unexpected}
    if missing and len(prefixes) == 1 and set(missing) <= {name.split(".", 1)[-1] for name in unexpected}:
        return f"{text}: every name starts with {next(iter(prefixes)) + '.'!r}, which the engine's names do not"
    return text + absent_parts_note(model.state_dict(), missing)


def absent_parts_note(expected, missing) -> str:
    """' (no denoiser_tower tensors at all)' when every name of a top-level part (context_tower, lm_head, ...)
    is among the `missing` names (an AR-only checkpoint), else ''. `expected`: every name the model has."""
    parts = [name.split(".", 1)[0] for name in expected]
    lost = [name.split(".", 1)[0] for name in missing]
    absent = sorted(p for p in set(lost) if lost.count(p) == parts.count(p))
    return f" (no {', '.join(absent)} tensors at all)" if absent else ""


def missing_weights_message(directory: Path) -> str:
    """Why a folder has no loadable model.safetensors, naming what it holds instead when that says more."""
    weights = directory / WEIGHTS_NAME
    if weights.exists():
        return f"{weights} is a folder, not a weights file"
    for name in (INDEX_NAME, WEIGHTS_NAME):  # a cache folder's link to a blob not (or no longer) there
        link = broken_link(directory / name)
        if link:
            return link
    shards = sorted(p.name for p in directory.glob("*.safetensors") if p.is_file())
    if shards:  # the release's shards without the index that lists them
        listed = ", ".join(shards[:3]) + (f" and {len(shards) - 3} more" if len(shards) > 3 else "")
        return (f"{directory} has no {WEIGHTS_NAME}, and its other safetensors file{'s' if len(shards) > 1 else ''} "
                f"({listed}) cannot be read without model.safetensors.index.json, the index that says which tensor "
                "is in which: copy it from the checkpoint")
    pickles = sorted(p.name for p in directory.iterdir() if p.is_file() and p.suffix in PICKLE_SUFFIXES)
    if pickles:
        return (f"{directory} has no {WEIGHTS_NAME}, only {', '.join(pickles[:3])}: weights are read from "
                "safetensors only (a pickle can run code as it loads); convert them with safetensors' save_file")
    return f"{directory} has no {WEIGHTS_NAME}"


def unreadable_safetensors(path: Path, exc: Exception) -> ValueError:
    """The ValueError for a weights file safetensors refused, saying in words what is wrong with it where the
    file shows it (safetensors says "Error while deserializing header: incomplete metadata, file not fully
    covered" of a file cut short)."""
    return ValueError(f"{path} cannot be read as safetensors: {_safetensors_problem(path) or one_line(exc)}")


def _safetensors_problem(path: Path) -> str | None:
    """What the first bytes and the header of a refused file show: empty, not safetensors at all, cut short."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            head = handle.read(8)
            if size == 0:
                return "the file is empty (0 bytes): an interrupted download or copy?"
            if size < 8:
                return f"the file is only {size} bytes long"
            if head.startswith(b"PK\x03\x04"):
                return "it is a zip archive (a PyTorch pickle checkpoint?), not safetensors"
            if head == b"version ":  # "version https://git-lfs.github.com/spec/v1": a clone without git-lfs
                return ("it is a Git LFS pointer, not the weights (the repository was cloned without git-lfs): "
                        "run `git lfs pull` in the checkpoint's repository, or download the file itself")
            header_len = int.from_bytes(head, "little")
            if header_len > size - 8:
                return (f"not a safetensors file (its first 8 bytes announce a {header_len}-byte header, the file "
                        f"has {size} bytes)")
            header = json.loads(handle.read(header_len))
    except (OSError, ValueError):  # a header that is not JSON: safetensors' own words say it
        return None
    if not isinstance(header, dict):
        return None
    ends = [entry["data_offsets"][1] for key, entry in header.items()
            if key != "__metadata__" and isinstance(entry, dict) and isinstance(entry.get("data_offsets"), list)
            and len(entry["data_offsets"]) == 2 and isinstance(entry["data_offsets"][1], int)]
    needed = 8 + header_len + max(ends, default=0)
    if size < needed:
        return (f"the file is truncated: its header describes {needed} bytes, the file has {size} "
                f"({100 * size // needed}%): an interrupted download or copy?")
    if size > needed:  # safetensors' words for this ("incomplete metadata, file not fully covered") read as a cut
        return (f"the file is {size - needed} bytes longer than its header describes ({needed}): bytes appended "
                "to it, or another file written over it?")
    return None


def non_finite_tensors(state: dict) -> list[str]:
    """Names of the floating tensors holding NaN or infinite values (a diverged run, a damaged file)."""
    import torch

    return [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]


def non_finite_message(where, broken: list[str]) -> str:
    return (f"{where}: {broken[:5]}{' and more' if len(broken) > 5 else ''} hold NaN or infinite values: the "
            "checkpoint is damaged or its training diverged")


def causal_lm_message(names, directory) -> str | None:
    """A NemotronH causal LM (the AR base model, `backbone.*` / `lm_head.*`) given where a two-tower checkpoint
    is expected: said as such, instead of "unknown tensor 'backbone.embeddings.weight'"."""
    names = list(names)
    if any("context_tower." in n or "denoiser_tower." in n for n in names):  # (a wrapper prefix is named elsewhere)
        return None
    if not any(n.startswith("backbone.") for n in names) or "lm_head.weight" not in names:
        return None
    return (f"{directory} holds a NemotronH causal LM (backbone.* / lm_head.* tensors, no context_tower.* or "
            f"denoiser_tower.*), not a two-tower checkpoint: twotower.from_backbone('{directory}') builds a two-tower "
            "model on it, whose denoiser then needs training (twotower train --stage denoiser)")
