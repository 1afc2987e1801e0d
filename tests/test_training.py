"""The training runs: time budgets, validation, batch size, the token cache, and the checks that refuse bad
settings before any corpus work (resume and continuation: test_training_resume.py; self-distillation:
test_distillation.py; the objective itself: test_objectives.py)."""

import time
import types

import pytest
import torch

from tiny_models import tiny_training_run


def test_a_learning_rate_override_is_checked_before_any_corpus_work(tmp_path, monkeypatch):
    import argparse

    from twotower import cli_train, data, training

    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    with pytest.raises(ValueError, match="--lr must be a number > 0 and <= 1"):
        training.run_stage("denoiser", tmp_path / "run", lr=0.0)
    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    assert parser.parse_args(["--stage", "denoiser", "--lr", "1e-3"]).lr == 1e-3


@pytest.mark.parametrize("given,stored", [("bf16", "bfloat16"), ("bfloat16", "bfloat16"), ("fp32", "float32")])
def test_train_takes_the_dtype_spellings_of_the_other_commands(given, stored):
    """generate / bench / eval / sweep say bf16 and fp32; train records the torch names, and takes both."""
    import argparse

    from twotower import cli_train

    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    assert parser.parse_args(["--stage", "denoiser", "--dtype", given]).dtype == stored


def test_a_time_budgeted_stage_ends_on_its_schedule_tail_and_records_its_steps(tmp_path, monkeypatch):
    import json

    training, run = tiny_training_run(monkeypatch, tmp_path)
    # A clock of the test's own, 50 ms a reading: the budget's schedule then depends on no machine's load (on the
    # real clock a loaded 2-core host once stretched the last steps so that training stopped mid-cosine).
    readings = iter(range(10**6))
    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=lambda: 0.05 * next(readings),
                                                                time=time.time))
    record = training.run_stage("context", run, profile="test", minutes=0.05)  # a 3-second budget
    log = [json.loads(line) for line in (run / "context_log.jsonl").read_text().splitlines()]
    state = json.loads((run / "context_ckpt" / "trainer_state.json").read_text())
    assert len(log) > 2 and record == log[-1] and state["step"] == record["step"] == len(log)
    assert log[0]["lr"] < log[1]["lr"]  # the warm-up
    assert record["lr"] < 0.3 * 3e-3 and "val_loss" in record  # the cosine's tail, then a final validation
    assert state["segments"][-1]["to_step"] == state["segments"][-1]["train_config"]["total_steps"] == len(log)
    assert state["train_config"]["minutes"] == 0.05


def test_stage_1_predicts_every_token_of_its_window(tmp_path, monkeypatch):
    """A window holds seq_len + 1 tokens (seq_len targets); training cut it to seq_len (seq_len - 1 targets) while
    validation read it whole and the tokens/s figure counted seq_len a row."""
    training, run = tiny_training_run(monkeypatch, tmp_path)
    seen, real = [], training.context_loss

    def recorded(model, tokens):
        seen.append((model.training, tokens.shape[1]))
        return real(model, tokens)

    monkeypatch.setattr(training, "context_loss", recorded)
    training.run_stage("context", run, profile="test", steps=2)
    seq_len = training.PROFILES["test"]["seq_len"]
    assert {width for _, width in seen} == {seq_len + 1} and {mode for mode, _ in seen} == {True, False}


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
                                             (dict(lr=float("inf")), "--lr must be a number > 0 and <= 1"),
                                             (dict(distill_share=2.0), r"--distill-share must be in \[0, 1\]"),
                                             (dict(), "none at .*context_ckpt .*run --stage context first")])
def test_time_budget_and_distillation_start_are_checked_before_any_corpus_work(tmp_path, monkeypatch, kwargs, message):
    from twotower import data, training

    monkeypatch.setattr(data, "encode_split", lambda *a, **k: pytest.fail("encoded the corpus first"))
    monkeypatch.setattr(data, "train_tokenizer", lambda *a, **k: pytest.fail("trained a tokenizer first"))
    with pytest.raises(ValueError, match=message):
        training.run_stage("denoiser", tmp_path / "run", **kwargs)


