"""Training recipe of the embedded default model, in two stages (one command each).

  twotower train --stage context  --profile cpu --out runs/default   # 1: context tower as a causal LM
  twotower train --stage denoiser --profile cpu --out runs/default   # 2: denoiser, context tower frozen
  twotower train --stage export   --out runs/default --to assets/default

The losses are twotower/objectives.py (stage 2 trains every block of a window in one pass).
Checkpoints (safetensors + JSON, no pickle; twotower/train_state.py) are written every `save_every` steps;
`--resume` continues (without it, a stage whose checkpoint --out holds is refused: twotower/train_args.py
checks every flag before any corpus work or write). `--minutes M` trains a stage on a wall-clock budget instead of a step count (a GPU
lease: scripts/gpu_train.sh), a fresh stage or, with `--resume --init-from EXPORT`, that export's denoiser
(training accumulates over leases); self-distillation targets come from twotower/distill.py.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from .objectives import context_loss, denoiser_loss
from .optim import decay_groups, diverged, lr_at, lr_at_time, trainable_parameters
from .interrupts import StopAtStepEnd
from .train_args import (SHAPE_KEYS, apply_overrides, check_export_paths, check_init_from, check_resume,
                         check_stage_and_profile, read_trainer_state, refuse_context_under_denoiser,
                         refuse_inside_init, refuse_model_folder, refuse_overwrite, settings_changed)
from .validation import check_device, check_int
from .path_checks import check_not_a_file, make_output_dir, read_json

PROFILES = {
    # 2 CPU cores, ~90 minutes for both stages together.
    # bf16 autocast: this CPU has avx512_bf16, and the matmuls (lm_head first) dominate a step.
    "cpu": dict(seq_len=256, batch_size=16, lr=3e-3, context_steps=1000, denoiser_steps=450, prefix_len=64,
                block_size=16, warmup=60, eval_every=250, save_every=50, dtype="bfloat16", distill_share=0.0),
    # One CUDA device: bf16 autocast, bigger batches, many more tokens.
    "gpu": dict(seq_len=512, batch_size=64, lr=2e-3, context_steps=6000, denoiser_steps=4000, prefix_len=128,
                block_size=16, warmup=200, eval_every=500, save_every=500, dtype="bfloat16", distill_share=0.0,
                distill_batches=8),
}


@dataclass
class TrainConfig:
    seq_len: int
    batch_size: int
    lr: float
    context_steps: int
    denoiser_steps: int
    prefix_len: int
    block_size: int
    warmup: int
    eval_every: int
    save_every: int
    dtype: str
    distill_share: float
    distill_from: float = 0.0  # share of the run (steps, or time with `minutes`) before distillation starts
    minutes: float | None = None  # a wall-clock budget: warm-up and cosine run over time, not steps
    distill_batches: int = 1  # steps whose distilled windows one AR run generates (twotower.distill)
    full_mask_share: float = 0.0  # stage 2: share of blocks trained fully masked (t = 1) instead of their t ~ U(0, 1)
    seed: int = 0
    weight_decay: float = 0.1
    eval_batches: int = 8


STEPS_LIMIT = 10_000_000  # ~5,000x the shipped stages' steps


def _cpu_runs_bf16_fast() -> bool:
    """oneDNN's own test for a usable bf16 instruction set (AVX-512 or newer); True when it cannot say."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return True


