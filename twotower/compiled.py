"""torch.compile over the two decode passes: the context tower's forward and the denoiser tower's body.

On a small model the bill of a decode pass is the number of ops, not the arithmetic (BENCHMARKS.md,
"Removed cost": ~5 µs per aten op on this CPU, thousands of ops per pass of the 10 M-parameter towers). Inductor fuses the elementwise
chains (adaLN modulation, norms, the short Mamba scan's decay terms, the experts' gating) into a few
generated kernels and calls them without the Python dispatch of each op. Measured by the bench on this
project's CPU (1 thread, default model, batch 1): AR 86 → 104 tokens/s, diffusion 96 → 114, the same
tokens; with a bf16 denoiser diffusion 142. The one-off compile takes minutes there.
See BENCHMARKS.md for the bench rows.

What is compiled, and why exactly these two:
  * `TwoTowerModel.denoiser_hidden` — the denoiser without its head. The head's gather of still-open
    positions has a data-dependent shape and stays eager (see `TwoTowerModel.denoise`).
  * `context_tower.forward` on decode calls only — AR steps, block commits, verify passes: at most
    DECODE_MAX_TOKENS tokens onto a cache that already holds the prompt. A prompt prefill stays eager: its
    cache is still empty (each layer initialises lazily, a guard per layer) and its long input takes the
    experts' per-expert loop (a `.item()` graph break), which together made dynamo recompile layer by
    layer until it hit its limit.
A speculative verify pass records per-position Mamba states into a dict on the cache (short_scan.PositionStates);
dynamo replays that mutation after the graph, so the rollback works compiled as it does eager.
Training never compiles (it builds its model without this). The eager model is the reference twin:
tests/test_compiled.py compares both towers' outputs and every decoding mode's tokens against it.
"""

from __future__ import annotations

import shutil

import torch

from .hf_compat import has_read_tokens
from .short_scan import DEFAULT_MAX_LEN

# Distinct call kinds per code object: AR step (1 token) vs multi-token passes, batch 1 vs larger batches,
# and the state layouts an eager prefill leaves against those a compiled step leaves (a stride guard each);
# ~6 graphs of the context forward and ~4 of the denoiser in a bench run. dynamo's default limit of 8 would
# silently fall back to eager past it; this leaves a margin.
RECOMPILE_LIMIT = 32
# the short-scan length: longer inputs are prompt prefill, which stays eager
DECODE_MAX_TOKENS = DEFAULT_MAX_LEN


def _decode_calls_compiled(eager, compiled):
    """context_tower.forward that runs `compiled` for decode calls and `eager` for everything else."""
    def forward(*args, **kwargs):
        ids, cache = kwargs.get("input_ids"), kwargs.get("cache", kwargs.get("past_key_values"))  # transformers < 5.24: past_key_values
        if ids is not None and cache is not None and ids.shape[1] <= DECODE_MAX_TOKENS and has_read_tokens(cache):
            return compiled(*args, **kwargs)
        return eager(*args, **kwargs)
    return forward


def compile_available(device: torch.device | str = "cpu") -> str | None:
    """None when torch.compile can run here, else why not (inductor needs a C++ compiler on CPU)."""
    if torch.device(device).type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        return "torch.compile on CPU needs a C++ compiler (g++), and none is on PATH"
    return None


def compile_towers(model):
    """Compile `model`'s two decode passes in place (lazily: the first calls pay the compile). Idempotent."""
    if model.is_compiled_for_decoding:
        return model
    for device in {model.ctx_device, model.den_device}:
        reason = compile_available(device)
        if reason:
            raise ValueError(reason)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    model.denoiser_hidden = torch.compile(model.denoiser_hidden, dynamic=True)  # instance attribute over the method
    eager = model.context_tower.forward
    model.context_tower.forward = _decode_calls_compiled(eager, torch.compile(eager, dynamic=True))
    model.is_compiled_for_decoding = True
    return model


def warm_up(engine, modes=("ar", "mock_ar", "diffusion", "speculative"), max_new_tokens: int = 40) -> float:
    """Run each mode once on a short prompt so that the compiles happen now, not in a user's first run or a
    timed round. Returns the seconds it took."""
    import time

    start = time.perf_counter()
    prompt = engine.encode_prompt("def main(argv):\n    ")
    for mode in modes:
        for _ in engine.stream(mode, prompt, max_new_tokens=max_new_tokens, stop_at_eos=False):
            pass
    return time.perf_counter() - start
