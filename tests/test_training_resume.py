"""Resuming and continuing training runs: a checkpoint's resume ends where an uninterrupted run does and keeps
the history of its settings, a shipped export continues (on steps or on a time budget) with its record, and a
continuation that cannot start says why before any corpus work and leaves no folder behind."""

import json
import shutil
import time
import types

import pytest
import torch

from tiny_models import tiny_training_run
from twotower import build_model
from twotower.engine import DEFAULT_MODEL_DIR
from twotower.training import PROFILES, TrainConfig

TOKENIZER = (DEFAULT_MODEL_DIR / "tokenizer.model").read_bytes()  # a real one: an adopted tokenizer is read


def test_a_resumed_run_keeps_the_history_of_its_settings(tmp_path):
    """A resume may change the schedule's length or the distillation share: the checkpoint says which
    steps ran with which settings (the model card reports them), the last part only as far as it got."""
    from dataclasses import asdict, replace

    from twotower.train_state import load_state, save_state

    model = build_model("tiny", seed=0)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    cfg = TrainConfig(**PROFILES["cpu"])
    first = {"from_step": 0, "to_step": 450, "train_config": {**asdict(cfg), "total_steps": 450}}
    second = {"from_step": 450, "to_step": 1150,
              "train_config": {**asdict(replace(cfg, distill_share=0.75)), "total_steps": 1150}}
    save_state(tmp_path, model, optimizer, 600, "denoiser", [{"step": 600, "loss": 1.0}], cfg, [first, second])
    _, _, step, log, segments = load_state(tmp_path, "denoiser", None)
    assert step == 600 and log == [{"step": 600, "loss": 1.0}]
    assert [(s["from_step"], s["to_step"]) for s in segments] == [(0, 450), (450, 600)]
    assert [s["train_config"]["distill_share"] for s in segments] == [0.0, 0.75]


def test_a_run_continued_from_a_shipped_model_keeps_its_history(tmp_path):
    """`--resume --init-from <export>`: weights, step count, logs and segments come from the export,
    and the next export still carries the context stage's record (the run never had its checkpoint)."""
    import json

    from twotower.checkpoint import save_pretrained
    from twotower.train_state import adopt_export, load_export, save_state
    from twotower.training import export

    shipped, run = tmp_path / "shipped", tmp_path / "run"
    model = build_model("tiny", seed=0)
    save_pretrained(model, shipped)
    (shipped / "tokenizer.model").write_bytes(TOKENIZER)  # read before it is adopted
    seg = {"from_step": 0, "to_step": 30, "train_config": {"distill_share": 0.0, "total_steps": 30}}
    info = {"context_stage": {"steps": 20, "train_config": {"lr": 1}, "segments": []},
            "denoiser_stage": {"steps": 30, "train_config": {"lr": 2}, "segments": [seg]}}
    (shipped / "training_info.json").write_text(json.dumps(info))
    (shipped / "train_denoiser_log.jsonl").write_text(json.dumps({"step": 30, "loss": 2.5}) + "\n")

    record = adopt_export(shipped, run)
    assert record == info["denoiser_stage"]
    loaded, step, log, segments = load_export(shipped, run, record)
    assert step == 30 and log == [{"step": 30, "loss": 2.5}] and segments == [seg]
    assert torch.equal(loaded.lm_head.weight, model.lm_head.weight)
    assert (run / "tokenizer.model").read_bytes() == TOKENIZER

    optimizer = torch.optim.AdamW([p for p in loaded.parameters() if p.requires_grad], lr=1e-3)
    new = {"from_step": 30, "to_step": 40, "train_config": {"distill_share": 0.75, "total_steps": 40}}
    save_state(run, loaded, optimizer, 40, "denoiser", [*log, {"step": 40, "loss": 2.0}],
                TrainConfig(**PROFILES["cpu"]), [*segments, new])
    out = json.loads((export(run, tmp_path / "next") / "training_info.json").read_text())
    assert out["context_stage"] == info["context_stage"]
    assert [(s["from_step"], s["to_step"]) for s in out["denoiser_stage"]["segments"]] == [(0, 30), (30, 40)]

    (run / "tokenizer.model").write_bytes(b"another tokenizer")
    with pytest.raises(ValueError, match="differs"):
        adopt_export(shipped, run)


def test_continuing_a_model_past_its_steps_fails_before_any_corpus_work(tmp_path, monkeypatch):
    import json

    from twotower import data, training

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "tokenizer.model").write_bytes(TOKENIZER)
    (tmp_path / "m" / "training_info.json").write_text(json.dumps({"denoiser_stage": {"steps": 500}}))
    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    with pytest.raises(ValueError, match="already has 500 denoiser steps"):
        training.run_stage("denoiser", tmp_path / "run", resume=True, init_from=str(tmp_path / "m"), steps=400)
    assert not (tmp_path / "run").exists()  # refused before --out was made and filled