def run_stage(stage: str, run_dir, profile: str = "cpu", resume: bool = False, steps: int | None = None,
              device: str = "cpu", init_from: str | None = None, distill_share: float | None = None,
              dtype: str | None = None, lr: float | None = None, minutes: float | None = None,
              distill_from: float | None = None, distill_batches: int | None = None,
              full_mask_share: float | None = None, batch_size: int | None = None) -> dict:
    """Train one stage; returns the last log record. Resumable from `<run_dir>/<stage>_ckpt`.

    With `minutes`, the training loop (validation included; model loading and corpus encoding before it
    not) runs for that wall-clock budget, `steps` if given capping it: warm-up and cosine follow the time
    spent, so the stage ends on its schedule's tail at whatever speed the device has (unless the `steps` cap
    comes first: the run then stops where the time-based schedule stands).
    """
    from tqdm import tqdm

    from . import build_model
    from .checkpoint import from_pretrained
    from .data import BatchSampler, encode_split, train_tokenizer
    from .distill import DistillAhead
    from .tokenizer import SentencePieceTokenizer
    from .train_state import (adopt_context, adopt_export, check_same_tokenizer, export_record, load_export,
                              load_generator_state, load_state, recover_checkpoint, save_state, segment_history)

    check_stage_and_profile(stage, profile, PROFILES)
    cfg = TrainConfig(**PROFILES[profile])
    check_device("--device", device)
    if steps is not None:  # 0 would mean "the profile's" and a negative count nothing at all: both refused
        steps = check_int("--steps", steps, maximum=STEPS_LIMIT)  # 10**12 ran, its ETA 168 million hours
    cfg = apply_overrides(cfg, distill_share=distill_share, distill_from=distill_from, full_mask_share=full_mask_share,
                          batch_size=batch_size, distill_batches=distill_batches, minutes=minutes, lr=lr)
    run_dir = refuse_model_folder(check_not_a_file("--out", run_dir))  # before anything is read or trained
    refuse_inside_init(run_dir, init_from)
    if stage == "context":
        refuse_context_under_denoiser(run_dir)
    for each in ("context", "denoiser"):  # a save killed between its renames: its last whole checkpoint back
        recover_checkpoint(run_dir, each)
    ckpt_state = run_dir / f"{stage}_ckpt" / "trainer_state.json"
    resuming = resume and ckpt_state.is_file()  # from this stage's own checkpoint
    from_export = resume and stage == "denoiser" and not resuming and init_from is not None
    fresh_denoiser = stage == "denoiser" and not resuming and not from_export  # stage 2 from a context tower
    if init_from is not None and (stage == "context" or not resuming):  # (a resume reads its checkpoint: said below)
        init_path = check_init_from(stage, init_from, from_export)
        if fresh_denoiser:  # the context tower's tokenizer, before anything of --out is judged or touched
            tower_tokenizer = context_tokenizer(init_path, run_dir)
            check_same_tokenizer(tower_tokenizer.parent, run_dir, "the context tower reads another tokenizer")
    if cfg.minutes and resuming:  # a checkpoint's own schedule is a step count; only an export's weights (Adam
        # restarted) take a new one over the budget
        budgeted = read_trainer_state(ckpt_state)["train_config"].get("minutes")
        why = (f"its {budgeted}-minute budget's schedule followed the clock of the run that stopped, which a new "
               "run does not have" if budgeted else "its schedule is a step count")
        raise ValueError(f"--minutes cannot resume the {stage} checkpoint in {run_dir} ({why}): resume it without "
                         "--minutes (--steps N: to step N), or export it and continue the export into an empty --out "
                         "with --resume --init-from")
    if cfg.minutes and resume and not from_export:
        raise ValueError("--minutes starts a stage afresh (its schedule is the time budget); drop --resume, or "
                         "continue an export's denoiser with --stage denoiser --resume --init-from DIR")
    if not resume:  # a forgotten --resume must not train over the checkpoint
        refuse_overwrite(run_dir, stage, cfg.minutes)
    profile_steps = cfg.context_steps if stage == "context" else cfg.denoiser_steps
    target = None
    if resuming:  # what the command line leaves out, the checkpoint's last run set: a plain --resume took the
        # profile's defaults instead (its batch 2 -> 16, 112 steps -> 1000, distillation off, fp32 -> bf16)
        meta = read_trainer_state(ckpt_state)  # read once: checked below, and its last run's settings kept
        kept = segment_history(meta.get("segments"), meta["step"], meta["train_config"])[-1].get("train_config") or {}
        given = dict(batch_size=batch_size, lr=lr, distill_share=distill_share, distill_from=distill_from,
                     distill_batches=distill_batches, full_mask_share=full_mask_share)
        cfg = replace(cfg, **{key: kept[key] for key, value in given.items() if value is None and key in kept})
        dtype = kept.get("dtype") if dtype is None else dtype
        target = kept.get("total_steps")
    total = steps or (10**9 if cfg.minutes else target or profile_steps)  # with a time budget, `steps` is a cap
    if resuming:  # the checkpoint's profile and step, before the corpus is encoded
        check_resume(meta, run_dir, stage, profile, PROFILES, total, steps, kept_target=target is not None)
    if from_export:  # before the tokenizer is looked for (the export brings its own) and the corpus encoded
        exported = export_record(Path(init_from))  # checked before --out is made and filled
        if exported["steps"] >= total:
            raise ValueError(f"{init_from} already has {exported['steps']} denoiser steps; --steps must be larger "
                             "to continue")
        if not (init_path / "config.json").is_file():
            raise ValueError(f"--init-from {init_from} holds no model (no config.json beside its training_info.json)")
    if fresh_denoiser:
        source = Path(init_from) if init_from else run_dir / "context_ckpt"
        if not (source / "config.json").is_file():  # before the tokenizer is trained and the corpus encoded
            raise ValueError(f"stage 2 starts from a trained context tower; none at {source} (run --stage context first)")
    if stage == "denoiser" and cfg.distill_share == 0 and (distill_from is not None or distill_batches is not None):
        print("note: --distill-from and --distill-batches act with --distill-share > 0 only: ignored", file=sys.stderr)
    if resume and not resuming and not from_export:
        print(f"no {stage} checkpoint in {run_dir}: starting the stage afresh", file=sys.stderr)
    if resuming and init_from is not None:
        print(f"note: --resume continues the {stage} checkpoint in {run_dir} (step {meta['step']}): --init-from "
              f"{init_from} is not read", file=sys.stderr)
    if dtype is not None:
        cfg = replace(cfg, dtype=dtype)
    elif cfg.dtype == "bfloat16" and torch.device(device).type == "cpu" and not _cpu_runs_bf16_fast():
        # measured on an AVX2-only host: a bf16-autocast step took ~5x as long as the same step in fp32
        print("this CPU has no fast bf16 path: training in float32 (--dtype bfloat16 forces bf16 autocast)",
              file=sys.stderr)  # stdout carries the JSON record alone
        cfg = replace(cfg, dtype="float32")
    if resuming:
        changed = settings_changed(kept, {**asdict(cfg), "total_steps": total})
        if changed:  # allowed (the segment history records it), but a flag left off by mistake changes the run
            print(f"resuming with other settings than the checkpoint's: {changed} (as given; what the command line "
                  "leaves out, the checkpoint's run set)", file=sys.stderr)
    if from_export:  # windows of other shapes than the export trained on are allowed, but said (the README's
        # continuation of the shipped model without --profile gpu took the cpu profile's 256-token windows silently)
        shapes = {key: value for key, value in asdict(cfg).items() if key in SHAPE_KEYS}
        changed = settings_changed(exported.get("train_config") or {}, shapes)
        if changed:
            print(f"note: {init_from} was trained on other windows: {changed} (the {profile} profile's; --profile "
                  "picks another)", file=sys.stderr)
        # every check done: now --out is made and seeded
        adopt_export(Path(init_from), run_dir, exported)
    make_output_dir("--out", run_dir)
    context_from = None  # a fresh stage 2 on an export's context tower: that tower's stage record
    if fresh_denoiser and init_from:
        context_from = adopt_context(Path(init_from), run_dir)  # before the corpus: a tokenizer mismatch fails fast
    tok_path = run_dir / "tokenizer.model"
    if fresh_denoiser and init_from and not tok_path.is_file():  # (an export's was adopted just above)
        shutil.copy(tower_tokenizer, tok_path)
    if not tok_path.is_file():
        train_tokenizer(run_dir)
    tokenizer = SentencePieceTokenizer(tok_path)
    train = BatchSampler(encode_split(tokenizer, "train", run_dir / "data"), cfg.seq_len, cfg.batch_size, cfg.seed)
    valid = BatchSampler(encode_split(tokenizer, "validation", run_dir / "data"), cfg.seq_len, cfg.batch_size, cfg.seed + 1)

    start, log, opt_state, segments = 0, [], None, []
    if resuming:
        model, opt_state, start, log, segments = load_state(run_dir, stage, None)
    elif from_export:
        model, start, log, segments = load_export(Path(init_from), run_dir, exported)
    elif stage == "context":
        torch.manual_seed(cfg.seed)
        model = build_model("default", seed=cfg.seed)
    else:
        model = from_pretrained(source)  # `source`: checked above, before the corpus
        model.init_denoiser_from_context()  # the release's starting point: the denoiser is a copy
    model.to(device).train()
    params = trainable_parameters(model, stage)
    decay, no_decay = decay_groups(model, params)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    if opt_state is not None:
        try:
            optimizer.load_state_dict(opt_state)
        except ValueError:  # torch: "a parameter group that doesn't match the size of optimizer's group"
            raise ValueError(f"the {stage} checkpoint in {run_dir} holds Adam moments for other parameter groups "
                             "(it was saved before the adaLN tables left weight decay, 2026-12-05): export it "
                             "(--stage export --to DIR) and continue the export (--resume --init-from DIR)") from None
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16, enabled=cfg.dtype == "bfloat16")
    gen = torch.Generator().manual_seed(cfg.seed)
    # a resume draws on where the saved run stopped (seeding with seed + start, as once, started a new stream:
    # its masks differed from an uninterrupted run's and overlapped another seed's)
    saved = load_generator_state(run_dir, stage) if resuming else None
    if saved is not None:
        gen.set_state(saved)
    elif start:  # a checkpoint from before the state was saved, or a continued export: as before
        gen.manual_seed(cfg.seed + start)

    def loss_of(batch: torch.Tensor, generator=None, full_mask_share: float = 0.0):
        with autocast:
            if stage == "context":
                return context_loss(model, batch)
            return denoiser_loss(model, batch, cfg, generator, full_mask_share)

    @torch.no_grad()
    def validate() -> float:
        model.eval()
        vgen = torch.Generator().manual_seed(1234)  # the same masks every time: comparable curves
        losses = [float(loss_of(torch.from_numpy(valid.batch(i)).to(device), vgen)) for i in range(cfg.eval_batches)]
        model.train()
        return sum(losses) / len(losses)

    segment = {"from_step": start, "to_step": total, "train_config": {**asdict(cfg), "total_steps": total}}
    # An export holds weights only: Adam's moments start from zero, so the lr warms up again over
    # `warmup` steps instead of jumping into the middle of the cosine with unscaled first updates. On a time
    # budget the whole schedule (its own warm-up, then the cosine) starts again over the budget instead.
    rewarm = cfg.warmup if from_export and not cfg.minutes else 0
    if from_export:
        segment["init"] = {"from_export": str(init_from), "optimizer": "moments restarted", "rewarmup_steps": rewarm}
        if cfg.minutes:
            segment["init"]["schedule"] = f"warm-up and cosine again over {cfg.minutes} minutes"
    elif context_from is not None:
        segment["init"] = {"context_from": str(init_from), "context_steps": context_from.get("steps")}
    segments = [*segments, segment]
    tokens_per_step = cfg.batch_size * (cfg.seq_len if stage == "context" else cfg.seq_len - cfg.prefix_len)
    budget = cfg.minutes * 60 if cfg.minutes else None
    # stage 1 reads seq_len tokens and predicts the seq_len after them (a window holds seq_len + 1; it read one
    # fewer than validation and tokens_per_step count); stage 2's windows are cut to whole blocks (as
    # objectives.masked_block_logits would cut them) before any distillation
    usable = cfg.seq_len + 1 if stage == "context" else \
        cfg.prefix_len + (cfg.seq_len - cfg.prefix_len) // cfg.block_size * cfg.block_size

    def window_at(index: int) -> torch.Tensor:  # (B, usable): the training window of step `index`
        return torch.from_numpy(train.batch(index)[:, :usable]).to(device)

    distill_ahead = DistillAhead(model, cfg.prefix_len, cfg.distill_share, cfg.distill_batches)
    shown_val = "–"  # no validation yet
    bar = tqdm(initial=start, total=None if budget else total, desc=f"train {stage}", dynamic_ncols=True)
    t_start = t_last = time.perf_counter()
    step, record, step_time = start, {}, 0.0
    val_time = None  # measured at the first validation; until then a guess (forward only: ~1/3 of a step)
    ahead_s = 0.0  # the last distillation run's seconds
    reserve = 0.0  # of the budget, kept for the final validation: the schedule runs over the rest
    saved = start if resuming else None  # the step the checkpoint on disk holds
    signals = StopAtStepEnd(f"train {stage}")
    try:
        with signals:
            while step < total:
                # the share of the run done: what the time-based schedule and the distillation switch read
                share = (t_last - t_start) / max(1e-9, budget - reserve) if budget else step / total
                lr_now = lr_at_time(share, cfg.warmup / profile_steps, cfg) if budget else lr_at(step, total, cfg)
                for group in optimizer.param_groups:
                    group["lr"] = lr_now * (min(1.0, (step - start + 1) / rewarm) if rewarm else 1.0)
                distilling = stage == "denoiser" and cfg.distill_share > 0 and share >= cfg.distill_from
                ran_ahead = 0.0  # this step's distillation run, if it made one
                if distilling:  # the distilled window, generated `distill_batches` steps ahead
                    fresh, tick = not distill_ahead.ready(step), time.perf_counter()
                    with autocast:
                        batch = distill_ahead(step, window_at, total - 1)
                    if fresh:
                        ran_ahead = ahead_s = time.perf_counter() - tick
                else:
                    batch = window_at(step)
                loss = loss_of(batch, gen, cfg.full_mask_share)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0)
                loss_value = float(loss.detach())  # read once: for the check and for the log record
                if not (math.isfinite(loss_value) and math.isfinite(float(grad_norm))):
                    # a NaN step would be taken, then saved over the last good checkpoint (--lr 1e30 ran on to
                    # exit 0 with NaN weights, found only by the next stage): it ends here instead
                    raise ValueError(diverged(stage, step + 1, loss_value, float(grad_norm), cfg.lr, run_dir, saved))
                optimizer.step()
                step += 1
                now = time.perf_counter()
                step_time, t_last = now - t_last, now
                train_s = step_time - ran_ahead  # the step itself, its window's generation apart
                # a budgeted run stops when the next step and the final validation would not fit
                reserve = val_time if val_time is not None else cfg.eval_batches * train_s / 3
                # the next step's time: this one's, and a distillation run if it distils and has no window ready
                # (~30 s on a GPU with 96 batches ahead: a budget overran by that much; a first run, not timed
                # yet, is left to the caller's margin: gpu_train.sh's)
                next_share = (now + train_s - t_start) / max(1e-9, budget - reserve) if budget else step / total
                next_distills = stage == "denoiser" and cfg.distill_share > 0 and next_share >= cfg.distill_from
                next_s = train_s + (ahead_s if next_distills and not distill_ahead.ready(step) else 0.0)
                last = step == total or (budget is not None and now - t_start + next_s + reserve > budget) \
                    or signals.requested is not None  # a signal: this step is the last, validated and saved
                record = {"step": step, "loss": round(loss_value, 4), "lr": optimizer.param_groups[0]["lr"],
                          # this step's training tokens over its own time (the validation and saves between are
                          # not in it, nor the generation of distilled windows: `time` has the wall clock)
                          "tokens_per_s": round(tokens_per_step / max(train_s, 1e-9), 1), "time": time.time()}
                if stage == "denoiser" and not distilling and cfg.distill_share > 0:
                    record["distill_share"] = 0.0
                if step % cfg.eval_every == 0 or last:
                    record["val_loss"] = round(validate(), 4)
                    val_time = time.perf_counter() - now
                    t_last = time.perf_counter()  # validation is not a training step's time
                log.append(record)
                bar.update(1)
                # the last validation's loss, as the loss is shown (it read "val=" empty between validations,
                # then tqdm's short "val=9" for 9.0026)
                shown_val = f"{record['val_loss']:.3f}" if "val_loss" in record else shown_val
                bar.set_postfix(loss=f"{record['loss']:.3f}", tok_s=f"{record['tokens_per_s']:.0f}", val=shown_val)
                if step % cfg.save_every == 0 or last:
                    if budget:
                        segment["train_config"]["total_steps"] = step  # as far as the budget went
                    with signals.holding():  # a second Ctrl-C waits for the checkpoint to be whole
                        save_state(run_dir, model, optimizer, step, stage, log, cfg, segments, gen)
                        saved = step
                    t_last = time.perf_counter()  # nor is a save: the next step's tokens_per_s read it as training
                if last:
                    break
    except KeyboardInterrupt:  # a second signal (or one outside the loop): say what is kept (the training since
        # the last save is not)
        bar.close()
        kept = (f"{run_dir / (stage + '_ckpt')} holds step {saved}: --resume continues from it" if saved
                else f"no checkpoint was saved yet (one every {cfg.save_every} steps)")
        print(f"\ntrain {stage}: stopped at step {step}; {kept}", file=sys.stderr)
        raise
    bar.close()
    if signals.requested is not None:
        print(f"train {stage}: stopped ({signals.requested}) at step {step}, which {run_dir / (stage + '_ckpt')} "
              "holds: --resume continues from it", file=sys.stderr)
        signals.stop()
    return record