def test_validation_reads_the_validation_split_every_eval_every_steps_and_at_the_end(tmp_path, monkeypatch):
    """val_loss is measured on validation windows (not training windows, not the test split the model card
    reports on), at every eval_every-th step and at the last, on the same windows each time. Each split gets
    its own stream here, told apart by its token range (the other tests' streams ignore the split name)."""
    import json

    import numpy as np

    from twotower import data

    training, run = tiny_training_run(monkeypatch, tmp_path)
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

    training, run = tiny_training_run(monkeypatch, tmp_path)
    rows = []
    real = objectives.context_loss
    monkeypatch.setattr(training, "context_loss", lambda model, batch: rows.append(len(batch)) or real(model, batch))
    training.run_stage("context", run, profile="test", steps=2, batch_size=6)
    assert rows == [6] * (2 + 8)  # two steps, then the last step's validation: 8 batches (eval_batches), at 6 too
    state = json.loads((run / "context_ckpt" / "trainer_state.json").read_text())
    assert state["train_config"]["batch_size"] == 6


def test_the_adaln_tables_are_not_decayed_toward_zero():
    """scale_shift_tables are (3, H) tensors, so the dim() >= 2 rule put them in the decay group: their gate row
    starts at 1 and weight decay pulled it toward 0. Matrices still decay; vectors and the tables do not."""
    from twotower import build_model
    from twotower.training import decay_groups, trainable_parameters

    model = build_model("tiny")
    decay, no_decay = decay_groups(model, trainable_parameters(model, "denoiser"))
    tables = {id(p) for p in model.scale_shift_tables.parameters()}
    assert tables and tables <= {id(p) for p in no_decay} and not tables & {id(p) for p in decay}
    assert all(p.dim() >= 2 for p in decay) and any(p.dim() >= 2 for p in no_decay)
    assert len(decay) + len(no_decay) == len(trainable_parameters(model, "denoiser"))


def test_a_checkpoint_saved_with_the_old_groups_is_refused_with_the_way_on(tmp_path, monkeypatch):
    """A denoiser checkpoint saved when the tables were in the decay group holds Adam moments for other groups:
    torch's "doesn't match the size of optimizer's group" is said with what to do instead."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=1)
    old = lambda model, params: ([p for p in params if p.dim() >= 2], [p for p in params if p.dim() < 2])  # noqa: E731
    current = training_module.decay_groups
    monkeypatch.setattr(training_module, "decay_groups", old)
    training_module.run_stage("denoiser", run, profile="test", steps=1)
    monkeypatch.setattr(training_module, "decay_groups", current)
    with pytest.raises(ValueError, match="holds Adam moments for other parameter groups .* export it"):
        training_module.run_stage("denoiser", run, profile="test", steps=2, resume=True)


def test_a_steps_tokens_per_s_leaves_out_the_save_before_it(tmp_path, monkeypatch):
    """On a clock of the test's own, every step takes 50 ms and each checkpoint save 100 s: the step right after a
    save read ~2,000 times slower in the log (the save was counted as its training time; validation was not)."""
    import json

    from twotower import train_state

    training, run = tiny_training_run(monkeypatch, tmp_path)
    monkeypatch.setitem(training.PROFILES["test"], "save_every", 3)
    monkeypatch.setitem(training.PROFILES["test"], "eval_every", 4)
    clock = [0.0]

    def perf_counter():
        clock[0] += 0.05
        return clock[0]

    def slow(real):
        def run_it(*args, **kwargs):
            clock[0] += 100.0
            return real(*args, **kwargs)
        return run_it

    monkeypatch.setattr(training, "time", types.SimpleNamespace(perf_counter=perf_counter, time=time.time))
    monkeypatch.setattr(train_state, "save_state", slow(train_state.save_state))
    training.run_stage("context", run, profile="test", steps=12)
    log = [json.loads(line) for line in (run / "context_log.jsonl").read_text().splitlines()]
    speeds = [record["tokens_per_s"] for record in log]
    assert len(speeds) == 12 and max(speeds) / min(speeds) < 2, speeds
