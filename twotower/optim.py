"""The optimisation pieces of a training stage (twotower/training.py runs them): the learning-rate schedule over
steps or over a wall-clock budget, which parameters a stage trains and which of them AdamW decays, and what a
diverging step is told."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (training.py imports this module)
    from .training import TrainConfig


def lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10 % of the peak."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def lr_at_time(share: float, warmup_share: float, cfg: TrainConfig) -> float:
    """lr_at over a wall-clock budget: `share` of it spent, the warm-up taking `warmup_share` of it."""
    if share < warmup_share:
        return cfg.lr * max(share, 1e-3) / warmup_share
    progress = min(1.0, (share - warmup_share) / max(1e-9, 1 - warmup_share))
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def trainable_parameters(model, stage: str):
    """Stage 1 trains the context tower and its head; stage 2 everything of the denoiser only."""
    model.requires_grad_(False)
    mods = [model.context_tower, model.context_lm_head] if stage == "context" else [
        model.denoiser_tower, model.lm_head, model.t_embedder, model.t_block, model.scale_shift_tables]
    for mod in mods:
        mod.requires_grad_(True)
    return [p for p in model.parameters() if p.requires_grad]


def decay_groups(model, params) -> tuple[list, list]:
    """AdamW's groups: matrices decay; vectors (norms, biases) and the adaLN tables do not. A table's rows are
    per-channel shift, scale and gate, the gate starting at 1 (the denoiser a no-op copy of the context tower):
    decay pulled it toward 0, not toward 1, and in the shipped denoiser the gates of its Mamba and MoE layers
    average ~0.75 (attention's, which their gradient holds, 0.94 and 1.09)."""
    tables = {id(p) for p in model.scale_shift_tables.parameters()}
    decay = [p for p in params if p.dim() >= 2 and id(p) not in tables]
    return decay, [p for p in params if p.dim() < 2 or id(p) in tables]


def diverged(stage: str, step: int, loss: float, grad_norm: float, lr: float, run_dir: Path, saved: int | None) -> str:
    """The error of a training step whose loss or gradient is not finite (the step is not taken)."""
    kept = (f"{run_dir / (stage + '_ckpt')} keeps step {saved}" if saved else "no checkpoint of this run was saved")
    return (f"the {stage} stage diverged at step {step} (loss {loss:g}, gradient norm {grad_norm:g}) with a "
            f"peak learning rate of {lr:g}: try a lower --lr; the step was not taken and {kept}")
