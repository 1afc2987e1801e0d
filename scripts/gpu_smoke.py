#!/usr/bin/env python
"""GPU smoke test: the engine at the release's real layer widths, on CUDA, against the CPU reference.

    python scripts/gpu_smoke.py                         # one GPU, pattern M*E at hidden 2688
    python scripts/gpu_smoke.py --den-device cuda:1     # towers on two GPUs
    python scripts/gpu_smoke.py --device cpu --small    # tiny widths on the CPU: checks the script itself
    python scripts/gpu_smoke.py --compile               # also torch.compile against the eager device model

A random-weight two-tower model with the release's widths (hidden 2688, 32/2 heads x 128, Mamba 64 x 64,
8 groups, state 128, 128 experts top-6, vocab 131072) but a short layer pattern is built once in fp32 on
the CPU (the reference, always on transformers' PyTorch paths) and copied to the device, where
transformers picks the mamba-ssm / causal-conv1d kernels by itself when they are installed. Checks:

* context logits, denoiser logits: max |device - cpu| <= tol * max |cpu| (fp32, TF32 off; tol 2e-4);
* the seeded Mamba block scan (a chunk scan from a context state, block shorter and longer than the
  chunk) against a token-by-token recurrence through a DynamicCache on the device, and against the CPU;
* every decoding mode, greedy: the device's tokens equal the CPU's (speculative when spec_decode has it),
  and speculative rolls back from its verify passes' per-position states (no snapshot path).
Then it prints per-layer-type timings (context prefill, context 1-token step, one denoiser block pass).
Exit status: 0 all checks passed, 1 a check failed, 2 no CUDA device (or bad arguments).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.util
import inspect
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from twotower.config import cast_model, make_config  # noqa: E402
from twotower.decoding import drain  # noqa: E402
from twotower.engine import Engine  # noqa: E402
from twotower.memory_plan import parse_dtype  # noqa: E402
from twotower.model import ATTENTION, MAMBA, TwoTowerModel  # noqa: E402
from twotower.seeded_states import ContextStates, SeededMambaCache  # noqa: E402

KERNEL_FUNCTIONS = ("causal_conv1d_update", "causal_conv1d_fn", "mamba2_split_conv1d_scan_combined",
                    "mamba2_selective_state_update", "mamba2_chunk_scan")
KIND_NAMES = {MAMBA: "mamba", ATTENTION: "attention", "moe": "moe", "mlp": "mlp"}


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="device under test (both towers unless --den-device)")
    parser.add_argument("--den-device", default=None, help="the denoiser's device, e.g. cuda:1 for two GPUs")
    parser.add_argument("--small", action="store_true", help="tiny widths: a quick check of this script on a CPU")
    parser.add_argument("--pattern", default="M*E", help="layer pattern (M Mamba-2, * attention, E MoE, - MLP)")
    parser.add_argument("--prompt-length", type=int, default=None, help="default 256 (12 with --small)")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 32 (8 with --small)")
    parser.add_argument("--block-size", type=int, default=None, help="default 16 (4 with --small)")
    parser.add_argument("--tol", type=float, default=2e-4, help="relative tolerance of the fp32 comparisons")
    parser.add_argument("--timing-dtype", default=None, help="dtype of the timings (default bfloat16 on CUDA)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats per scenario")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--compile", action="store_true",
                        help="also check the torch.compile path (twotower.compiled) against the eager device model")
    args = parser.parse_args(argv)
    args.prompt_length = args.prompt_length or (12 if args.small else 256)
    args.new_tokens = args.new_tokens or (8 if args.small else 32)
    args.block_size = args.block_size or (4 if args.small else 16)
    return args


@contextlib.contextmanager
def torch_reference_paths():
    """Run NemotronH's Mamba-2 mixer on transformers' PyTorch functions even where mamba-ssm is installed.

    transformers picks the kernel package once, for every device, at import; its Triton kernels cannot
    run on CPU tensors, so the CPU reference swaps the module's functions back to the PyTorch ones.
    """
    from transformers.models.nemotron_h import modeling_nemotron_h as module

    saved = {name: getattr(module, name) for name in KERNEL_FUNCTIONS if hasattr(module, name)}
    try:
        for name, fn in saved.items():
            plain = inspect.unwrap(fn)
            if getattr(plain, "__module__", None) == module.__name__:
                setattr(module, name, plain)
        yield
    finally:
        for name, fn in saved.items():
            setattr(module, name, fn)


def paths_for(device) -> contextlib.AbstractContextManager:
    return contextlib.nullcontext() if torch.device(device).type == "cuda" else torch_reference_paths()


def build_reference(config, seed: int) -> TwoTowerModel:
    """Random fp32 model on the CPU, with non-trivial time conditioning so every denoiser path counts."""
    torch.manual_seed(seed)
    model = TwoTowerModel(config).eval()
    with torch.no_grad():
        torch.nn.init.normal_(model.t_block[1].weight, std=0.02)
        for table in model.scale_shift_tables:
            table.add_(0.05 * torch.randn_like(table))
    return model


class Report:
    def __init__(self, tol: float):
        self.tol, self.failures = tol, []

    def close(self, name: str, got: torch.Tensor, ref: torch.Tensor) -> None:
        got, ref = got.detach().float().cpu(), ref.detach().float().cpu()
        if got.shape != ref.shape:
            self.failures.append(name)
            print(f"FAIL {name}: shape {tuple(got.shape)} vs {tuple(ref.shape)}")
            return
        err = (got - ref).abs().max().item()
        rel = err / max(ref.abs().max().item(), 1e-12)
        ok = rel <= self.tol
        if not ok:
            self.failures.append(name)
        print(f"{'ok  ' if ok else 'FAIL'} {name}: max abs err {err:.3e}, relative {rel:.3e} (tol {self.tol:g})")

    def equal(self, name: str, got: list, ref: list, detail: str = "") -> None:
        ok = got == ref
        if not ok:
            self.failures.append(name)
            first = next((i for i, (a, b) in enumerate(zip(got, ref)) if a != b), min(len(got), len(ref)))
            detail += f"; first difference at token {first}: device {got[first:first + 4]} cpu {ref[first:first + 4]}"
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {len(got)} tokens {'equal' if ok else 'differ'}{detail}")

    def holds(self, name: str, ok: bool, detail: str = "") -> None:
        if not ok:
            self.failures.append(name)
        print(f"{'ok  ' if ok else 'FAIL'} {name}{detail}")


def check_logits(ref, dev, prompt, block_size, report) -> None:
    """Context logits over a prompt, then denoiser logits for a half-masked block from its states."""
    results = {}
    for label, model in (("cpu", ref), ("device", dev)):
        with paths_for(model.ctx_device):
            cache = model.new_cache(prompt.shape[0])
            ctx_logits = model.context_forward(prompt, cache, last_only=False)  # (B, T, V)
            block = torch.randint(5, model.config.vocab_size, (prompt.shape[0], block_size), generator=torch.Generator().manual_seed(1))
            block[:, ::2] = model.config.mask_token_id
            t = (block == model.config.mask_token_id).float().mean(-1)
        with paths_for(model.den_device):
            den_logits = model.denoise(block, model.context_states(cache), t)  # (B, S, V)
        results[label] = (ctx_logits, den_logits)
    report.close("context tower logits", results["device"][0], results["cpu"][0])
    report.close("denoiser block logits", results["device"][1], results["cpu"][1])


def seeded_scan_outputs(model, prompt, x):
    """One Mamba layer over a block from the context state after `prompt`: (block scan, token by token)."""
    layer_idx = model.layer_types.index(MAMBA)
    mixer = model.context_tower.layers[layer_idx].mixer
    cache = model.new_cache(prompt.shape[0])
    model.context_forward(prompt, cache)
    seeded = SeededMambaCache(ContextStates.from_cache(cache, model.layer_types).mamba)
    block = mixer(x, cache=seeded)  # chunk scan from the seeded conv / SSM state
    steps = copy.deepcopy(cache)  # a real cache: single-token conv update + state update per token
    stepwise = torch.cat([mixer(x[:, i:i + 1], cache=steps) for i in range(x.shape[1])], dim=1)
    return block, stepwise


def check_seeded_scan(ref, dev, prompt, block_size, report) -> None:
    if MAMBA not in ref.layer_types:
        print("skip seeded Mamba scan: the pattern has no Mamba layer")
        return
    chunk = ref.config.chunk_size
    for length in sorted({block_size, chunk + 5}):  # shorter than the chunk (the pitfall), and longer
        x = torch.randn(prompt.shape[0], length, ref.config.hidden_size, generator=torch.Generator().manual_seed(length))
        with torch_reference_paths():
            ref_block, ref_steps = seeded_scan_outputs(ref, prompt, x)
        with paths_for(dev.ctx_device):
            dev_block, dev_steps = seeded_scan_outputs(dev, prompt.to(dev.ctx_device), x.to(dev.ctx_device))
        where = f"S={length}, chunk {chunk}"
        report.close(f"seeded block scan vs token-by-token, device ({where})", dev_block, dev_steps)
        report.close(f"seeded block scan, device vs cpu ({where})", dev_block, ref_block)
        report.close(f"seeded block scan vs token-by-token, cpu ({where})", ref_block, ref_steps)


def run_modes(model, prompt_ids, args) -> dict:
    engine = Engine(model, tokenizer=None, name="gpu smoke")
    modes = ["diffusion", "mock_ar", "ar"]
    try:
        if hasattr(importlib.import_module("spec_decode"), "iter_speculative"):
            modes.append("speculative")
    except ImportError:
        pass
    out = {}
    for mode in modes:
        with paths_for(model.ctx_device), paths_for(model.den_device):
            events = engine.stream(mode, prompt_ids, max_new_tokens=args.new_tokens, block_size=args.block_size,
                                   steps_per_block=args.block_size, temperature=0.0, seed=args.seed, stop_at_eos=False)
            result = drain(events)
        out[mode] = (result.new_tokens[0], result.stats)
    return out


def check_compiled(dev, prompt_ids, args, report) -> None:
    """Every mode's greedy tokens from the compiled device model equal the eager device model's; then one
    timed run of each (after the compiling run) as a first look at what compiling gains on this device."""
    from twotower.compiled import compile_towers

    compiled = compile_towers(copy.deepcopy(dev))
    want = run_modes(dev, prompt_ids, args)
    got = run_modes(compiled, prompt_ids, args)  # the first run compiles
    for mode, (tokens, _) in got.items():
        report.equal(f"mode {mode}, compiled vs eager", tokens, want[mode][0])
    for label, model in (("eager", dev), ("compiled", compiled)):
        timed = run_modes(model, prompt_ids, args)
        print(f"{label:>8}: " + ", ".join(f"{m} {len(t) / s['total_s']:.1f} tok/s" for m, (t, s) in timed.items()))


def check_modes(ref, dev, prompt_ids, args, report) -> None:
    ref_out, dev_out = run_modes(ref, prompt_ids, args), run_modes(dev, prompt_ids, args)
    if "speculative" not in dev_out:
        print("skip speculative mode: spec_decode.iter_speculative is not there")
    for mode, (tokens, stats) in dev_out.items():
        report.equal(f"mode {mode}, device vs cpu", tokens, ref_out[mode][0],
                     f" (nfe {stats.get('nfe')}, context passes {stats.get('context_passes')})")
    if "speculative" in dev_out:  # the verify passes run the short scan, so rollback never needs the snapshot
        paths = dev_out["speculative"][1].get("rollbacks", {})
        report.holds("speculative rolls back per position on the device", set(paths) <= {"none", "positions"},
                     f": rounds by rollback path {paths}")


class LayerTimer:
    """Per-layer-type time of each tower, from hooks: mixer forward for Mamba / MoE / MLP, and q_proj to
    o_proj for attention (the denoiser's attention calls the projections, not the module's forward)."""

    def __init__(self, model):
        self.records, self.open, self.handles = [], {}, []
        for tower_name, tower in (("context", model.context_tower), ("denoiser", model.denoiser_tower)):
            device = next(tower.parameters()).device
            for layer in tower.layers:
                label = (tower_name, KIND_NAMES[layer.block_type])
                mixer = layer.mixer
                first, last = (mixer.q_proj, mixer.o_proj) if layer.block_type == ATTENTION else (mixer, mixer)
                self.handles.append(first.register_forward_pre_hook(lambda m, a, k=(label, device): self._start(k)))
                self.handles.append(last.register_forward_hook(lambda m, a, o, k=(label, device): self._stop(k)))

    def _stamp(self, device):
        if device.type != "cuda":
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record(torch.cuda.current_stream(device))
        return event

    def _start(self, key):
        self.open[key] = self._stamp(key[1])

    def _stop(self, key):
        self.records.append((key, self.open.pop(key), self._stamp(key[1])))

    def collect(self) -> dict:
        """{(tower, kind): (calls, total ms)} since the last collect; waits for every recorded GPU event."""
        totals = {}
        for (label, device), start, end in self.records:
            if device.type == "cuda":
                end.synchronize()  # per event: the towers may sit on two GPUs
                ms = start.elapsed_time(end)
            else:
                ms = (end - start) * 1000.0
            calls, total = totals.get(label, (0, 0.0))
            totals[label] = (calls + 1, total + ms)
        self.records = []
        return totals

    def remove(self):
        for handle in self.handles:
            handle.remove()


def time_layer_types(model, prompt, block_size, repeats) -> list[tuple]:
    """Rows (scenario, tower, kind, calls per run, ms per call, ms per run) averaged over `repeats`."""
    token = prompt[:, -1:]
    block = torch.full((prompt.shape[0], block_size), model.config.mask_token_id, dtype=torch.long)
    t = torch.ones(prompt.shape[0])
    state = {}

    def prefill():
        state["cache"] = model.new_cache(prompt.shape[0])
        model.context_forward(prompt, state["cache"])

    scenarios = [
        (f"context prefill ({prompt.shape[1]} tokens)", prefill),
        ("context step (1 token)", lambda: model.context_forward(token, state["cache"])),
        (f"denoiser block ({block_size} tokens)", lambda: model.denoise(block, model.context_states(state["cache"]), t)),
    ]
    timer, rows = LayerTimer(model), []
    try:
        for name, run in scenarios:
            run()  # warm-up (kernel compilation, allocator)
            timer.collect()
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            per_type = timer.collect()  # waits for the GPU work of this scenario
            wall = (time.perf_counter() - start) * 1000.0 / repeats
            for (tower, kind), (calls, total) in sorted(per_type.items()):
                rows.append((name, tower, kind, calls / repeats, total / calls, total / repeats))
            rows.append((name, "both", "whole pass", 1, wall, wall))
    finally:
        timer.remove()
    return rows


def print_timings(rows, dtype) -> None:
    print(f"\nper-layer-type timings ({dtype}):")
    header = ("scenario", "tower", "layer", "calls/run", "ms/call", "ms/run")
    table = [header] + [(s, tw, k, f"{c:g}", f"{per:.3f}", f"{tot:.3f}") for s, tw, k, c, per, tot in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def describe_kernels(device) -> str:
    have = {name: importlib.util.find_spec(name) is not None for name in ("mamba_ssm", "causal_conv1d")}
    used = torch.device(device).type == "cuda" and all(have.values())
    found = ", ".join(f"{k} {'installed' if v else 'missing'}" for k, v in have.items())
    return f"{found}: {'kernels' if used else 'PyTorch reference path'} on {device}"


@torch.inference_mode()
def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        ctx_device, den_device = torch.device(args.device), torch.device(args.den_device or args.device)
    except RuntimeError:
        print(f"gpu_smoke: not a device: {args.device!r} / {args.den_device!r}", file=sys.stderr)
        return 2
    if "cuda" in (ctx_device.type, den_device.type) and not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device is visible (torch.cuda.is_available() is False). Run it on a machine "
              "with a GPU, or `python scripts/gpu_smoke.py --device cpu --small` to check the script on the CPU.",
              file=sys.stderr)
        return 2
    missing = [str(d) for d in (ctx_device, den_device)
               if d.type == "cuda" and (d.index or 0) >= torch.cuda.device_count()]
    if missing:  # --den-device cuda:1 on a one-GPU lease was a traceback
        print(f"gpu_smoke: {', '.join(dict.fromkeys(missing))}: this machine has {torch.cuda.device_count()} CUDA "
              "device(s), numbered from cuda:0", file=sys.stderr)
        return 2
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.backends.cuda.matmul.allow_tf32 = False  # the comparisons are fp32 against fp32
    torch.backends.cudnn.allow_tf32 = False
    preset = "tiny" if args.small else "release"
    config = make_config(preset, hybrid_override_pattern=args.pattern)
    print(f"model: {preset} widths, pattern {args.pattern}, hidden {config.hidden_size}, vocab {config.vocab_size}, "
          f"towers on {ctx_device} / {den_device}")
    print(describe_kernels(ctx_device))
    ref = build_reference(config, args.seed)
    dev = copy.deepcopy(ref).place_towers_on_devices(ctx_device, den_device)
    gen = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(5, config.vocab_size, (2, args.prompt_length), generator=gen)  # (B=2, T)

    report = Report(args.tol)
    check_logits(ref, dev, prompt, args.block_size, report)
    check_seeded_scan(ref, dev, prompt, args.block_size, report)
    check_modes(ref, dev, prompt[0].tolist(), args, report)
    del ref
    if args.compile:
        check_compiled(dev, prompt[0].tolist(), args, report)

    dtype_name = args.timing_dtype or ("bfloat16" if ctx_device.type == "cuda" else "float32")
    cast_model(dev, parse_dtype(dtype_name))  # the routers stay fp32, as load_engine keeps them
    with paths_for(ctx_device), paths_for(den_device):
        rows = time_layer_types(dev, prompt.to(ctx_device), args.block_size, max(1, args.repeats))
    print_timings(rows, dtype_name)
    if report.failures:
        print(f"\n{len(report.failures)} check(s) failed: {', '.join(report.failures)}")
        return 1
    print("\nall checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
