"""Would an int8 drafter make speculative rounds cheaper on this CPU? Speculative output is AR's whatever the
draft's numerics (the context tower verifies), so the denoiser alone could run in int8 without touching the
output. This times torch's dynamic int8 linear (weights int8 per tensor, activations quantized per call)
against fp32 F.linear on one tower's shapes (benchmarks/gemm/run.py's), at 1 and 17 rows, one thread, weights
warm; the fp32 vocabulary projection both in nn.Linear's layout and input-major, as the engine stores it
(twotower/weight_layout.py). Run:

  OMP_NUM_THREADS=1 python benchmarks/gemm/int8.py > benchmarks/gemm/int8_run.txt
"""

import platform
import warnings

import torch
import torch.nn.functional as F

from run import SHAPES, microseconds

warnings.filterwarnings("ignore")  # torch's deprecation notice for quantized tensors


def int8_linear(n_out, n_in, weight):
    layer = torch.ao.nn.quantized.dynamic.Linear(n_in, n_out, bias_=False, dtype=torch.qint8)
    layer.set_weight_bias(torch.quantize_per_tensor(weight, weight.abs().max().item() / 127, 0, torch.qint8), None)
    return layer


def main():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, 1 thread, "
          f"quantized engine {torch.backends.quantized.engine}")
    rows = (1, 17)
    print(f"{'weight (count in one tower)':40s}" + "".join(f"{'fp32 M=' + str(m):>12s}{'int8 M=' + str(m):>12s}"
                                                            for m in rows) + "   (microseconds)")
    totals = {(kind, m): 0.0 for kind in ("fp32", "int8") for m in rows}
    for name, ((n_out, n_in), count) in SHAPES.items():
        weight = torch.randn(n_out, n_in) * 0.05
        quantized = int8_linear(n_out, n_in, weight)
        # the engine's fp32 layout: wide weights (more outputs than inputs) stored input-major
        stored = weight.t().contiguous().t() if n_out > n_in else weight
        cells = ""
        for m in rows:
            x = torch.randn(m, n_in)
            fp32, int8 = microseconds(lambda: F.linear(x, stored)), microseconds(lambda: quantized(x))
            totals[("fp32", m)] += count * fp32
            totals[("int8", m)] += count * int8
            cells += f"{fp32:12.0f}{int8:12.0f}"
        print(f"{name + f' ({count})':40s}{cells}")
    print(f"{'one tower, all its matmuls':40s}" + "".join(f"{totals[('fp32', m)]:12.0f}{totals[('int8', m)]:12.0f}"
                                                         for m in rows))


if __name__ == "__main__":
    main()
