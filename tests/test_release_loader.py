"""The release-layout loader: a synthetic sharded checkpoint with the release's names and per-expert
tensors loads to the same model as the native format, and every malformed checkpoint is refused with a
ValueError that names the offending file or tensor."""

import json
from collections import defaultdict

import pytest
import torch
from safetensors.torch import load_file, save_file

from tiny_models import MOE_LAYER, byte_level_tokenizer_json
from twotower import build_model, generate_mask_diffusion
from twotower.checkpoint import from_pretrained, save_pretrained
from twotower.release_loader import INDEX_NAME, load_release_checkpoint, release_to_engine_name, write_release_layout

EXPERT_UP = f"context_tower.layers.{MOE_LAYER}.mixer.experts.up_proj"


@pytest.fixture(scope="module")
def model():
    model = build_model("tiny", seed=3)
    with torch.no_grad():  # non-trivial time conditioning, so t_embedder / t_block / tables all matter
        torch.nn.init.normal_(model.t_block[1].weight, std=0.05)
        for table in model.scale_shift_tables:
            table.add_(0.1 * torch.randn_like(table))
    return model


@pytest.fixture(scope="module")
def release_dir(model, tmp_path_factory):
    directory = write_release_layout(model, tmp_path_factory.mktemp("release"), n_shards=4)
    # As in the release, a layer's experts may span two shards: move the second half of one layer's
    # experts to a shard of their own, whatever the byte-balanced split did.
    index = json.loads((directory / INDEX_NAME).read_text())
    moved = {k: v for k, v in index["weight_map"].items()
             if k.startswith(f"denoiser_tower.layers.{MOE_LAYER}.mixer.experts.") and int(k.split(".")[5]) >= 2}
    extra = {}
    for shard in set(moved.values()):
        tensors = load_file(str(directory / shard))
        extra.update({k: tensors.pop(k) for k in list(tensors) if k in moved})
        save_file(tensors, str(directory / shard))
    save_file(extra, str(directory / "model-extra.safetensors"))
    index["weight_map"].update({k: "model-extra.safetensors" for k in moved})
    (directory / INDEX_NAME).write_text(json.dumps(index))
    return directory


def _index(directory):
    return json.loads((directory / INDEX_NAME).read_text())["weight_map"]


def _outputs(model):
    prompt = torch.tensor([[1, 72, 101, 108, 108, 111, 32, 119]])
    cache = model.new_cache()
    ctx_logits = model.context_forward(prompt, cache, last_only=False)
    block = torch.tensor([[4, 100, 4, 4, 97, 4]])
    den_logits = model.denoise(block, model.context_states(cache), torch.tensor([4 / 6]))
    gen = generate_mask_diffusion(model, prompt, max_new_tokens=10, block_size=4, steps_per_block=4,
                                  confidence_threshold=0.9)
    return ctx_logits, den_logits, gen.new_tokens


def test_layout_has_release_names_lists_of_experts_and_shards(model, release_dir):
    weight_map = _index(release_dir)
    shards = set(weight_map.values())
    assert len(shards) >= 3 and all((release_dir / s).is_file() for s in shards)
    n_experts = model.config.n_routed_experts
    for j in range(n_experts):
        assert f"context_tower.layers.{MOE_LAYER}.mixer.experts.{j}.up_proj.weight" in weight_map
        assert f"denoiser_tower.layers.{MOE_LAYER}.mixer.experts.{j}.down_proj.weight" in weight_map
    assert not any(k.endswith("experts.up_proj") for k in weight_map)
    for prefix in ("context_lm_head.weight", "lm_head.weight", "t_embedder.mlp.0.weight", "t_block.1.weight",
                   "scale_shift_tables.0", "context_tower.embeddings.weight", "denoiser_tower.norm_f.weight"):
        assert prefix in weight_map
    shards_per_layer = defaultdict(set)  # the loader must cope with a layer's experts spread over shards
    for key, shard in weight_map.items():
        if ".experts." in key:
            shards_per_layer[key.split(".experts.")[0]].add(shard)
    assert max(len(s) for s in shards_per_layer.values()) >= 2
    config = json.loads((release_dir / "config.json").read_text())
    assert config["hybrid_override_pattern"] == "M*EM-*" and "layers_block_type" not in config
    expert_up = f"context_tower.layers.{MOE_LAYER}.mixer.experts.1.up_proj.weight"
    up = load_file(str(release_dir / weight_map[expert_up]))
    assert up[expert_up].shape == (32, 32)  # (inter, hidden)


