"""Checks on user input, shared by the API, the CLI and the UI: every bad value gets a ValueError that
says what was wrong and what is allowed, never a shape error from deep inside a tower."""

from __future__ import annotations

import math
import numbers
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: torch loads inside the functions (the CLI parses before it loads)
    import torch


def as_batch(input_ids, vocab_size: int, one_prompt: str | None = None) -> torch.Tensor:
    """Accept a tensor or array (T,) or (B, T), a list of ids or a list of equal-length lists; return (B, T) long.
    one_prompt: the sampler that takes one prompt only, named when given a list of several (before their lengths
    are compared: "batch prompts of equal length" led to its second refusal)."""
    import torch  # here, not at the top: the CLI parses its arguments before torch loads (twotower/__init__.py)
    if isinstance(input_ids, torch.Tensor):
        if input_ids.is_meta:  # no values to read: ids.min() below was "Tensor.item() cannot be called on meta"
            raise ValueError("prompt ids on the 'meta' device hold no values; give them on the CPU or the model's device")
        ids = input_ids
    elif hasattr(input_ids, "__array__") and not isinstance(input_ids, (list, tuple, str)):  # numpy arrays
        try:
            ids = torch.as_tensor(input_ids)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"prompt ids must be integers: {exc}") from None
    else:
        if not isinstance(input_ids, (list, tuple)):
            hint = "; encode text with the tokenizer first" if isinstance(input_ids, str) else ""
            raise ValueError(f"input_ids must be token ids (a list or tensor of ints), got {type(input_ids).__name__}{hint}")
        if len(input_ids) == 0:
            raise ValueError("the prompt is empty: give at least one token")
        # a row: a list, or a tensor / array of at least one dimension (numpy's integer scalars have __array__
        # too, and a list of them is one prompt)
        rows = [isinstance(r, (list, tuple)) or getattr(r, "ndim", 0) >= 1 for r in input_ids]
        if any(rows):  # a batch: rows of ids (lists, tensors or arrays), all of one length
            if one_prompt and len(input_ids) > 1 and all(rows):  # said first: rows of other lengths were refused
                # for that, and then, made equal, for being several
                raise ValueError(f"{one_prompt} runs one prompt at a time (got a batch of {len(input_ids)})")
            if not all(rows):
                raise ValueError("batched prompts must be a list of rows of token ids; got rows mixed with single ids")
            lengths = {len(row) for row in input_ids}
            if len(lengths) > 1:
                raise ValueError(
                    f"batched prompts must have the same token length (got lengths {sorted(lengths)}); "
                    "run them separately or batch prompts of equal length"
                )
        try:
            if any(rows) and not all(isinstance(r, (list, tuple)) for r in input_ids):
                ids = torch.stack([torch.as_tensor(r) for r in input_ids])  # rows that are tensors or arrays
            else:
                ids = torch.tensor(input_ids)
        except (TypeError, ValueError, RuntimeError) as exc:
            big = _past_int64(input_ids)  # torch's "Overflow when unpacking long long" read as a type error
            if big is not None:
                raise ValueError(f"token id {_shown(big)} is outside the vocabulary [0, {vocab_size})") from None
            raise ValueError(f"prompt ids must be integers: {exc}") from None
    if ids.dim() == 1:
        ids = ids[None]
    if ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (T,) or (batch, T), got {tuple(ids.shape)}")
    # before the dtype check: torch.tensor([[]]) is an empty *float* tensor, and the user's error is emptiness
    if ids.shape[0] == 0 or ids.shape[1] == 0:
        raise ValueError("the prompt is empty: give at least one token")
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise ValueError("prompt ids must be integers")
    wraps = ids.dtype == torch.uint64
    if ids.dtype in (torch.uint16, torch.uint32, torch.uint64):  # min/max are not implemented for them (the
        ids = ids.to(torch.int64)  # corpus' token streams are uint16); a uint64 past 2**63 turns negative: refused
    low, high = int(ids.min()), int(ids.max())
    if low < 0 or high >= vocab_size:
        bad = low + 2**64 if low < 0 and wraps else low if low < 0 else high  # the uint64 as given, not wrapped
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {vocab_size})")
    return ids.long()


def _past_int64(rows):
    """The first Python int in (nested) rows that no int64 holds, or None."""
    for item in rows if isinstance(rows, (list, tuple)) else ():
        found = _past_int64(item) if isinstance(item, (list, tuple)) else (
            item if isinstance(item, int) and not -2**63 <= item < 2**63 else None)
        if found is not None:
            return found
    return None


