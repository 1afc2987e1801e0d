"""The Python API's switches and speculative's settings are checked as the numbers are: a switch takes a real
boolean (a string such as "no" is truthy, and once switched the variant on), and draft_steps /
min_draft_confidence are refused in every mode, not only where speculative reads them. Also what top-k /
top-p mean, in check_sampling and in the CLI's help."""

import argparse

import numpy as np
import pytest

from spec_decode import iter_speculative
from tiny_models import decoding_model, random_ids
from twotower import iter_mask_diffusion
from twotower.cli import main as cli_main
from twotower.decoding import drain
from twotower.engine import Engine
from twotower.tokenizer import ByteTokenizer
from twotower.validation import check_flag, check_sampling

MODES = ("diffusion", "speculative", "mock_ar", "ar")
PROMPT = random_ids((6,), 3).tolist()


@pytest.fixture(scope="module")
def engine():
    return Engine(decoding_model(0).eval(), ByteTokenizer(), "tiny")


# ----------------------------------------------------------------------------------------------------
# check_flag
@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (1, True), (0, False),
                                             (np.bool_(True), True), (np.bool_(False), False),
                                             (np.int64(1), True), (np.int8(0), False)])
def test_check_flag_accepts_real_booleans_and_returns_a_bool(value, expected):
    result = check_flag("anchor_first", value)
    assert result is expected


@pytest.mark.parametrize("value", ["no", "false", "False", "", "yes", 2, -1, 1.0, 0.0, None, np.float64(1.0), [True]])
def test_check_flag_refuses_anything_else_naming_the_argument(value):
    with pytest.raises(ValueError, match=r"^anchor_first must be True or False, got ") as info:
        check_flag("anchor_first", value)
    assert repr(value) in str(info.value)


# ----------------------------------------------------------------------------------------------------
# Engine.stream: a string switch is refused at the call, in every mode (it used to run as if True)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("flag, value", [("anchor_first", "no"), ("adaptive", "false"), ("stop_at_eos", "no"),
                                         ("snapshot_rollback", "no")])
def test_stream_refuses_a_string_for_a_switch_in_every_mode(engine, mode, flag, value):
    with pytest.raises(ValueError, match=rf"^{flag} must be True or False, got '{value}'$"):
        engine.stream(mode, PROMPT, max_new_tokens=4, block_size=2, steps_per_block=2, **{flag: value})


def test_stream_reads_numpy_and_int_switches_as_their_value(engine):
    """np.bool_(False) and 0 leave anchoring off (same output as False); np.bool_(True) and 1 turn it on."""
    def run(anchor):
        return drain(engine.stream("diffusion", PROMPT, max_new_tokens=4, block_size=2, steps_per_block=2,
                                   anchor_first=anchor))

    off, on = run(False), run(True)
    assert off.stats["anchor_first"] is False and on.stats["anchor_first"] is True and on.stats["anchored_tokens"] == 2
    for value, reference in ((np.bool_(False), off), (0, off), (np.bool_(True), on), (1, on)):
        result = run(value)
        assert result.stats["anchor_first"] is reference.stats["anchor_first"]
        assert result.new_tokens == reference.new_tokens


# ----------------------------------------------------------------------------------------------------
# the samplers check their own switches at their entry points (the API below Engine.stream)
def test_iter_mask_diffusion_refuses_a_string_anchor_first(engine):
    with pytest.raises(ValueError, match="anchor_first must be True or False, got 'no'"):
        iter_mask_diffusion(engine.model, PROMPT, 4, 2, 2, anchor_first="no")


@pytest.mark.parametrize("flag", ["adaptive", "per_position_rollback"])
def test_iter_speculative_refuses_a_string_switch(engine, flag):
    with pytest.raises(ValueError, match=rf"{flag} must be True or False, got 'false'"):
        iter_speculative(engine.model, PROMPT, max_new_tokens=4, block_size=2, **{flag: "false"})


def test_iter_speculative_reports_its_switches_as_bools(engine):
    result = drain(iter_speculative(engine.model, PROMPT, max_new_tokens=4, block_size=2, adaptive=np.bool_(True),
                                    per_position_rollback=0))
    assert result.stats["adaptive"] is True and result.stats["per_position_rollback"] is False