@pytest.mark.parametrize("setup, message", [
    ("out_is_a_file", "--out '.*run' is a file, not a folder"),
    ("no_tokenizer", "has no tokenizer.model"),  # was a FileNotFoundError traceback, and an empty --out left behind
    ("damaged_info", r"training_info.json is not valid JSON \(Expecting .*line 1\): the file is damaged"),
])
def test_a_continuation_that_cannot_start_says_why_and_leaves_no_folder(tmp_path, monkeypatch, setup, message):
    from twotower import data, training

    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    model = tmp_path / "m"
    model.mkdir()
    (model / "training_info.json").write_text('{"denoiser_stage": {"steps": 5}}')
    (model / "tokenizer.model").write_bytes(TOKENIZER)
    if setup == "out_is_a_file":
        (tmp_path / "run").write_text("notes")
    elif setup == "no_tokenizer":
        (model / "tokenizer.model").unlink()
    else:
        (model / "training_info.json").write_text("{steps: 5")
    with pytest.raises(ValueError, match=message):
        training.run_stage("denoiser", tmp_path / "run", resume=True, init_from=str(model), steps=50)
    assert setup == "out_is_a_file" or not (tmp_path / "run").exists()


def test_an_export_with_a_damaged_record_writes_nothing(tmp_path):
    """A run continued from an export reads the context stage's record back at export: damaged, it used to
    stop after the weights and tokenizer were written, leaving an export without its training_info.json."""
    from twotower.checkpoint import save_pretrained
    from twotower.training import export

    run = tmp_path / "run"
    save_pretrained(build_model("tiny", seed=0), run / "denoiser_ckpt")
    (run / "tokenizer.model").write_bytes(b"x")
    (run / "inherited_info.json").write_text('{"context_stage": ')
    with pytest.raises(ValueError, match="inherited_info.json is not valid JSON"):
        export(run, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_an_exports_denoiser_continues_on_a_time_budget(tmp_path, monkeypatch):
    """A GPU lease trains on a wall-clock budget; `--minutes` refused every --resume, so each lease trained a
    denoiser from scratch. An export's denoiser (weights only) now continues over the budget: its steps go on
    from the export's, with a new warm-up and cosine; a checkpoint's own resume (a step schedule) stays refused."""
    import json

    from twotower.checkpoint import from_pretrained

    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=3)
    training.run_stage("denoiser", run, profile="test", steps=5)
    first = training.export(run, tmp_path / "first")
    more = tmp_path / "more"
    # the test's own clock, 50 ms a reading (as test_training's budget test): on the real clock a loaded host
    # stretches the last steps, and the run stops mid-cosine
    readings = iter(range(10**6))
    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=lambda: 0.05 * next(readings),
                                                                time=time.time))
    record = training.run_stage("denoiser", more, profile="test", resume=True, init_from=str(first), minutes=0.05)
    log = [json.loads(line) for line in (more / "denoiser_log.jsonl").read_text().splitlines()]
    assert record["step"] > 5 and log[5]["step"] == 6 and record == log[-1]  # the export's 5 steps, then more
    assert log[5]["lr"] < log[6]["lr"] and record["lr"] < 0.3 * 3e-3  # warm-up again, then the cosine's tail
    state = json.loads((more / "denoiser_ckpt" / "trainer_state.json").read_text())
    init = state["segments"][-1]["init"]
    assert init["from_export"] == str(first) and init["rewarmup_steps"] == 0 and "0.05 minutes" in init["schedule"]
    new, old = from_pretrained(more / "denoiser_ckpt"), from_pretrained(first)
    assert not torch.equal(new.lm_head.weight, old.lm_head.weight)  # it trained the export's denoiser
    assert all(torch.equal(a, b) for a, b in zip(old.context_tower.parameters(), new.context_tower.parameters()))
    with pytest.raises(ValueError, match="cannot resume the denoiser checkpoint in .*more.* without --minutes"):
        training.run_stage("denoiser", more, profile="test", resume=True, init_from=str(first), minutes=0.05)


