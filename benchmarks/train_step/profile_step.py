"""Where a training step's time goes, stage by stage (written for a lent GPU, runs on a CPU with a small batch).

On an H200 (2026-12-04, scripts/gpu_train.sh) a stage-2 step of the `gpu` profile took ~0.85 s against
~0.19 s for a stage-1 step over the same (64, 512) windows. This splits a stage-2 step into the frozen context
tower's pass (`context_features`, and its reference twin `context_features_stepwise`: the prefix, then one
cached pass per block) and the denoiser's forward and backward, times each after a warm-up, and prints the
profiler's heaviest ops. profile_gpu_before.txt: its first run there, when stage 2 still took the stepwise pass.

  python benchmarks/train_step/profile_step.py --device cuda            # the gpu profile's shapes
  python benchmarks/train_step/profile_step.py --device cpu --batch 2   # a quick check here
"""

from __future__ import annotations

import argparse
import time

import torch

from twotower import build_model
from twotower.objectives import context_features, context_features_stepwise, context_loss, denoiser_loss
from twotower.training import PROFILES, TrainConfig, _cpu_runs_bf16_fast, trainable_parameters


def timed(fn, device: str, repeats: int, warm_up: bool = True) -> float:
    """Median wall seconds of fn() over `repeats`, after one warm-up call unless the caller made its own."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def aten_calls(fn) -> int:
    """aten op calls (nested ones counted too) in one fn(): the per-op cost a GPU step pays in launches."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.count for e in prof.key_averages() if e.key.startswith("aten::"))


def distill_timings(model, cfg, args, autocast) -> None:
    """Seconds per decode step of the batched greedy AR run that makes stage 2's distilled windows, by rows,
    and the aten ops of one decode step at the most rows. Each row count runs twice: on an H200 (2026-12-04)
    the first bf16-autocast run at a shape cost 70–90 ms a decode step at 48 or 384 rows, a second one at the
    same shape ~15 ms (../gpu_lease_20261204_2/ar_autocast_gpu.txt): a training run pays the first price once,
    as its first distillation run (~30 s), and the second after that."""
    from twotower.decoding import generate_ar

    model.eval()
    new = args.distill_tokens or cfg.seq_len - cfg.prefix_len
    for rows in [int(r) for r in args.distill_rows.split(",")]:
        prompt = torch.randint(5, model.config.vocab_size, (rows, cfg.prefix_len)).to(args.device)
        with autocast:  # as run_stage's distillation runs, inside the training autocast
            generate_ar(model, prompt, max_new_tokens=2)  # a short warm-up at this shape, then two timed runs
            runs = [timed(lambda: generate_ar(model, prompt, max_new_tokens=new), args.device, 1, warm_up=False)
                    for _ in range(2)]
        print(f"distillation run: {rows} rows × {new} tokens: " +
              ", then ".join(f"{sec:.2f} s ({sec / new * 1e3:.1f} ms a decode step)" for sec in runs))
    cache = model.new_cache(rows)
    with torch.no_grad(), autocast:
        model.context_forward(prompt, cache)
        print(f"aten calls in one decode step at {rows} rows: "
              f"{aten_calls(lambda: model.context_forward(prompt[:, -1:], cache))}")
    model.train()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--batch", type=int, default=None, help="windows per step (default: the profile's)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--distill-rows", default="",
                    help="also time self-distillation's batched AR run at these row counts, e.g. 32,384 (stage 2's "
                         "distilled windows: prefix, then greedy continuation to the window's end)")
    ap.add_argument("--distill-tokens", type=int, default=None, help="tokens each distillation run generates "
                    "(default: the profile's window after its prefix)")
    args = ap.parse_args()

    cfg = TrainConfig(**PROFILES["gpu" if args.device == "cuda" else "cpu"])
    bsz = args.batch or cfg.batch_size
    model = build_model("default").to(args.device).train()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(5, model.config.vocab_size, (bsz, cfg.seq_len), generator=gen).to(args.device)
    n_blocks = (cfg.seq_len - cfg.prefix_len) // cfg.block_size
    bf16 = args.device != "cpu" or _cpu_runs_bf16_fast()  # as training decides (twotower/training.py)
    autocast = torch.autocast(device_type=torch.device(args.device).type, dtype=torch.bfloat16, enabled=bf16)
    print(f"device {args.device}, windows ({bsz}, {cfg.seq_len}), prefix {cfg.prefix_len}, {n_blocks} blocks of "
          f"{cfg.block_size}, {'bf16 autocast' if bf16 else 'fp32'}")

    def context_step():
        trainable_parameters(model, "context")
        with autocast:
            context_loss(model, tokens).backward()

    def features():
        with autocast:
            context_features(model, tokens, cfg.prefix_len, cfg.block_size)

    def features_stepwise():
        with autocast:
            context_features_stepwise(model, tokens, cfg.prefix_len, cfg.block_size)

    def denoiser_step():
        trainable_parameters(model, "denoiser")
        with autocast:
            denoiser_loss(model, tokens, cfg, gen).backward()

    rows = [("stage 1 step (fwd + bwd)", timed(context_step, args.device, args.repeats)),
            ("stage 2: context_features (no grad)", timed(features, args.device, args.repeats)),
            ("  its reference twin, a cached pass per block", timed(features_stepwise, args.device, args.repeats)),
            ("stage 2 step (features + denoiser fwd + bwd)", timed(denoiser_step, args.device, args.repeats))]
    for name, sec in rows:
        print(f"{name:48s} {sec * 1e3:9.1f} ms")
    print(f"{'stage 2: denoiser fwd + bwd (difference)':48s} {(rows[3][1] - rows[1][1]) * 1e3:9.1f} ms")
    print(f"aten calls: context_features {aten_calls(features)}, its twin {aten_calls(features_stepwise)}")

    if args.distill_rows:
        distill_timings(model, cfg, args, autocast)

    activities = [torch.profiler.ProfilerActivity.CPU]
    if args.device == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as prof:
        denoiser_step()
        if args.device == "cuda":
            torch.cuda.synchronize()
    events = prof.key_averages()
    launches = sum(e.count for e in events if e.key.startswith(("cudaLaunchKernel", "cuLaunchKernel")))
    print(f"kernel launches in one stage-2 step: {launches}")
    sort = "self_cuda_time_total" if args.device == "cuda" else "self_cpu_time_total"
    print(events.table(sort_by=sort, row_limit=args.top, max_name_column_width=48))


if __name__ == "__main__":
    main()
