"""`twotower train`: the recipe's stages as a command (twotower/training.py holds the recipe itself)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .engine import DEFAULT_MODEL_DIR, DTYPE_HELP, DTYPE_METAVAR, IN_CHECKOUT, dtype_flag
from .train_args import ignored_flags
from .training import PROFILES


def add_arguments(parser) -> None:
    parser.add_argument("--stage", required=True, choices=["context", "denoiser", "export"],
                        help="context: stage 1; denoiser: stage 2, on the context tower in --out (or --init-from); "
                             "export: the trained model of --out into --to")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES),
                        help="the recipe's sizes and schedule (default cpu); a --resume keeps its checkpoint's")
    parser.add_argument("--out", default="runs/default",
                        help="run directory (checkpoints, logs, token cache; default %(default)s)")
    # the shipped model's own folder wherever the command runs (a relative "assets/default" made a new folder in
    # the current one, which no load reads, and said nothing)
    parser.add_argument("--to", default=None,
                        help="export: destination (default: assets/default of this install, the model the app and "
                             "the CLI load: the export replaces its weights, tokenizer and training records)")
    parser.add_argument("--steps", type=int, default=None, help="override the profile's number of steps")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the stage's last checkpoint in --out, with its run's own settings (step "
                             "target, batch, lr, dtype, distillation: a flag given changes that one; none there: the "
                             "stage starts afresh); without it, a stage whose checkpoint --out holds is refused, not "
                             "trained over")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N")
    parser.add_argument("--distill-share", type=float, default=None,
                        help="stage 2: share of each batch whose continuation is the context tower's greedy output")
    parser.add_argument("--distill-from", type=float, default=None,
                        help="stage 2: share of the run (of --steps, or of --minutes) trained on corpus text alone "
                             "before self-distillation starts (default 0)")
    parser.add_argument("--distill-batches", type=int, default=None,
                        help="stage 2: steps whose distilled windows one AR run generates ahead (profile's default: "
                             "1 on the CPU, 8 on a GPU, where a decode step costs about the same for more rows)")
    parser.add_argument("--full-mask-share", type=float, default=None,
                        help="stage 2: share of blocks trained fully masked (t = 1) instead of their t ~ U(0, 1) draw (default 0)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="train for this wall-clock budget: warm-up and cosine follow the time spent, the step "
                             "count follows from the device's speed (--steps caps it); a fresh stage, or an "
                             "export's denoiser continued (--resume --init-from DIR), never a checkpoint's resume")
    # spelled as in every other command (engine.dtype_flag), stored under the names the checkpoint records
    parser.add_argument("--dtype", default=None, metavar=DTYPE_METAVAR, type=lambda name: {"bf16": "bfloat16", "fp32": "float32"}[dtype_flag(name)],
                        help=f"override the profile's autocast dtype: {DTYPE_HELP} (default: the profile's; fp32 on a CPU without a fast bf16 path)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the profile's windows per step (cpu 16, gpu 64); recorded with the stage")
    parser.add_argument("--lr", type=float, default=None,
                        help="override the profile's peak learning rate (the schedule is warm-up then cosine to 10 %%)")
    parser.add_argument("--init-from", default=None,
                        help="stage 2: context checkpoint (default <out>/context_ckpt); with --resume and no checkpoint "
                             "in --out, a shipped model to continue training (weights only, lr warms up again)")


def main(args) -> int:
    from . import training  # its names read at the call (the tests stand in for run_stage and export)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    note = ignored_flags(args)
    if note:
        print(note, file=sys.stderr)
    if args.stage != "export" and args.profile == "gpu" and not str(args.device).startswith("cuda"):
        # its windows and batch are a GPU's: one step took 148 s on this project's 2-core CPU, without a word
        print(f"note: --profile gpu on --device {args.device}: its batch and windows are sized for a GPU, a step "
              "takes minutes on a CPU; --profile cpu is sized for one", file=sys.stderr)
    if args.stage == "export":
        if args.to is None and not IN_CHECKOUT:  # export wrote a site-packages/assets/default a later run loaded
            raise ValueError("--to DIR is needed: this installation is not a checkout, so it has no assets/default "
                             "to export into")
        to = args.to if args.to is not None else str(DEFAULT_MODEL_DIR)
        card = Path(to) / "README.md"
        print(training.export(args.out, to))
        if card.is_file():  # export writes weights and records, not the card: its figures are the old model's
            print(f"note: {card} (the model card) was not rewritten and describes the model {to} held "
                  f"before; measure this one with `twotower eval --model {to} --json` and rewrite it with "
                  "scripts/model_card.py (scripts/measure.sh does both)", file=sys.stderr)
        return 0
    record = training.run_stage(args.stage, args.out, args.profile, args.resume, args.steps, args.device, args.init_from,
                       args.distill_share, args.dtype, args.lr, args.minutes, args.distill_from,
                       args.distill_batches, args.full_mask_share, args.batch_size)
    print(json.dumps(record))
    return 0
