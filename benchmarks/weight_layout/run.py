"""Input-major storage of wide fp32 linear weights (twotower/weight_layout.py): what it changes, measured.

1. One matmul, weights cold (a 64 MB buffer written in between), 1 thread: each wide linear shape of the
   default model, and a tall one for contrast, stored (out, in) as nn.Linear keeps it and (in, out);
   the median of 30.
2. End to end on the default model: AR, diffusion and speculative, greedy, 64 new tokens on 4 held-out
   prompts, 6 rounds in which the two layouts take turns on the same loaded model (the wide weights
   switched in place), and whether the tokens were the same. Run:

  OMP_NUM_THREADS=1 python benchmarks/weight_layout/run.py > benchmarks/weight_layout/run.txt
"""

import statistics
import time

import torch

from twotower.bench import timed_generation
from twotower.engine import load_engine
from twotower.eval_prompts import next_line_items, prompt_ids
from twotower.weight_layout import store_input_major

MODES, ROUNDS, NEW_TOKENS = ("ar", "diffusion", "speculative"), 6, 64
SHAPES = {"vocabulary projection (8192, 256)": (8192, 256), "experts' stacked up (1536, 256)": (1536, 256),
          "Mamba in_proj (648, 256)": (648, 256),
          "attention q / o (256, 256)": (256, 256), "tall, for contrast (256, 1536)": (256, 1536)}


def cold_microseconds(fn, junk, n=30):
    times = []
    for _ in range(n):
        junk.add_(1.0)  # evicts the weight from the caches, as a decoding pass over the whole model does
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def matmuls():
    junk = torch.randn(16 * 1024 * 1024)
    print("1. one matmul, cold weights, fp32, 1 thread: microseconds, (out, in) -> (in, out) storage")
    for name, shape in SHAPES.items():
        weight = torch.randn(*shape)
        input_major = weight.t().contiguous().t()
        cells = []
        for rows in (1, 2, 5, 17):
            x = torch.randn(rows, shape[1])
            a = cold_microseconds(lambda: torch.nn.functional.linear(x, weight), junk)
            b = cold_microseconds(lambda: torch.nn.functional.linear(x, input_major), junk)
            cells.append(f"M={rows}: {a:.0f} -> {b:.0f}")
        print(f"  {name:36s} " + " | ".join(cells))


def end_to_end():
    engine = load_engine(input_major=False)
    reference = {id(m): {n: t.data for n, t in m.named_parameters(recurse=False)} for m in engine.model.modules()}
    changed = store_input_major(engine.model)  # the engine's own rule; then both layouts are kept to switch
    fast = {id(m): {n: t.data for n, t in m.named_parameters(recurse=False)} for m in engine.model.modules()}
    params = [(m, n) for m in engine.model.modules() for n, t in m.named_parameters(recurse=False)
              if t.data.data_ptr() != reference[id(m)][n].data_ptr()]
    layouts = {"(out, in)": [reference[id(m)][n] for m, n in params], "(in, out)": [fast[id(m)][n] for m, n in params]}
    prompts = [prompt_ids(engine, item["prompt"], 256) for item in next_line_items(4, seed=1)]
    speed, tokens = {}, {}
    for rnd in range(ROUNDS + 1):  # round 0 is the warm-up
        for layout, weights in layouts.items():
            for (module, name), weight in zip(params, weights):
                getattr(module, name).data = weight
            for mode in MODES:
                start = time.perf_counter()
                rows = [timed_generation(engine, mode, ids, NEW_TOKENS, {})["rows"] for ids in prompts]
                if rnd:
                    speed.setdefault((mode, layout), []).append(len(prompts) * NEW_TOKENS / (time.perf_counter() - start))
                tokens.setdefault((mode, layout), rows)
    print(f"\n2. default model, {changed} wide weights switched (vocabulary projections, wide linears, experts' up);"
          f" {len(prompts)} prompts x {NEW_TOKENS} tokens, greedy, 1 thread, {ROUNDS} rounds (layouts alternate):"
          " tokens/s per round, median")
    for mode in MODES:
        a, b = speed[(mode, "(out, in)")], speed[(mode, "(in, out)")]
        gains = [y / x for x, y in zip(a, b)]
        print(f"  {mode:11s} (out, in) {[round(v) for v in a]} median {statistics.median(a):.1f}")
        print(f"  {'':11s} (in, out) {[round(v) for v in b]} median {statistics.median(b):.1f}; "
              f"paired gain {min(gains):.2f}-{max(gains):.2f}x, median {statistics.median(gains):.2f}x; "
              f"same tokens: {tokens[(mode, '(out, in)')] == tokens[(mode, '(in, out)')]}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread")
    matmuls()
    end_to_end()
