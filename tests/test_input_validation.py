"""Bad input gets one clear ValueError from the Python API and the engine, raised at the call (before any
event is asked for), and saying what was wrong; never a shape error or a traceback from inside a tower."""

import re

import pytest
import torch

from twotower import build_model, generate_ar, generate_mask_diffusion, generate_mock_ar, iter_ar, iter_mask_diffusion
from twotower.engine import load_engine

BAD_PROMPTS = [  # (input_ids, what the message must say)
    ([], "empty"),
    ([[]], "empty"),
    (torch.zeros(1, 0, dtype=torch.long), "empty"),
    (torch.ones(1, 3, dtype=torch.long, device="meta"), "on the .meta. device hold no values"),
    ("def f():", "encode text with the tokenizer"),
    ([5, 261], r"token id 261 is outside the vocabulary \[0, 261\)"),
    ([-1, 5], "token id -1 is outside the vocabulary"),
    ([[5, 6], [7]], "same token length"),
    ([5.5, 6.0], "integers"),
    (torch.zeros(1, 2, 3, dtype=torch.long), "shape"),
    ([[5, 6], 7], "rows mixed with single ids"),  # was a TypeError from len()
    ([torch.tensor([5, 6]), torch.tensor([7])], "same token length"),
    # past int64: torch's "Overflow when unpacking long long" was quoted as "prompt ids must be integers"
    ([5, 2**70], r"token id about 1\.18e21 is outside the vocabulary"),
    ([[5, 6], [7, -2**64]], r"token id about -1\.84e19 is outside the vocabulary"),
]

BAD_DIFFUSION_SETTINGS = [  # (keyword arguments, what the message must say)
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(max_new_tokens=-5), "max_new_tokens must be >= 1"),
    (dict(max_new_tokens=2.5), "max_new_tokens must be an integer"),
    (dict(max_new_tokens=float("inf")), "max_new_tokens must be an integer"),
    (dict(max_new_tokens="8"), "max_new_tokens must be an integer"),
    (dict(block_size=0), "block size S must be >= 1"),
    (dict(block_size=-2), "block size S must be >= 1"),
    (dict(block_size=10**6), "block size S must be >= 1 and <= 4096"),  # every pass runs S positions: 32 GB here
    (dict(steps_per_block=0), "steps per block must be >= 1"),
    (dict(confidence_threshold=0.0), r"γ must be in \(0, 1\]"),
    (dict(confidence_threshold=1.01), r"γ must be in \(0, 1\]"),
    (dict(confidence_threshold=-0.5), r"γ must be in \(0, 1\]"),
    (dict(confidence_threshold=float("nan")), r"γ must be in \(0, 1\]"),
    (dict(temperature=-0.1), r"temperature must be 0 \(greedy\) or between 0.0001 and 10000"),
    (dict(eos_token_id=261), "eos_token_id 261 is outside the vocabulary"),
    (dict(mask_token_id=3), "mask_token_id=4"),
]

