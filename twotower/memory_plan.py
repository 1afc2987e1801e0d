"""`twotower plan`: bytes per device for weights, K/V cache and Mamba states, without loading weights.

The model is built on the meta device, so even the release's two 31.6 B towers cost nothing to plan.
What lives where (the engine's placement, `TwoTowerModel.place_towers_on_devices`):

* ctx_device: the context tower and its head, the context K/V cache (attention layers, all T positions)
  and the context Mamba states (conv: conv_dim x K in the model dtype; SSM: heads x head_dim x state in
  fp32, as transformers' scans leave them whatever the config's `mamba_ssm_cache_dtype` says), per sequence
  of the batch.
* den_device: the denoiser tower, its head and the time conditioning; per block it holds only S
  positions of its own K/V and a working copy of the seeded Mamba states; when the towers sit on two
  devices it also receives a copy of the context K/V and states once per block (`ContextStates.to`).

A device "fits" when all that stays under (1 - HEADROOM) of its memory: the rest is left for
activations (MoE routing buffers, the [context ; block] K/V concatenation, logits of a prefill).
"""

from __future__ import annotations

import json
import math

import torch

from .config import held_dtype  # the routers are kept in fp32 by the loaders
from .validation import BATCH_LIMIT, MAX_BLOCK_SIZE

GIB = 2**30
HEADROOM = 0.10
# 16 M tokens: past any context a run here reaches (a 2,048-token prompt and a million new tokens, the largest
# --max-new-tokens), and the bytes of any model at it stay printable (a 20-digit length planned 95 trillion GiB,
# a 400-digit one overflowed a float)
CONTEXT_LIMIT = 2**24
CONTEXT_PREFIXES = ("context_tower.", "context_lm_head.")


def _bytes_of(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def parse_dtype(dtype) -> torch.dtype:
    """engine.as_dtype (the one dtype parser), under the name scripts/gpu_smoke.py imports."""
    from .engine import as_dtype

    return as_dtype("dtype", dtype)


def _parse_device(device) -> str:
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"not a device: {device!r} (examples: cpu, cuda:0, cuda:1)") from None
    # "cuda" is torch's current device, cuda:0 unless set otherwise: one device, not two (a plan of --ctx-device cuda
    # --den-device cuda:0 counted a copy of the context states for a device crossing that is none). cpu:0 and
    # mps:0 are the one host's memory and the one Apple GPU: planned as two, each with all of it, a plan twice the
    # memory said "fits"
    if parsed.type == "cuda" and parsed.index is None:
        return "cuda:0"
    return parsed.type if parsed.type in ("cpu", "mps") else str(parsed)


