"""The loading and saving API refuses, by name and before any work, what it cannot use: a path that is no path,
an empty one, an 8-bit float dtype, a switch that is no boolean, save_pretrained's wrong arguments. Each was a
TypeError / RuntimeError traceback, a crash at the first decoding step, or a silent wrong result."""

import re

import pytest
import torch

from twotower import build_model, from_pretrained, save_pretrained
from twotower.checkpoint import from_backbone
from twotower.cli import main as cli_main
from twotower.engine import as_dtype, load_engine


@pytest.mark.parametrize("value, message", [
    (123, re.escape("--model must be a path (text or a pathlib.Path), got int 123")),
    (b"assets/default", re.escape("--model must be a path (text or a pathlib.Path), got bytes b'assets/default'")),
    ("", re.escape('--model is empty: give a folder ("." for the current one)')),
    ("  ", "--model is empty"),
])
def test_load_engine_names_a_model_dir_that_is_no_path(value, message):
    with pytest.raises(ValueError, match=message):
        load_engine(model_dir=value)


@pytest.mark.parametrize("load", [from_pretrained, from_backbone])
def test_the_checkpoint_readers_name_a_directory_that_is_no_path(load):
    with pytest.raises(ValueError, match="directory must be a path .*got int 7"):
        load(7)


def test_an_empty_model_flag_is_refused_not_read_as_the_current_folder(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # it said "no tokenizer in ." of wherever the command ran
    assert cli_main(["generate", "--model", "", "x"]) == 2
    assert "--model is empty" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", ["float8_e4m3fn", "float8_e5m2", torch.float8_e4m3fn])
def test_8_bit_floats_are_refused_at_load_not_at_the_first_step(dtype):
    """as_dtype took any floating dtype: float8 weights loaded, then the first AR step stopped on "bmm not
    implemented for 'Float8_e4m3fn'"."""
    with pytest.raises(ValueError, match="is an 8-bit float, which this model's layers do not compute in"):
        as_dtype("dtype", dtype)
    with pytest.raises(ValueError, match="den_dtype .* is an 8-bit float"):
        load_engine(preset="tiny", den_dtype=dtype)


def test_input_major_takes_a_real_boolean():
    """load_engine(input_major="no") stored the weights input-major: a plain `if` read the string as on."""
    with pytest.raises(ValueError, match="input_major"):
        load_engine(preset="tiny", input_major="no")
    assert load_engine(preset="tiny", input_major=False).describe()["input_major_weights"] == 0


@pytest.fixture(scope="module")
def tiny():
    return build_model("tiny")


@pytest.mark.parametrize("call, message", [
    (lambda m, d: save_pretrained("nope", d), "save_pretrained saves a TwoTowerModel .*got str"),
    (lambda m, d: save_pretrained(m, d, dtype=torch.int8), "dtype must be one of .* got torch.int8"),
    (lambda m, d: save_pretrained(m, d, dtype="int8"), "unknown dtype 'int8'"),
    (lambda m, d: save_pretrained(m, d, extra={"vocab_size": 5}), "extra is the weights file's metadata"),
    (lambda m, d: save_pretrained(m, d / "file.txt"), "directory .*file.txt' is a file, not a folder"),
    (lambda m, d: save_pretrained(m, 3.5), "directory must be a path"),
])
def test_save_pretrained_checks_its_arguments_before_writing(tiny, tmp_path, call, message):
    """An Engine, "bf16" (read by Tensor.to as a device), int metadata or a file for the folder each stopped on
    an AttributeError / RuntimeError / TypeError / FileExistsError; int8 wrote a checkpoint no load accepts."""
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ValueError, match=message):
        call(tiny, tmp_path / "out" if "file.txt" not in message else tmp_path)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_save_pretrained_takes_a_dtype_by_name_and_round_trips(tiny, tmp_path):
    """"bf16" as load_engine takes it: the weights come back as the model's own, rounded to bf16 (the
    FP32_SUFFIXES tensors kept in fp32)."""
    from twotower.config import FP32_SUFFIXES

    save_pretrained(tiny, tmp_path, dtype="bf16", extra={"note": "test"})
    loaded = from_pretrained(tmp_path).state_dict()
    for name, value in tiny.state_dict().items():
        kept = value if name.endswith(FP32_SUFFIXES) or not value.is_floating_point() else value.bfloat16().float()
        assert torch.equal(loaded[name], kept), name


def test_a_save_the_disk_refuses_leaves_the_folder_as_it_was(tiny, tmp_path, monkeypatch):
    """save_pretrained wrote config.json, then the weights in place: a full disk or Ctrl-C left a config beside
    half-written (or the old) weights, and the error was safetensors' or the OS's traceback."""
    import twotower.checkpoint as checkpoint

    other = build_model("tiny", seed=7)
    save_pretrained(other, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full_disk(state, path, metadata=None):
        open(path, "wb").write(b"half")  # what a write cut short leaves
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(ValueError, match=r"the model could not be written \(.*No space left on device\); the files"):
        save_pretrained(tiny, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # no staging folder left either


def test_saving_into_a_sharded_checkpoints_folder_is_refused(tiny, tmp_path):
    """Its index would be loaded in place of the weights written beside it (the release's layout is read first)."""
    (tmp_path / "model.safetensors.index.json").write_text("{}")
    with pytest.raises(ValueError, match="holds a sharded checkpoint .*save into another folder"):
        save_pretrained(tiny, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors.index.json"]


@pytest.mark.parametrize("override, message", [
    (dict(hidden_size=-4), "preset 'tiny' with hidden_size=-4 describes no model that can be built: hidden_size "
                           "must be a positive integer, got -4"),
    (dict(hidden_size="32"), "preset 'tiny' with hidden_size='32': .*expected int, got str"),
    (dict(mlp_hidden_act="nope"), "mlp_hidden_act 'nope' is not an activation transformers knows"),
    (dict(mask_token_id=999), "mask_token_id 999 is not an id below the vocabulary size 261"),
    (dict(num_experts_per_tok=9), "num_experts_per_tok 9 must be between 1 and n_routed_experts 4"),
    (dict(default_gamma=5), "default_gamma: confidence threshold γ must be in"),
    # these three built fine and failed in the first forward pass with a shape RuntimeError
    (dict(n_groups=3), "mamba_num_heads 4 must be a multiple of n_groups 3"),
    (dict(num_key_value_heads=3), "num_attention_heads 4 must be a multiple of num_key_value_heads 3"),
    (dict(time_embed_dim=33), "time_embed_dim 33 must be even"),
])
def test_build_model_checks_its_overrides_as_a_config_json_is_checked(override, message):
    """load_config checked these in a checkpoint's config.json; build_model's overrides went unchecked: a
    negative width was torch's "negative dimension", an unknown activation a bare KeyError, and a mask id past
    the vocabulary or a top-k above the experts built fine and failed at the first step."""
    with pytest.raises(ValueError, match=message):
        build_model("tiny", **override)