def export(run_dir, to_dir, notes: dict | None = None) -> Path:
    """Copy the trained model (bf16 weights: the shipped file stays small) and its tokenizer."""
    from .checkpoint import from_pretrained, save_pretrained
    from .corpus import describe
    from .data import CORPUS_RECORD

    from .train_state import recover_checkpoint, stage_record

    if check_not_a_file("--out", run_dir).is_dir():  # a save killed between its renames: its checkpoint back
        recover_checkpoint(Path(run_dir), "denoiser")
    run_dir, to_dir = check_export_paths(run_dir, to_dir)  # before a weight is read or anything written
    model = from_pretrained(run_dir / "denoiser_ckpt")
    # every record is read before anything is written: a damaged one leaves no half-made export behind
    record = run_dir / "data" / CORPUS_RECORD  # the corpus the cached token streams came from, else this Python's
    info = {"corpus": read_json(record) if record.is_file() else describe(), **(notes or {})}
    inherited_path = run_dir / "inherited_info.json"  # a run continued from an export (see adopt_export)
    inherited = read_json(inherited_path) if inherited_path.is_file() else {}
    logs = [stage for stage in ("context", "denoiser") if (run_dir / f"{stage}_log.jsonl").is_file()]
    for stage in ("context", "denoiser"):
        state_path = run_dir / f"{stage}_ckpt" / "trainer_state.json"
        if state_path.is_file():
            info[f"{stage}_stage"] = stage_record(read_trainer_state(state_path))
        elif f"{stage}_stage" in inherited:
            info[f"{stage}_stage"] = inherited[f"{stage}_stage"]
    make_output_dir("--to", to_dir)
    save_pretrained(model, to_dir, dtype=torch.bfloat16)  # written whole or not at all
    try:
        shutil.copy(run_dir / "tokenizer.model", to_dir / "tokenizer.model")
        for stage in ("context", "denoiser"):
            log = to_dir / f"train_{stage}_log.jsonl"
            if stage in logs:
                shutil.copy(run_dir / f"{stage}_log.jsonl", log)
            else:  # an earlier export's log there would describe another run
                log.unlink(missing_ok=True)
        (to_dir / "training_info.json").write_text(json.dumps(info, indent=1))
    except OSError as exc:
        raise ValueError(f"--to {to_dir}: the weights were exported but its records could not be written "
                         f"({exc.strerror or exc}): export again") from None
    return to_dir


def context_tokenizer(init_path: Path, run_dir: Path) -> Path:
    """The tokenizer a stage-2 run's --init-from context tower reads: beside it (an export), or in the run
    directory holding it (a run's context_ckpt); else --out's own, given by hand. With none, stage 2 trained a
    new tokenizer, and the frozen tower read ids of another vocabulary without a word."""
    for folder in (init_path, init_path.parent, run_dir):
        if (folder / "tokenizer.model").is_file():
            return folder / "tokenizer.model"
    raise ValueError(f"--init-from {init_path} has no tokenizer.model beside it or in {init_path.parent}: stage 2 "
                     "would train a new tokenizer the context tower never read; put the tokenizer it was trained "
                     f"with there (or in --out {run_dir})")
