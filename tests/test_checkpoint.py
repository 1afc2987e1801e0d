"""Saving, loading and placing a two-tower model: release weight names, offline and pickle-free files,
identical outputs after a round trip, a backbone turned into a two-tower model, devices."""

import json
import socket

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import NemotronHConfig, NemotronHForCausalLM

from tiny_models import MOE_LAYER, byte_level_tokenizer_json, lively, random_ids, sharp, trained_looking
from twotower import (build_model, from_backbone, from_pretrained, generate_ar, generate_mask_diffusion,
                      generate_mock_ar, make_config, save_pretrained)
from twotower.checkpoint import WEIGHTS_NAME
from twotower.engine import DEFAULT_MODEL_DIR
from twotower.decoding import drain
from twotower.config import PRESETS, TWO_TOWER_FIELDS

RELEASE_PREFIXES = ("context_tower.", "context_lm_head.weight", "denoiser_tower.", "lm_head.weight",
                    "t_embedder.", "t_block.", "scale_shift_tables.")


def all_outputs(model, prompt):
    with torch.no_grad():
        return {
            "diffusion": generate_mask_diffusion(model, prompt, 10, 4, 3, confidence_threshold=0.5).sequences,
            "mock_ar": generate_mock_ar(model, prompt, 4).sequences,
            "ar": generate_ar(model, prompt, 6).sequences,
            "sampled": generate_mask_diffusion(model, prompt, 8, 4, 4, temperature=1.0, seed=3).sequences,
        }


def test_weight_names_follow_the_release(tiny_model):
    names = list(tiny_model.state_dict())
    assert all(name.startswith(RELEASE_PREFIXES) for name in names), [n for n in names if not n.startswith(RELEASE_PREFIXES)]
    for prefix in RELEASE_PREFIXES:
        assert any(name.startswith(prefix) for name in names), f"no tensor named {prefix}*"
    # nothing shared or tied between the towers
    assert tiny_model.context_lm_head.weight.data_ptr() != tiny_model.lm_head.weight.data_ptr()
    assert tiny_model.context_tower.embeddings.weight.data_ptr() != tiny_model.denoiser_tower.embeddings.weight.data_ptr()


