"""Training state on disk: resumable checkpoints (model via safetensors, Adam's moments flattened into a
second safetensors file, JSON metadata; no pickle) and continuing a shipped model's denoiser from its export.

The segment history records every run and resume of a stage with its own settings; the model card reads it.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from .train_args import read_trainer_state
from .path_checks import make_output_dir, read_json

RNG_FILE = "rng.safetensors"  # the stage's mask generator, beside the optimizer's moments


def save_state(run_dir: Path, model, optimizer, step: int, stage: str, log: list[dict], cfg,
               segments: list[dict], generator: torch.Generator | None = None) -> None:
    """generator: the stage's mask generator, whose state a resume restores (so a resumed run draws the masks
    an uninterrupted one would)."""
    import shutil

    from safetensors.torch import save_file

    from .checkpoint import save_pretrained

    # everything is written into a folder of its own, then swapped in: a save killed half way (the weights new,
    # trainer_state.json old) resumed the new weights at the old step with the old Adam moments
    ckpt, saving, previous = checkpoint_folders(run_dir, stage)
    shutil.rmtree(saving, ignore_errors=True)  # a save killed before its swap
    save_pretrained(model, saving)
    flat, groups = {}, optimizer.state_dict()
    for idx, state in groups["state"].items():
        for key, value in state.items():
            flat[f"{idx}.{key}"] = value.detach().cpu().contiguous() if torch.is_tensor(value) else torch.tensor(value)
    save_file(flat, str(saving / "optimizer.safetensors"))
    meta = {"stage": stage, "step": step, "param_groups": groups["param_groups"], "train_config": asdict(cfg),
            "segments": [*segments[:-1], {**segments[-1], "to_step": step}]}  # the last one: as far as it got
    (saving / "trainer_state.json").write_text(json.dumps(meta, indent=1))
    if generator is not None:
        save_file({"mask_generator": generator.get_state()}, str(saving / RNG_FILE))
    if ckpt.exists():
        # what a save stopped while it removed `previous` left (the swap was done: ckpt is whole) would make the
        # rename below fail at every later save ("Directory not empty")
        shutil.rmtree(previous, ignore_errors=True)
        ckpt.rename(previous)  # (a crash between the two renames: recover_checkpoint puts it back)
    saving.rename(ckpt)
    shutil.rmtree(previous, ignore_errors=True)
    log_path = run_dir / f"{stage}_log.jsonl"  # whole or not at all: a cut line made every --resume fail
    log_path.with_suffix(".partial").write_text("".join(json.dumps(r) + "\n" for r in log))
    os.replace(log_path.with_suffix(".partial"), log_path)


def checkpoint_folders(run_dir: Path, stage: str) -> tuple[Path, Path, Path]:
    """A stage's checkpoint, the folder a save writes before swapping it in, and the one it swaps out."""
    ckpt = Path(run_dir) / f"{stage}_ckpt"
    return ckpt, ckpt.with_name(ckpt.name + ".saving"), ckpt.with_name(ckpt.name + ".previous")


def recover_checkpoint(run_dir: Path, stage: str) -> None:
    """A save killed between its two renames left the last whole checkpoint as <stage>_ckpt.previous: put it back
    (a half-written <stage>_ckpt.saving is never read; the next save clears it)."""
    ckpt, _, previous = checkpoint_folders(run_dir, stage)
    if not ckpt.exists() and (previous / "trainer_state.json").is_file():
        previous.rename(ckpt)


def load_generator_state(run_dir: Path, stage: str) -> torch.Tensor | None:
    """The mask generator's state saved with a stage's checkpoint; None for a checkpoint from before it was."""
    from safetensors.torch import load_file

    path = run_dir / f"{stage}_ckpt" / RNG_FILE
    return load_file(str(path))["mask_generator"] if path.is_file() else None


def load_state(run_dir: Path, stage: str, optimizer):
    from safetensors.torch import load_file

    from .checkpoint import from_pretrained

    ckpt = run_dir / f"{stage}_ckpt"
    meta = read_trainer_state(ckpt / "trainer_state.json", resumed=True)
    model = from_pretrained(ckpt)
    flat = load_file(str(ckpt / "optimizer.safetensors"))
    state: dict = {}
    for key, value in flat.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    log = _read_log(run_dir / f"{stage}_log.jsonl")
    segments = segment_history(meta.get("segments"), meta["step"], meta["train_config"])
    return model, {"state": state, "param_groups": meta["param_groups"]}, meta["step"], log, segments


def _read_log(path: Path) -> list[dict]:
    """A stage's training log (JSON lines), empty if the run has none yet."""
    if not path.is_file():
        return []
    records = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as exc:  # was json's bare "Expecting value: line 9 column 1", no file named
            raise ValueError(f"{path}:{number} is not a JSON record ({exc.msg}): the training log is damaged; "
                             "remove that line (or the file) to resume without it") from None
    return records


def _training_info(model_dir: Path) -> dict:
    """An export's training record (training_info.json), empty if it has none."""
    path = model_dir / "training_info.json"
    return read_json(path) if path.is_file() else {}


def segment_history(segments: list[dict] | None, steps: int | None, train_config: dict) -> list[dict]:
    """The history of runs and resumes, each with its own settings (a resume may change the number of
    steps, hence the schedule, or the distillation share); older records had one run and no history."""
    return segments or [{"from_step": 0, "to_step": steps, "train_config": train_config}]


