"""Input-major storage of wide fp32 linear weights, for decoding on a CPU.

nn.Linear keeps its weight (out, in) row-major and computes x @ W.T. Decoding multiplies 1 to ~17 rows
by weights that come cold from memory every pass, and for a wide matrix (many more outputs than inputs)
MKL's single-threaded product streams the weight much faster when it is stored (in, out) row-major: the
default model's 256 x 8192 vocabulary projection, one row, cold, took 1.1-1.5 ms stored (out, in) and
0.4-0.5 ms stored (in, out) on this project's CPU (benchmarks/weight_layout/). For a tall matrix (fewer
outputs than inputs) the (out, in) layout was as fast or faster, and in bf16 (oneDNN) the layout made no
consistent difference, so only wide fp32 CPU weights are changed.

The same holds for the dense MoE kernel's stacked up projection (E·I x H, 1536 x 256 in the default model:
0.24 -> 0.12 ms for one row, cold). The weight keeps its shape and values: it becomes the transposed view of a contiguous (in, out) copy, so
F.linear (and state_dict, .to(), torch.compile) see the same (out, in) parameter; only its strides
differ. Products of one or two rows may round differently from the (out, in) kernel's (a different
summation order, ~1e-7 relative); the default layout is the reference twin (tests/test_weight_layout.py).
"""

from __future__ import annotations

import torch
from torch import nn


def is_input_major(weight: torch.Tensor) -> bool:
    """A 2-D weight stored (in, out) row-major: the transpose of a contiguous tensor."""
    return weight.dim() == 2 and weight.shape[0] > 1 and weight.stride() == (1, weight.shape[0])


def product_matrix(module: nn.Module) -> torch.Tensor | None:
    """The 2-D (out, in) matrix a module multiplies by as one: an nn.Linear's weight, or MoE experts' stacked up
    projection up_proj.reshape(E·I, H) (the dense kernel, twotower/dense_experts.py); None for other modules."""
    if isinstance(module, nn.Linear):
        return module.weight
    up = getattr(module, "up_proj", None)
    if isinstance(up, torch.Tensor) and up.dim() == 3:
        n_experts, inter, hidden = up.shape
        return up.reshape(n_experts * inter, hidden)
    return None


def wants_input_major(module: nn.Module) -> bool:
    """A wide fp32 product matrix on a CPU, still in the default (out, in) row-major layout."""
    matrix = product_matrix(module)
    return (matrix is not None and matrix.device.type == "cpu" and matrix.dtype == torch.float32
            and matrix.is_contiguous() and matrix.shape[0] >= matrix.shape[1])


def store_input_major(model: nn.Module) -> int:
    """Store every wide fp32 CPU linear weight of `model` input-major, in place; returns how many changed.

    Call it once the towers sit on their devices in their dtypes (a later .to() keeps the strides)."""
    changed = 0
    with torch.no_grad():
        for module in model.modules():
            if not wants_input_major(module):
                continue
            if isinstance(module, nn.Linear):
                module.weight.data = module.weight.data.t().contiguous().t()  # (out, in) view of (in, out) storage
            else:
                # up_proj (E, I, H) as a view of (H, E, I) storage: reshape(E·I, H) is then a free view whose
                # transpose, (H, E·I), is contiguous; up_proj[e] (transformers' loop) is an (I, H) view as before
                module.up_proj.data = module.up_proj.data.permute(2, 0, 1).contiguous().permute(1, 2, 0)
            changed += 1
    return changed


def count_input_major(model: nn.Module) -> int:
    """How many weights `store_input_major` left input-major (for reports: which layout a run measured)."""
    matrices = (product_matrix(module) for module in model.modules())
    return sum(is_input_major(m) for m in matrices if m is not None)