BAD_SAMPLING = [
    (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature must be 0 .greedy."),  # was: mask tokens in the output
    (dict(temperature=1e300), "temperature must be 0 .greedy."),  # inf in fp32: was mask tokens, or a crash
    (dict(temperature=1e-40), "between 0.0001 and 10000, got 1e-40"),  # 0 in fp32: was pad / EOS tokens
    (dict(seed=2**70), "seed must be >= 0"),
    (dict(seed=1.5), "seed must be an integer"),
    (dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
    (dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
    (dict(top_k=-1), "top_k must be >= 0"),
    (dict(eos_token_id=-1), "eos_token_id must be >= 0"),
]


@pytest.fixture(scope="module")
def model():
    return build_model("tiny", seed=0)


@pytest.mark.parametrize("generate", [generate_mask_diffusion, generate_mock_ar, generate_ar])
@pytest.mark.parametrize("prompt,message", BAD_PROMPTS)
def test_bad_prompt_ids(model, generate, prompt, message):
    with pytest.raises(ValueError, match=message):
        generate(model, prompt, max_new_tokens=4)


@pytest.mark.parametrize("kwargs,message", BAD_DIFFUSION_SETTINGS)
def test_bad_diffusion_settings(model, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate_mask_diffusion(model, [5, 6, 7], **{"max_new_tokens": 4, **kwargs})


@pytest.mark.parametrize("generate", [generate_mock_ar, generate_ar])
@pytest.mark.parametrize("kwargs,message", BAD_SAMPLING)
def test_bad_sampling_settings(model, generate, kwargs, message):
    with pytest.raises(ValueError, match=message):
        generate(model, [5, 6, 7], **{"max_new_tokens": 4, **kwargs})


def test_iterators_check_at_the_call_not_at_the_first_event(model):
    """A UI builds the iterator in one place and drains it in another: the error must come at the call."""
    with pytest.raises(ValueError, match="γ"):
        iter_mask_diffusion(model, [5, 6], confidence_threshold=2.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        iter_ar(model, [5, 6], max_new_tokens=0)
    with pytest.raises(ValueError, match="seed"):
        iter_ar(model, [5, 6], seed=-5)


def test_numpy_ids_integers_and_whole_floats_are_accepted(model):
    np = pytest.importorskip("numpy")
    result = generate_mask_diffusion(model, np.array([5, 6, 7]), max_new_tokens=np.int64(5),
                                     block_size=np.int32(4), steps_per_block=4.0, confidence_threshold=np.float64(0.9))
    assert result.sequences.shape == (1, 8)
    # unsigned arrays (the corpus' token streams are uint16), rows that are tensors, numpy float settings
    reference = generate_ar(model, [[5, 6, 7], [8, 9, 10]], 4, temperature=0.7, top_p=0.9, seed=3).sequences
    for ids in (np.array([[5, 6, 7], [8, 9, 10]], dtype=np.uint16), torch.tensor([[5, 6, 7], [8, 9, 10]]).to(torch.uint16),
                [torch.tensor([5, 6, 7]), torch.tensor([8, 9, 10])], [np.array([5, 6, 7]), np.array([8, 9, 10])],
                [list(np.array([5, 6, 7])), list(np.array([8, 9, 10]))]):  # rows of numpy integer scalars
        out = generate_ar(model, ids, 4, temperature=np.float32(0.7), top_p=np.float64(0.9), seed=3).sequences
        assert torch.equal(out, reference), type(ids)
    with pytest.raises(ValueError, match="top_p must be in"):
        generate_ar(model, [5], 2, top_p=True)
    one = generate_ar(model, list(np.array([5, 6, 7])), 4).sequences  # one prompt of numpy integer scalars
    assert torch.equal(one, generate_ar(model, [5, 6, 7], 4).sequences)


def test_a_step_callback_that_is_not_a_function_is_refused_before_the_prefill(model, monkeypatch):
    monkeypatch.setattr(model, "context_forward", lambda *a, **k: pytest.fail("the prefill ran"))
    for generate in (generate_mask_diffusion, generate_mock_ar, generate_ar):
        with pytest.raises(ValueError, match="step_callback must be a function of one StepEvent, got int"):
            generate(model, [5, 6], max_new_tokens=2, step_callback=5)


@pytest.mark.parametrize("text, message", [("", "empty"), ("   \n\t", "holds only whitespace"), (None, "empty"),
                                           (42, "must be text .str., got int"), (b"abc", "got bytes")])
def test_engine_refuses_an_empty_or_non_text_prompt(engine, text, message):
    with pytest.raises(ValueError, match=message):
        engine.encode_prompt(text)


def test_a_prompt_the_tokenizer_reads_as_nothing_is_not_called_empty(engine, monkeypatch):
    """A tokenizer.json without byte fallback encodes text it has no piece for to []: the sampler then said
    "the prompt is empty: give at least one token" of a prompt that was not."""
    from dataclasses import replace

    class Blind:  # the engine's tokenizer, but it knows no piece
        def __getattr__(self, name):
            return getattr(engine.tokenizer, name)

        def encode(self, text):
            return []

    blind = replace(engine, tokenizer=Blind())
    with pytest.raises(ValueError, match="the prompt encodes to no tokens with this model's tokenizer: 'def f'"):
        blind.encode_prompt("def f")


def test_engine_refuses_an_overlong_prompt(engine):
    with pytest.raises(ValueError, match=f"limit is {engine.max_prompt_tokens} tokens"):
        engine.encode_prompt("x" * (engine.max_prompt_tokens + 1))


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="beam"), "unknown mode 'beam'; choose one of diffusion, speculative, mock_ar, ar"),
    (dict(mode="diffusion", gamma=0), "γ"),
    (dict(mode="diffusion", block_size=0), "block size S"),
    (dict(mode="diffusion", steps_per_block=0), "steps per block"),
    (dict(mode="mock-ar", max_new_tokens=0), "max_new_tokens"),
    (dict(mode="ar", top_p=7), "top_p"),
])
def test_engine_stream_refuses_bad_settings_at_the_call(engine, kwargs, message):
    ids = engine.encode_prompt("x = 1")
    mode = kwargs.pop("mode")
    with pytest.raises(ValueError, match=message):
        engine.stream(mode, ids, **kwargs)


def test_engine_modes_spellings_and_description(engine):
    ids = engine.encode_prompt("x = 1")
    for spelling, mode in (("Mock-AR", "mock_ar"), (" ar ", "ar"), ("DIFFUSION", "diffusion")):
        done = list(engine.stream(spelling, ids, max_new_tokens=3))[-1]
        assert done.kind == "done" and done.stats["mode"] == mode
    info = engine.describe()
    assert info["layer_pattern"] == "M*EM-*" and info["vocab_size"] == 261
    assert info["ctx_device"] == info["den_device"] == "cpu" and info["dtype"] == "fp32"
    assert info["params_context"] == engine.model.num_parameters("context") > 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(preset="huge"), "unknown preset 'huge'"),
    (dict(model_dir="/nonexistent/model"), "model directory not found"),
    (dict(preset="tiny", ctx_device="gpu"), "not a device name"),
    (dict(preset="tiny", den_device="cuda:7"), "cuda:7"),
    (dict(preset="tiny", dtype="int8"), "unknown dtype 'int8': choose bf16 or fp32"),  # was torch's "Invalid device string"
    (dict(preset="tiny", den_dtype=torch.int64), "den_dtype must be one of bf16, bfloat16, fp32, float32 or a"),
])
def test_load_engine_refuses_bad_choices(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_engine(**kwargs)


def test_an_install_without_the_embedded_model_says_where_it_ships(monkeypatch, tmp_path, capsys):
    """`pip install .` (not -e) copies the packages, not assets/: the default model's absence was reported as
    'model directory not found: .../site-packages/assets/default', naming no way out."""
    from twotower import engine as engine_module

    monkeypatch.setattr(engine_module, "DEFAULT_MODEL_DIR", tmp_path / "site-packages" / "assets" / "default")
    with pytest.raises(ValueError, match=r"embedded default model is not beside .*pip install -e \..*--model DIR"):
        load_engine()
    from twotower.cli import main as cli_main  # the memory plan reads the same folder's config.json

    assert cli_main(["plan"]) == 2
    assert "embedded default model is not beside" in capsys.readouterr().err


def test_load_engine_takes_dtype_names_as_the_cli_spells_them():
    engine = load_engine(preset="tiny", dtype="fp32", den_dtype="bf16")
    assert engine.model.context_lm_head.weight.dtype == torch.float32 and engine.model.lm_head.weight.dtype == torch.bfloat16


def test_drain_and_the_samplers_name_what_they_were_given_instead():
    """drain([1, 2, 3]) read as "'int' object has no attribute 'kind'", an Engine handed to a sampler as "'Engine'
    object has no attribute 'config'"."""
    from twotower import drain
    from twotower.engine import load_engine

    engine = load_engine(preset="tiny")
    with pytest.raises(ValueError, match="yielded a int"):
        drain([1, 2, 3])
    with pytest.raises(ValueError, match="got NoneType"):
        drain(None)
    with pytest.raises(ValueError, match=r"got Engine \(an Engine: pass engine.model"):
        generate_ar(engine, [5, 6])
    from spec_decode import generate_speculative

    with pytest.raises(ValueError, match="got Engine"):
        generate_speculative(engine, [5, 6])
    events = engine.stream("ar", [5, 6], max_new_tokens=3)
    assert len(drain(events).new_tokens[0]) == 3  # the real thing still drains
    with pytest.raises(ValueError, match="already used up: a sampler's events run once"):  # was "ended without a
        drain(events)  # 'done' event", a RuntimeError that read as the sampler's bug


def test_a_uint64_id_past_int64_is_named_as_given_not_wrapped():
    import numpy as np

    from twotower.validation import as_batch

    with pytest.raises(ValueError, match="token id 9223372036854775813 is outside"):  # was -9223372036854775803
        as_batch(np.array([2**63 + 5], dtype=np.uint64), 261)


@pytest.mark.parametrize("call, message", [
    (lambda tok, out: tok.decode(out.new_tokens), r"one row of token ids at a time: decode\(result.new_tokens\[0\]\)"),
    (lambda tok, out: tok.decode(out.sequences), "one row of token ids at a time"),  # a 2-D tensor
    (lambda tok, out: tok.decode(5), "decode takes a sequence of token ids, got int"),
    (lambda tok, out: tok.decode([5.5]), "a token id must be an integer, got 5.5"),
    (lambda tok, out: tok.encode(None), r"encode takes text \(str\), got NoneType"),
    (lambda tok, out: tok.encode([5, 6]), r"encode takes text \(str\), got list"),
    (lambda tok, out: tok.encode(b"x"), r"encode takes text \(str\), got bytes"),
])
@pytest.mark.parametrize("which", ["bytes", "sentencepiece"])
def test_a_tokenizers_slips_are_named(call, message, which):
    """The README's `tok` gave int()'s TypeError for a batch's new_tokens, a tensor's "only one element tensors"
    for result.sequences, and sentencepiece's or Python's TypeError for encode(None) or encode(ids)."""
    from twotower.engine import DEFAULT_MODEL_DIR
    from twotower.tokenizer import ByteTokenizer, load_tokenizer

    tok = ByteTokenizer() if which == "bytes" else load_tokenizer(DEFAULT_MODEL_DIR)
    out = generate_ar(build_model("tiny", seed=0), [5, 6], max_new_tokens=2)
    with pytest.raises(ValueError, match=message):
        call(tok, out)
    assert tok.decode(tok.encode("é x")) == "é x" and tok.decode(out.sequences[0][:2]) == tok.decode([5, 6])
    with pytest.raises(ValueError, match="the tokenizer's folder must be a path"):
        load_tokenizer(5)


@pytest.mark.parametrize("value, shown", [(10**300, r"about 1\.00e300"), (1e300, r"about 1\.00e300"),
                                          (-10**400, r"about -1\.00e400"), (5_000_000_000, "5000000000"),
                                          (float("99999999999999999999"), r"about 1\.00e20"),  # as a browser sends it
                                          (123456789012345678, r"about 1\.23e17")])
def test_check_int_names_a_huge_number_by_its_size(value, shown):
    """A seed of 1e300 put all 301 digits in the message; 10**400 raised OverflowError from math.isfinite."""
    from twotower.validation import check_int

    with pytest.raises(ValueError, match=rf"^seed must be >= 0 and <= 4294967295, got {shown}$"):
        check_int("seed", value, 0, 2**32 - 1)


@pytest.mark.parametrize("mode, shown", [(None, "None"), (5, "5"), ("AR!", "'AR!'")])
def test_an_unknown_mode_is_quoted_as_given(engine, mode, shown):
    """None was quoted as the mode 'none' (str() then lower())."""
    with pytest.raises(ValueError, match=f"unknown mode {re.escape(shown)}; choose one of"):
        engine.stream(mode, [5, 6])
