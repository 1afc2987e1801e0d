"""The training runs: resume and continuation, time budgets, self-distillation, validation, exports, and the
checks that refuse bad settings before any corpus work (the objective itself: test_objectives.py)."""

import pytest
import torch

from twotower import build_model
from twotower.training import PROFILES, TrainConfig


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
    (shipped / "tokenizer.model").write_bytes(b"sentencepiece bytes")
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
    assert (run / "tokenizer.model").read_bytes() == b"sentencepiece bytes"

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
    (tmp_path / "m" / "tokenizer.model").write_bytes(b"x")
    (tmp_path / "m" / "training_info.json").write_text(json.dumps({"denoiser_stage": {"steps": 500}}))
    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    with pytest.raises(ValueError, match="already has 500 denoiser steps"):
        training.run_stage("denoiser", tmp_path / "run", resume=True, init_from=str(tmp_path / "m"), steps=400)
    assert not (tmp_path / "run").exists()  # refused before --out was made and filled


def test_a_learning_rate_override_is_checked_before_any_corpus_work(tmp_path, monkeypatch):
    import argparse

    from twotower import data, training

    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    with pytest.raises(ValueError, match="--lr must be a finite number > 0"):
        training.run_stage("denoiser", tmp_path / "run", lr=0.0)
    parser = argparse.ArgumentParser()
    training.add_arguments(parser)
    assert parser.parse_args(["--stage", "denoiser", "--lr", "1e-3"]).lr == 1e-3


@pytest.mark.parametrize("given,stored", [("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp32", "float32")])
def test_train_takes_the_dtype_spellings_of_the_other_commands(given, stored):
    """generate / bench / eval / sweep say bf16 and fp32; train records the torch names, and takes both."""
    import argparse

    from twotower import training

    parser = argparse.ArgumentParser()
    training.add_arguments(parser)
    assert parser.parse_args(["--stage", "denoiser", "--dtype", given]).dtype == stored


def _tiny_training_run(monkeypatch, tmp_path):
    """run_stage on the tiny preset, random token streams and a small profile: seconds, no corpus."""
    from pathlib import Path

    import numpy as np

    import twotower
    from twotower import data, training

    monkeypatch.setitem(training.PROFILES, "test", dict(
        seq_len=48, batch_size=4, lr=3e-3, context_steps=40, denoiser_steps=40, prefix_len=16, block_size=8,
        warmup=4, eval_every=1000, save_every=1000, dtype="float32", distill_share=0.0))
    monkeypatch.setattr(twotower, "build_model", lambda preset, seed=0: build_model("tiny", seed=seed))
    rng = np.random.default_rng(0)
    monkeypatch.setattr(data, "encode_split", lambda tok, split, cache: rng.integers(5, 261, 5000).astype(np.uint16))
    run = tmp_path / "run"
    run.mkdir()
    shipped_tokenizer = Path(__file__).resolve().parents[1] / "assets/default/tokenizer.model"
    (run / "tokenizer.model").write_bytes(shipped_tokenizer.read_bytes())  # run_stage trains none then
    return training, run


def test_a_time_budgeted_stage_ends_on_its_schedule_tail_and_records_its_steps(tmp_path, monkeypatch):
    import json

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    record = training.run_stage("context", run, profile="test", minutes=0.05)  # a 3-second budget
    log = [json.loads(line) for line in (run / "context_log.jsonl").read_text().splitlines()]
    state = json.loads((run / "context_ckpt" / "trainer_state.json").read_text())
    assert len(log) > 2 and record == log[-1] and state["step"] == record["step"] == len(log)
    assert log[0]["lr"] < log[1]["lr"]  # the warm-up
    assert record["lr"] < 0.3 * 3e-3 and "val_loss" in record  # the cosine's tail, then a final validation
    assert state["segments"][-1]["to_step"] == state["segments"][-1]["train_config"]["total_steps"] == len(log)
    assert state["train_config"]["minutes"] == 0.05