def _shown(value: int):
    """An int as a message shows it: its digits up to 15 of them, else 'about 1.18e21' (10**400 has no float)."""
    digits = str(abs(value))
    sign = "-" if value < 0 else ""
    return value if abs(value) < 10**15 else f"about {sign}{digits[0]}.{digits[1:3]}e{len(digits) - 1}"


# Upper bounds of a run's sizes: no trained length limits a generation (NemotronH has no position limit), but past
# these a typo's run never ends or fills the memory first (--max-new-tokens 10**23 was past int64; bench
# --batch-size 10**8 built 10**8 rows, 2.4 GB in 20 s and growing; --n-prompts 10**8 took the whole test split)
NEW_TOKENS_LIMIT = 1_000_000
BATCH_LIMIT = 1024
PROMPTS_LIMIT = 100_000
SIZE_LIMITS = {"--max-new-tokens": NEW_TOKENS_LIMIT, "--next-line-tokens": NEW_TOKENS_LIMIT,
               "--syntax-tokens": NEW_TOKENS_LIMIT, "--batch-size": BATCH_LIMIT, "--n-prompts": PROMPTS_LIMIT,
               "--eval-prompts": PROMPTS_LIMIT, "--syntax-prompts": PROMPTS_LIMIT}


def check_size(flag: str, value) -> int:
    """A command's count or size flag: an integer >= 1, and at most its SIZE_LIMITS entry where it has one."""
    return check_int(flag, value, maximum=SIZE_LIMITS.get(flag))


def check_int(name: str, value, minimum: int | None = 1, maximum: int | None = None) -> int:
    """value as an int, or a ValueError naming it; minimum / maximum: bounds (None: none)."""
    # numbers.Integral admits numpy ints; a float must be finite (int(inf) raises OverflowError) and whole
    # (ints first: math.isfinite cannot take one past a float's range, 10**400, and raised OverflowError)
    whole_float = (not isinstance(value, numbers.Integral) and isinstance(value, numbers.Real)
                   and math.isfinite(value) and value == int(value))
    if isinstance(value, bool) or not (isinstance(value, numbers.Integral) or whole_float):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        upper = f" and <= {maximum}" if maximum is not None else ""
        # a seed of 1e300 printed all its 301 digits; "a 21-digit number" confused a user whose 20 nines the
        # browser had sent as the float 1e20: written from the digits (float() overflows past 1e308)
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {_shown(value)}")
    return value


# Every denoiser pass runs all S positions of a block, however few of them the budget needs: a typo such as
# 10**6 allocated a million positions' logits (32 GB at an 8k vocabulary). 4096 is far past any S measured here.
MAX_BLOCK_SIZE = 4096


def check_block_size(value) -> int:
    return check_int("block size S", value, maximum=MAX_BLOCK_SIZE)


def check_steps(name: str, value) -> int:
    """Steps per block or draft steps: a block of at most MAX_BLOCK_SIZE positions commits one token a step at the
    least, so more steps never run (10**20 passed the check and failed in the sampler's int64 arithmetic, a
    traceback after the model had loaded)."""
    return check_int(name, value, maximum=MAX_BLOCK_SIZE)