def test_a_fresh_denoiser_on_an_exports_context_tower_keeps_that_towers_record(tmp_path, monkeypatch):
    """--init-from an export without --resume (scripts/gpu_train.sh with a context tower from an earlier
    lease): stage 2 starts afresh, the denoiser a copy of that context tower, and the new export still says
    how its context tower was trained."""
    import json

    from twotower.checkpoint import from_pretrained

    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=3)
    training.run_stage("denoiser", run, profile="test", steps=2)
    first = training.export(run, tmp_path / "first")
    second = tmp_path / "second"  # empty: the export's tokenizer comes along
    training.run_stage("denoiser", second, profile="test", steps=2, init_from=str(first))
    info = json.loads((training.export(second, tmp_path / "again") / "training_info.json").read_text())
    assert info["context_stage"] == json.loads((first / "training_info.json").read_text())["context_stage"]
    assert info["context_stage"]["steps"] == 3 and info["denoiser_stage"]["steps"] == 2
    assert info["denoiser_stage"]["segments"][-1]["init"] == {"context_from": str(first), "context_steps": 3}
    assert (tmp_path / "again" / "train_context_log.jsonl").read_text() == (run / "context_log.jsonl").read_text()
    old, new = from_pretrained(first), from_pretrained(tmp_path / "again")
    assert all(torch.equal(a, b) for a, b in zip(old.context_tower.parameters(), new.context_tower.parameters()))

    (second / "tokenizer.model").write_bytes(b"another tokenizer")
    with pytest.raises(ValueError, match="another tokenizer"):
        training.run_stage("denoiser", second, profile="test", steps=2, init_from=str(first))


def test_a_fresh_denoiser_on_another_runs_context_checkpoint_reads_that_runs_tokenizer(tmp_path, monkeypatch):
    """--init-from runs/A/context_ckpt (the form the refusal of a run directory suggests) into an empty --out:
    the checkpoint holds no tokenizer, so stage 2 trained a new one, and the frozen tower read ids of another
    vocabulary without a word."""
    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    trained = []
    from twotower import data  # run_stage imports it from there when it runs

    monkeypatch.setattr(data, "train_tokenizer", lambda *a, **k: trained.append(a) or pytest.fail("retrained"))
    second = tmp_path / "second"
    training.run_stage("denoiser", second, profile="test", steps=1, init_from=str(run / "context_ckpt"))
    assert (second / "tokenizer.model").read_bytes() == (run / "tokenizer.model").read_bytes() and not trained
    lone = tmp_path / "lone"  # a context checkpoint copied away from its run: refused, not retrained
    shutil.copytree(run / "context_ckpt", lone / "ctx")
    with pytest.raises(ValueError, match="has no tokenizer.model beside it .*would train a new tokenizer"):
        training.run_stage("denoiser", tmp_path / "third", profile="test", steps=1, init_from=str(lone / "ctx"))
    assert not (tmp_path / "third").exists()


def test_a_resumed_denoiser_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch, capsys):
    """Stopped after its checkpoint at step 2 and resumed, a 4-step stage 2 ends with the weights of a run that
    was never stopped: same windows (seeded by step), same schedule, and now the same masks (the mask generator's
    state is saved; reseeding with seed + step drew other masks after a resume)."""
    import json
    import shutil

    import numpy as np

    from twotower import data

    training, run = tiny_training_run(monkeypatch, tmp_path)
    monkeypatch.setitem(training.PROFILES, "test", {**training.PROFILES["test"], "save_every": 2})
    # the same stream at every call: tiny_training_run's draws a new one each time, and this test compares two runs
    monkeypatch.setattr(data, "encode_split", lambda tok, split, cache: np.random.default_rng(len(split)).integers(
        5, 261, 5000).astype(np.uint16))
    training.run_stage("context", run, profile="test", steps=2)
    stopped = tmp_path / "stopped"
    shutil.copytree(run, stopped)
    training.run_stage("denoiser", run, profile="test", steps=4)

    real, calls = training.denoiser_loss, []

    def stop_at_the_third_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # after the checkpoint of step 2
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "denoiser_loss", stop_at_the_third_step)
    capsys.readouterr()
    with pytest.raises(KeyboardInterrupt):
        training.run_stage("denoiser", stopped, profile="test", steps=4)
    # and says what is kept: the steps since the last save are not
    said = capsys.readouterr().err
    assert f"train denoiser: stopped at step 2; {stopped / 'denoiser_ckpt'} holds step 2: --resume continues" in said
    # a restart from scratch ends with the same weights too (every draw is seeded): what tells a resume apart
    # is that it finds the checkpoint of step 2, trains steps 3-4 only and keeps the log of steps 1-2
    assert (stopped / "denoiser_ckpt" / "trainer_state.json").is_file()
    before = (stopped / "denoiser_log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in before] == [1, 2]
    training_calls = []

    def count_training_steps(model, *args, **kwargs):
        training_calls.append(model.training)  # validation runs in eval mode
        return real(model, *args, **kwargs)

    monkeypatch.setattr(training, "denoiser_loss", count_training_steps)
    capsys.readouterr()
    training.run_stage("denoiser", stopped, profile="test", steps=4, resume=True)
    err = capsys.readouterr().err
    assert "other settings" not in err  # the same settings: nothing to say
    assert "starting the stage afresh" not in err
    assert training_calls.count(True) == 2  # steps 3 and 4, not all four again
    after = (stopped / "denoiser_log.jsonl").read_text().splitlines()
    assert after[:2] == before and [json.loads(line)["step"] for line in after[2:]] == [3, 4]
    from twotower.checkpoint import from_pretrained

    whole = from_pretrained(run / "denoiser_ckpt").state_dict()
    resumed = from_pretrained(stopped / "denoiser_ckpt").state_dict()
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)


