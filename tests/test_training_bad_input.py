"""`twotower train` given bad input, as a person types it: each mistake is one line naming the flag and the
problem, said before any corpus work or any write (a run directory's checkpoint is never lost to a typo), and
flags a stage does not read are named instead of dropped silently. Each case here failed before: a traceback,
a misleading message, a run that trained over a checkpoint, or silence."""

import json
import re

import pytest

from tiny_models import tiny_training_run
from twotower import build_model, cli_train, data, save_pretrained, training
from twotower.cli import main as cli_main


# tiny_training_run's profile, at 2 context steps; "test2" the same on other windows
TEST_PROFILE = dict(seq_len=48, batch_size=4, lr=3e-3, context_steps=2, denoiser_steps=40, prefix_len=16, block_size=8,
                    warmup=4, eval_every=1000, save_every=1000, dtype="float32", distill_share=0.0)


class Stop(Exception):
    """Raised where the corpus would be encoded: everything before it (checks, notes) has run."""


def no_corpus_work(monkeypatch, stop=False):
    """Encoding the corpus or training a tokenizer fails the test (or, with stop, ends the run there)."""
    def refuse(*args, **kwargs):
        if stop:
            raise Stop
        pytest.fail("reached the corpus before refusing")

    monkeypatch.setattr(data, "encode_split", refuse)
    monkeypatch.setattr(data, "train_tokenizer", refuse)


def files_of(folder):
    """Every file under a folder with its bytes: what a refused command must leave as it was."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def fake_checkpoint(run, stage, step, **config):
    """A stage checkpoint's record as save_state writes it (the checks read no weights), on the test profile's
    windows unless `config` says otherwise."""
    ckpt = run / f"{stage}_ckpt"
    ckpt.mkdir(parents=True)
    train_config = {**TEST_PROFILE, **config}
    (ckpt / "trainer_state.json").write_text(json.dumps({"stage": stage, "step": step, "train_config": train_config}))
    return ckpt


# ------------------------------------------------------------------------------ a checkpoint is never lost
def test_a_stage_run_again_without_resume_is_refused_and_its_checkpoint_kept(tmp_path, monkeypatch):
    """A forgotten --resume trained the stage again from step 0 and saved over the checkpoint, without a word."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=2)
    before = files_of(run)
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=r"--out .*run already holds a context checkpoint \(step 2\) that this run "
                                         r"would overwrite: add --resume to continue it, or give another --out"):
        training.run_stage("context", run, profile="test", steps=2)
    with pytest.raises(ValueError, match=r"continue it with --resume and without --minutes"):
        training.run_stage("context", run, profile="test", minutes=1.0)
    assert files_of(run) == before


def test_a_denoiser_run_again_without_resume_is_refused(tmp_path, monkeypatch):
    save_pretrained(build_model("tiny", seed=0), tmp_path / "run" / "context_ckpt")
    fake_checkpoint(tmp_path / "run", "denoiser", 7)
    before = files_of(tmp_path / "run")
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=r"already holds a denoiser checkpoint \(step 7\)"):
        training.run_stage("denoiser", tmp_path / "run", profile="cpu", steps=20)
    assert files_of(tmp_path / "run") == before


# ------------------------------------------------------------------------------------- resuming the wrong run
@pytest.fixture
def test_profiles(monkeypatch):
    monkeypatch.setitem(training.PROFILES, "test", TEST_PROFILE)
    monkeypatch.setitem(training.PROFILES, "test2", {**TEST_PROFILE, "seq_len": 64, "prefix_len": 32})