def test_distillation_starts_at_its_share_of_the_run(tmp_path, monkeypatch):
    import json

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    training.run_stage("denoiser", run, profile="test", steps=6, distill_share=0.5, distill_from=0.5)
    log = [json.loads(line) for line in (run / "denoiser_log.jsonl").read_text().splitlines()]
    assert [r.get("distill_share") for r in log] == [0.0, 0.0, 0.0, None, None, None]
    # a token cache that travelled from another interpreter: the export names the corpus it holds
    corpus = {"python_version": "3.0.0", "files": 7, "files_per_split": {}, "split_rule": "test"}
    (run / "data").mkdir(exist_ok=True)
    (run / "data" / "corpus.json").write_text(json.dumps(corpus))
    exported = training.export(run, tmp_path / "export")
    assert json.loads((exported / "training_info.json").read_text())["corpus"] == corpus
    with pytest.raises(ValueError, match="already at step 6: --steps 6 leaves nothing to train"):
        training.run_stage("denoiser", run, profile="test", steps=6, resume=True)  # was: rc 0, an empty record
    # a run folder without its tokenizer: refused before the destination is touched (it was left weights only)
    (run / "tokenizer.model").unlink()
    with pytest.raises(ValueError, match="has no tokenizer.model"):
        training.export(run, tmp_path / "second")
    assert not (tmp_path / "second").exists()


def test_the_token_cache_records_the_corpus_it_was_read_from(tmp_path):
    import json
    import sys
    from pathlib import Path

    from twotower.data import encode_split
    from twotower.tokenizer import SentencePieceTokenizer

    tokenizer = SentencePieceTokenizer(Path(__file__).resolve().parents[1] / "assets/default/tokenizer.model")
    stream = encode_split(tokenizer, "validation", tmp_path)
    record = json.loads((tmp_path / "corpus.json").read_text())
    assert len(stream) > 1000 and record["python_version"] == sys.version.split()[0]
    assert record["files_per_split"]["validation"] > 0
    # the cache is this tokenizer's: read again as it is; one another tokenizer wrote is encoded again
    import numpy as np

    np.save(tmp_path / "validation.npy", np.zeros(7, dtype=np.uint16))
    assert len(encode_split(tokenizer, "validation", tmp_path)) == 7
    (tmp_path / "validation.tokenizer.sha256").write_text("another tokenizer's digest\n")
    assert np.array_equal(encode_split(tokenizer, "validation", tmp_path), stream)


@pytest.mark.parametrize("kwargs, message", [(dict(minutes=0.0), "--minutes must be > 0"),
                                             (dict(minutes=5, resume=True), "drop --resume"),
                                             (dict(distill_from=1.0), "--distill-from"),
                                             (dict(batch_size=0), "--batch-size must be >= 1"),
                                             (dict(steps=0), "--steps must be >= 1"),  # 0 ran the whole profile
                                             (dict(steps=-5), "--steps must be >= 1"),  # trained nothing, rc 0
                                             (dict(device="gpu"), "--device 'gpu' is not a device name"),
                                             (dict(lr=float("inf")), "--lr must be a finite number"),
                                             (dict(distill_share=2.0), r"--distill-share must be in \[0, 1\]"),
                                             (dict(), "none at .*context_ckpt .*run --stage context first")])
def test_time_budget_and_distillation_start_are_checked_before_any_corpus_work(tmp_path, monkeypatch, kwargs, message):
    from twotower import data, training

    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    monkeypatch.setattr(data, "train_tokenizer", lambda *a, **k: pytest.fail("trained a tokenizer first"))
    with pytest.raises(ValueError, match=message):
        training.run_stage("denoiser", tmp_path / "run", **kwargs)


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
    (model / "tokenizer.model").write_bytes(b"x")
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