def test_a_resume_names_the_settings_it_changes():
    from twotower.training import settings_changed

    saved = {"total_steps": 1000, "lr": 0.003, "batch_size": 16, "distill_share": 0.75}
    assert settings_changed(saved, {**saved}) == ""
    assert settings_changed(saved, {**saved, "total_steps": 40, "lr": 0.001}) == "total_steps 1000 -> 40, lr 0.003 -> 0.001"


def test_a_save_killed_half_way_leaves_the_last_whole_checkpoint(tmp_path, monkeypatch):
    """The checkpoint was written in place, weights first and trainer_state.json after: a save killed between
    them resumed the new weights at the old step with the old Adam moments. A save now writes a folder of its
    own and swaps it in; a kill before the swap leaves the old checkpoint, one between the renames is recovered."""
    import json

    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=2)
    assert sorted(p.name for p in run.iterdir() if "ckpt" in p.name) == ["context_ckpt"]  # nothing left over
    weights = (run / "context_ckpt" / "model.safetensors").read_bytes()
    # killed before the swap: a half-written folder beside the whole checkpoint, never read, cleared next save
    (run / "context_ckpt.saving").mkdir()
    (run / "context_ckpt.saving" / "model.safetensors").write_bytes(b"half")
    # killed between the renames: the whole checkpoint sits under its old name
    (run / "context_ckpt").rename(run / "context_ckpt.previous")
    training_module.run_stage("context", run, profile="test", steps=3, resume=True)
    state = json.loads((run / "context_ckpt" / "trainer_state.json").read_text())
    assert state["step"] == 3 and [s["from_step"] for s in state["segments"]] == [0, 2]  # resumed at step 2
    assert sorted(p.name for p in run.iterdir() if "ckpt" in p.name) == ["context_ckpt"]
    assert (run / "context_ckpt" / "model.safetensors").read_bytes() != weights  # trained on


def test_a_damaged_training_log_is_named_by_file_and_line(tmp_path):
    """A log cut mid-line (the disk filled while it was rewritten) made every --resume fail with json's bare
    "Expecting value: line 9 column 1"; the log is now replaced whole, and a damaged one is named."""
    from twotower.train_state import _read_log

    log = tmp_path / "denoiser_log.jsonl"
    log.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "lo')
    with pytest.raises(ValueError, match=r"denoiser_log.jsonl:2 is not a JSON record .*remove that line"):
        _read_log(log)
    assert _read_log(tmp_path / "none.jsonl") == []


def test_continuing_an_export_on_other_windows_says_so(tmp_path, monkeypatch, capsys):
    """The README's continuation of the shipped (gpu-profile, 512-token) model without --profile gpu trained on the
    cpu profile's 256-token windows without a word: allowed, and now said."""
    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    training.run_stage("denoiser", run, profile="test", steps=2)
    first = training.export(run, tmp_path / "first")
    monkeypatch.setitem(training.PROFILES, "wide", {**training.PROFILES["test"], "seq_len": 64})
    capsys.readouterr()
    training.run_stage("denoiser", tmp_path / "same", profile="test", resume=True, init_from=str(first), steps=3)
    assert "trained on other windows" not in capsys.readouterr().err
    training.run_stage("denoiser", tmp_path / "wide", profile="wide", resume=True, init_from=str(first), steps=3)
    assert "was trained on other windows: seq_len 48 -> 64 (the wide profile's" in capsys.readouterr().err


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_a_signal_while_training_saves_the_step_going_and_stops(tmp_path, monkeypatch, capsys, signal_name):
    """A checkpoint every save_every steps (500 in the gpu profile): Ctrl-C, or the SIGTERM of a lease's timeout,
    lost every step since the last. Now the step going ends, is saved, and the stage stops as the signal would
    have ended it (KeyboardInterrupt: the CLI's exit 130; SIGTERM's Terminated: 143); --resume goes on from it."""
    import os
    import signal

    from twotower.interrupts import Terminated

    training, run = tiny_training_run(monkeypatch, tmp_path)
    real, calls = training.context_loss, []

    def signalled_in_step_3(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), getattr(signal, signal_name))  # the handler runs here, in the main thread
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "context_loss", signalled_in_step_3)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated if signal_name == "SIGTERM" else KeyboardInterrupt) as stopped:
        training.run_stage("context", run, profile="test", steps=10)
    assert signal_name == "SIGTERM" or type(stopped.value) is KeyboardInterrupt
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # put back
    state = json.loads((run / "context_ckpt" / "trainer_state.json").read_text())
    log = [json.loads(line) for line in (run / "context_log.jsonl").read_text().splitlines()]
    assert state["step"] == 3 and [r["step"] for r in log] == [1, 2, 3] and "val_loss" in log[-1]
    err = capsys.readouterr().err
    assert f"{signal_name}: stopping after this step" in err and f"stopped ({signal_name}) at step 3" in err
    monkeypatch.setattr(training, "context_loss", real)
    assert training.run_stage("context", run, profile="test", steps=5, resume=True)["step"] == 5


