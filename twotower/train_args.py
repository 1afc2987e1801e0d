"""The checks `twotower train` makes before it reads a corpus or writes a file: the profile's overrides, what
--init-from names, a checkpoint that a run without --resume would overwrite, a resume under another profile,
an export's destination, and the flags a stage does not read. Each refusal is a ValueError naming the flag
(the CLI prints it as one line, exit 2); a run directory's checkpoint is never lost to a typo.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

from .validation import BATCH_LIMIT, check_fraction, check_int
from .path_checks import check_not_a_file, read_json

STAGES = ("context", "denoiser")
# a profile's window shape: no flag sets them, and a checkpoint trained on other windows is another run's
SHAPE_KEYS = ("seq_len", "prefix_len", "block_size")


def check_stage_and_profile(stage: str, profile: str, profiles: dict) -> None:
    if stage not in STAGES:
        raise ValueError(f"--stage {stage!r} trains nothing: choose context or denoiser (export: training.export)")
    if profile not in profiles:
        raise ValueError(f"--profile {profile!r} is not a profile; choose from {', '.join(sorted(profiles))}")


def apply_overrides(cfg, *, distill_share=None, distill_from=None, full_mask_share=None, batch_size=None,
                    distill_batches=None, minutes=None, lr=None):
    """The profile's TrainConfig with the command line's values, each checked (None: the profile's)."""
    if distill_share is not None:
        cfg = replace(cfg, distill_share=check_fraction("--distill-share", distill_share))
    if distill_from is not None:
        if not 0 <= distill_from < 1:
            raise ValueError(f"--distill-from is a share of the run in [0, 1), got {distill_from}")
        cfg = replace(cfg, distill_from=distill_from)
    if full_mask_share is not None:
        if not 0 <= full_mask_share <= 1:
            raise ValueError(f"--full-mask-share is a share of blocks in [0, 1], got {full_mask_share}")
        cfg = replace(cfg, full_mask_share=full_mask_share)
    if batch_size is not None:  # on a launch-bound GPU a larger batch costs little more per step
        # bounded as bench's: --batch-size 100000 asked for 26 GB at the first step, a 40-line traceback
        cfg = replace(cfg, batch_size=check_int("--batch-size", batch_size, maximum=BATCH_LIMIT))
    if distill_batches is not None:
        cfg = replace(cfg, distill_batches=check_int("--distill-batches", distill_batches))
    if minutes is not None:
        # inf passed `> 0`: a budget never spent kept the schedule in its warm-up, lr ~0, for 10**9 steps
        if not (math.isfinite(minutes) and minutes > 0):
            raise ValueError(f"--minutes must be > 0 and finite, got {minutes}")
        cfg = replace(cfg, minutes=minutes)
    if lr is not None:  # the peak of the schedule (a step-count continuation sits past it, on the cosine's tail;
        # a time-budgeted one warms up to it again)
        if not (math.isfinite(lr) and 0 < lr <= 1):  # an AdamW peak above 1 diverges at once (the profiles: 2e-3)
            raise ValueError(f"--lr must be a number > 0 and <= 1 (the profiles peak at 2e-3), got {lr}")
        cfg = replace(cfg, lr=lr)
    rows = round(cfg.distill_share * cfg.batch_size)  # distill.py distils this many windows of each batch
    if cfg.distill_share > 0 and rows == 0:  # e.g. 0.1 of 4 windows: a run that distils nothing, said nowhere
        raise ValueError(f"--distill-share {cfg.distill_share} of a batch of {cfg.batch_size} windows rounds to no "
                         f"distilled window: give at least {1 / (2 * cfg.batch_size):g} (or 0 for none)")
    return cfg


def check_init_from(stage: str, init_from, from_export: bool) -> Path:
    """The folder --init-from names, for a fresh stage 2 (a context checkpoint or an export) or a continued
    export (from_export): it must exist and be a folder, and a fresh stage's must hold a model (a run directory
    given for one is told where its context tower is)."""
    path = Path(init_from)
    if stage == "context":
        raise ValueError("--init-from is read by --stage denoiser only: the context stage starts from random "
                         "weights, or continues its own checkpoint in --out with --resume")
    if not path.exists():
        raise ValueError(f"--init-from {str(path)!r}: no such folder")
    if not path.is_dir():
        raise ValueError(f"--init-from {str(path)!r} is a file, not a folder (a checkpoint folder holds config.json "
                         "and the weights)")
    if (path / "denoiser_ckpt").is_dir() or (path / "context_ckpt").is_dir():  # a run directory, not a model
        if from_export:
            hint = (f"continue its checkpoint with --out {path} --resume, or export it (--stage export) and continue "
                    "the export")
        else:
            hint = f"its context tower is --init-from {path / 'context_ckpt'}"
        raise ValueError(f"--init-from {str(path)!r} is a training run directory, not a model: {hint}")
    state = path / "trainer_state.json"
    if not from_export and state.is_file() and read_trainer_state(state).get("stage") == "denoiser":
        # read as a context tower, its trained denoiser was thrown away without a word (step 1's loss a fresh run's)
        raise ValueError(f"--init-from {str(path)!r} is a denoiser checkpoint, not a context tower: continue it with "
                         f"--out {path.parent} --resume, or start stage 2 from {path.parent / 'context_ckpt'}")
    if not from_export and not (path / "config.json").is_file():  # (an export's record is read first, by the caller)
        raise ValueError(f"--init-from {str(path)!r} holds no model (no config.json): give a context checkpoint "
                         "(<run>/context_ckpt) or an export (--stage export)")
    return path


def refuse_model_folder(run_dir: Path) -> Path:
    """--out is a run directory (checkpoints, token streams, a tokenizer); a model folder (config.json +
    model.safetensors: assets/default, an export) given by mistake would be filled with them and its
    tokenizer.model read as the run's, and the shipped model's folder would stop being one model."""
    if (run_dir / "config.json").is_file() and (run_dir / "model.safetensors").is_file():
        raise ValueError(f"--out {str(run_dir)!r} holds an exported model (config.json, model.safetensors): training "
                         "writes its checkpoints and token streams into --out, so give it a folder of its own "
                         "(e.g. runs/NAME); to start from this model use --init-from, to replace it --stage export "
                         f"--to {run_dir}")
    return run_dir


def refuse_inside_init(run_dir: Path, init_from) -> None:
    """--out inside the model folder --init-from starts from (`--init-from M --out M/run`): the run's token caches,
    tokenizer and checkpoints would fill that model's folder, as refuse_model_folder keeps them out of one given
    as --out itself."""
    if init_from is None or not isinstance(init_from, (str, Path)) or not str(init_from).strip():
        return  # (check_init_from says what is wrong with it)
    model = Path(init_from).expanduser()
    if (model / "config.json").is_file() and run_dir.expanduser().resolve().is_relative_to(model.resolve()):
        raise ValueError(f"--out {str(run_dir)!r} is inside --init-from {str(init_from)!r}, the model it starts "
                         "from: training writes its checkpoints and token streams into --out, so give it a folder "
                         "outside that model's (e.g. runs/NAME)")


def read_trainer_state(path: Path, resumed: bool = False) -> dict:
    """A stage checkpoint's record (trainer_state.json, train_state.save_state's), its fields checked: valid JSON of
    another shape (a list, no step, a step "abc") stopped `train --resume` and export on a KeyError or TypeError.
    resumed: the optimizer is restored from it, so its param_groups must be there too."""
    def damaged(what: str) -> ValueError:
        return ValueError(f"{path} is damaged: {what}; delete {Path(path).parent} to train the stage from the start")

    meta = read_json(path)
    step = meta.get("step") if isinstance(meta, dict) else None
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        raise damaged(f"it holds no step count (a whole number of steps trained) but {step!r}")
    for key, kind in (("train_config", dict), ("segments", list), ("param_groups", list)):
        if key in meta and not isinstance(meta[key], kind):
            raise damaged(f"its {key} is a {type(meta[key]).__name__}, not a {kind.__name__}")
    for key in ("train_config", "param_groups") if resumed else ("train_config",):
        if key not in meta:
            raise damaged(f"it has no {key}")
    return meta


def refuse_overwrite(run_dir: Path, stage: str, minutes) -> None:
    """A stage run without --resume starts from step 0 and saves over `<out>/<stage>_ckpt`: refused while that
    holds a checkpoint (a forgotten --resume overwrote hours of training at the first save, without a word)."""
    state = run_dir / f"{stage}_ckpt" / "trainer_state.json"
    if not state.is_file():
        return
    step = read_trainer_state(state)["step"]
    how = ("continue it with --resume and without --minutes (its schedule is a step count)" if minutes
           else "add --resume to continue it")
    raise ValueError(f"--out {run_dir} already holds a {stage} checkpoint (step {step}) that this run would overwrite: "
                     f"{how}, or give another --out (or delete {state.parent} to train the stage from the start)")


def refuse_context_under_denoiser(run_dir: Path) -> None:
    """A context stage in a folder whose denoiser already trained on its tower: the denoiser holds its own copy of
    that tower, which the export ships, so the new context steps reached no model while the export's records
    counted them (and with context_ckpt deleted, a fresh tower's 2 steps labelled a 112-step one)."""
    state = run_dir / "denoiser_ckpt" / "trainer_state.json"
    if not state.is_file():
        return
    step = read_trainer_state(state)["step"]
    raise ValueError(f"--out {run_dir} holds a denoiser (step {step}) trained on its context tower, and keeps its own "
                     "copy of that tower: context steps trained here would reach no export. Copy the folder without "
                     "its denoiser_ckpt, train the context stage there, then start its denoiser afresh")


def check_resume(meta: dict, run_dir: Path, stage: str, profile: str, profiles: dict, total: int, steps,
                 kept_target: bool = False) -> None:
    """The checkpoint a --resume continues (`meta`, its trainer_state.json as read_trainer_state gives it), checked
    before any corpus work: it must have been trained on the windows of --profile (a gpu run resumed under the
    default cpu profile changed the window shape, lr, batch and step count, said so in a note, then trained on) and
    be short of the steps asked (kept_target: `total` is its own run's target, no --steps given)."""
    saved, given = meta["train_config"], profiles[profile]
    differs = [key for key in SHAPE_KEYS if key in saved and saved[key] != given[key]]
    if differs:
        same = [name for name, p in sorted(profiles.items()) if all(saved.get(k) == p[k] for k in SHAPE_KEYS)]
        hint = f"resume it with --profile {same[0]}" if same else "resume it with the profile it was started with"
        raise ValueError(f"--profile {profile} trains on {', '.join(f'{k} {given[k]}' for k in differs)}; the {stage} "
                         f"checkpoint in {run_dir} was trained on {', '.join(f'{k} {saved[k]}' for k in differs)}: "
                         f"{hint}")
    if meta["step"] >= total:
        asked = (f"--steps {total} leaves" if steps else f"its run's own target, {total} steps, leaves" if kept_target
                 else f"the {profile} profile's {total} steps leave")
        raise ValueError(f"the {stage} checkpoint in {run_dir} is already at step {meta['step']}: {asked} nothing to "
                         "train (give a larger --steps to continue)")


def check_export_paths(run_dir, to_dir) -> tuple[Path, Path]:
    """An export's source and destination, before a weight is read: --out must be a run directory with a trained
    denoiser, and --to must not be that run's own folders or another training run (exporting into --out, or
    into its denoiser_ckpt, replaced the checkpoint's fp32 weights with bf16 ones, or failed half way)."""
    run_dir, to_dir = check_not_a_file("--out", run_dir), check_not_a_file("--to", to_dir)
    if not run_dir.is_dir():
        raise ValueError(f"--out {str(run_dir)!r}: no such folder (export reads the run directory the stages wrote)")
    if not (run_dir / "tokenizer.model").is_file():
        raise ValueError(f"{run_dir} has no tokenizer.model: not a training run directory")
    if not (run_dir / "denoiser_ckpt" / "config.json").is_file():
        done = "only a context stage" if (run_dir / "context_ckpt" / "config.json").is_file() else "no trained stage"
        raise ValueError(f"--out {run_dir} has {done}: export copies a trained denoiser (stage 2); run --stage "
                         f"denoiser --out {run_dir} first")
    run, target = run_dir.resolve(), to_dir.resolve()
    inside = [run / f"{stage}_ckpt" for stage in STAGES] + [run / "data"]
    if target == run or any(target == folder or folder in target.parents for folder in inside):
        raise ValueError(f"--to {str(to_dir)!r} is the run directory or one of its checkpoints: the export would "
                         f"overwrite them; give a folder of its own (e.g. {run_dir / 'export'})")
    if (to_dir / "trainer_state.json").is_file() or any((to_dir / f"{stage}_ckpt").is_dir() for stage in STAGES):
        raise ValueError(f"--to {str(to_dir)!r} holds a training run or checkpoint: the export would replace its "
                         "weights and tokenizer; give another --to")
    if to_dir.is_dir() and any(to_dir.iterdir()) and not _a_two_tower_model(to_dir):
        # an earlier export (or assets/default) is replaced, as documented; a folder of other things is not written
        # into (`--to runs` put a model's files among the run folders; another project's config.json was replaced)
        raise ValueError(f"--to {str(to_dir)!r} holds other files and no two-tower model: give a new or empty folder, "
                         "or an earlier export to replace")
    return run_dir, to_dir


def _a_two_tower_model(folder: Path) -> bool:
    """Whether `folder` holds an export of this project (a config.json naming the two-tower architecture)."""
    import json

    from .config import ARCHITECTURE

    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    architectures = config.get("architectures") if isinstance(config, dict) else None
    return isinstance(architectures, list) and ARCHITECTURE in architectures


# the flags each stage reads (besides --stage), in the order of `twotower train --help`
FLAGS = ("profile", "out", "to", "steps", "resume", "device", "distill_share", "distill_from", "distill_batches",
         "full_mask_share", "minutes", "dtype", "batch_size", "lr", "init_from")
READS = {"export": {"out", "to"},
         "context": {"profile", "out", "steps", "resume", "device", "minutes", "dtype", "batch_size", "lr"}}
READS["denoiser"] = READS["context"] | {"distill_share", "distill_from", "distill_batches", "full_mask_share",
                                        "init_from"}
DEFAULTS = {"profile": "cpu", "device": "cpu", "resume": False}


def ignored_flags(args) -> str | None:
    """The note for flags given to a stage that does not read them (`--stage export --steps 50` exported and
    said nothing of --steps), or None. --init-from on the context stage is refused by run_stage instead."""
    unread = [name for name in FLAGS if name not in READS[args.stage]
              and getattr(args, name, None) not in (None, DEFAULTS.get(name))
              and not (name == "init_from" and args.stage == "context")]
    if not unread:
        return None
    return f"note: --stage {args.stage} reads no {', '.join('--' + name.replace('_', '-') for name in unread)}: ignored"


def settings_changed(saved: dict, now: dict) -> str:
    """'lr 0.003 -> 0.001, total_steps 1000 -> 40': the recipe's settings a resume changes, in words."""
    keys = ("total_steps", "lr", "batch_size", "seq_len", "prefix_len", "block_size", "warmup", "dtype",
            "full_mask_share", "distill_share", "distill_from", "distill_batches")
    return ", ".join(f"{k} {saved[k]} -> {now[k]}" for k in keys if k in saved and k in now and saved[k] != now[k])
