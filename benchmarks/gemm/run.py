"""Why a 16-token pass is not free on this CPU: matmul time against the rows it multiplies.

The case for parallel decoding is that a pass over many positions reads the weights once, so when a pass
is bound by reading weights, 16 positions cost about what 1 does. This measures, on one thread, each
weight shape of the default model's towers (warm in cache, as in a pass that reuses it) at M = 1 … 17
rows, in fp32 and bf16, plus a large square GEMM for the core's peak. Run:

  OMP_NUM_THREADS=1 python benchmarks/gemm/run.py > benchmarks/gemm/run.txt
"""

import platform
import time

import torch

# (rows of the weight, columns) of the linear layers of one tower of assets/default and how many it has;
# experts are counted as the dense path runs them (every expert on every token, twotower/dense_experts.py)
SHAPES = {"vocabulary projection": ((8192, 256), 1), "Mamba in_proj": ((648, 256), 5),
          "Mamba out_proj, attention q / o": ((256, 256), 9), "attention k / v": ((128, 256), 4),
          "shared expert up": ((384, 256), 5), "shared expert down": ((256, 384), 5),
          "expert up (8 per MoE layer)": ((192, 256), 40), "expert down (8 per MoE layer)": ((256, 192), 40)}


def microseconds(fn, n=100):
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread")
    for dtype in (torch.float32, torch.bfloat16):
        a, b = torch.randn(1024, 1024, dtype=dtype), torch.randn(1024, 1024, dtype=dtype)
        us = microseconds(lambda: a @ b, n=10)
        print(f"peak, 1024 x 1024 x 1024 {str(dtype)[6:]}: {2 * 1024 ** 3 / us / 1e3:.0f} GFLOP/s")
    rows = (1, 2, 5, 9, 17)
    for dtype in (torch.float32, torch.bfloat16):
        print(f"\n{str(dtype)[6:]}: microseconds per matmul at M rows (GFLOP/s at M = 17), and one tower's total")
        print(f"{'weight':34s}" + "".join(f"{'M=' + str(m):>9s}" for m in rows) + f"{'GFLOP/s':>9s}")
        totals = dict.fromkeys(rows, 0.0)
        for name, ((n_out, n_in), count) in SHAPES.items():
            w = torch.randn(n_out, n_in, dtype=dtype)
            times = {}
            for m in rows:
                x = torch.randn(m, n_in, dtype=dtype)
                times[m] = microseconds(lambda: torch.nn.functional.linear(x, w))
                totals[m] += count * times[m]
            flops = 2 * 17 * n_out * n_in / times[17] / 1e3
            print(f"{name:34s}" + "".join(f"{times[m]:9.0f}" for m in rows) + f"{flops:9.0f}")
        print(f"{'one tower, all its matmuls':34s}" + "".join(f"{totals[m]:9.0f}" for m in rows)
              + f"   (M=17 / M=1: {totals[17] / totals[1]:.1f}x)")


if __name__ == "__main__":
    main()
