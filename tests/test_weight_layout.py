"""Input-major weight storage (twotower.weight_layout) against its reference twin, nn.Linear's own layout:
which weights change, that their values and the saved checkpoint do not, and the same logits and tokens
from every decoding mode, on a tiny random model and on the shipped default model."""

import copy

import torch

from tiny_models import decoding_model, every_mode_outputs, random_ids
from twotower.checkpoint import from_pretrained, save_pretrained
from twotower.engine import load_engine
from twotower.weight_layout import is_input_major, store_input_major


def _linears(model):
    return {name: m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


def test_only_wide_fp32_weights_change_and_their_values_stay():
    reference = decoding_model(seed=1).eval()
    model = copy.deepcopy(reference)
    model.set_denoiser_dtype(torch.bfloat16)  # bf16 weights keep nn.Linear's layout
    wide = {n for n, m in _linears(model).items() if m.out_features >= m.in_features and m.weight.dtype == torch.float32}
    assert "context_lm_head" in wide and "lm_head" not in wide and len(wide) < len(_linears(model))
    experts = {n: m for n, m in model.named_modules() if n.endswith("mixer.experts")}
    fp32_experts = {n for n, m in experts.items() if m.up_proj.dtype == torch.float32}
    assert fp32_experts and all(n.startswith("context_tower") for n in fp32_experts)
    assert store_input_major(model) == len(wide) + len(fp32_experts)
    for name, module in _linears(model).items():
        assert is_input_major(module.weight) == (name in wide), name
    for name, module in experts.items():  # the dense kernel's (E·I, H) matrix is a view, stored (H, E·I)
        n_experts, inter, hidden = module.up_proj.shape
        assert is_input_major(module.up_proj.reshape(n_experts * inter, hidden)) == (name in fp32_experts), name
    assert store_input_major(model) == 0  # idempotent: nothing left in the default layout that qualifies
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name].to(tensor.dtype)), name


def test_a_saved_input_major_model_reloads_equal(tmp_path):
    model = decoding_model(seed=2).eval()
    store_input_major(model)
    save_pretrained(model, tmp_path)
    again = from_pretrained(tmp_path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name
    assert not any(is_input_major(m.weight) for m in _linears(again).values())  # reloads in the default layout


def test_tiny_model_decodes_the_same_in_both_layouts():
    reference = decoding_model(seed=4).eval()
    model = copy.deepcopy(reference)
    assert store_input_major(model) > 0
    prompt = random_ids((1, 9), seed=1)
    with torch.no_grad():
        logits = [m.context_forward(prompt, m.new_cache(), last_only=False) for m in (reference, model)]
    torch.testing.assert_close(logits[1], logits[0], atol=1e-5, rtol=1e-5)
    want, got = every_mode_outputs(reference, prompt), every_mode_outputs(model, prompt)
    for mode in want:
        assert torch.equal(got[mode], want[mode]), mode


def test_default_model_engines_agree_in_both_layouts():
    fast, reference = load_engine(), load_engine(input_major=False)
    assert is_input_major(fast.model.context_lm_head.weight) and is_input_major(fast.model.lm_head.weight)
    assert not is_input_major(reference.model.context_lm_head.weight)
    assert reference.describe()["input_major_weights"] == 0 < fast.describe()["input_major_weights"]
    ids = fast.encode_prompt("import os\n\n\ndef main(argv):\n    ")
    for mode in ("ar", "diffusion", "speculative"):
        runs = [[e for e in engine.stream(mode, ids, max_new_tokens=24, temperature=0.0) if e.kind == "done"][0]
                for engine in (fast, reference)]
        assert runs[0].info["new_tokens"] == runs[1].info["new_tokens"], mode