def _positive_int(name: str, value, maximum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if value > maximum:
        # (str() of an int past 4,300 digits raises: its digits are counted from its bits)
        raise ValueError(f"{name} must be at most {maximum:,}, got {value:,}" if value < 10**30 else
                         f"{name} must be at most {maximum:,}, got a number of about "
                         f"{int(value.bit_length() * math.log10(2)) + 1:,} digits")
    return value


def weight_bytes(config, dtype: torch.dtype) -> dict:
    """Parameter counts and bytes of each tower's share, from a model built on the meta device."""
    from .model import TwoTowerModel

    with torch.device("meta"):
        model = TwoTowerModel(config)
    out = {"context_params": 0, "denoiser_params": 0, "context_bytes": 0, "denoiser_bytes": 0}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        tower = "context" if name.startswith(CONTEXT_PREFIXES) else "denoiser"
        kept = held_dtype(name, dtype)
        if isinstance(tensor, torch.nn.Parameter):  # buffers (router score bias) are not parameters
            out[f"{tower}_params"] += tensor.numel()
        out[f"{tower}_bytes"] += tensor.numel() * _bytes_of(kept if tensor.is_floating_point() else tensor.dtype)
    return out


def state_bytes(config, positions: int, batch_size: int, dtype: torch.dtype) -> dict:
    """K/V bytes for `positions` positions and Mamba state bytes, for all layers of one tower."""
    kinds = list(config.layers_block_type)
    n_attn, n_mamba = kinds.count("full_attention"), kinds.count("linear_attention")
    kv = n_attn * 2 * batch_size * config.num_key_value_heads * config.head_dim * positions * _bytes_of(dtype)
    conv_dim = config.mamba_num_heads * config.mamba_head_dim + 2 * config.n_groups * config.ssm_state_size
    conv = conv_dim * config.conv_kernel * _bytes_of(dtype)
    # fp32: the scans' final state (transformers 5 reads no mamba_ssm_cache_dtype; a plan that did halved a
    # float16-configured cache, measured fp32)
    ssm = config.mamba_num_heads * config.mamba_head_dim * config.ssm_state_size * _bytes_of(torch.float32)
    return {"kv": kv, "mamba": n_mamba * batch_size * (conv + ssm)}


def _device_capacity(device: str, device_memory: dict | None) -> float | None:
    """Bytes of memory of `device`: from `device_memory` (GiB) or, for a visible CUDA device, the driver."""
    if device_memory is not None:
        value = device_memory.get(device)
        if value is None:
            return None
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"memory of {device} must be a positive number of GiB, got {value!r}")
        return float(value) * GIB
    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) < torch.cuda.device_count():
        return float(torch.cuda.get_device_properties(dev.index or 0).total_memory)
    if dev.type == "cpu":  # the RAM of this machine, as the driver's total for a GPU (a laptop user's question)
        return host_memory()
    return None


def host_memory() -> float | None:
    """Bytes of physical memory of this machine, or None where the OS does not say (os.sysconf is POSIX)."""
    import os

    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None
    return float(total) if total > 0 else None