@torch.no_grad()
def test_release_layout_equals_native_checkpoint(model, release_dir, tmp_path):
    native = from_pretrained(save_pretrained(model, tmp_path / "native"))
    release = load_release_checkpoint(release_dir, dtype=torch.float32)
    native_sd, release_sd = native.state_dict(), release.state_dict()
    assert native_sd.keys() == release_sd.keys()
    assert all(torch.equal(native_sd[k], release_sd[k]) for k in native_sd)
    released, in_memory, reloaded = _outputs(release), _outputs(model), _outputs(native)
    for got, want in zip(released[:2], in_memory[:2]):
        assert torch.equal(got, want)  # bit for bit: same weights, same (aligned) memory
    for got, want in zip(released[:2], reloaded[:2]):
        # from_pretrained keeps safetensors' unaligned CPU buffers, where BLAS rounds a little differently
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert released[2] == in_memory[2] == reloaded[2] and len(released[2][0]) == 10
    assert not release.context_lm_head.weight.requires_grad and release.lm_head.weight.requires_grad
    assert all(not layer.mixer.is_causal for layer in release.denoiser_tower.layers if hasattr(layer.mixer, "is_causal"))


def test_a_single_file_in_the_release_naming_loads(model, tmp_path):
    """A release-named checkpoint saved as one model.safetensors (no index) went to the native loader, which
    refused it as 'missing tensors'; it now goes to this loader, and a native folder still does not."""
    from twotower.decoding import drain
    from twotower.engine import load_engine
    from twotower.release_loader import SINGLE_FILE_NAME, is_release_layout

    one = write_release_layout(model, tmp_path / "one", n_shards=1)
    (one / "model-00001-of-00001.safetensors").rename(one / SINGLE_FILE_NAME)
    (one / INDEX_NAME).unlink()
    native = save_pretrained(model, tmp_path / "native")
    assert is_release_layout(one) and not is_release_layout(native) and not is_release_layout(tmp_path)
    for directory in (one, native):
        byte_level_tokenizer_json(directory / "tokenizer.json")
    loaded, reference = load_engine(one, input_major=False), load_engine(native, input_major=False)
    want = reference.model.state_dict()
    assert all(torch.equal(v, want[k]) for k, v in loaded.model.state_dict().items()) and len(want) == len(
        loaded.model.state_dict())
    ids = loaded.encode_prompt("def f(x):")
    runs = [drain(e.stream("diffusion", ids, max_new_tokens=6, block_size=3)) for e in (loaded, reference)]
    assert runs[0].new_tokens == runs[1].new_tokens and len(runs[0].new_tokens[0]) >= 1


def test_default_dtype_is_bf16_with_fp32_router_bias(release_dir):
    release = load_release_checkpoint(release_dir)
    assert release.lm_head.weight.dtype == torch.bfloat16
    assert release.context_tower.layers[MOE_LAYER].mixer.experts.up_proj.dtype == torch.bfloat16
    assert release.context_tower.layers[MOE_LAYER].mixer.gate.e_score_correction_bias.dtype == torch.float32
    assert release.context_tower.layers[MOE_LAYER].mixer.gate.weight.dtype == torch.float32  # as transformers