def export_record(model_dir: Path) -> dict:
    """An export's denoiser-stage record (steps, train_config, segments), checked for what a continuation
    needs (that record, its tokenizer) without writing anything."""
    info = _training_info(model_dir)
    if "denoiser_stage" not in info:
        raise ValueError(f"{model_dir} has no training_info.json with a denoiser stage: nothing to continue")
    _check_tokenizer(model_dir)
    return info["denoiser_stage"]


def adopt_export(model_dir: Path, run_dir: Path, record: dict | None = None) -> dict:
    """Seed a run directory from a shipped model: its tokenizer, logs and stage records (no weights yet).
    Returns the model's denoiser-stage record (steps, train_config, segments); `record`: that record as a
    caller already read it with export_record (not read again)."""
    import shutil

    if record is None:  # checked before --out is made: a refused continuation leaves no empty folder
        record = export_record(model_dir)
    make_output_dir("--out", run_dir)
    _adopt_tokenizer_and_logs(model_dir, run_dir, ("context", "denoiser"), "use an empty --out directory")
    shutil.copy(model_dir / "training_info.json", run_dir / "inherited_info.json")  # export() reads the context stage's record here
    return record


def _adopt_tokenizer_and_logs(model_dir: Path, run_dir: Path, stages: tuple[str, ...], why: str) -> None:
    """A run seeded from an export takes its tokenizer (a run directory that has another one fails: `why` says
    what to do) and the training logs of `stages`, which export() copies on."""
    import shutil

    theirs = _check_tokenizer(model_dir)
    check_same_tokenizer(model_dir, run_dir, why)
    shutil.copy(theirs, run_dir / "tokenizer.model")
    for stage in stages:
        if (model_dir / f"train_{stage}_log.jsonl").is_file():
            shutil.copy(model_dir / f"train_{stage}_log.jsonl", run_dir / f"{stage}_log.jsonl")


def check_same_tokenizer(model_dir: Path, run_dir: Path, why: str) -> None:
    """A model's tokenizer.model and a run directory's, where both have one, must be the same file (the run's
    token ids are the model's embedding rows): checked before anything is written. `why` says what to do."""
    tok, theirs = Path(run_dir) / "tokenizer.model", Path(model_dir) / "tokenizer.model"
    if tok.is_file() and theirs.is_file() and tok.read_bytes() != theirs.read_bytes():
        raise ValueError(f"{tok} differs from {theirs}: {why}")


def _check_tokenizer(model_dir: Path) -> Path:
    """The tokenizer.model a run seeded from an export adopts (its token ids are the weights' rows)."""
    from .tokenizer import SentencePieceTokenizer

    path = model_dir / "tokenizer.model"
    if not path.is_file():
        raise ValueError(f"{model_dir} has no tokenizer.model: an export keeps its tokenizer beside its weights")
    # read before it is copied: a damaged one was copied into --out first, and its error then named the copy,
    # which made every later run on that --out fail on the tokenizer mismatch instead
    SentencePieceTokenizer(path)
    return path


def stage_record(state: dict) -> dict:
    """A stage's record in an export's training_info.json, from its checkpoint's trainer_state.json."""
    return {"steps": state["step"], "train_config": state["train_config"], "segments": state.get("segments", [])}


def adopt_context(model_dir: Path, run_dir: Path) -> dict | None:
    """A fresh stage 2 on another model's context tower (--init-from an export, or another run's context_ckpt):
    keep that tower's stage record and log, so this run's export says how its context tower was trained (from a
    context_ckpt, the export had no context stage, log or init at all). None if it has none."""
    info = _training_info(model_dir)
    if "context_stage" not in info:
        return _adopt_context_checkpoint(model_dir, run_dir)
    # the tokenizer the context tower was trained with (else run_stage would train one of its own)
    _adopt_tokenizer_and_logs(model_dir, run_dir, ("context",), "the context tower reads another tokenizer")
    (run_dir / "inherited_info.json").write_text(json.dumps({"context_stage": info["context_stage"]}, indent=1))
    return info["context_stage"]


def _adopt_context_checkpoint(ckpt: Path, run_dir: Path) -> dict | None:
    """adopt_context for a run's context_ckpt (its trainer_state.json, and its run's context_log.jsonl beside it),
    unless that run is this one (its export reads the stage there itself)."""
    import shutil

    state_path = ckpt / "trainer_state.json"
    if not state_path.is_file() or ckpt.resolve().parent == run_dir.resolve():
        return None
    state = read_trainer_state(state_path)
    if state.get("stage", "context") != "context":
        return None
    log = ckpt.parent / "context_log.jsonl"
    if log.is_file() and not (run_dir / "context_log.jsonl").exists():
        shutil.copy(log, run_dir / "context_log.jsonl")
    record = stage_record(state)
    (run_dir / "inherited_info.json").write_text(json.dumps({"context_stage": record}, indent=1))
    return record


def load_export(model_dir: Path, run_dir: Path, record: dict):
    """Weights (fp32 copy of the bf16 export), step count, log and segment history of a shipped model
    whose denoiser-stage `record` adopt_export returned."""
    from .checkpoint import from_pretrained

    log = _read_log(run_dir / "denoiser_log.jsonl")
    segments = segment_history(record.get("segments"), record["steps"], record["train_config"])
    return from_pretrained(model_dir), record["steps"], log, segments