def check_flag(name: str, value) -> bool:
    """A switch: True / False, numpy's booleans, or the ints 0 and 1. Anything else is refused rather than read
    by its truth: anchor_first="no" or adaptive="false" are non-empty strings, so they would switch the
    variant on."""
    numpy = sys.modules.get("numpy")  # a numpy bool exists only once numpy is loaded: no import for it here
    if isinstance(value, bool) or (numpy is not None and isinstance(value, numpy.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):  # numpy's ints too
        return bool(value)
    raise ValueError(f"{name} must be True or False, got {value!r}")


def _is_real(value) -> bool:
    """A real number, Python's or numpy's (np.float32(0.7)); never a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_gamma(gamma) -> float:
    if not _is_real(gamma) or math.isnan(gamma) or not 0.0 < gamma <= 1.0:
        raise ValueError(f"confidence threshold γ must be in (0, 1], got {gamma!r}")
    return float(gamma)


def check_fraction(name: str, value) -> float:
    """A number in [0, 1] (a probability threshold where 0 means "off")."""
    if not _is_real(value) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return float(value)


# Sampling divides fp32 logits by the temperature: below 1e-4 (1e-40 is 0 or a denormal in fp32) the
# quotient overflows to inf and the draw returns pad or EOS; above 1e4 (1e300 is inf in fp32) the forbidden
# mask logit turns NaN. Between them every draw is well defined; 0 is greedy.
TEMPERATURE_RANGE = (1e-4, 1e4)


def check_sampling(temperature, top_k=None, top_p=None,
                   names=("temperature", "top_k", "top_p")) -> tuple[float, int | None, float | None]:
    """(temperature, top_k, top_p) checked. temperature 0 is greedy, where the filters change nothing (the
    argmax survives both). top_k: an integer >= 0; 0 means off and is returned as None, as is None itself.
    top_p: in (0, 1], or None (off); 1 keeps every token, so it is off too. names: as the caller spells them (the
    CLI's flags)."""
    low, high = TEMPERATURE_RANGE
    if (not _is_real(temperature) or math.isnan(temperature)
            or not (temperature == 0 or low <= temperature <= high)):
        raise ValueError(f"{names[0]} must be 0 (greedy) or between {low:g} and {high:g}, got {temperature!r}")
    if top_k is not None:
        top_k = check_int(names[1], top_k, minimum=0) or None
    if top_p is not None:
        if not _is_real(top_p) or math.isnan(top_p) or not 0.0 < top_p <= 1.0:
            raise ValueError(f"{names[2]} must be in (0, 1], got {top_p!r}")
    return float(temperature), top_k, None if top_p is None else float(top_p)


SEED_LIMIT = 2**63  # torch.Generator takes any 64-bit seed; speculative's verifier draws from seed + 1 mod this


def check_seed(seed, name: str = "seed") -> int | None:
    """None (unseeded) or an integer in [0, 2**63): a huge or fractional seed gets this message instead of
    torch's "Overflow when unpacking long long". name: as the caller's user knows it (the CLI's "--seed")."""
    if seed is None:
        return None
    return check_int(name, seed, minimum=0, maximum=SEED_LIMIT - 1)


def check_token_id(name: str, value, vocab_size: int) -> int | None:
    if value is None:
        return None
    value = check_int(name, value, minimum=0)
    if value >= vocab_size:
        raise ValueError(f"{name} {value} is outside the vocabulary [0, {vocab_size})")
    return value


def check_device(name: str, device) -> torch.device:
    """A device that exists here: 'gpu', 'cuda' without CUDA or 'cuda:7' on one GPU get a clear message
    instead of torch's RuntimeError / AssertionError from deep inside `.to()`."""
    import torch
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"{name} {device!r} is not a device name; use e.g. 'cpu' or 'cuda:0'") from None
    if dev.type == "meta":  # allocates fine, holds no data: the first real computation would fail deep inside
        raise ValueError(f"{name} 'meta' holds no data; use e.g. 'cpu' or 'cuda:0'")
    if dev.type == "cuda" and torch.cuda.is_available() and (dev.index or 0) >= torch.cuda.device_count():
        raise ValueError(f"{name} {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type != "cpu":
        try:  # the one check that covers every backend: allocate nothing on it
            torch.empty(0, device=dev)
        except (RuntimeError, AssertionError) as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            # torch's dispatcher error ("Could not run ... from the 'MPS' backend. This could be because ...") lists
            # every backend on that one line: its first sentence says it
            reason = reason.split(". ")[0] if len(reason) > 200 else reason
            raise ValueError(f"{name} {device!r} is not available on this machine ({reason})") from None
    return dev


def check_encodable(text: str, what: str) -> None:
    """A lone surrogate (half an emoji from a broken paste, or a JSON "\\ud800") is a str that no tokenizer
    can encode: say where it is instead of letting sentencepiece fail deep inside."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} holds a character that is not valid text ({exc.object[exc.start]!r} at "
                         f"position {exc.start}): remove it or paste the text again") from None


def model_config(model):
    """`model.config`, or a message when `model` is something else: the Engine handed to a sampler (whose model is
    engine.model) read as "'Engine' object has no attribute 'config'"."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "vocab_size"):
        hint = " (an Engine: pass engine.model, or use engine.stream)" if hasattr(model, "model") else ""
        raise ValueError(f"the samplers take a two-tower model, got {type(model).__name__}{hint}")
    return config
