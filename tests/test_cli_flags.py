"""Every flag of `twotower train` and `twotower generate` reaches the function that acts on it with the value
typed: the commands run in-process with that function replaced by a recorder (no training; the tiny preset's
random model for generate)."""

import inspect
import json

import pytest

from twotower import run_setup, training
from twotower.cli import main as cli_main


def test_train_passes_every_flag_to_run_stage(monkeypatch, capsys):
    """training.main calls run_stage positionally: a dropped or swapped argument (the budget, --resume, the
    distillation share) would train something else than the command says, silently."""
    calls = []
    signature = inspect.signature(training.run_stage)

    def record(*args, **kwargs):
        calls.append(signature.bind(*args, **kwargs).arguments)
        return {"step": 7}

    monkeypatch.setattr(training, "run_stage", record)
    argv = ["train", "--stage", "denoiser", "--profile", "gpu", "--out", "runs/x", "--steps", "123", "--resume",
            "--device", "cuda:1", "--distill-share", "0.75", "--distill-from", "0.4", "--distill-batches", "5",
            "--full-mask-share", "0.1", "--minutes", "2.5", "--dtype", "bf16", "--batch-size", "32", "--lr", "0.003",
            "--init-from", "assets/x"]
    assert cli_main(argv) == 0
    assert json.loads(capsys.readouterr().out) == {"step": 7}  # the stage's last record, as printed
    assert calls == [dict(stage="denoiser", run_dir="runs/x", profile="gpu", resume=True, steps=123, device="cuda:1",
                          init_from="assets/x", distill_share=0.75, dtype="bfloat16", lr=0.003, minutes=2.5,
                          distill_from=0.4, distill_batches=5, full_mask_share=0.1, batch_size=32)]


def test_train_defaults_reach_run_stage_unset(monkeypatch, capsys):
    """Without flags the profile decides: nothing arrives set (no --resume, no budget, no override)."""
    calls = []
    signature = inspect.signature(training.run_stage)
    monkeypatch.setattr(training, "run_stage", lambda *a, **k: calls.append(signature.bind(*a, **k).arguments) or {})
    assert cli_main(["train", "--stage", "context"]) == 0
    (call,) = calls
    assert call.pop("stage") == "context" and call.pop("run_dir") == "runs/default" and call.pop("profile") == "cpu"
    assert call.pop("resume") is False and call.pop("device") == "cpu"
    assert call == dict.fromkeys(call, None) and len(call) == len(signature.parameters) - 5


def test_train_export_takes_out_and_to(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(training, "export", lambda *a, **k: calls.append((a, k)) or "assets/y")
    monkeypatch.setattr(training, "run_stage", lambda *a, **k: pytest.fail("export trains nothing"))
    assert cli_main(["train", "--stage", "export", "--out", "runs/x", "--to", "assets/y"]) == 0
    assert calls == [(("runs/x", "assets/y"), {})] and capsys.readouterr().out == "assets/y\n"


@pytest.fixture
def streams(monkeypatch):
    """The keyword arguments of each engine.stream call that `twotower generate` makes (the real stream runs:
    the command still prints its text)."""
    calls = []
    real_engine_from_args = run_setup.engine_from_args

    def engine_from_args(args):
        engine = real_engine_from_args(args)
        real_stream = engine.stream

        def stream(mode, ids, **kwargs):
            calls.append({"mode": mode, **kwargs})
            return real_stream(mode, ids, **kwargs)

        engine.stream = stream
        return engine

    monkeypatch.setattr(run_setup, "engine_from_args", engine_from_args)
    return calls


TINY = ["generate", "--preset", "tiny", "--max-new-tokens", "3"]
SAMPLING = ["--temperature", "0.7", "--top-k", "5", "--top-p", "0.9", "--seed", "11"]
SAMPLED = dict(max_new_tokens=3, temperature=0.7, top_k=5, top_p=0.9, seed=11)


@pytest.mark.parametrize("mode, flags, expected", [
    ("diffusion", ["--gamma", "0.6", "--block-size", "4", "--steps", "2", "--anchor-first"],
     dict(gamma=0.6, block_size=4, steps_per_block=2, anchor_first=True)),
    ("speculative", ["--gamma", "0.6", "--block-size", "4", "--steps", "2", "--draft-steps", "3", "--adaptive",
                     "--min-draft-confidence", "0.25"],
     dict(gamma=0.6, block_size=4, draft_steps=3, adaptive=True, min_draft_confidence=0.25)),
    ("mock-ar", [], {}),
    ("ar", [], {}),
])
def test_generate_passes_every_flag_to_the_engine(streams, capsys, mode, flags, expected):
    """Each mode's own settings and the sampling ones (temperature, top-k, top-p, seed) arrive as typed, and
    --no-eos arrives as stop_at_eos=False: a flag dropped on the way would decode with the model's default."""
    assert cli_main(TINY + ["--mode", mode, "--no-eos", *SAMPLING, *flags, "x = "]) == 0
    assert capsys.readouterr().out.startswith("x = ")
    (call,) = streams
    assert call["mode"] == mode and call["stop_at_eos"] is False
    for name, value in {**SAMPLED, **expected}.items():
        assert call[name] == value, name


def test_generate_defaults_stop_at_eos_and_leave_the_variants_off(streams, capsys):
    """Without --no-eos generation stops at EOS; without --adaptive / --anchor-first neither variant runs;
    unset settings arrive as None (the model's defaults) and --steps alone sets speculative's draft passes."""
    assert cli_main(TINY + ["--mode", "speculative", "--steps", "2", "x"]) == 0
    (call,) = streams
    assert call["stop_at_eos"] is True and call["adaptive"] is False and call["anchor_first"] is False
    assert call["draft_steps"] == 2 and call["temperature"] == 0.0
    for name in ("gamma", "block_size", "top_k", "top_p", "seed", "min_draft_confidence"):
        assert call[name] is None, name


def test_generate_takes_a_mode_in_any_case(streams, capsys):
    """--mode AR was refused by argparse while bench's --modes AR and the Python API took it."""
    assert cli_main(TINY + ["--mode", "AR", "x"]) == 0 and cli_main(TINY + ["--mode", "Mock-AR", "x"]) == 0
    assert [call["mode"] for call in streams] == ["ar", "mock-ar"]
    with pytest.raises(SystemExit):
        cli_main(TINY + ["--mode", "fast", "x"])
    assert "invalid choice: 'fast'" in capsys.readouterr().err