@pytest.mark.parametrize("profile, message", [
    ("test2", "--profile test2 trains on seq_len 64, prefix_len 32; the context checkpoint in .*run was trained on "
              "seq_len 48, prefix_len 16: resume it with --profile test"),
    ("cpu", "--profile cpu trains on seq_len 256, prefix_len 64, block_size 16; .* resume it with --profile test"),
])
def test_a_resume_under_another_profile_is_refused_and_names_the_checkpoints(tmp_path, monkeypatch, test_profiles,
                                                                            profile, message):
    """Resumed without its --profile (the default is cpu), a gpu run changed its windows, lr, batch and steps: a
    note said so after the corpus was encoded, then it trained on."""
    fake_checkpoint(tmp_path / "run", "context", 1)
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=message):
        training.run_stage("context", tmp_path / "run", profile=profile, resume=True, steps=5)


def test_a_resume_with_nothing_left_names_the_profiles_steps_before_any_corpus_work(tmp_path, monkeypatch,
                                                                                   test_profiles):
    """No --steps given: the message quoted a "--steps 2" the person never typed, after encoding the corpus."""
    fake_checkpoint(tmp_path / "run", "context", 2)
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match="already at step 2: the test profile's 2 steps leave nothing to train "
                                         r"\(give a larger --steps to continue\)"):
        training.run_stage("context", tmp_path / "run", profile="test", resume=True)


def test_a_resume_says_it_does_not_read_init_from(tmp_path, monkeypatch, capsys, test_profiles):
    """--resume --init-from EXPORT on a run that has its own checkpoint continues that checkpoint: say so."""
    fake_checkpoint(tmp_path / "run", "denoiser", 3)
    no_corpus_work(monkeypatch, stop=True)
    with pytest.raises(Stop):
        training.run_stage("denoiser", tmp_path / "run", profile="test", resume=True, init_from="assets/default")
    assert (f"note: --resume continues the denoiser checkpoint in {tmp_path / 'run'} (step 3): --init-from "
            "assets/default is not read") in capsys.readouterr().err.splitlines()


# ---------------------------------------------------------------------------------------------- --init-from
@pytest.mark.parametrize("setup, resume, message", [
    ("missing", False, r"--init-from '.*missing': no such folder"),
    ("missing", True, r"--init-from '.*missing': no such folder"),
    ("file", False, r"--init-from '.*file' is a file, not a folder"),
    ("empty", False, r"--init-from '.*empty' holds no model \(no config.json\): give a context checkpoint"),
    ("run", False, r"--init-from '.*run0' is a training run directory, not a model: its context tower is "
                   r"--init-from .*run0/context_ckpt"),
    ("run", True, r"--init-from '.*run0' is a training run directory, not a model: continue its checkpoint with "
                  r"--out .*run0 --resume, or export it"),
])
def test_init_from_names_what_it_was_given(tmp_path, monkeypatch, setup, resume, message):
    """Each said "stage 2 starts from a trained context tower; none at X (run --stage context first)", or with
    --resume "X has no training_info.json with a denoiser stage", never naming --init-from."""
    paths = {"missing": tmp_path / "missing", "file": tmp_path / "file", "empty": tmp_path / "empty",
             "run": tmp_path / "run0"}
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    save_pretrained(build_model("tiny", seed=0), tmp_path / "run0" / "context_ckpt")
    (tmp_path / "run0" / "denoiser_ckpt").mkdir()
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=message):
        training.run_stage("denoiser", tmp_path / "out", resume=resume, init_from=str(paths[setup]), steps=50)
    assert not (tmp_path / "out").exists()


def test_init_from_on_the_context_stage_is_refused(tmp_path, monkeypatch):
    """It was ignored: an hour of context training from random weights, for a person who meant to continue one."""
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match="--init-from is read by --stage denoiser only"):
        training.run_stage("context", tmp_path / "out", init_from="assets/default")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage", ["context", "denoiser"])
def test_a_model_folder_as_out_is_refused_and_left_as_it_was(tmp_path, monkeypatch, stage):
    """`--out assets/default` wrote context_ckpt/ and data/ into the shipped model's folder and read its
    tokenizer.model as the run's; a model folder (config.json + model.safetensors) is not a run directory."""
    model = tmp_path / "model"
    save_pretrained(build_model("tiny", seed=0), model)
    before = files_of(model)
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=r"--out '.*model' holds an exported model \(config.json, model.safetensors\): "
                                         r"training writes its checkpoints"):
        training.run_stage(stage, model, profile="cpu")
    assert files_of(model) == before