def test_a_budgeted_stage_counts_the_distillation_run_its_next_step_needs(tmp_path, monkeypatch):
    """The --minutes stop test took the next step to cost what the last one did, but a step whose distilled window
    is not generated yet runs the AR generation first (~30 s on a GPU with 96 batches ahead): the budget overran
    by that. On a clock of the test's own (50 ms a reading, a distillation run 2 s), the stage now ends inside
    its 6-second budget."""
    from twotower import distill

    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    clock = [0.0]

    def perf_counter():
        clock[0] += 0.05
        return clock[0]

    real = distill.DistillAhead.__call__

    def slow_generation(self, step, *args, **kwargs):
        if not self.ready(step):
            clock[0] += 2.0
        return real(self, step, *args, **kwargs)

    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=perf_counter, time=time.time))
    monkeypatch.setattr(distill.DistillAhead, "__call__", slow_generation)
    record = training.run_stage("denoiser", run, profile="test", minutes=0.1, distill_share=0.5, distill_from=0.0,
                                distill_batches=3)
    assert record["step"] >= 3 and clock[0] <= 6.0, (record["step"], clock[0])


def test_a_second_signal_during_a_save_waits_for_the_checkpoint_to_be_whole():
    """The first Ctrl-C's message invites a second; one that landed inside save_state left a half-removed folder
    (every later save then failed) and a message naming a step the disk did not hold."""
    import os
    import signal

    from twotower.interrupts import StopAtStepEnd

    saved = []
    with pytest.raises(KeyboardInterrupt):
        with StopAtStepEnd("train test") as signals:
            os.kill(os.getpid(), signal.SIGINT)  # the first: stop after this step
            assert signals.requested == "SIGINT"
            with signals.holding():
                os.kill(os.getpid(), signal.SIGINT)  # the second, during the save: it waits
                saved.append("whole")
    assert saved == ["whole"]


def test_a_save_cleans_up_what_a_stopped_save_left(tmp_path, monkeypatch):
    """A save stopped while it removed context_ckpt.previous (after its swap) left that folder half there, and the
    next save's rename onto it failed ("Directory not empty") at every save after."""
    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    leftover = run / "context_ckpt.previous"
    leftover.mkdir()
    (leftover / "optimizer.safetensors").write_text("half removed")
    training.run_stage("context", run, profile="test", steps=3, resume=True)
    assert json.loads((run / "context_ckpt" / "trainer_state.json").read_text())["step"] == 3
    assert not leftover.exists()


def test_a_fresh_denoiser_on_another_runs_context_checkpoint_keeps_that_towers_record(tmp_path, monkeypatch):
    """--init-from runs/A/context_ckpt, the form --help gives: the export had no context_stage, no init and no
    context log, where --init-from an export (above) keeps all three."""
    import json

    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=3)
    other = tmp_path / "other"
    training.run_stage("denoiser", other, profile="test", steps=2, init_from=str(run / "context_ckpt"))
    info = json.loads((training.export(other, tmp_path / "exported") / "training_info.json").read_text())
    assert info["context_stage"]["steps"] == 3 and info["context_stage"]["train_config"]["batch_size"] == 4
    assert info["denoiser_stage"]["segments"][-1]["init"] == {"context_from": str(run / "context_ckpt"),
                                                              "context_steps": 3}
    assert (tmp_path / "exported" / "train_context_log.jsonl").read_text() == (run / "context_log.jsonl").read_text()
