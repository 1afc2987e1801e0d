"""The torch.compile fast path (twotower.compiled) against its reference twin, the eager model: the same
logits from both towers, and the same tokens from every decoding mode, greedy and sampled. The compiled
model also has its wide weights stored input-major, as the engine loads it (twotower.weight_layout)."""

import argparse
import copy

import pytest
import torch

from spec_decode import generate_speculative
from tiny_models import decoding_model, every_mode_outputs, random_ids
from twotower.compiled import compile_available, compile_towers
from twotower.weight_layout import store_input_major

pytestmark = pytest.mark.skipif(compile_available() is not None, reason="no C++ compiler for inductor")


@pytest.fixture(scope="module")
def twins():
    torch.manual_seed(0)
    eager = decoding_model(seed=4).eval()
    compiled = copy.deepcopy(eager)
    assert store_input_major(compiled) > 0  # as the engine loads a model before `--compile`
    return eager, compile_towers(compiled)


def test_compiled_towers_match_the_eager_twin(twins):
    eager, compiled = twins
    assert compiled.is_compiled_for_decoding and not eager.is_compiled_for_decoding
    prompt = random_ids((1, 9), seed=1)  # batch 1 throughout: each new batch size is another compile
    with torch.no_grad():
        ce, cc = eager.new_cache(), compiled.new_cache()
        torch.testing.assert_close(compiled.context_forward(prompt, cc), eager.context_forward(prompt, ce),
                                   atol=1e-4, rtol=1e-4)
        block = random_ids((1, 4), seed=2)
        block[:, 1:3] = eager.config.mask_token_id
        t = torch.full((1,), 0.5)
        torch.testing.assert_close(compiled.denoise(block, compiled.context_states(cc), t),
                                   eager.denoise(block, eager.context_states(ce), t), atol=1e-4, rtol=1e-4)
    prompt = random_ids((1, 7), seed=3)
    want, got = every_mode_outputs(eager, prompt), every_mode_outputs(compiled, prompt)
    for mode in want:
        assert torch.equal(got[mode], want[mode]), mode
    # a compiled verify pass hands its per-position states out too: rollback without a re-read, as eager
    with torch.no_grad():
        runs = [generate_speculative(m, prompt, 12, block_size=4, draft_steps=1) for m in (eager, compiled)]
    assert runs[1].stats["rollbacks"] == runs[0].stats["rollbacks"] and runs[1].stats["rollbacks"].get("positions")


def test_compiling_twice_is_a_no_op_and_the_flag_reaches_the_reports(twins):
    from twotower import run_setup

    _, compiled = twins
    forward = compiled.context_tower.forward
    assert compile_towers(compiled) is compiled and compiled.context_tower.forward is forward
    parser = argparse.ArgumentParser()
    run_setup.add_engine_arguments(parser)
    engine = run_setup.engine_from_args(parser.parse_args(["--preset", "tiny", "--compile"]))  # compiles lazily: cheap
    assert engine.describe()["compiled"] is True and run_setup.device_info(engine)["compiled"] is True


def test_without_a_cpp_compiler_compiling_says_so(monkeypatch):
    import shutil

    from twotower import build_model

    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert "C++ compiler" in compile_available("cpu")
    with pytest.raises(ValueError, match="C\\+\\+ compiler"):
        compile_towers(build_model("tiny", seed=0))


def test_only_decode_calls_take_the_compiled_forward():
    """A prompt prefill (empty cache, or longer than a decode call) stays eager; steps onto a filled cache compile."""
    from twotower import build_model
    from twotower.compiled import DECODE_MAX_TOKENS, _decode_calls_compiled

    model = build_model("tiny", seed=0)
    empty, filled = model.new_cache(1), model.new_cache(1)
    model.context_forward(torch.randint(5, 200, (1, 9)), filled)
    forward = _decode_calls_compiled(lambda **kw: "eager", lambda **kw: "compiled")
    ids = lambda n: torch.zeros(1, n, dtype=torch.long)  # noqa: E731
    assert forward(input_ids=ids(5), cache=empty) == "eager"  # prefill of a short prompt
    assert forward(input_ids=ids(DECODE_MAX_TOKENS + 1), cache=filled) == "eager"  # long input
    assert forward(input_ids=ids(1), cache=None) == "eager"  # no cache: a scoring pass
    assert forward(input_ids=ids(1), cache=filled) == forward(input_ids=ids(17), cache=filled) == "compiled"


def test_warm_up_runs_every_mode_to_its_end():
    """The app's warm-up (so the compiles happen before the first visitor) drains one generation per mode."""
    from twotower.compiled import warm_up

    class Engine:
        def __init__(self):
            self.drained = []

        def encode_prompt(self, text):
            return [5, 6, 7]

        def stream(self, mode, prompt, **kwargs):
            yield from range(3)
            self.drained.append((mode, kwargs["max_new_tokens"]))

    engine = Engine()
    assert warm_up(engine, max_new_tokens=7) >= 0
    assert engine.drained == [(m, 7) for m in ("ar", "mock_ar", "diffusion", "speculative")]