# --------------------------------------------------------------------------------------------------- values
@pytest.mark.parametrize("kwargs, message", [
    (dict(minutes=float("inf")), r"--minutes must be > 0 and finite, got inf"),  # trained 10**9 steps at lr ~0
    (dict(minutes=float("nan")), r"--minutes must be > 0 and finite, got nan"),
    (dict(distill_batches=0), r"--distill-batches must be >= 1, got 0"),
    (dict(profile="bogus"), r"--profile 'bogus' is not a profile; choose from cpu, gpu"),  # a KeyError
    # round(0.1 * 4) = 0 distilled windows a step: the run trained on corpus text alone and said nothing
    (dict(distill_share=0.1, batch_size=4), r"--distill-share 0.1 of a batch of 4 windows rounds to no distilled "
                                            r"window: give at least 0.125 \(or 0 for none\)"),
])
def test_bad_values_are_refused_before_any_corpus_work(tmp_path, monkeypatch, kwargs, message):
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=message):
        training.run_stage("context", tmp_path / "out", **kwargs)
    assert not (tmp_path / "out").exists()


def test_run_stage_refuses_a_stage_it_does_not_train(tmp_path, monkeypatch):
    """run_stage('export') fell through to stage 2's code and stopped on an UnboundLocalError."""
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match="--stage 'export' trains nothing: choose context or denoiser"):
        training.run_stage("export", tmp_path / "out")


def test_distillation_settings_without_a_share_are_named(tmp_path, monkeypatch, capsys):
    save_pretrained(build_model("tiny", seed=0), tmp_path / "run" / "context_ckpt")
    no_corpus_work(monkeypatch, stop=True)
    with pytest.raises(Stop):
        training.run_stage("denoiser", tmp_path / "run", distill_from=0.5, steps=3)
    assert "note: --distill-from and --distill-batches act with --distill-share > 0 only: ignored" in \
        capsys.readouterr().err


# --------------------------------------------------------------------------------------------------- export
def test_an_export_never_writes_over_its_run_or_another(tmp_path, monkeypatch):
    """--to --out stopped on a SameFileError traceback after writing the weights into the run directory;
    --to <out>/denoiser_ckpt replaced the checkpoint's fp32 weights with the export's bf16 ones."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=1)
    only_context = files_of(run)
    with pytest.raises(ValueError, match=r"--out .*run has only a context stage: export copies a trained denoiser "
                                         r"\(stage 2\); run --stage denoiser --out .*run first"):
        training.export(run, tmp_path / "e")
    training_module.run_stage("denoiser", run, profile="test", steps=1)
    before = files_of(run)
    for to in (run, run / "denoiser_ckpt", run / "context_ckpt" / "x", run / "data"):
        with pytest.raises(ValueError, match=r"--to .* is the run directory or one of its checkpoints: the export "
                                             r"would overwrite them; give a folder of its own \(e.g. .*run/export\)"):
            training.export(run, to)
    other = tmp_path / "other"
    fake_checkpoint(other, "context", 1)
    with pytest.raises(ValueError, match="--to .*other' holds a training run or checkpoint"):
        training.export(run, other)
    with pytest.raises(ValueError, match="holds a training run or checkpoint"):
        training.export(run, other / "context_ckpt")
    assert files_of(run) == before and not (tmp_path / "e").exists()
    assert len(only_context) < len(before)
    assert (training.export(run, run / "export") / "config.json").is_file()  # a folder of its own inside: fine


def test_an_export_over_a_model_card_says_the_card_is_the_old_models(tmp_path, monkeypatch, capsys):
    """`twotower train --stage export` writes over assets/default by default, weights and records, but not its
    model card, which went on quoting the replaced model's figures without a word."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=1)
    training_module.run_stage("denoiser", run, profile="test", steps=1)
    capsys.readouterr()
    bare, carded = tmp_path / "bare", tmp_path / "carded"
    assert cli_main(["train", "--stage", "export", "--out", str(run), "--to", str(bare)]) == 0
    assert "model card" not in capsys.readouterr().err  # a new folder has no card to go stale
    assert cli_main(["train", "--stage", "export", "--out", str(run), "--to", str(carded)]) == 0  # an earlier export
    (carded / "README.md").write_text("# the earlier model's card\n")
    capsys.readouterr()
    assert cli_main(["train", "--stage", "export", "--out", str(run), "--to", str(carded)]) == 0
    err = capsys.readouterr().err
    assert f"{carded / 'README.md'} (the model card) was not rewritten" in err and "scripts/model_card.py" in err
    assert (carded / "README.md").read_text() == "# the earlier model's card\n"  # left to the user, not deleted
    assert (carded / "config.json").is_file()


