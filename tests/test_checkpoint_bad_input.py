"""A user's broken or unusual checkpoint folder (`--model DIR`, `load_engine(DIR)`), in this project's layout and
the release's: every case ends in one ValueError line that names the file and the problem, never a traceback
from safetensors / json / torch / sentencepiece at load or at the first run, and never a model that loads with
a field silently replaced by a default. Each case here was a traceback, a misleading message or a silent load."""

import json
import re
import shutil
import zipfile

import pytest
import torch
from safetensors.torch import load_file, save_file

from tiny_models import byte_level_tokenizer_json
from twotower import build_model
from twotower.checkpoint import WEIGHTS_NAME, from_pretrained, save_pretrained
from twotower.engine import load_engine
from twotower.release_loader import INDEX_NAME, load_release_checkpoint, write_release_layout
from twotower.tokenizer import SentencePieceTokenizer, load_tokenizer

@pytest.fixture(scope="module")
def model():
    return build_model("tiny", seed=1)


@pytest.fixture(scope="module")
def native_source(model, tmp_path_factory):
    """This project's layout: config.json + model.safetensors + a tokenizer.json the tiny vocabulary fits."""
    directory = save_pretrained(model, tmp_path_factory.mktemp("native"))
    byte_level_tokenizer_json(directory / "tokenizer.json")
    return directory


@pytest.fixture(scope="module")
def release_source(model, tmp_path_factory):
    """The release's layout: sharded safetensors, the index, the release's names, its tokenizer.json."""
    directory = write_release_layout(model, tmp_path_factory.mktemp("release"), n_shards=3)
    byte_level_tokenizer_json(directory / "tokenizer.json")
    return directory


@pytest.fixture
def native(native_source, tmp_path):
    return shutil.copytree(native_source, tmp_path / "native")


@pytest.fixture
def release(release_source, tmp_path):
    return shutil.copytree(release_source, tmp_path / "release")


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    for key, value in changes.items():
        if value is DELETE:
            config.pop(key, None)
        else:
            config[key] = value
    (directory / "config.json").write_text(json.dumps(config))


DELETE = object()


def refused(directory, pattern):
    """load_engine refuses the folder with one line matching `pattern` (and the line names the folder)."""
    with pytest.raises(ValueError, match=pattern) as info:
        load_engine(directory)
    message = str(info.value)
    assert "\n" not in message and str(directory) in message, message
    return message


def first_shard(directory):
    return sorted(set(json.loads((directory / INDEX_NAME).read_text())["weight_map"].values()))[0]


# ---------------------------------------------------------------------------------------------------- config.json
@pytest.mark.parametrize("text, pattern", [
    # was transformers' "It looks like the config file at ... is not a valid JSON file": where, not said
    ("{ not json", r"config.json cannot be read as a model config: not valid JSON \(.*line 1 column 3"),
    ("", r"config.json cannot be read as a model config: the file is empty"),
    # was "NemotronHConfig() argument after ** must be a mapping, not list"
    ("[1, 2]", r"config.json cannot be read as a model config: it holds a JSON list, not an object"),
])
def test_a_config_json_that_is_no_json_object_says_so(native, text, pattern):
    (native / "config.json").write_text(text)
    refused(native, pattern)


def test_a_config_without_a_layer_pattern_is_blamed_not_its_weights(native, release):
    """Without its layer pattern the config was read as transformers' default stack, and the weights were blamed:
    "model.safetensors: missing tensors [...]" (this layout), "unknown tensor ... the model has no ..." (release)."""
    edit_config(native, layers_block_type=DELETE)
    refused(native, r"native/config.json has no layer pattern: set hybrid_override_pattern")
    edit_config(release, hybrid_override_pattern=DELETE)
    refused(release, r"release/config.json has no layer pattern")
    (native / "config.json").write_text("{}")
    refused(native, r"config.json has no layer pattern")


@pytest.mark.parametrize("field", ["hidden_size", "vocab_size"])
def test_a_config_without_its_width_or_vocabulary_is_refused_by_name(native, field):
    """Was a size mismatch against transformers' default (hidden 4096, vocabulary 131072), blamed on the weights."""
    edit_config(native, **{field: DELETE})
    refused(native, rf"config.json does not set {field}")


@pytest.mark.parametrize("field", ["num_experts_per_tok", "routed_scaling_factor"])
def test_an_moe_config_without_its_routing_fields_is_refused_not_loaded_with_defaults(native, field):
    """No shape depends on them: the checkpoint loaded with transformers' defaults (top-2, scale 1.0; the release
    routes top-6 with scale 2.5) and routed every token otherwise than in training, without a word."""
    edit_config(native, **{field: DELETE})
    refused(native, rf"config.json does not set {field}, which its MoE layers route by")