# ----------------------------------------------------------------------------------------------------
# draft_steps / min_draft_confidence: checked in every mode when given (they reached a check in speculative only)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("settings, message", [(dict(draft_steps=-3), "draft steps must be >= 1 and <= 4096, got -3"),
                                               (dict(draft_steps=1.5), "draft steps must be an integer"),
                                               (dict(min_draft_confidence=2.0), r"min_draft_confidence must be in \[0, 1\]"),
                                               (dict(min_draft_confidence="0.5"), "min_draft_confidence must be in")])
def test_stream_checks_speculative_settings_in_every_mode(engine, mode, settings, message):
    with pytest.raises(ValueError, match=message):
        engine.stream(mode, PROMPT, max_new_tokens=4, block_size=2, steps_per_block=2, **settings)


@pytest.mark.parametrize("mode", MODES)
def test_stream_takes_valid_speculative_settings_in_every_mode(engine, mode):
    result = drain(engine.stream(mode, PROMPT, max_new_tokens=3, block_size=2, steps_per_block=2, draft_steps=1,
                                 min_draft_confidence=0.5))
    assert len(result.new_tokens[0]) >= 1


def test_generate_refuses_a_bad_draft_setting_before_the_model_loads(monkeypatch, capsys):
    """`--mode ar --draft-steps -3` ran (the flag noted as ignored); now one line, and no model loaded."""
    import twotower.run_setup as run_setup

    loaded = []
    monkeypatch.setattr(run_setup, "engine_from_args", lambda args: loaded.append(args))
    for flags, message in ((["--draft-steps", "-3"], "draft steps must be >= 1 and <= 4096, got -3"),
                           (["--min-draft-confidence", "2"], "--min-draft-confidence must be in [0, 1]")):
        assert cli_main(["generate", "--preset", "tiny", "--mode", "ar", *flags, "x"]) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    assert loaded == []


# ----------------------------------------------------------------------------------------------------
# top-k / top-p: what 0 and 1 mean
def test_check_sampling_reads_top_k_0_as_off_and_says_so():
    assert check_sampling(0.7, 0, None) == (0.7, None, None)
    assert check_sampling(0.7, 5, 1.0) == (0.7, 5, 1.0)
    doc = " ".join(check_sampling.__doc__.split())
    assert "0 means off" in doc and "(0, 1]" in doc


def test_generate_help_says_what_top_k_and_top_p_do():
    from twotower import cli_generate

    parser = argparse.ArgumentParser()
    cli_generate.add_arguments(parser)
    helps = {action.dest: action.help or "" for action in parser._actions}
    for name in ("top_k", "top_p"):
        assert "--temperature > 0 only" in helps[name] and "unset: off" in helps[name], name
    assert "0 or unset: off" in helps["top_k"] and "(0, 1]" in helps["top_p"]


def test_evaluate_refuses_a_string_anchor_first_before_scoring(engine):
    """evaluate() resolves its settings up front: anchor_first="no" used to become True there (bool("no"))."""
    from twotower.evaluation import evaluate

    with pytest.raises(ValueError, match=r"^anchor_first must be True or False, got 'no'$"):
        evaluate(engine, modes=("ar", "diffusion"), n_next_line=1, n_syntax=1, anchor_first="no")


# ----------------------------------------------------------------------------------------------------
# Engine.decode
@pytest.mark.parametrize("ids, message", [([5.7], "a token id must be an integer, got 5.7"),
                                          (["7"], "got '7'"), ([None], "got None"), ([True], "got True"),
                                          ([float("nan")], "got nan"), (5, "a sequence of token ids, got int"),
                                          ("abc", "a sequence of token ids, got str")])
def test_decode_refuses_what_is_not_a_token_id_by_name(engine, ids, message):
    """int() read 5.7 as id 5, "7" as id 7 and True as id 1; None and "x" raised Python's own errors."""
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        engine.decode(ids)


def test_decode_takes_a_tensor_an_array_and_their_elements_and_drops_ids_without_a_piece(engine):
    import torch

    a, b = engine.tokenizer.encode("hi")
    assert engine.decode([a, b]) == "hi"
    for ids in (torch.tensor([a, b]), np.array([a, b]), [torch.tensor(a), np.int64(b)], [float(a), b]):
        assert engine.decode(ids) == "hi"
    assert engine.decode([-1, a, 10**30, b]) == "hi"  # no piece: dropped, as a wide head can generate them