def test_save_then_load_gives_identical_outputs(tmp_path, monkeypatch):
    model = trained_looking(lively(build_model("tiny", seed=4)))  # no part left at its initial value
    save_pretrained(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", WEIGHTS_NAME]  # no pickle, no code
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["NemotronHTwoTowerForCausalLM"] and config["model_type"] == "nemotron_h"
    for key in TWO_TOWER_FIELDS:
        assert config[key] == PRESETS["tiny"].get(key, TWO_TOWER_FIELDS[key])

    def no_network(*args, **kwargs):
        raise AssertionError("loading a local checkpoint tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    loaded = from_pretrained(tmp_path)
    saved, restored = model.state_dict(), loaded.state_dict()
    assert saved.keys() == restored.keys()
    assert all(torch.equal(saved[k], restored[k]) for k in saved)
    prompt = random_ids((2, 5), 1)
    before, after = all_outputs(model, prompt), all_outputs(loaded, prompt)
    for mode in before:
        assert torch.equal(before[mode], after[mode]), mode


def test_bf16_checkpoint_loads_and_generates(tmp_path):
    model = build_model("tiny", seed=5)
    save_pretrained(model, tmp_path, dtype=torch.bfloat16)
    with safe_open(str(tmp_path / WEIGHTS_NAME), "pt") as f:
        assert f.get_tensor("lm_head.weight").dtype == torch.bfloat16
    loaded = from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.lm_head.weight.dtype == torch.bfloat16
    # the names load_engine and the CLI take ("fp32" was read as a device string)
    assert from_pretrained(tmp_path, dtype="fp32").lm_head.weight.dtype == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of .* got torch.int8"):  # said: "stored as torch.int8"
        from_pretrained(tmp_path, dtype=torch.int8)
    result = generate_mask_diffusion(loaded, random_ids((1, 4), 2), 8, 4, 4)
    assert result.sequences.shape == (1, 12)
    assert not (result.sequences == loaded.config.mask_token_id).any()


ROUTER_BIAS = f"context_tower.layers.{MOE_LAYER}.mixer.gate.e_score_correction_bias"


ROUTER_NAMES = ("e_score_correction_bias", "mixer.gate.weight")  # what transformers keeps in fp32, spelled out


def _model_with_router_biases(seed=5):
    """A tiny model whose routers (weight and score-correction bias) hold random fp32 values that bf16 cannot
    hold (the bias starts at zero, which every dtype holds exactly: a cast would go unseen)."""
    model = build_model("tiny", seed=seed)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed)
        for name, tensor in [*model.named_buffers(), *model.named_parameters()]:
            if name.endswith(ROUTER_NAMES):
                tensor.copy_(torch.randn(tensor.shape, generator=gen))
    biases = {k: v.clone() for k, v in model.state_dict().items() if k.endswith(ROUTER_NAMES)}
    assert len(biases) == 4  # one MoE layer per tower, a weight and a bias each
    assert all(not torch.equal(v, v.bfloat16().float()) for v in biases.values())
    return model, biases


def test_the_routers_stay_fp32_when_a_checkpoint_is_loaded_in_bf16(tmp_path):
    """from_pretrained(dtype=bf16) casts every weight but the routers' weight and score-correction bias
    (FP32_SUFFIXES), which transformers and the release loader keep in fp32: they must come back fp32 and exact."""
    model, biases = _model_with_router_biases()
    save_pretrained(model, tmp_path)  # fp32 on disk
    loaded = from_pretrained(tmp_path, dtype=torch.bfloat16)
    state = loaded.state_dict()
    assert state["lm_head.weight"].dtype == torch.bfloat16
    for name, want in biases.items():
        assert state[name].dtype == torch.float32, name
        assert torch.equal(state[name], want), name


def test_a_bf16_save_keeps_the_routers_in_fp32(tmp_path):
    """save_pretrained(dtype=bf16) (the training export) rounded the router bias to bf16, where the release
    keeps it fp32 and the release-layout writer already did: now the file holds it in fp32, exact, and a bf16
    load keeps it so and still generates."""
    model, biases = _model_with_router_biases()
    save_pretrained(model, tmp_path, dtype=torch.bfloat16)
    with safe_open(str(tmp_path / WEIGHTS_NAME), "pt") as f:
        assert f.get_slice("lm_head.weight").get_dtype() == "BF16"
        for name, want in biases.items():
            assert f.get_slice(name).get_dtype() == "F32", name
            assert torch.equal(f.get_tensor(name), want), name
    loaded = from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert loaded.state_dict()[ROUTER_BIAS].dtype == torch.float32
    assert torch.equal(loaded.state_dict()[ROUTER_BIAS], biases[ROUTER_BIAS])
    result = generate_mask_diffusion(loaded, random_ids((1, 4), 2), 8, 4, 4)
    assert result.sequences.shape == (1, 12)


def test_loading_a_bad_directory_says_what_is_wrong(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        from_pretrained(tmp_path)
    make_config("tiny").save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=f"no {WEIGHTS_NAME}"):
        from_pretrained(tmp_path)
    other = build_model("tiny", seed=0, hybrid_override_pattern="M*EM-")  # one layer fewer than the config says
    save_pretrained(other, tmp_path / "other")
    (tmp_path / WEIGHTS_NAME).write_bytes((tmp_path / "other" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(ValueError, match="missing tensors"):
        from_pretrained(tmp_path)
    wider = build_model("tiny", seed=0, hidden_size=PRESETS["tiny"]["hidden_size"] * 2)  # same names, other shapes
    save_pretrained(wider, tmp_path / "wider")
    (tmp_path / WEIGHTS_NAME).write_bytes((tmp_path / "wider" / WEIGHTS_NAME).read_bytes())
    with pytest.raises(ValueError, match=r"does not fit .*: size mismatch for [^\n]* \(and \d+ more tensors\)$"):
        from_pretrained(tmp_path)  # one line: torch's text listed every tensor on a line of its own
    (tmp_path / WEIGHTS_NAME).write_bytes((tmp_path / "wider" / WEIGHTS_NAME).read_bytes()[:1000])  # truncated
    with pytest.raises(ValueError, match="cannot be read as safetensors"):
        from_pretrained(tmp_path)
    good = json.loads((tmp_path / "other" / "config.json").read_text())
    for change, message in [({"hidden_size": "32"}, "cannot be read as a model config.*hidden_size"),
                            ({"layers_block_type": ["mamba", "lstm"]}, "cannot be read as a model config"),
                            ({"model_type": "llama"}, "is a 'llama' config, not a NemotronH"),
                            ({"mask_token_id": 261}, "mask_token_id 261 is not an id below the vocabulary size 261"),
                            ({"mask_token_id": None, "vocab_size": 3}, "mask_token_id 3 is not an id below"),
                            ({"hidden_size": -1}, "describes no model that can be built"),  # was a RuntimeError
                            # loaded, then "selected index k out of range" in the first forward pass
                            ({"num_experts_per_tok": 99}, "num_experts_per_tok 99 must be between 1 and n_routed"),
                            ({"n_groups": 3}, "config.json: mamba_num_heads 4 must be a multiple of n_groups 3"),
                            # a bad decoding default is the file's fault: said so, not as if the user had typed it
                            ({"default_gamma": 5}, r"config.json: default_gamma: confidence threshold γ must be in"),
                            ({"default_block_size": "16"}, "config.json: default_block_size: block size must be an")]:
        (tmp_path / "config.json").write_text(json.dumps({**good, **change}))
        with pytest.raises(ValueError, match=message):
            from_pretrained(tmp_path)
    nan = {k: torch.full_like(v, float("nan")) if k == "lm_head.weight" else v for k, v in other.state_dict().items()}
    save_file({k: v.contiguous() for k, v in nan.items()}, str(tmp_path / "other" / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=r"\['lm_head.weight'\] hold NaN or infinite values"):
        from_pretrained(tmp_path / "other")
    (tmp_path / "config.json").write_text("{ not json")
    with pytest.raises(ValueError, match="cannot be read as a model config"):
        from_pretrained(tmp_path)
    integers = {k: v.to(torch.int64) if k == "lm_head.weight" else v for k, v in other.state_dict().items()}
    save_file({k: v.contiguous() for k, v in integers.items()}, str(tmp_path / "other" / WEIGHTS_NAME))
    with pytest.raises(ValueError, match=r"\['lm_head.weight'\] are stored as torch.int64; .* floating-point"):
        from_pretrained(tmp_path / "other")


@pytest.mark.parametrize("change, message", [
    ({"default_steps_per_block": 0}, "config.json: default_steps_per_block: steps must be >= 1 and <= 4096, got 0"),
    ({"default_steps_per_block": "16"}, "config.json: default_steps_per_block: steps must be an integer"),
    ({"default_draft_steps": 0}, "config.json: default_draft_steps: draft steps must be >= 1 and <= 4096, got 0"),
    ({"default_draft_steps": 1.5}, "config.json: default_draft_steps: draft steps must be an integer"),
    ({"default_min_draft_confidence": 1.5}, r"config.json: default_min_draft_confidence: the confidence must be in \[0, 1\]"),
    ({"default_min_draft_confidence": -0.1}, "config.json: default_min_draft_confidence: the confidence must be in"),
])
def test_bad_decoding_defaults_in_config_json_are_refused_by_name(tmp_path, change, message):
    """Every decoding default a run reads without explicit settings is checked when the config loads, and the
    message blames config.json's field (only default_gamma and default_block_size were exercised above)."""
    save_pretrained(build_model("tiny", seed=0), tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=message):
        from_pretrained(tmp_path)


def save_backbone(directory, seed=6):
    """A plain NemotronH causal LM (no two-tower fields), as a backbone checkpoint would come."""
    fields = {k: v for k, v in PRESETS["tiny"].items() if k not in TWO_TOWER_FIELDS}
    torch.manual_seed(seed)
    backbone = NemotronHForCausalLM(NemotronHConfig(**fields)).eval()
    backbone.save_pretrained(directory)
    return backbone


def test_from_backbone_copies_the_backbone_into_both_towers(tmp_path, monkeypatch):
    backbone = save_backbone(tmp_path)
    monkeypatch.setattr(socket.socket, "connect", lambda *a, **k: pytest.fail("network access"))
    model = from_backbone(tmp_path)
    assert model.config.mask_token_id == 3  # the release's mask id when the backbone names none
    source = backbone.model.state_dict()
    for tower in (model.context_tower, model.denoiser_tower):
        assert all(torch.equal(source[k], v) for k, v in tower.state_dict().items())
    assert torch.equal(model.context_lm_head.weight, backbone.lm_head.weight)
    assert torch.equal(model.lm_head.weight, backbone.lm_head.weight)
    assert not any(p.requires_grad for p in model.context_tower.parameters())  # frozen
    assert all(p.requires_grad for p in model.denoiser_tower.parameters())

    prompt = random_ids((1, 7), 3)
    theirs = backbone.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=8, do_sample=False,
                               eos_token_id=None, pad_token_id=0)
    assert torch.equal(generate_ar(model, prompt, 8).sequences, theirs)
    # The copy is a no-op change at initialisation: on a one-token block the denoiser computes exactly
    # the backbone's next step, whatever t.
    with torch.no_grad():
        cache = model.new_cache()
        model.context_forward(prompt, cache)
        token = random_ids((1, 1), 4)
        denoised = [model.denoise(token, model.context_states(cache), torch.tensor([t])) for t in (0.0, 0.5, 1.0)]
        expected = backbone(torch.cat([prompt, token], dim=1)).logits[:, -1:]
    for logits in denoised:
        assert torch.allclose(logits, expected, atol=1e-5)


def test_from_backbone_rejects_a_directory_without_a_model(tmp_path):
    with pytest.raises(ValueError, match="no config.json"):
        from_backbone(tmp_path)


def test_from_backbone_takes_dtypes_by_name_and_names_a_bad_config_field(tmp_path):
    """"bf16" was transformers' error blamed on the folder, "bfloat16" a device string after the whole load, and a
    config.json field of the wrong type huggingface_hub's StrictDataclassError (a plain Exception) as a traceback."""
    import json

    backbone = save_backbone(tmp_path)
    model = from_backbone(tmp_path, dtype="bf16")
    assert model.context_lm_head.weight.dtype == torch.bfloat16
    assert torch.equal(model.context_lm_head.weight, backbone.lm_head.weight.bfloat16())
    with pytest.raises(ValueError, match="unknown dtype 'int3'"):
        from_backbone(tmp_path, dtype="int3")
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "hidden_size": "wide"}))
    with pytest.raises(ValueError, match="cannot be loaded as a NemotronH causal LM: .*hidden_size"):
        from_backbone(tmp_path)