def test_distilling_ahead_equals_distilling_step_by_step():
    """DistillAhead (K steps' windows in one AR run) against its twin, self_distill on each step's window:
    the context tower is frozen in stage 2, so the targets are the same; the undistilled rows are untouched."""
    from twotower.distill import DistillAhead, self_distill

    from twotower import generate_ar

    model = build_model("tiny", seed=3).train()
    windows = {s: torch.randint(5, 261, (4, 20), generator=torch.Generator().manual_seed(s)) for s in range(5)}
    # what a distilled row is, apart from both twins: the window's own prefix, then the context tower's greedy
    # continuation of that prefix (both twins share self_distill: a wrong prefix there fooled the comparison)
    greedy = {s: generate_ar(model.eval(), windows[s][:2, :8], max_new_tokens=12).sequences for s in range(5)}
    model.train()
    ahead = DistillAhead(model, prefix_len=8, share=0.5, batches=3)
    for step in range(5):  # steps 0-2 from one run, 3-4 from the next (cut at last_step 4)
        got = ahead(step, windows.__getitem__, last_step=4)
        assert torch.equal(got, self_distill(model, windows[step], 8, 0.5))
        assert torch.equal(got[:2, :8], windows[step][:2, :8]) and torch.equal(got[:2], greedy[step])
        assert torch.equal(got[2:], windows[step][2:]) and not torch.equal(got[:2], windows[step][:2])
    assert model.training  # left as it was
    with pytest.raises(ValueError, match="distill batches"):
        DistillAhead(model, 8, 0.5, batches=0)


def test_a_denoiser_run_generates_its_distilled_windows_ahead(tmp_path, monkeypatch):
    from twotower import distill

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    calls = []
    real = distill.self_distill
    monkeypatch.setattr(distill, "self_distill", lambda model, tokens, *a: calls.append(len(tokens)) or real(model, tokens, *a))
    training.run_stage("denoiser", run, profile="test", steps=6, distill_share=0.5, distill_from=0.5, distill_batches=2)
    assert calls == [4, 2]  # steps 4-5 in one run (2 distilled rows each), step 6 alone (the run ends there)


def test_distilling_steps_train_on_the_distilled_windows(tmp_path, monkeypatch):
    """The distilled rows generated for a step are the rows it trains on: the first `share` of each distilling
    step's windows continue their prefix with the context tower's greedy text, the other rows (and every row
    before distill_from) are the corpus window itself. Generating them and training on the plain window
    looked the same to the tests that count generations."""
    import numpy as np

    from twotower import data
    from twotower.checkpoint import from_pretrained
    from twotower.data import BatchSampler
    from twotower.distill import self_distill

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    stream = np.random.default_rng(1).integers(5, 261, 5000).astype(np.uint16)
    monkeypatch.setattr(data, "encode_split", lambda tok, split, cache: stream)
    training.run_stage("context", run, profile="test", steps=2)
    batches, real = [], training.denoiser_loss

    def record_training_batches(model, tokens, *args, **kwargs):
        if model.training:  # not validation
            batches.append(tokens.clone())
        return real(model, tokens, *args, **kwargs)

    monkeypatch.setattr(training, "denoiser_loss", record_training_batches)
    training.run_stage("denoiser", run, profile="test", steps=4, distill_share=0.5, distill_from=0.5)
    assert len(batches) == 4
    context = from_pretrained(run / "context_ckpt")  # stage 2 keeps this tower frozen: it distils with it
    sampler = BatchSampler(stream, 48, 4, seed=0)  # the test profile's windows: 16 + 4 blocks of 8 tokens
    for step, batch in enumerate(batches):
        window = torch.from_numpy(sampler.batch(step)[:, :48])
        if step < 2:  # before distill_from
            assert torch.equal(batch, window), step
            continue
        distilled = self_distill(context, window, 16, 0.5)
        assert not torch.equal(distilled[:2], window[:2])  # the test can tell the two apart
        assert torch.equal(batch[:2], distilled[:2]) and torch.equal(batch[2:], window[2:]), step