def test_rename_table_for_backbone_and_embedding_names(model, tmp_path):
    legacy = write_release_layout(model, tmp_path, n_shards=3, legacy_names=True)
    weight_map = _index(legacy)
    assert "context_tower.backbone.embedding.weight" in weight_map
    assert f"denoiser_tower.backbone.layers.{MOE_LAYER}.mixer.experts.3.down_proj.weight" in weight_map
    assert release_to_engine_name("context_tower.backbone.embedding.weight") == ("context_tower.embeddings.weight", None)
    assert release_to_engine_name(f"denoiser_tower.layers.{MOE_LAYER}.mixer.experts.3.down_proj.weight") == (
        f"denoiser_tower.layers.{MOE_LAYER}.mixer.experts.down_proj", 3)
    loaded = load_release_checkpoint(legacy, dtype=torch.float32)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_each_tensor_is_read_onto_its_towers_device(release_dir, monkeypatch):
    """Context tower + context_lm_head are read through a handle opened on ctx_device, the rest on
    den_device (two CPU device names stand in for two GPUs)."""
    import twotower.release_loader as loader

    real_open, reads = loader.safe_open, []

    class Spy:
        def __init__(self, path, framework, device="cpu"):
            self.handle, self.device = real_open(path, framework=framework, device="cpu"), device

        def get_tensor(self, key):
            reads.append((key, self.device))
            return self.handle.get_tensor(key)

        def __getattr__(self, name):
            return getattr(self.handle, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(loader, "safe_open", Spy)
    loaded = load_release_checkpoint(release_dir, ctx_device="cpu", den_device="cpu:0", dtype=torch.float32)
    assert len(reads) == len(_index(release_dir))
    for key, device in reads:
        want = "cpu" if key.startswith(("context_tower.", "context_lm_head.")) else "cpu:0"
        assert device == want, key
    assert loaded.lm_head.weight.shape == (261, 32)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_load_straight_onto_cuda(release_dir):
    loaded = load_release_checkpoint(release_dir, ctx_device="cpu", den_device="cuda", dtype=torch.float32)
    assert loaded.ctx_device.type == "cpu" and loaded.den_device.type == "cuda"
    assert loaded.denoiser_tower.layers[MOE_LAYER].mixer.experts.down_proj.device.type == "cuda"


# ----------------------------------------------------------------------------------------------------
# refusals
def _copy(release_dir, tmp_path):
    target = tmp_path / "copy"
    target.mkdir(parents=True)
    for path in release_dir.iterdir():
        (target / path.name).write_bytes(path.read_bytes())
    return target


def _rewrite(directory, key, change):
    """Apply `change(tensors)` to the shard that holds `key`, keeping the index in step."""
    index_path = directory / INDEX_NAME
    index = json.loads(index_path.read_text())
    shard = index["weight_map"][key]
    tensors = load_file(str(directory / shard))
    change(tensors)
    save_file(tensors, str(directory / shard))
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if v != shard}
    index["weight_map"].update({k: shard for k in tensors})
    index_path.write_text(json.dumps(index))
    return shard


def test_missing_shard_is_named(release_dir, tmp_path):
    broken = _copy(release_dir, tmp_path)
    shard = sorted(set(_index(broken).values()))[1]
    (broken / shard).unlink()
    with pytest.raises(ValueError, match=f"shard file .*{shard}.* is missing"):
        load_release_checkpoint(broken)


def test_wrong_shape_is_named(release_dir, tmp_path):
    broken = _copy(release_dir, tmp_path)
    key = "denoiser_tower.layers.0.mixer.in_proj.weight"
    shard = _rewrite(broken, key, lambda t: t.update({key: t[key][:-1].clone()}))
    with pytest.raises(ValueError, match=rf"tensor '{key}' in {shard} has shape \(\d+, 32\)"):
        load_release_checkpoint(broken)
    expert = f"context_tower.layers.{MOE_LAYER}.mixer.experts.0.down_proj.weight"
    broken = _copy(release_dir, tmp_path / "b")
    _rewrite(broken, expert, lambda t: t.update({expert: t[expert][:, :-1].clone()}))
    with pytest.raises(ValueError, match=rf"tensor '{expert}' in .* has shape \(32, 31\), the model expects \(32, 32\)"):
        load_release_checkpoint(broken)


