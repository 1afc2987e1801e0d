"""How much of a speculative round's two passes is matrix products, on this CPU (prefill excluded).

Each draft pass (the denoiser over the block) and each verify pass (the context tower over the draft) of a few
64-token speculative generations on the default model runs under its own torch.profiler; the matmul ops' self
CPU time is summed per pass kind and divided by the rounds. Timing under the profiler is inflated a little;
the shares are what this is for. BENCHMARKS.md ("Where a round goes") uses it to bound what a leaner loop
could gain: a round cannot cost less than its matmuls.

  OMP_NUM_THREADS=1 python benchmarks/round_cost/mm_share.py            # eager
  OMP_NUM_THREADS=1 python benchmarks/round_cost/mm_share.py --compile  # torch.compile'd decode passes
"""

from __future__ import annotations

import argparse
import collections
import functools

from torch.profiler import ProfilerActivity, profile

import spec_decode.context_cursor as context_cursor
import twotower.model as two_tower_model
from twotower.engine import load_engine
from twotower.eval_prompts import next_line_items, prompt_ids

MATMULS = ("aten::mm", "aten::addmm", "aten::bmm")


def profiled(owner, name: str, label: str, totals: collections.Counter, active: list) -> None:
    """Replace owner.name by a wrapper that profiles each call while active[0] is set."""
    real = getattr(owner, name)

    @functools.wraps(real)
    def wrapper(*args, **kwargs):
        if not active[0]:
            return real(*args, **kwargs)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            out = real(*args, **kwargs)
        ops = prof.key_averages()
        totals[label, "matmul"] += sum(e.self_cpu_time_total for e in ops if e.key in MATMULS) / 1e3
        totals[label, "all ops"] += sum(e.self_cpu_time_total for e in ops) / 1e3
        return out

    setattr(owner, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--prompts", type=int, default=4)
    args = parser.parse_args()
    totals, active = collections.Counter(), [False]
    profiled(two_tower_model.TwoTowerModel, "denoise", "draft pass", totals, active)
    profiled(context_cursor.ContextCursor, "verify", "verify pass", totals, active)
    engine = load_engine()
    if args.compile:
        from twotower.compiled import compile_towers, warm_up

        compile_towers(engine.model)
        warm_up(engine, modes=("speculative",))
    prompts = [prompt_ids(engine, it["prompt"], 512) for it in next_line_items(args.prompts + 1, 0)]
    list(engine.stream("speculative", prompts[0], max_new_tokens=64, stop_at_eos=False))  # warm-up
    active[0], rounds = True, 0
    for ids in prompts[1:]:
        events = list(engine.stream("speculative", ids, max_new_tokens=64, stop_at_eos=False))
        rounds += sum(1 for e in events if e.kind == "verify")
    print(f"{'compiled' if args.compile else 'eager'}, {args.prompts} prompts x 64 tokens, {rounds} rounds; "
          "ms per round (profiler self CPU time)")
    for label in ("draft pass", "verify pass"):
        mm, every = totals[label, "matmul"] / rounds, totals[label, "all ops"] / rounds
        print(f"  {label:12s} matmuls {mm:6.2f} of {every:6.2f} ms ({100 * mm / every:.0f} %)")
    print(f"  both passes  matmuls {sum(v for (_, k), v in totals.items() if k == 'matmul') / rounds:6.2f} ms")


if __name__ == "__main__":
    main()
