"""What a user who downloaded the release and then made a mistake gets told (an audit's ten findings): damaged
weights, a device this machine lacks, the base causal LM instead of the two-tower checkpoint, a clone without
git-lfs, the wrong folder, a hub name, a quoted "~"; and the cheap checks come before any weight is read."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file, save_file

from test_checkpoint_bad_input import (first_shard, model, native, native_source, refused, release,  # noqa: F401
                                      release_source)
from tiny_models import byte_level_tokenizer_json
from twotower import build_model
from twotower.checkpoint import from_pretrained
from twotower.engine import load_engine
from twotower.release_loader import INDEX_NAME


def _shard_of(directory, key):
    return json.loads((directory / INDEX_NAME).read_text())["weight_map"][key]


def test_nan_weights_in_a_release_shard_are_refused_as_the_native_loader_refuses_them(release):
    """They loaded without a word; diffusion then printed an empty completion and the command exited 0."""
    key = "denoiser_tower.layers.0.mixer.in_proj.weight"
    shard = release / _shard_of(release, key)
    tensors = load_file(str(shard))
    tensors[key] = torch.full_like(tensors[key], float("nan"))
    save_file(tensors, str(shard))
    refused(release, rf"\['{key}'\] hold NaN or infinite values: the checkpoint is damaged or its training diverged")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_a_value_error_before_any_weight(release, monkeypatch):
    """load_engine on the release layout raised torch's RuntimeError about pinned memory."""
    import twotower.release_loader as release_loader

    monkeypatch.setattr(release_loader, "load_release_checkpoint", lambda *a, **k: pytest.fail("weights read"))
    for devices in ({"ctx_device": "cuda"}, {"den_device": "cuda:1"}):
        with pytest.raises(ValueError, match=r"_device 'cuda(:1)?' is not available on this machine"):
            load_engine(release, **devices)


def test_tokenizer_problems_are_said_before_any_weight_is_read(release, monkeypatch):
    """With the release that was ~118 GiB read before "tokenizer has 298 ids but the model only 261"."""
    import twotower.release_loader as release_loader

    monkeypatch.setattr(release_loader, "load_release_checkpoint", lambda *a, **k: pytest.fail("weights read"))
    (release / "tokenizer.json").write_text("{ bad")
    refused(release, r"cannot read the tokenizer .*tokenizer.json: not valid JSON")
    byte_level_tokenizer_json(release / "tokenizer.json", specials=("<pad>", "<s>", "</s>", "<unk>", "<mask>")
                              + tuple(f"<extra{i}>" for i in range(40)))
    refused(release, r"the tokenizer in .*release has 30\d ids but config.json's vocab_size is 261: they come from "
                     r"different models")


def test_a_foreign_tokenizer_model_beside_the_release_tokenizer_json_gives_way_to_it(release, tmp_path):
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(["def f(x): return x + 1", "print('hello world')"] * 50),
                                   model_prefix=str(tmp_path / "other"), vocab_size=40, model_type="bpe",
                                   minloglevel=2)
    (release / "tokenizer.model").write_bytes((tmp_path / "other.model").read_bytes())
    engine = load_engine(release)
    assert type(engine.tokenizer).__name__ == "HFTokenizer"
    os.remove(release / "tokenizer.json")  # alone, the foreign tokenizer.model is refused as before
    refused(release, r"is not one of this project's")


def test_the_base_causal_lm_is_named_as_such(tmp_path):
    """NemotronHForCausalLM's checkpoint read as "unknown tensor 'backbone.embeddings.weight'"."""
    from transformers import NemotronHForCausalLM

    config = build_model("tiny").config
    for shard_size in ("100KB", "1GB"):  # sharded (the release loader) and one model.safetensors (from_pretrained)
        folder = tmp_path / shard_size
        NemotronHForCausalLM(config).save_pretrained(folder, max_shard_size=shard_size)
        byte_level_tokenizer_json(folder / "tokenizer.json")
        message = refused(folder, r"holds a NemotronH causal LM \(backbone.\* / lm_head.\* tensors, no "
                                  r"context_tower.\* or denoiser_tower.\*\), not a two-tower checkpoint: "
                                  r"twotower.from_backbone")
        assert "unknown tensor" not in message


def test_a_git_lfs_pointer_and_appended_bytes_are_said_in_words(release):
    shards = sorted(set(json.loads((release / INDEX_NAME).read_text())["weight_map"].values()))
    weights = (release / shards[0]).read_bytes()
    (release / shards[0]).write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 123\n")
    refused(release, r"it is a Git LFS pointer, not the weights .*git lfs pull")
    (release / shards[0]).write_bytes(weights)
    with open(release / shards[1], "ab") as handle:  # safetensors: "incomplete metadata, file not fully covered"
        handle.write(b"\0" * 100)
    refused(release, rf"{shards[1]} cannot be read as safetensors: the file is 100 bytes longer than its header")