def plan_memory(config, ctx_device="cuda:0", den_device="cuda:1", context_length: int = 8192, batch_size: int = 1,
                dtype=torch.bfloat16, device_memory: dict[str, float] | None = None, block_size: int | None = None,
                den_dtype=None) -> dict:
    """Bytes per device for weights, caches and states at a context length and batch; whether it fits.

    device_memory: GiB per device name ({"cuda:0": 80, "cuda:1": 80}); None asks the CUDA driver about
    visible devices and the OS about this machine's RAM for "cpu", and leaves the others unknown ("fits" is then
    None).
    dtype: the context tower's (both towers' unless den_dtype names the denoiser's own, e.g. a bf16 draft).
    """
    dtype = parse_dtype(dtype)
    den_dtype = dtype if den_dtype is None else parse_dtype(den_dtype)
    ctx_device, den_device = _parse_device(ctx_device), _parse_device(den_device)
    context_length = _positive_int("context length", context_length, CONTEXT_LIMIT)
    batch_size = _positive_int("batch size", batch_size, BATCH_LIMIT)
    block_size = _positive_int("block size", getattr(config, "default_block_size", 16) if block_size is None else block_size,
                               MAX_BLOCK_SIZE)  # the engine's bounds: a plan of what cannot run is no plan
    if device_memory is not None:
        device_memory = {_parse_device(k): v for k, v in device_memory.items()}
        unused = sorted(set(device_memory) - {ctx_device, den_device})
        if unused:  # e.g. a typo'd cuda:5=80: its memory would be silently ignored
            raise ValueError(f"memory given for {', '.join(unused)}, which holds no tower (the towers are on "
                             f"{ctx_device} and {den_device})")

    weights = weight_bytes(config, dtype)
    den_weights = weights if den_dtype == dtype else weight_bytes(config, den_dtype)
    context = state_bytes(config, context_length, batch_size, dtype)
    block = state_bytes(config, block_size, batch_size, den_dtype)
    # the denoiser reads the context K/V and states on its own device, in its own dtype: another device or
    # another dtype makes a copy of them per block (model.py: context_states)
    copied = ctx_device != den_device or den_dtype != dtype
    parts = {
        ctx_device: {"holds": ["context tower", "context_lm_head"], "weights": weights["context_bytes"],
                     "kv_cache": context["kv"], "mamba_states": context["mamba"], "context_copy": 0},
    }
    den = parts.setdefault(den_device, {"holds": [], "weights": 0, "kv_cache": 0, "mamba_states": 0, "context_copy": 0})
    den["holds"] = den["holds"] + ["denoiser tower", "lm_head", "time conditioning"]
    den["weights"] += den_weights["denoiser_bytes"]
    den["kv_cache"] += block["kv"]  # the denoiser's own K/V: S positions per attention layer
    den["mamba_states"] += block["mamba"]  # working copies of the seeded states
    if copied:
        copy = state_bytes(config, context_length, batch_size, den_dtype)
        den["context_copy"] = copy["kv"] + copy["mamba"]

    verdicts = []
    for device, part in parts.items():
        part["total"] = part["weights"] + part["kv_cache"] + part["mamba_states"] + part["context_copy"]
        capacity = _device_capacity(device, device_memory)
        part["capacity"] = capacity
        part["usable"] = None if capacity is None else capacity * (1 - HEADROOM)
        part["fits"] = None if capacity is None else part["total"] <= part["usable"]
        verdicts.append(part["fits"])
    fits = False if False in verdicts else (None if None in verdicts else True)
    kinds = list(config.layers_block_type)
    return {
        "layers": {"mamba": kinds.count("linear_attention"), "moe": kinds.count("moe"),
                   "attention": kinds.count("full_attention"), "mlp": kinds.count("mlp")},
        "hidden_size": config.hidden_size,
        "vocab_size": config.vocab_size,
        "dtype": str(dtype).replace("torch.", ""),
        "den_dtype": str(den_dtype).replace("torch.", ""),
        "context_length": context_length,
        "batch_size": batch_size,
        "block_size": block_size,
        "headroom": HEADROOM,
        "parameters": {"context": weights["context_params"], "denoiser": weights["denoiser_params"],
                       "total": weights["context_params"] + weights["denoiser_params"]},
        "devices": parts,
        "fits": fits,
    }


def _gib(n) -> str:
    if n is None:
        return "?"
    if n >= GIB:
        return f"{n / GIB:.2f} GiB"
    # a small model's K/V of 16 KiB read "0.0 MiB", as if there were none
    return f"{n / 2**20:.1f} MiB" if n >= 2**20 or n == 0 else f"{n / 2**10:.1f} KiB"


def _count(n: int) -> str:
    """A parameter count in billions (B) at the release's size, in millions (M) at the default model's."""
    return f"{n / 1e9:.3f} B" if n >= 1e9 else f"{n / 1e6:.2f} M"


