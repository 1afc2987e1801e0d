"""Is the shipped denoiser calibrated? Could a softmax temperature raise its tokens per pass at γ = 0.8?

  OMP_NUM_THREADS=1 python benchmarks/calibration/probe.py [batches]     (output: probe.txt beside it)

Validation windows of the corpus (the training windows' shape, 4 per batch, seed 99), every block masked
twice: as in training (t ~ U(0, 1) per block) and fully (t = 1, a decoding block's first pass). For each
masked position: the top probability ("confidence") and whether the top token is the text's. Reliability
bins, the share of positions at confidence ≥ 0.8 (what commits at γ = 0.8) and how often they are right,
and the scalar temperature that minimises the negative log-likelihood (grid 0.5 … 1.5): below 1 would mean
an under-confident model that a temperature could make commit more at no cost. The context tower's own
next-token predictions on the same text ("ctx") are the comparison. Last, the same fully masked blocks on
the context tower's own greedy continuation of each window's prefix (what self-distillation trains on, and
what greedy speculative verification accepts): "right" there means "what AR would write".
"""

import sys

import numpy as np
import torch
import torch.nn.functional as F

from twotower.data import BatchSampler, encode_split
from twotower.distill import self_distill
from twotower.engine import load_engine
from twotower.objectives import masked_block_logits
from twotower.training import PROFILES, TrainConfig

torch.set_num_threads(1)
engine = load_engine()
model = engine.model.eval()
cfg = TrainConfig(**PROFILES["cpu"])
S, prefix = cfg.block_size, cfg.prefix_len
n_blocks = (cfg.seq_len - prefix) // S
valid = BatchSampler(encode_split(engine.tokenizer, "validation", "runs/calibration_data"), cfg.seq_len, 4, 99)
gen = torch.Generator().manual_seed(0)
rows = {"denoiser, t ~ U(0, 1)": [], "denoiser, t = 1": [], "ctx": [], "denoiser, t = 1, on AR's greedy text": []}


def denoiser_rows(tokens, full_share):  # (logits (N, V), targets (N,), block position (N,)) of the masked positions
    logits, targets, masked = masked_block_logits(model, tokens, cfg, gen, full_share)
    return logits, targets, masked.nonzero()[:, 1] % S


with torch.inference_mode():
    for i in range(int(sys.argv[1]) if len(sys.argv) > 1 else 12):
        tokens = torch.from_numpy(valid.batch(i))[:, : prefix + n_blocks * S]  # (B, P + nb·S)
        rows["denoiser, t ~ U(0, 1)"].append(denoiser_rows(tokens, 0.0))
        rows["denoiser, t = 1"].append(denoiser_rows(tokens, 1.0))
        # row j of the context tower's pass predicts target j (its input ends one token earlier)
        hidden = model.context_tower(input_ids=tokens[:, :-1]).last_hidden_state[:, prefix - 1:]  # (B, nb·S, H)
        rows["ctx"].append((model.context_lm_head(hidden).float().flatten(0, 1), tokens[:, prefix:].flatten(),
                            torch.arange(n_blocks * S).repeat(tokens.shape[0]) % S))
        greedy = self_distill(model, tokens, prefix, 1.0)  # (B, P + nb·S): the prefix, then AR's greedy text
        rows["denoiser, t = 1, on AR's greedy text"].append(denoiser_rows(greedy, 1.0))

for kind, parts in rows.items():
    logits, target, pos = (torch.cat([p[j] for p in parts]) for j in range(3))
    conf, top = logits.softmax(-1).max(-1)
    right = (top == target).float()
    print(f"\n== {kind}: {len(target)} positions, NLL {F.cross_entropy(logits, target):.3f}, top-1 right {right.mean():.3f}")
    for lo, hi in [(0, .2), (.2, .4), (.4, .6), (.6, .8), (.8, .9), (.9, .95), (.95, 1.01)]:
        sel = (conf >= lo) & (conf < hi)
        print(f"  confidence {lo:.2f}-{min(hi, 1):.2f}: share {sel.float().mean():.3f}, mean confidence "
              f"{conf[sel].mean():.3f}, right {right[sel].mean():.3f}")
    nll, best = min((F.cross_entropy(logits / T, target).item(), T) for T in np.arange(0.5, 1.51, 0.05))
    print(f"  NLL-optimal temperature {best:.2f} (NLL {nll:.3f})")
    for T in sorted({1.0, round(best, 2)}):
        high = (logits / T).softmax(-1).max(-1).values >= 0.8
        print(f"  temperature {T:.2f}: share at confidence >= 0.8 {high.float().mean():.3f}, right {right[high].mean():.3f}")
    print("  by block position (0, 1, 2, 3, 7, 15): right " +
          ", ".join(f"{right[pos == j].mean():.3f}" for j in (0, 1, 2, 3, 7, 15)))