@pytest.mark.parametrize("setup, message", [
    ("missing", r"--out '.*nothere': no such folder"),  # was "... has no tokenizer.model"
    ("file", r"--out '.*afile' is a file, not a folder"),
    ("empty", r"has no trained stage: export copies a trained denoiser"),  # was "denoiser_ckpt has no config.json"
])
def test_an_export_from_nothing_says_what_is_missing(tmp_path, setup, message):
    run = {"missing": tmp_path / "nothere", "file": tmp_path / "afile", "empty": tmp_path / "empty"}[setup]
    (tmp_path / "afile").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "tokenizer.model").write_bytes(b"x")
    with pytest.raises(ValueError, match=message):
        training.export(run, tmp_path / "e")
    assert not (tmp_path / "e").exists()


def test_export_to_a_file_is_refused_before_the_weights_are_read(tmp_path, monkeypatch):
    from twotower import checkpoint

    run = tmp_path / "run"
    fake_checkpoint(run, "denoiser", 1)
    (run / "denoiser_ckpt" / "config.json").write_text("{}")
    (run / "tokenizer.model").write_bytes(b"x")
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(checkpoint, "from_pretrained", lambda *a, **k: pytest.fail("read the weights first"))
    with pytest.raises(ValueError, match=r"--to '.*afile' is a file, not a folder"):
        training.export(run, tmp_path / "afile")