def test_unknown_tensor_is_named(release_dir, tmp_path):
    broken = _copy(release_dir, tmp_path)
    key = "context_tower.layers.0.mixer.in_proj.weight"
    _rewrite(broken, key, lambda t: t.update({"context_tower.layers.0.mixer.bogus.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match="unknown tensor 'context_tower.layers.0.mixer.bogus.weight'"):
        load_release_checkpoint(broken)
    broken = _copy(release_dir, tmp_path / "b")
    stray = f"context_tower.layers.{MOE_LAYER}.mixer.experts.9.up_proj.weight"
    _rewrite(broken, key, lambda t: t.update({stray: torch.zeros(32, 32)}))
    with pytest.raises(ValueError, match="unknown tensor .*experts.9.up_proj.weight.*expert 9 of a 4-expert layer"):
        load_release_checkpoint(broken)


def test_missing_tensors_and_bad_directories(release_dir, tmp_path):
    broken = _copy(release_dir, tmp_path)
    index = json.loads((broken / INDEX_NAME).read_text())
    del index["weight_map"]["lm_head.weight"]
    del index["weight_map"][f"context_tower.layers.{MOE_LAYER}.mixer.experts.2.up_proj.weight"]
    (broken / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"no expert 2 for '{EXPERT_UP}'|no tensor for 'lm_head.weight'"):
        load_release_checkpoint(broken)
    (broken / INDEX_NAME).write_text("{not json")
    with pytest.raises(ValueError, match="is not a safetensors index"):
        load_release_checkpoint(broken)
    (broken / INDEX_NAME).unlink()
    with pytest.raises(ValueError, match="neither model.safetensors.index.json nor model.safetensors"):
        load_release_checkpoint(broken)
    (broken / "config.json").unlink()
    with pytest.raises(ValueError, match="no config.json"):
        load_release_checkpoint(broken)
    with pytest.raises(ValueError, match="model directory not found"):
        load_release_checkpoint(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="not a device: 'gpu7'"):
        load_release_checkpoint(release_dir, ctx_device="gpu7")
    with pytest.raises(ValueError, match="dtype must be a floating torch dtype"):
        load_release_checkpoint(release_dir, dtype="bf16")
    with pytest.raises(ValueError, match="n_shards"):
        write_release_layout(build_model("tiny"), tmp_path / "x", n_shards=0)


def test_a_single_missing_expert_is_named(release_dir, tmp_path):
    """Only expert 2 of one layer left out of the index: the message names that expert (the test above also
    removes lm_head, so either message passed it, and the expert check could go unnoticed)."""
    broken = _copy(release_dir, tmp_path)
    index = json.loads((broken / INDEX_NAME).read_text())
    del index["weight_map"][f"context_tower.layers.{MOE_LAYER}.mixer.experts.2.up_proj.weight"]
    (broken / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"the checkpoint has no expert 2 for '{EXPERT_UP}'"):
        load_release_checkpoint(broken)


def test_an_index_that_points_to_the_wrong_shard_is_named(release_dir, tmp_path):
    """The index sends lm_head.weight to a shard that exists but does not hold it: refused from the shard's
    header, naming shard and tensor, before anything is read (not safetensors' own error)."""
    broken = _copy(release_dir, tmp_path)
    index = json.loads((broken / INDEX_NAME).read_text())
    right = index["weight_map"]["lm_head.weight"]
    wrong = next(s for s in sorted(set(index["weight_map"].values())) if s != right)
    index["weight_map"]["lm_head.weight"] = wrong
    (broken / INDEX_NAME).write_text(json.dumps(index))
    with pytest.raises(ValueError, match=f"{wrong} does not hold 'lm_head.weight' although the index says so"):
        load_release_checkpoint(broken)


@pytest.mark.parametrize("engine_name, legacy_name", [
    ("context_tower.embeddings.weight", "context_tower.backbone.embedding.weight"),
    (f"context_tower.layers.{MOE_LAYER}.mixer.experts.1.down_proj.weight",
     f"context_tower.backbone.layers.{MOE_LAYER}.mixer.experts.1.down_proj.weight"),
])
def test_a_tensor_listed_under_two_names_is_refused(release_dir, tmp_path, engine_name, legacy_name):
    """The same tensor stored under its engine name and its remote-code name (both map to one engine tensor;
    without the check the second copy silently overwrites the first and the load succeeds): refused as
    listed twice, for a whole tensor and for a single expert."""
    broken = _copy(release_dir, tmp_path)
    _rewrite(broken, engine_name, lambda t: t.update({legacy_name: t[engine_name].clone()}))
    assert {engine_name, legacy_name} <= set(_index(broken))
    with pytest.raises(ValueError, match=f"tensor '{legacy_name}' .*is listed twice"):
        load_release_checkpoint(broken)


def test_experts_are_written_as_the_release_orients_them_and_load_back_exactly(tmp_path):
    """With moe_intermediate_size (48) != hidden_size (32) the shapes tell up from down and a transposed
    expert from a right one (the tiny preset has both 32, so the fixture above cannot): on disk each expert's
    up_proj is (inter, hidden) and down_proj (hidden, inter), as the release stores them, holding exactly
    the model's slices; the load gives back the model bit for bit."""
    model = build_model("tiny", seed=5, moe_intermediate_size=48)
    experts = model.context_tower.layers[MOE_LAYER].mixer.experts
    assert tuple(experts.up_proj.shape) == (4, 48, 32) and tuple(experts.down_proj.shape) == (4, 32, 48)
    directory = write_release_layout(model, tmp_path / "wide", n_shards=2)
    weight_map = _index(directory)
    for tower in ("context_tower", "denoiser_tower"):
        stacked = getattr(model, tower).layers[MOE_LAYER].mixer.experts
        for j in range(4):
            for proj, shape, want in (("up_proj", (48, 32), stacked.up_proj[j]),
                                      ("down_proj", (32, 48), stacked.down_proj[j])):
                key = f"{tower}.layers.{MOE_LAYER}.mixer.experts.{j}.{proj}.weight"
                stored = load_file(str(directory / weight_map[key]))[key]
                assert tuple(stored.shape) == shape, key
                assert torch.equal(stored, want), key
    loaded = load_release_checkpoint(directory, dtype=torch.float32).state_dict()
    original = model.state_dict()
    assert loaded.keys() == original.keys()
    assert all(torch.equal(loaded[k], original[k]) for k in original)


def test_corrupt_shards_integer_weights_and_stray_indexes_are_refused(release_dir, tmp_path):
    broken = _copy(release_dir, tmp_path / "truncated")
    shard = sorted(set(_index(broken).values()))[0]
    (broken / shard).write_bytes((broken / shard).read_bytes()[:500])
    with pytest.raises(ValueError, match=f"{shard} cannot be read as safetensors"):
        load_release_checkpoint(broken)
    broken = _copy(release_dir, tmp_path / "integers")
    key = "denoiser_tower.layers.0.mixer.in_proj.weight"
    _rewrite(broken, key, lambda t: t.update({key: t[key].to(torch.int64)}))
    with pytest.raises(ValueError, match=f"tensor '{key}' .* is stored as I64; the model expects floating-point"):
        load_release_checkpoint(broken)
    broken = _copy(release_dir, tmp_path / "stray")
    index = json.loads((broken / INDEX_NAME).read_text())
    first = next(iter(index["weight_map"]))
    for shard, message in [(str(release_dir / index["weight_map"][first]), "outside the model folder"),
                           ("../" + index["weight_map"][first], "outside the model folder")]:
        (broken / INDEX_NAME).write_text(json.dumps({"weight_map": {**index["weight_map"], first: shard}}))
        with pytest.raises(ValueError, match=message):
            load_release_checkpoint(broken)
    (broken / INDEX_NAME).write_text(json.dumps({"weight_map": list(index["weight_map"])}))
    with pytest.raises(ValueError, match="'weight_map' must map tensor names to shard files, got a list"):
        load_release_checkpoint(broken)