def test_a_type_error_in_config_json_is_one_line(native):
    """huggingface_hub's validation error spans two lines; the CLI printed the second one on its own."""
    edit_config(native, hidden_size="32")
    refused(native, r"cannot be read as a model config: Validation error for field 'hidden_size': TypeError: "
                    r"Field 'hidden_size' expected int, got str")


@pytest.mark.parametrize("changes, pattern", [
    # built fine, then a bare ZeroDivisionError / RuntimeError in the first Mamba scan longer than one token
    ({"chunk_size": 0}, r"config.json describes no model that can be built: chunk_size must be a positive integer, "
                        r"got 0"),
    ({"chunk_size": -1}, r"chunk_size must be a positive integer, got -1"),
    # built fine, then "shape '[-1, 3, 1]' is invalid" / "selected index k out of range" in the first MoE layer
    ({"n_group": 3}, r"config.json: n_group 3 must be a positive integer that divides n_routed_experts 4"),
    ({"topk_group": 5}, r"config.json: topk_group 5 must be between 1 and n_group 1"),
    ({"n_group": 2, "topk_group": 1, "num_experts_per_tok": 3},
     r"num_experts_per_tok 3 is more than the 2 experts that topk_group 1 of n_group 2 groups leave"),
    # a bare KeyError: 'nope' while building the towers
    ({"mamba_hidden_act": "nope"}, r"config.json: mamba_hidden_act 'nope' is not an activation transformers knows"),
    ({"mlp_hidden_act": "nope"}, r"config.json: mlp_hidden_act 'nope' is not an activation"),
    # loaded, and decoded with a negative epsilon / NaN routing weights
    ({"layer_norm_epsilon": -1.0}, r"config.json: layer_norm_epsilon must be a positive number, got -1.0"),
    ({"routed_scaling_factor": float("nan")}, r"config.json: routed_scaling_factor must be a positive number, got nan"),
    # a width of 0 built zero-size tensors under a torch UserWarning, then a size mismatch blamed on the weights
    ({"hidden_size": 0}, r"config.json describes no model that can be built: hidden_size must be a positive integer"),
    # an empty stack, and one without the attention layer the cache needs, were blamed on the weights
    ({"layers_block_type": []}, r"config.json: layer pattern '': use a non-empty string"),
    ({"layers_block_type": ["moe"]}, r"config.json: layer pattern 'E' has no attention layer"),
    # transformers keeps layers_block_type and drops the other without a word
    ({"hybrid_override_pattern": "MMMM*E"}, r"config.json: layers_block_type \('M\*EM-\*'\) and "
                                            r"hybrid_override_pattern \('MMMM\*E'\) describe different layer stacks"),
])
def test_config_values_that_fail_only_when_decoding_are_refused_at_load(native, changes, pattern):
    edit_config(native, **changes)
    refused(native, pattern)