# ------------------------------------------------------------------------------------------- the command line
@pytest.mark.parametrize("argv, note", [
    (["--stage", "export", "--steps", "50", "--resume", "--lr", "1e-3"],
     "note: --stage export reads no --steps, --resume, --lr: ignored"),
    (["--stage", "context", "--distill-share", "0.5", "--full-mask-share", "0.1", "--to", "x"],
     "note: --stage context reads no --to, --distill-share, --full-mask-share: ignored"),
    (["--stage", "denoiser", "--to", "x"], "note: --stage denoiser reads no --to: ignored"),
    (["--stage", "denoiser", "--distill-share", "0.5", "--init-from", "m", "--profile", "gpu", "--device", "cuda"], None),
    (["--stage", "export", "--out", "r", "--to", "x"], None),
])
def test_flags_a_stage_does_not_read_are_named(monkeypatch, capsys, tmp_path, argv, note):
    """`--stage export --steps 50` exported and said nothing of --steps (training flags were dropped silently)."""
    monkeypatch.setattr(training, "run_stage", lambda *a, **k: {})
    monkeypatch.setattr(training, "export", lambda *a, **k: "x")
    # the default --to is the repository's assets/default, whose card would get a note: one of the test's own
    monkeypatch.setattr(cli_train, "DEFAULT_MODEL_DIR", tmp_path / "default")
    assert cli_main(["train", *argv]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note:")]
    assert notes == ([note] if note else [])


def test_every_train_flag_says_what_it_does():
    """--stage, --profile and --device had no help line in `twotower train --help`."""
    import argparse

    parser = argparse.ArgumentParser()
    cli_train.add_arguments(parser)
    assert all(action.help for action in parser._actions), [a.dest for a in parser._actions if not a.help]


@pytest.mark.parametrize("argv, line", [
    (["--stage", "context", "--minutes", "inf"], "twotower train: error: --minutes must be > 0 and finite, got inf"),
    (["--stage", "denoiser", "--init-from", "{tmp}/nothere", "--out", "{tmp}/run"],
     "twotower train: error: --init-from '{tmp}/nothere': no such folder"),
    (["--stage", "export", "--out", "{tmp}/run", "--to", "{tmp}/run"],
     "twotower train: error: --out '{tmp}/run': no such folder (export reads the run directory the stages wrote)"),
])
def test_the_command_prints_one_line_and_exits_2(tmp_path, monkeypatch, capsys, argv, line):
    no_corpus_work(monkeypatch)
    assert cli_main(["train", *[word.format(tmp=tmp_path) for word in argv]]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [line.format(tmp=tmp_path)]


@pytest.mark.parametrize("record, damage", [
    ([], "it holds no step count .* but None"),
    ({}, "it holds no step count .* but None"),
    ({"step": "abc", "train_config": {}}, "it holds no step count .* but 'abc'"),
    ({"step": -3, "train_config": {}}, "it holds no step count .* but -3"),
    ({"step": 5, "train_config": 7}, "its train_config is a int, not a dict"),
    ({"step": 5}, "it has no train_config"),
])
@pytest.mark.parametrize("resume", [False, True])
def test_a_damaged_checkpoint_record_is_named_not_a_traceback(tmp_path, monkeypatch, capsys, record, damage, resume):
    """Valid JSON of another shape in trainer_state.json stopped `train` on an AttributeError, KeyError or
    TypeError (and without --resume the refusal read "(step None)")."""
    no_corpus_work(monkeypatch)
    state = tmp_path / "run" / "context_ckpt" / "trainer_state.json"
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps(record))
    argv = ["train", "--stage", "context", "--steps", "10", "--out", str(tmp_path / "run")] + ["--resume"] * resume
    assert cli_main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in lines[0]
    assert re.search(f"error: {re.escape(str(state))} is damaged: {damage}; delete .*context_ckpt to train the "
                     "stage from the start", lines[0])
    assert json.loads(state.read_text()) == record  # nothing written over it


def test_a_damaged_tokenizer_in_init_from_is_named_and_nothing_is_copied(tmp_path, monkeypatch):
    """A fresh stage 2 --init-from an export copied the export's tokenizer into --out before reading it: the
    error named the copy, and the copy then made the same command with a good --init-from fail ("differs")."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=1)
    training_module.run_stage("denoiser", run, profile="test", steps=1)
    good = training.export(run, tmp_path / "good")
    bad = tmp_path / "bad"
    bad.mkdir()
    for item in good.iterdir():
        (bad / item.name).write_bytes(item.read_bytes())
    (bad / "tokenizer.model").write_bytes(b"not a sentencepiece model")
    out = tmp_path / "new"
    with pytest.raises(ValueError, match=f"cannot read the tokenizer {re.escape(str(bad / 'tokenizer.model'))}"):
        training_module.run_stage("denoiser", out, profile="test", steps=1, init_from=bad)
    assert not (out / "tokenizer.model").exists() and not (out / "inherited_info.json").exists()
    training_module.run_stage("denoiser", out, profile="test", steps=1, init_from=good)  # the retry works
    assert (out / "denoiser_ckpt" / "config.json").is_file()


def test_a_diverging_step_ends_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    """`--resume --lr 1e30` ran on with loss nan and saved NaN weights over the good checkpoint, exit 0; the next
    stage found them. A step whose loss (or gradient) is not finite now ends the run before it is taken."""
    training, run = tiny_training_run(monkeypatch, tmp_path)
    training.run_stage("context", run, profile="test", steps=2)
    weights = run / "context_ckpt" / "model.safetensors"
    good = weights.read_bytes()
    real, calls = training.context_loss, []

    def nan_on_the_second_step(model, batch):
        calls.append(1)
        loss = real(model, batch)
        return loss * float("nan") if len(calls) == 2 else loss

    monkeypatch.setattr(training, "context_loss", nan_on_the_second_step)
    with pytest.raises(ValueError, match=r"the context stage diverged at step 4 \(loss nan, .*try a lower --lr; the step was "
                                         r"not taken and .*context_ckpt keeps step 2"):
        training.run_stage("context", run, profile="test", resume=True, steps=6)
    assert weights.read_bytes() == good  # no NaN step was saved over it
    monkeypatch.setattr(training, "context_loss", real)  # a finite loss whose gradient is not: the same
    real_clip = training.torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(training.torch.nn.utils, "clip_grad_norm_",
                        lambda params, norm: real_clip(params, norm) * float("inf"))
    with pytest.raises(ValueError, match=r"diverged at step 3 \(loss [0-9.]+, gradient norm inf\)"):
        training.run_stage("context", run, profile="test", resume=True, steps=6)
    monkeypatch.setattr(training.torch.nn.utils, "clip_grad_norm_", real_clip)
    assert weights.read_bytes() == good
    with pytest.raises(ValueError, match="--lr must be a number > 0 and <= 1"):
        training.run_stage("context", run, profile="test", resume=True, steps=6, lr=1e30)


def test_an_export_into_a_folder_of_other_things_is_refused(tmp_path, monkeypatch, capsys):
    """`--to runs` put a model's files among the run folders, and another project's config.json was replaced
    without a word: an export replaces an earlier export (or assets/default), and fills a new or empty folder."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=1)
    training_module.run_stage("denoiser", run, profile="test", steps=1)
    other = tmp_path / "project"
    other.mkdir()
    (other / "config.json").write_text('{"name": "another project"}')
    for to in (tmp_path, other):  # the folder above the run, and another project's
        assert cli_main(["train", "--stage", "export", "--out", str(run), "--to", str(to)]) == 2
        assert "holds other files and no two-tower model" in capsys.readouterr().err
    assert (other / "config.json").read_text() == '{"name": "another project"}'
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_main(["train", "--stage", "export", "--out", str(run), "--to", str(empty)]) == 0


def test_a_run_inside_the_model_it_starts_from_is_refused(tmp_path, monkeypatch):
    """`--init-from M --out M/run` filled the export M with the run's token caches, tokenizer and checkpoints;
    --out given as a model folder itself was already refused."""
    import shutil

    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    model = tmp_path / "model"
    save_pretrained(build_model("tiny"), model)
    shutil.copy(run / "tokenizer.model", model / "tokenizer.model")
    before = sorted(p.name for p in model.iterdir())
    with pytest.raises(ValueError, match=r"is inside --init-from .*model', the model it starts from"):
        training_module.run_stage("denoiser", model / "run", profile="test", steps=1, init_from=str(model))
    assert sorted(p.name for p in model.iterdir()) == before  # nothing made in it


@pytest.mark.parametrize("profile, device, said", [("gpu", "cpu", True), ("cpu", "cpu", False), ("gpu", "cuda", False)])
def test_the_gpu_profile_on_a_cpu_is_said(monkeypatch, capsys, profile, device, said):
    """`train --profile gpu` on the default --device cpu took 148 s for one step without a word."""
    from twotower import training
    from twotower.cli import main

    monkeypatch.setattr(training, "run_stage", lambda *args, **kwargs: {"stage": args[0]})  # no run: the note only
    assert main(["train", "--stage", "context", "--profile", profile, "--device", device, "--out", "x"]) == 0
    err = capsys.readouterr().err
    assert ("note: --profile gpu on --device cpu: its batch and windows are sized for a GPU" in err) is said


def test_a_context_stage_under_a_trained_denoiser_is_refused(tmp_path, monkeypatch, test_profiles):
    """The denoiser keeps its own copy of the tower it trained on, which the export ships: more context steps in
    its folder reached no model while the export's records counted them (a user continued the context tower after
    stage 2 and exported the old tower labelled 118 steps)."""
    run = tmp_path / "run"
    fake_checkpoint(run, "context", 112)
    fake_checkpoint(run, "denoiser", 7)
    before = files_of(run)
    no_corpus_work(monkeypatch)
    for resume in (True, False):
        with pytest.raises(ValueError, match=r"holds a denoiser \(step 7\) trained on its context tower.*would reach "
                                             r"no export"):
            training.run_stage("context", run, profile="test", resume=resume, steps=200)
    (run / "context_ckpt" / "trainer_state.json").unlink()  # a fresh tower's 2 steps were labelled as the old one
    with pytest.raises(ValueError, match="would reach no export"):
        training.run_stage("context", run, profile="test", steps=2)
    del before["context_ckpt/trainer_state.json"]
    assert files_of(run) == before


@pytest.mark.parametrize("flags, message", [
    (["--batch-size", "100000"], "--batch-size must be >= 1 and <= 1024, got 100000"),  # 26 GB, then a traceback
    (["--steps", "1000000000000"], "--steps must be >= 1 and <= 10000000"),  # an ETA of 168 million hours
])
def test_training_sizes_past_any_run_are_refused_in_a_line(tmp_path, monkeypatch, capsys, flags, message):
    no_corpus_work(monkeypatch)
    assert cli_main(["train", "--stage", "context", "--out", str(tmp_path / "run"), *flags]) == 2
    assert message in capsys.readouterr().err


def test_a_denoiser_checkpoint_given_as_the_context_tower_is_refused(tmp_path, monkeypatch, test_profiles):
    """--init-from <run>/denoiser_ckpt read as a context tower threw the trained denoiser away without a word."""
    source = tmp_path / "source"
    ckpt = fake_checkpoint(source, "denoiser", 40)
    (ckpt / "config.json").write_text("{}")
    no_corpus_work(monkeypatch)
    with pytest.raises(ValueError, match=r"is a denoiser checkpoint, not a context tower: continue it with --out .*"
                                         r"source --resume, or start stage 2 from .*source/context_ckpt"):
        training.run_stage("denoiser", tmp_path / "run", profile="test", init_from=str(ckpt))


def test_a_plain_resume_keeps_its_runs_settings_and_a_given_flag_changes_them(tmp_path, monkeypatch, capsys):
    """The stop message says "--resume continues from it", but a plain --resume took the profile's defaults: the
    batch 2 -> 16, the target 112 -> 1000 steps, distillation off, fp32 -> bf16, each said in a note."""
    training_module, run = tiny_training_run(monkeypatch, tmp_path)
    training_module.run_stage("context", run, profile="test", steps=3, batch_size=2, lr=1e-3)
    state = run / "context_ckpt" / "trainer_state.json"
    meta = json.loads(state.read_text())
    meta["step"] = 2  # as if stopped at step 2 of its 3
    state.write_text(json.dumps(meta))
    capsys.readouterr()
    training_module.run_stage("context", run, profile="test", resume=True)  # to its own target, on its own batch
    last = json.loads(state.read_text())["segments"][-1]
    assert last["to_step"] == 3 and last["train_config"]["batch_size"] == 2 and last["train_config"]["lr"] == 1e-3
    assert "resuming with other settings" not in capsys.readouterr().err
    with pytest.raises(ValueError, match="already at step 3: its run's own target, 3 steps, leaves nothing to train"):
        training_module.run_stage("context", run, profile="test", resume=True)
    training_module.run_stage("context", run, profile="test", resume=True, steps=4, batch_size=4)
    assert "resuming with other settings than the checkpoint's: total_steps 3 -> 4, batch_size 2 -> 4 (as given" in \
        capsys.readouterr().err
    assert json.loads(state.read_text())["segments"][-1]["train_config"]["batch_size"] == 4