def format_memory_plan(plan: dict, unknown_hint: str = "give --device-memory-gb") -> str:
    """The plan as a short text table (the CLI's output; the web app words the hint its own way)."""
    layers, params = plan["layers"], plan["parameters"]
    kinds = ", ".join(f"{n} {k}" for k, n in layers.items() if n)
    lines = [
        f"model: {sum(layers.values())} layers per tower ({kinds}), hidden {plan['hidden_size']}, "
        f"vocab {plan['vocab_size']}, weights in {plan['dtype']}"
        + (f" (denoiser {plan['den_dtype']})" if plan.get("den_dtype", plan["dtype"]) != plan["dtype"] else ""),
        f"parameters: context {_count(params['context'])}, denoiser {_count(params['denoiser'])}, "
        f"total {_count(params['total'])}",
        f"context length {plan['context_length']}, batch {plan['batch_size']}, block size {plan['block_size']}; "
        f"{plan['headroom']:.0%} of each device is left free for activations",
        "",
    ]
    header = ("device", "weights", "K/V cache", "Mamba states", "context copy", "total", "usable", "verdict")
    rows = [header]
    for device, part in plan["devices"].items():
        verdict = {True: "fits", False: "does not fit", None: "memory unknown"}[part["fits"]]
        rows.append((device, _gib(part["weights"]), _gib(part["kv_cache"]), _gib(part["mamba_states"]),
                     _gib(part["context_copy"]), _gib(part["total"]), _gib(part["usable"]), verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    for device, part in plan["devices"].items():
        lines.append(f"{device} holds: {', '.join(part['holds'])}")
    overall = {True: "fits", False: "does not fit", None: f"unknown ({unknown_hint})"}[plan["fits"]]
    lines.append(f"overall: {overall}")
    return "\n".join(lines)


def parse_device_memory(text: str | None, devices: list[str]) -> dict[str, float] | None:
    """'80' (every named device) or 'cuda:0=80,cuda:1=141' -> {device: GiB}."""
    if text is None:
        return None
    try:
        if "=" not in text:
            return {d: float(text) for d in devices}
        pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
        memory = {}
        for key, value in pairs:
            device = _parse_device(key.strip())
            if device in memory:  # the last value won without a word
                raise ValueError(f"--device-memory-gb names {device} twice: give each device once")
            memory[device] = float(value)
        return memory
    except ValueError as exc:
        if "device" in str(exc):
            raise
        raise ValueError(f"--device-memory-gb takes a number of GiB or device=GiB pairs, got {text!r}") from None


def add_arguments(parser) -> None:
    from .cli_generate import add_model_arguments
    from .engine import DTYPE_HELP, DTYPE_METAVAR, dtype_flag

    add_model_arguments(parser)
    parser.set_defaults(ctx_device="cuda:0", den_device="cuda:1")
    parser.add_argument("--context-length", type=int, default=8192,
                        help=f"tokens of context, prompt + generated (default: 8192; at most {CONTEXT_LIMIT:,})")
    parser.add_argument("--batch", "--batch-size", type=int, default=1,  # bench's spelling too: a typo's suggestion
                        help=f"sequences decoded together (default: 1; at most {BATCH_LIMIT})")  # was --block-size
    parser.add_argument("--block-size", type=int, default=None, help="block size S (default: the model's)")
    parser.add_argument("--dtype", default="bf16", type=dtype_flag, metavar=DTYPE_METAVAR,
                        help=f"weight dtype: {DTYPE_HELP} (default: bf16, the release's, as a GPU run loads it; "
                             "generate and the app load fp32 unless told)")
    parser.add_argument("--den-dtype", default=None, type=dtype_flag, metavar=DTYPE_METAVAR,
                        help="the denoiser's own weight dtype (default: --dtype)")
    parser.add_argument("--device-memory-gb", default=None,
                        help="GiB per device: one number for every device named, or cuda:0=80,cuda:1=141 "
                             "(default: ask the CUDA driver, and the OS for cpu's RAM; unknown otherwise)")
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")


def main(args) -> int:
    from .checkpoint import build_on_meta, load_config
    from .config import make_config
    from .engine import default_model_dir
    from .path_checks import check_model_dir

    if args.model is not None and args.preset is not None:
        raise ValueError("give either --model or --preset, not both")
    if args.preset is not None:
        config = make_config(args.preset)
    else:
        directory = check_model_dir(args.model) if args.model is not None else default_model_dir()
        config = load_config(directory)  # config.json only
        build_on_meta(config, directory)  # a config that reads but builds nothing: one line, as generate says it
    devices = list(dict.fromkeys([_parse_device(args.ctx_device), _parse_device(args.den_device)]))
    plan = plan_memory(config, args.ctx_device, args.den_device, args.context_length, args.batch, args.dtype,
                       parse_device_memory(args.device_memory_gb, devices), args.block_size, args.den_dtype)
    print(json.dumps(plan, indent=2) if args.json else format_memory_plan(plan))
    return 0