def test_the_first_run_after_a_bad_chunk_size_no_longer_fails(native, capsys):
    """Through the CLI: one `error:` line, where the first generate used to end in a ZeroDivisionError traceback."""
    from twotower.cli import main

    edit_config(native, chunk_size=0)
    assert main(["generate", "--model", str(native), "--max-new-tokens", "2", "def f(x): return x + 1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("twotower generate: error: ") and "chunk_size" in err[0], err


def test_an_unknown_symbol_in_the_release_pattern_is_named(release):
    """Was "cannot be read as a model config: 'X'" (transformers' bare KeyError)."""
    edit_config(release, hybrid_override_pattern="M*EMX*")
    refused(release, r"config.json: hybrid_override_pattern: layer pattern 'M\*EMX\*': use a non-empty string of")


def test_an_eos_id_outside_the_vocabulary_or_a_list_of_them_blames_config_json(release):
    """The release's tokenizer takes its EOS from config.json: the first run failed with "eos_token_id 99999 is
    outside the vocabulary" / "eos_token_id must be an integer, got [2, 7]", as if the user had typed it."""
    edit_config(release, eos_token_id=99999)
    refused(release, r"release/config.json: eos_token_id 99999 is not an id below the vocabulary size 261")
    edit_config(release, eos_token_id=[2, 7])
    refused(release, r"release/config.json gives eos_token_id as a list \[2, 7\]; the engine stops at one id")
    edit_config(release, eos_token_id=[2])  # one id in a list is that id
    assert load_engine(release).tokenizer.eos_token_id == 2


def test_a_missing_mask_id_beside_a_tokenizer_json_with_another_mask_is_refused(release):
    """config.json without mask_token_id gets the release's 3; the tokenizer.json's <mask> is 4. The tokenizer
    took the config's id, so nothing compared them: the denoiser was fed id 3 as its mask without a word."""
    edit_config(release, mask_token_id=DELETE)
    refused(release, r"config.json has no mask_token_id, so the release's 3 was assumed, but .*tokenizer.json has "
                     r"<mask> as id 4: set mask_token_id in config.json")
    edit_config(release, mask_token_id=4)
    assert load_engine(release).model.config.mask_token_id == 4


def test_config_fields_left_unset_are_named_when_the_weights_do_not_fit(native, release):
    """Without head_dim transformers builds 128-wide heads: the size mismatch is now followed by the cause."""
    edit_config(native, head_dim=DELETE)
    refused(native, r"model.safetensors does not fit .*config.json: size mismatch for .*; .*config.json does not "
                    r"set head_dim, so transformers' defaults stood in")
    edit_config(release, head_dim=DELETE)
    refused(release, r"has shape .*, the model expects .*; .*config.json does not set head_dim")


# ---------------------------------------------------------------------------------------------------- weights
def _cut(path, keep):
    data = path.read_bytes()
    path.write_bytes(data[:keep(len(data))])


@pytest.mark.parametrize("damage, pattern", [
    # safetensors: "Error while deserializing header: incomplete metadata, file not fully covered"
    (lambda p: _cut(p, lambda n: n // 2), r"cannot be read as safetensors: the file is truncated: its header "
                                          r"describes \d+ bytes, the file has \d+ \(50%\)"),
    (lambda p: _cut(p, lambda n: n - 16), r"the file is truncated: its header describes (\d+) bytes, the file has"),
    # "header too small"
    (lambda p: p.write_bytes(b""), r"cannot be read as safetensors: the file is empty \(0 bytes\)"),
    # "header too large"
    (lambda p: p.write_text("these are not the weights you are looking for\n" * 5),
     r"cannot be read as safetensors: not a safetensors file \(its first 8 bytes announce a \d+-byte header"),
    # "invalid header length"
    (lambda p: zipfile.ZipFile(p, "w").writestr("archive/data.pkl", b"\x80\x02}q\x00."),
     r"cannot be read as safetensors: it is a zip archive \(a PyTorch pickle checkpoint\?\)"),
])
def test_a_damaged_weights_file_says_what_is_wrong_with_it(native, release, damage, pattern):
    damage(native / WEIGHTS_NAME)
    message = refused(native, rf"native/{WEIGHTS_NAME} cannot be read as safetensors")
    assert re.search(pattern, message), message
    shard = first_shard(release)
    damage(release / shard)
    message = refused(release, rf"release/{shard} cannot be read as safetensors")
    assert re.search(pattern, message), message


def test_weights_that_are_no_file_or_not_model_safetensors_are_named(native, release, tmp_path):
    (native / WEIGHTS_NAME).unlink()
    (native / WEIGHTS_NAME).mkdir()  # was "has no model.safetensors"
    refused(native, rf"native/{WEIGHTS_NAME} is a folder, not a weights file")
    (release / INDEX_NAME).unlink()  # the shards without their index: was "has no model.safetensors", no more said
    refused(release, r"has no model.safetensors, and its other safetensors files \(model-00001-of-00003.safetensors, "
                     r".*\) cannot be read without model.safetensors.index.json")
    pickled = shutil.copytree(native, tmp_path / "pickled", ignore=shutil.ignore_patterns(WEIGHTS_NAME))
    torch.save({"w": torch.zeros(1)}, pickled / "pytorch_model.bin")
    refused(pickled, r"has no model.safetensors, only pytorch_model.bin: weights are read from safetensors only")


def _rewrite(path, change):
    tensors = load_file(str(path))
    change(tensors)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))


def test_an_absent_tower_is_said_as_such(native, release):
    """The denoiser half left out (an AR-only export): five names of 90 missing said nothing of the cause."""
    _rewrite(native / WEIGHTS_NAME, lambda t: [t.pop(k) for k in list(t) if k.startswith("denoiser_tower.")])
    refused(native, r"missing tensors \['denoiser_tower\..*'\] and \d+ more, unexpected tensors \[\] "
                    r"\(no denoiser_tower tensors at all\)")
    index = json.loads((release / INDEX_NAME).read_text())
    index["weight_map"] = {k: v for k, v in index["weight_map"].items() if not k.startswith("denoiser_tower.")}
    (release / INDEX_NAME).write_text(json.dumps(index))
    refused(release, r"the checkpoint has no tensor for 'denoiser_tower.embeddings.weight' \(261, 32\) and \d+ more "
                     r"\(no denoiser_tower tensors at all\)")


def test_extra_tensors_are_counted_and_a_wrapper_prefix_is_named(native, native_source):
    _rewrite(native / WEIGHTS_NAME, lambda t: t.update({f"mtp.layers.{i}.weight": torch.zeros(2) for i in range(8)}))
    refused(native, r"missing tensors \[\], unexpected tensors \['mtp.layers.0.weight', .*\] and 3 more$")
    shutil.copy(native_source / WEIGHTS_NAME, native / WEIGHTS_NAME)
    _rewrite(native / WEIGHTS_NAME, lambda t: [t.__setitem__("model." + k, t.pop(k)) for k in list(t)])
    refused(native, r"every name starts with 'model.', which the engine's names do not")


@pytest.mark.parametrize("shard, pattern", [
    (5, r"'weight_map' gives 5 as the shard of '.*', not a file name"),  # was "shard file <folder>/5 is missing"
    ("", r"'weight_map' gives '' as the shard of '.*', not a file name"),  # was "shard file <folder> is missing"
])
def test_an_index_entry_that_is_no_file_name_is_named(release, shard, pattern):
    index = json.loads((release / INDEX_NAME).read_text())
    index["weight_map"][next(iter(index["weight_map"]))] = shard
    (release / INDEX_NAME).write_text(json.dumps(index))
    refused(release, rf"{INDEX_NAME}: {pattern}")


def test_an_empty_or_non_object_index_says_so(release):
    (release / INDEX_NAME).write_text("")  # was json's "Expecting value: line 1 column 1 (char 0)"
    refused(release, rf"{INDEX_NAME} is not a safetensors index .*: the file is empty")
    (release / INDEX_NAME).write_text("[]")  # was "list indices must be integers or slices, not str"
    refused(release, rf"{INDEX_NAME} is not a safetensors index .*: it holds a JSON list, not an object")


def test_the_loaders_themselves_raise_the_same_messages(native, release):
    """from_pretrained and load_release_checkpoint, as a script calls them, not only through load_engine."""
    _cut(native / WEIGHTS_NAME, lambda n: n // 2)
    with pytest.raises(ValueError, match="the file is truncated"):
        from_pretrained(native)
    _cut(release / first_shard(release), lambda n: n // 2)
    with pytest.raises(ValueError, match="the file is truncated"):
        load_release_checkpoint(release)


# ---------------------------------------------------------------------------------------------------- tokenizer
def test_a_sentencepiece_model_of_another_project_is_refused(native, tmp_path):
    """A foreign tokenizer.model read fine and the model decoded its ids as other tokens (its id 4, our mask, an
    ordinary piece there): nonsense and no error."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(sentence_iterator=iter(["def f(x): return x + 1", "print('hello world')"] * 50),
                                   model_prefix=str(tmp_path / "other"), vocab_size=40, model_type="bpe",
                                   minloglevel=2)
    with pytest.raises(ValueError, match=r"the tokenizer .*other.model is not one of this project's: its ids 0-4 are "
                                         r"\['<unk>', '<s>', '</s>', .*\], where this project's tokenizers have "
                                         r"\['<pad>', '<s>', '</s>', '<unk>', '<mask>'\]"):
        SentencePieceTokenizer(tmp_path / "other.model")


def test_an_empty_or_misplaced_tokenizer_file_is_named(native):
    (native / "tokenizer.model").write_bytes(b"")  # sentencepiece said "INTERNAL: unk is not defined."
    with pytest.raises(ValueError, match=r"cannot read the tokenizer .*tokenizer.model: the file is empty"):
        load_tokenizer(native)
    (native / "tokenizer.model").unlink()
    (native / "tokenizer.model").mkdir()  # was "no tokenizer in <folder>: expected tokenizer.model or ..."
    refused(native, r"native/tokenizer.model is a folder, not a tokenizer file")


@pytest.mark.parametrize("text, pattern", [
    ("", r"the file is empty"),  # tokenizers: "EOF while parsing a value at line 1 column 0"
    ('{"a": 1}', r"JSON, but not a Hugging Face tokenizer \(it has no 'model' object\)"),  # "expected `,` or `}`"
    ("{ bad", r"not valid JSON \(.*line 1 column 3"),  # "key must be a string at line 1 column 3"
])
def test_a_broken_tokenizer_json_says_what_is_wrong(release, text, pattern):
    (release / "tokenizer.json").write_text(text)
    refused(release, rf"cannot read the tokenizer .*release/tokenizer.json: {pattern}")


def test_the_intact_folders_still_load_and_decode(native, release):
    for directory in (native, release):
        engine = load_engine(directory)
        assert engine.model.config.mask_token_id == 4
        events = list(engine.stream("diffusion", engine.tokenizer.encode("def f("), max_new_tokens=4))
        assert events[-1].kind == "done"
