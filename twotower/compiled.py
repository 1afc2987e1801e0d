"""torch.compile over the two decode passes: the context tower's forward and the denoiser tower's body.

On a small model the bill of a decode pass is the number of ops, not the arithmetic (a 10 M-parameter
denoiser pass issues several hundred aten ops for ~3 MFLOP per token). Inductor fuses the elementwise
chains (adaLN modulation, norms, the short Mamba scan's decay terms, the experts' gating) into a few
generated kernels and calls them without the Python dispatch of each op. Measured on this project's CPU,
1 thread, default model, greedy, 3 prompts × 64 tokens: diffusion ~95 → ~123 tok/s, AR ~93 → ~112 tok/s,
the same tokens; the one-off compile took ~100 s per tower there. See BENCHMARKS.md for the bench rows.

What is compiled, and why exactly these two:
  * `TwoTowerModel.denoiser_hidden` — the denoiser without its head. The head's gather of still-open
    positions has a data-dependent shape and stays eager (see `TwoTowerModel.denoise`).
  * `context_tower.forward` — transformers' NemotronH with its DynamicCache: AR steps, block commits,
    verify passes and prompt prefill (one graph per kind of call, `dynamic=True` for the lengths).
Training never compiles (it builds its model without this). The eager model is the reference twin:
tests/test_compiled.py compares both towers' outputs and every decoding mode's tokens against it.
"""

from __future__ import annotations

import shutil

import torch

# Distinct call kinds per code object: AR step, block commit, verify (recording per-position states or not),
# prefill past the short-scan length, batch 1 vs larger batches. dynamo's default of 8 recompiles would
# silently fall back to eager for the rest; this leaves room with a margin.
RECOMPILE_LIMIT = 32


def compile_available(device: torch.device | str = "cpu") -> str | None:
    """None when torch.compile can run here, else why not (inductor needs a C++ compiler on CPU)."""
    if torch.device(device).type == "cpu" and not (shutil.which("c++") or shutil.which("g++")):
        return "torch.compile on CPU needs a C++ compiler (g++), and none is on PATH"
    return None


def compile_towers(model):
    """Compile `model`'s two decode passes in place (lazily: the first calls pay the compile). Idempotent."""
    if getattr(model, "is_compiled_for_decoding", False):
        return model
    for device in {model.ctx_device, model.den_device}:
        reason = compile_available(device)
        if reason:
            raise ValueError(reason)
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    model.denoiser_hidden = torch.compile(model.denoiser_hidden, dynamic=True)  # instance attribute over the method
    model.context_tower.forward = torch.compile(model.context_tower.forward, dynamic=True)
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