def test_from_backbone_refuses_what_would_leave_its_towers_random(tmp_path):
    """A two-tower checkpoint given to from_backbone loaded with every tensor "unexpected" and came back as two
    randomly initialised towers; a backbone missing tensors did the same for those."""
    from safetensors.torch import load_file, save_file

    two_tower = tmp_path / "two_tower"
    save_pretrained(build_model("tiny"), two_tower)
    with pytest.raises(ValueError, match="holds a two-tower checkpoint, not a NemotronH causal LM: load it with "
                                         "from_pretrained"):
        from_backbone(two_tower)
    partial = tmp_path / "partial"
    save_backbone(partial)
    weights = load_file(str(partial / "model.safetensors"))
    dropped = next(k for k in weights if "embeddings" in k)
    save_file({k: v for k, v in weights.items() if k != dropped}, str(partial / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"weights are not a NemotronH causal LM of its config.json: 1 tensor\(s\) "
                                         r"missing \(e\.g\. .*embeddings"):  # (transformers' name for it)
        from_backbone(partial)
    (partial / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="cannot be loaded as a NemotronH causal LM: .*no file named model.safetensors"):
        from_backbone(partial)


def test_towers_on_cpu_devices(tiny_model):
    prompt = random_ids((1, 5), 5)
    before = all_outputs(tiny_model, prompt)
    tiny_model.place_towers_on_devices("cpu", "cpu")
    assert tiny_model.ctx_device == torch.device("cpu") and tiny_model.den_device == torch.device("cpu")
    after = all_outputs(tiny_model, prompt)
    assert all(torch.equal(before[m], after[m]) for m in before)


@pytest.mark.parametrize("device", ["gpu", "cuda:x", "cuda:99"])
def test_unknown_or_absent_devices_are_refused_clearly(tiny_model, device):
    with pytest.raises(ValueError, match="device"):
        tiny_model.place_towers_on_devices("cpu", device)
    with pytest.raises(ValueError, match="device"):
        tiny_model.place_towers_on_devices(device, "cpu")


def test_from_pretrained_names_an_absent_device_not_the_file():
    """safetensors' pin_memory error used to come out as "model.safetensors cannot be read as safetensors"."""
    # the message of a CPU-only machine, or of one with fewer than 100 GPUs
    with pytest.raises(ValueError, match=r"device 'cuda:99'( is not available on this machine|: this machine has)"):
        from_pretrained(DEFAULT_MODEL_DIR, device="cuda:99")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ctx_device,den_device", [("cpu", "cuda"), ("cuda", "cuda")])
def test_towers_on_cuda_match_cpu(ctx_device, den_device):
    torch.backends.cuda.matmul.allow_tf32 = False
    model = sharp(trained_looking(build_model("tiny", seed=7)))  # clear winners: greedy must not hinge on the last bit
    prompt = random_ids((2, 6), 6)
    reference = all_outputs(model, prompt)
    model.place_towers_on_devices(ctx_device, den_device)
    assert model.ctx_device.type == ctx_device and model.den_device.type == "cuda"
    placed = all_outputs(model, prompt)
    for mode in ("diffusion", "mock_ar", "ar"):
        assert torch.equal(placed[mode].cpu(), reference[mode]), mode


def test_a_hugging_face_tokenizer_json_is_loaded_and_a_folder_without_a_tokenizer_is_refused(tmp_path):
    from twotower.engine import load_engine
    from twotower.tokenizer import HFTokenizer, load_tokenizer

    save_pretrained(build_model("tiny", seed=2), tmp_path)
    with pytest.raises(ValueError, match="no tokenizer in .*tokenizer.model .*or tokenizer.json"):
        load_engine(model_dir=tmp_path)  # byte ids fed to a model of other tokens: refused, not guessed
    byte_level_tokenizer_json(tmp_path / "tokenizer.json")
    engine = load_engine(model_dir=tmp_path)
    assert isinstance(engine.tokenizer, HFTokenizer) and engine.tokenizer.vocab_size == 261
    text = "def f(x):\n\treturn 'é ✓'  # ▁<mask></s>\n"
    ids = engine.encode_prompt(text)  # typed "<mask>" and "</s>" stay text: no special id
    assert engine.decode(ids) == text and max(ids) < 261 and min(ids) >= 5
    assert load_tokenizer(tmp_path).encode(text) == ids  # alone, it reads the special ids from config.json
    assert engine.decode([*ids, 261, -1]) == text and engine.tokenizer.piece(261) == "<id 261: no piece>"
    (tmp_path / "tokenizer.model").write_bytes(b"not a sentencepiece model")  # read first, and unreadable
    with pytest.raises(ValueError, match="cannot read the tokenizer .*tokenizer.model"):
        load_engine(model_dir=tmp_path)
    config = engine.model.config  # special ids come from the config (the release's tokenizer has no mask piece)
    assert (engine.eos_token_id, engine.tokenizer.mask_token_id) == (config.eos_token_id, config.mask_token_id)
    result = drain(engine.stream("diffusion", ids, max_new_tokens=6, block_size=3, steps_per_block=3))
    assert len(result.new_tokens[0]) >= 1 and config.mask_token_id not in result.new_tokens[0]


def test_a_mask_id_that_is_not_the_tokenizers_is_refused(tmp_path):
    from twotower.engine import load_engine

    for name in ("tokenizer.model", WEIGHTS_NAME):
        (tmp_path / name).write_bytes((DEFAULT_MODEL_DIR / name).read_bytes())
    config = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    del config["mask_token_id"]  # the loader fills in the release's 3; this tokenizer's mask piece is 4
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="mask_token_id 3 is not the tokenizer's mask id 4"):
        load_engine(model_dir=tmp_path)