def test_validation_reads_the_validation_split_every_eval_every_steps_and_at_the_end(tmp_path, monkeypatch):
    """val_loss is measured on validation windows (not training windows, not the test split the model card
    reports on), at every eval_every-th step and at the last, on the same windows each time. Each split gets
    its own stream here, told apart by its token range (the other tests' streams ignore the split name)."""
    import json

    import numpy as np

    from twotower import data

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    monkeypatch.setitem(training.PROFILES, "test", {**training.PROFILES["test"], "eval_every": 2, "eval_batches": 2})
    ranges, splits = {"train": (5, 100), "validation": (150, 200), "test": (210, 261)}, []

    def encode_split(tok, split, cache):
        splits.append(split)
        return np.random.default_rng(0).integers(*ranges[split], 5000).astype(np.uint16)

    monkeypatch.setattr(data, "encode_split", encode_split)
    seen, real = {True: [], False: []}, training.context_loss  # by model.training: training / validation batches
    monkeypatch.setattr(training, "context_loss",
                        lambda model, batch: seen[model.training].append(batch) or real(model, batch))
    training.run_stage("context", run, profile="test", steps=5)
    assert splits == ["train", "validation"]
    log = [json.loads(line) for line in (run / "context_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "val_loss" in r] == [2, 4, 5]
    assert len(seen[True]) == 5 and len(seen[False]) == 3 * 2
    assert all(int(b.max()) < 100 for b in seen[True])
    assert all(150 <= int(b.min()) and int(b.max()) < 200 for b in seen[False])
    assert all(torch.equal(a, b) for a, b in zip(seen[False], seen[False][2:]))  # comparable curves


def test_a_batch_size_override_shapes_the_steps_and_is_recorded(tmp_path, monkeypatch):
    """--batch-size (a launch-bound GPU takes a larger batch for little more per step): every step's windows
    have that many rows, and the stage's record says so (the model card's command reads it from there)."""
    import json

    from twotower import objectives

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    rows = []
    real = objectives.context_loss
    monkeypatch.setattr(training, "context_loss", lambda model, batch: rows.append(len(batch)) or real(model, batch))
    training.run_stage("context", run, profile="test", steps=2, batch_size=6)
    assert rows == [6] * (2 + 8)  # two steps, then the last step's validation: 8 batches (eval_batches), at 6 too
    state = json.loads((run / "context_ckpt" / "trainer_state.json").read_text())
    assert state["train_config"]["batch_size"] == 6


def test_an_exports_denoiser_continues_on_a_time_budget(tmp_path, monkeypatch):
    """A GPU lease trains on a wall-clock budget; `--minutes` refused every --resume, so each lease trained a
    denoiser from scratch. An export's denoiser (weights only) now continues over the budget: its steps go on
    from the export's, with a new warm-up and cosine; a checkpoint's own resume (a step schedule) stays refused."""
    import json

    from twotower.checkpoint import from_pretrained

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=3)
    training.run_stage("denoiser", run, profile="test", steps=5)
    first = training.export(run, tmp_path / "first")
    more = tmp_path / "more"
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

    training, run = _tiny_training_run(monkeypatch, tmp_path)
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


def test_a_resumed_denoiser_run_ends_where_an_uninterrupted_one_does(tmp_path, monkeypatch, capsys):
    """Stopped after its checkpoint at step 2 and resumed, a 4-step stage 2 ends with the weights of a run that
    was never stopped: same windows (seeded by step), same schedule, and now the same masks (the mask generator's
    state is saved; reseeding with seed + step drew other masks after a resume)."""
    import json
    import shutil

    import numpy as np

    from twotower import data

    training, run = _tiny_training_run(monkeypatch, tmp_path)
    monkeypatch.setitem(training.PROFILES, "test", {**training.PROFILES["test"], "save_every": 2})
    # the same stream at every call (the helper's draws a new one each time, as no run here compares two runs)
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
    with pytest.raises(KeyboardInterrupt):
        training.run_stage("denoiser", stopped, profile="test", steps=4)
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
