"""Wall vs thread-CPU time of alternating AR / diffusion rounds: is this host's run-to-run noise time the
process is not running (steal, preemption), or the process running slower (cache / memory contention)?
And do ratios paired within a round spread less than either mode? Run:

  OMP_NUM_THREADS=1 python benchmarks/noise/probe.py > benchmarks/noise/probe.txt
"""

import statistics
import time

import torch

from twotower.bench import timed_generation
from twotower.engine import load_engine
from twotower.eval_prompts import next_line_items, prompt_ids

MODES, ROUNDS = ("ar", "diffusion"), 12


def cv(values):
    return statistics.stdev(values) / statistics.mean(values)


def main():
    torch.set_num_threads(1)
    engine = load_engine()
    prompts = [prompt_ids(engine, item["prompt"], 256) for item in next_line_items(4, seed=1)]
    for mode in MODES:  # warm-up
        timed_generation(engine, mode, prompts[0], 64, {})
    wall, cpu = {m: [] for m in MODES}, {m: [] for m in MODES}
    for _ in range(ROUNDS):
        for mode in MODES:  # the modes take turns, as in `twotower bench`
            c0, w0 = time.thread_time(), time.perf_counter()
            for ids in prompts:
                timed_generation(engine, mode, ids, 64, {})
            wall[mode].append(time.perf_counter() - w0)
            cpu[mode].append(time.thread_time() - c0)
    print(f"{len(prompts)} prompts x 64 tokens per round, {ROUNDS} rounds, 1 thread, γ 0.8, S 16")
    for mode in MODES:
        print(f"{mode:9s} wall s {[round(x, 2) for x in wall[mode]]}  cv {cv(wall[mode]):.3f}")
        print(f"{mode:9s} cpu s  {[round(x, 2) for x in cpu[mode]]}  cv {cv(cpu[mode]):.3f}")
    share = [c / w for m in MODES for c, w in zip(cpu[m], wall[m])]
    print(f"CPU time / wall time per round: {min(share):.3f}–{max(share):.3f}")
    paired = [a / d for a, d in zip(wall["ar"], wall["diffusion"])]  # diffusion tokens/s ÷ AR's, same round
    print(f"diffusion ÷ AR paired by round {[round(x, 3) for x in paired]}  cv {cv(paired):.3f}")


if __name__ == "__main__":
    main()