def test_from_pretrained_reads_the_release_layout(release, native):
    """It told a release user to copy the index that was already there."""
    from_release, from_native = from_pretrained(release), from_pretrained(native)
    for (name, a), (_, b) in zip(from_release.state_dict().items(), from_native.state_dict().items()):
        assert torch.equal(a.float(), b.float()), name


def test_wrong_folders_point_to_the_checkpoint(release, tmp_path, monkeypatch):
    parent = release.parent
    refused(parent, rf"has no config.json: not a model directory \(its subfolder {release}\)")
    cache = tmp_path / "models--nvidia--Nemotron-Labs-TwoTower"
    (cache / "snapshots").mkdir(parents=True)
    os.symlink(release, cache / "snapshots" / "abc123")
    refused(cache, r"\(a Hugging Face cache folder; its checkpoint is .*snapshots/abc123\)")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"model directory not found: nvidia/Nemotron-Labs-TwoTower: a hub name\? "
                                         r"Nothing is downloaded here"):
        load_engine("nvidia/Nemotron-Labs-TwoTower")
    monkeypatch.setenv("HOME", str(parent))
    assert load_engine("~/release").model.config.vocab_size == 261  # a quoted "~" is the home folder


@pytest.mark.parametrize("name", ["config.json", "tokenizer.json", "shard", INDEX_NAME, "native model.safetensors"])
def test_a_broken_link_in_a_cache_folder_is_named_as_one(release, native, name):
    """A Hugging Face cache snapshot links each file into ../../blobs; a partial download leaves links to nothing,
    which the loader called missing while `ls` listed them."""
    if name.startswith("native "):
        release, name = native, name.split()[1]
    name = first_shard(release) if name == "shard" else name
    blobs = release.parent / "blobs"
    blobs.mkdir()
    (release / name).rename(blobs / "abc123")
    (release / name).symlink_to(os.path.join("..", "blobs", "abc123"))
    assert load_engine(release) is not None  # the link works while its blob is there
    (blobs / "abc123").unlink()
    message = refused(release, "is a broken link")
    assert f"{release / name} is a broken link (to ../blobs/abc123): an incomplete download?" in message


def test_a_config_with_a_wrong_expert_count_or_dtype_names_its_field(release):
    from test_checkpoint_bad_input import edit_config

    config = json.loads((release / "config.json").read_text())
    assert config["n_routed_experts"] > 2
    edit_config(release, n_routed_experts=2)
    assert "config.json sets n_routed_experts = 2: set it to the checkpoint's number of experts" in refused(
        release, "expert 2 of a 2-expert layer")
    edit_config(release, n_routed_experts=config["n_routed_experts"] + 2)
    refused(release, "has no expert .* sets n_routed_experts = ")
    edit_config(release, n_routed_experts=config["n_routed_experts"], torch_dtype="bf16")
    refused(release, "torch_dtype 'bf16' is not a dtype: write torch's name, \"bfloat16\"")


def test_a_16_bit_checkpoint_loaded_as_fp32_on_a_gpu_is_said_before_loading(tmp_path):
    """generate --model DIR --ctx-device cuda:0 loaded the release's bf16 weights as fp32 (--dtype's default), twice
    the memory `twotower plan` had planned, with no word. Not said on a CPU (the shipped model's way)."""
    from types import SimpleNamespace

    from twotower.run_setup import upcast_note

    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "bfloat16"}))

    def note(**given):
        args = dict(model=str(tmp_path), preset=None, ctx_device="cuda:0", den_device="cuda:1", dtype="fp32",
                    den_dtype=None)
        return upcast_note(SimpleNamespace(**{**args, **given}))

    assert note() == ("note: the checkpoint is stored in bfloat16; the context tower and the denoiser load it as fp32 "
                      "on the GPU, twice its size there; --dtype bf16 loads it as stored (`twotower plan` plans for "
                      "bf16)")
    assert note(dtype="bf16") is None and note(ctx_device="cpu", den_device="cpu") is None
    assert note(preset="tiny") is None
    # the flag the user has not given yet, for the tower it concerns
    assert "; the denoiser loads it as fp32 on the GPU" in note(dtype="bf16", den_dtype="fp32")
    assert "--den-dtype bf16 loads it as stored" in note(dtype="bf16", den_dtype="fp32")
    assert "; the denoiser loads" in note(ctx_device="cpu")  # only the tower on the GPU
    (tmp_path / "config.json").write_text(json.dumps({"torch_dtype": "float32"}))
    assert note() is None
