"""aten calls of one training step per stage, at the gpu profile's window shape, for a batch of N windows (1 by
default; 4 windows make 0.4 % more calls: the count hardly depends on the batch). On a GPU where a step is bound
by op dispatch, a step takes about calls × ~10 us whatever the batch (scripts/gpu_train.sh). aten_count.txt: its
output here (CPU, 2026-12-04, sixth session), batch 1 then 4.

  PYTHONPATH=. python benchmarks/train_step/aten_count.py [N]
"""
import sys

import torch

sys.path.insert(0, "benchmarks/train_step")
from profile_step import aten_calls
from twotower import build_model
from twotower.objectives import context_features, context_loss, denoiser_loss
from twotower.training import PROFILES, TrainConfig, trainable_parameters
cfg = TrainConfig(**PROFILES["gpu"])
model = build_model("default").train()
gen = torch.Generator().manual_seed(0)
rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1
tokens = torch.randint(5, model.config.vocab_size, (rows, cfg.seq_len), generator=gen)
def den():
    trainable_parameters(model, "denoiser"); denoiser_loss(model, tokens, cfg, gen).backward()
def ctx():
    trainable_parameters(model, "context"); context_loss(model, tokens).backward()
den(); ctx()
print("aten calls, stage-2 step (fwd+bwd, features incl.):", aten_calls(den))
print("aten calls, context_features:", aten_calls(lambda: context_features(model, tokens, cfg.prefix_len, cfg.block_size)))
print("aten calls, stage-1 step:", aten_calls(ctx))
