"""The engine facade: a loaded model + its tokenizer, and one `stream()` that dispatches to the samplers.

The CLI, the web app and the benchmarks all go through here, so text handling and input checks live in
one place and decoding logic lives only in twotower.decoding / spec_decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from .tokenizer import load_tokenizer
from .validation import (check_block_size, check_device, check_encodable, check_flag, check_fraction, check_gamma,
                         check_steps)
from .path_checks import check_model_dir

if TYPE_CHECKING:  # torch loads with the first model, not with the CLI's argument parsing
    from .events import GenerationResult, StepEvent

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_MODEL_DIR = ASSETS / "default"
# a checkout (or an editable install of one) holds the shipped model; a wheel installs the packages alone, and
# ASSETS is then a folder beside them in site-packages that nothing should write into
IN_CHECKOUT = (ASSETS.parent / "pyproject.toml").is_file() and (ASSETS.parent / "twotower").is_dir()
MODES = ("diffusion", "speculative", "mock_ar", "ar")
# how every report, footer and panel names a mode
MODE_LABELS = {"diffusion": "diffusion", "speculative": "speculative", "mock_ar": "mock-AR", "ar": "AR"}
# every command's --dtype / --den-dtype takes these spellings, in any case; reports and flags use the short ones
DTYPE_SPELLINGS = {"bf16": "bf16", "bfloat16": "bf16", "fp32": "fp32", "float32": "fp32"}
DTYPE_METAVAR = "{bf16,fp32}"  # what --help shows; bfloat16 / float32 are accepted too (DTYPE_HELP)
DTYPE_HELP = "bf16 or fp32 (bfloat16 / float32 also accepted)"
ANCHOR_NOTE = ", each diffusion block's first token from the context tower"  # reports of --anchor-first runs


def default_model_dir() -> Path:
    """The embedded model's folder; a clear error where an install lacks it (`pip install .` copies the
    packages, not assets/)."""
    if not DEFAULT_MODEL_DIR.is_dir():
        raise ValueError(f"the embedded default model is not beside this installation ({DEFAULT_MODEL_DIR}): it "
                         "ships in the repository's assets/default; install from a checkout with `pip install -e .` "
                         "(as scripts/setup.sh does) or pass --model DIR")
    return DEFAULT_MODEL_DIR


def model_label(model_dir: Path) -> str:
    """How reports name a checkpoint: relative to the project when it lies inside it ('assets/default', the
    same in every checkout), else its path as given."""
    try:
        return Path(model_dir).resolve().relative_to(ASSETS.parent).as_posix()
    except ValueError:
        return str(model_dir)


def _torch_dtypes() -> dict:
    """torch's dtypes by flag name, built on call: importing this module must not load torch (the CLI parses its
    arguments first, twotower/__init__.py)."""
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}


def dtype_name(dtype) -> str:
    """fp32 / bf16, as the flags spell them (the name torch gives any other dtype)."""
    return {v: k for k, v in _torch_dtypes().items()}.get(dtype, str(dtype).replace("torch.", ""))


def dtype_flag(text: str) -> str:
    """The argparse `type` of --dtype / --den-dtype in every command: "bf16" or "fp32" for any accepted spelling."""
    import argparse

    try:
        return DTYPE_SPELLINGS[str(text).strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"unknown dtype {text!r}: choose {DTYPE_HELP}") from None


def as_dtype(name: str, value):
    """A weight dtype given as torch's or by name: the flags' spellings (any case), or any floating torch dtype's
    own name ("float16"), as a config's mamba_ssm_cache_dtype gives it. The one dtype parser of the project."""
    import torch

    dtype = value
    if isinstance(value, str):
        short = DTYPE_SPELLINGS.get(value.strip().lower())
        dtype = _torch_dtypes()[short] if short else getattr(torch, value.strip().lower(), None)
    if isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        if dtype.itemsize < 2:  # torch's float8 kinds: no matmul, norm or activation of the towers runs in them
            raise ValueError(f"{name} {value!r} is an 8-bit float, which this model's layers do not compute in: "
                             f"choose {DTYPE_HELP}")
        return dtype
    if isinstance(value, str):
        raise ValueError(f"unknown {name} {value!r}: choose {DTYPE_HELP}, or a floating torch dtype")
    raise ValueError(f"{name} must be one of {', '.join(DTYPE_SPELLINGS)} or a floating torch dtype, got {value!r}")


class PromptTooLong(ValueError):
    """A prompt past Engine.max_prompt_tokens (a command that can raise the limit names its flag)."""


@dataclass
class Engine:
    model: object
    tokenizer: object
    name: str
    max_prompt_tokens: int = 2048

    # ----------------------------------------------------------------------------------------
    def encode_prompt(self, text: str) -> list[int]:
        if text is not None and not isinstance(text, str):  # bytes, token ids: not "empty", another thing
            raise ValueError(f"the prompt must be text (str), got {type(text).__name__}")
        if text is None or not text:
            raise ValueError("the prompt is empty: type some text first")
        if not text.strip():  # refused too (a model continues text, and there is none), but named as it is
            raise ValueError("the prompt holds only whitespace: type some text first")
        check_encodable(text, "the prompt")
        ids = self.tokenizer.encode(text)
        if not ids:  # text this tokenizer has no piece for (a tokenizer.json without byte fallback): not "empty"
            raise ValueError(f"the prompt encodes to no tokens with this model's tokenizer: {text[:40]!r}")
        if len(ids) > self.max_prompt_tokens:
            raise PromptTooLong(f"the prompt is {len(ids)} tokens long; the limit is {self.max_prompt_tokens} tokens")
        return ids

    def heal(self, text: str, ids: list[int] | None = None):
        """Token healing of a prompt (twotower/token_healing.py): a `Healing` (its `ids` the prompt's but the
        last, `prefix` that token's text, `allowed` the first token's choices for `stream`), or None where there
        is nothing to heal. ids: the prompt's (encode_prompt's), encoded here when not given."""
        from .token_healing import heal_prompt

        ids = self.encode_prompt(text) if ids is None else ids
        return heal_prompt(self.tokenizer, text, list(ids), self.model.config.vocab_size)

    def ids_to_run(self, text: str, heal: bool = True):
        """A typed prompt's ids for a run, and its healing: (encode_prompt's ids, None) as typed or where there is
        nothing to heal, else (the healing's ids, the healing), whose `allowed` the run's stream takes
        (token_healing.stream_keywords). What generate, the app's panels and `complete` read a prompt through."""
        ids = self.encode_prompt(text)
        healing = self.heal(text, ids) if check_flag("heal", heal) else None
        return (ids, None) if healing is None else (healing.ids, healing)

    def decode(self, ids) -> str:
        """Text of token ids (a list, a tensor or array row). Ids the tokenizer has no piece for are dropped, not
        refused: a model whose head is wider than its tokenizer can generate them (see twotower/tokenizer.py).
        What is not an id at all is refused by name: int() read 5.7 as id 5 and "7" as id 7."""
        return self.tokenizer.decode(ids)  # each tokenizer checks its ids (tokenizer.ids_to_decode)

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def stream(self, mode: str, prompt_ids, *, max_new_tokens=64, block_size=None, steps_per_block=None,
               gamma=None, temperature=0.0, top_k=None, top_p=None, seed=None, stop_at_eos=True,
               adaptive=False, draft_steps=None, min_draft_confidence=None,
               anchor_first=False, snapshot_rollback=False, first_token_allowed=None) -> Iterator[StepEvent]:
        """Events of one generation in `mode` (diffusion | speculative | mock_ar | ar).

        anchor_first (diffusion only): each block's first token from the context tower (a variant, not the
        release's rule; see `iter_mask_diffusion`). snapshot_rollback (speculative only): the rollback's
        reference twin instead of per-position rollback (see spec_decode/context_cursor.py).

        steps_per_block drives diffusion; speculative drafting uses `draft_steps` (config default when
        None): a draft need not be right, the verifier repairs it, so fewer passes pay off there.

        first_token_allowed: the ids the first token may be, in every mode (token healing: `heal`'s `allowed`,
        with its `ids` as the prompt); None: any."""
        from . import decoding

        cfg = self.model.config
        mode = normalise_mode(mode)
        block_size = cfg.default_block_size if block_size is None else block_size
        steps_per_block = cfg.default_steps_per_block if steps_per_block is None else steps_per_block
        gamma = cfg.default_gamma if gamma is None else gamma
        # checked in every mode, as bench and eval check them: `--mode ar --gamma 5` is a mistake even where
        # AR reads no γ, and the same settings may next drive diffusion (the UI's sliders are shared)
        check_decoding_settings(gamma, block_size, steps_per_block, draft_steps, min_draft_confidence)
        # switches: stop_at_eos and snapshot_rollback are read here; anchor_first and adaptive are the samplers'
        # own (their entry points check them), checked here only in the modes that never hand them on, so
        # that "no" is refused in every mode, as the numbers above are, and each flag is checked once
        eos = self.eos_token_id if check_flag("stop_at_eos", stop_at_eos) else None
        per_position = not check_flag("snapshot_rollback", snapshot_rollback)
        if mode != "diffusion":
            check_flag("anchor_first", anchor_first)
        if mode != "speculative":
            check_flag("adaptive", adaptive)
        if mode == "diffusion":
            return decoding.iter_mask_diffusion(self.model, prompt_ids, max_new_tokens, block_size, steps_per_block,
                                                gamma, temperature, eos, seed, top_k, top_p, anchor_first=anchor_first,
                                                first_token_allowed=first_token_allowed)
        if mode == "mock_ar":
            return decoding.iter_mock_ar(self.model, prompt_ids, max_new_tokens, temperature, top_k, top_p, eos, seed,
                                         first_token_allowed)
        if mode == "ar":
            return decoding.iter_ar(self.model, prompt_ids, max_new_tokens, temperature, top_k, top_p, eos, seed,
                                    first_token_allowed)
        from spec_decode import iter_speculative

        # draft_steps / min_draft_confidence None: iter_speculative takes the checkpoint's own
        return iter_speculative(self.model, prompt_ids, max_new_tokens=max_new_tokens, block_size=block_size,
                                draft_steps=draft_steps, draft_threshold=gamma, temperature=temperature,
                                eos_token_id=eos, seed=seed, adaptive=adaptive, top_k=top_k, top_p=top_p,
                                min_draft_confidence=min_draft_confidence, per_position_rollback=per_position,
                                first_token_allowed=first_token_allowed)

    def complete(self, text: str, mode: str = "diffusion", *, heal: bool = True, step_callback=None,
                 **settings) -> tuple[str, "GenerationResult"]:
        """A typed prompt's completion as text, with the run's result: `encode_prompt`, token healing (`heal`;
        False runs the prompt as typed), `stream(mode, ...)` with `settings` drained through `step_callback`, and
        the text after `text` (a healed run's first token re-spells the prompt's last: not repeated). One prompt;
        for a batch, or ids, call `stream` (and `heal`) yourself."""
        from .decoding import drain
        from .token_healing import completion_text, stream_keywords

        ids, healing = self.ids_to_run(text, heal)
        if healing is not None and settings.get("first_token_allowed") is not None:
            # both would set the first token's choices (a TypeError, "got multiple values for keyword argument")
            raise ValueError("this prompt's last token is healed, which sets first_token_allowed: pass heal=False to "
                             "give your own")
        result = drain(self.stream(mode, ids, **settings, **stream_keywords(healing)), step_callback)
        return completion_text(self.decode(result.new_tokens[0]), healing.prefix if healing else ""), result

    def describe(self) -> dict:
        from .weight_layout import count_input_major

        cfg = self.model.config
        return {
            "checkpoint": self.name,
            "params_context": self.model.num_parameters("context"),
            "params_denoiser": self.model.num_parameters("denoiser"),
            "layer_pattern": layer_pattern(cfg.layers_block_type),
            "hidden_size": cfg.hidden_size,
            "vocab_size": cfg.vocab_size,
            "ctx_device": str(self.model.ctx_device),
            "den_device": str(self.model.den_device),
            "dtype": dtype_name(self.model.ctx_dtype),  # the context tower's: AR, verify
            "den_dtype": dtype_name(self.model.den_dtype),
            "compiled": self.model.is_compiled_for_decoding,  # twotower.compiled
            "input_major_weights": count_input_major(self.model),  # twotower.weight_layout
        }


def check_decoding_settings(gamma=None, block_size=None, steps_per_block=None, draft_steps=None,
                            min_draft_confidence=None, cli: bool = False) -> None:
    """The diffusion / speculative settings Engine.stream checks in every mode, each where given (None: the
    checkpoint's default, which load_config checked); the commands call it before the model loads, with cli=True:
    a refusal then starts with the flag typed ("--gamma: confidence threshold γ must be ...")."""
    checks = [("--gamma", gamma, check_gamma), ("--block-size", block_size, check_block_size),
              ("--steps", steps_per_block, lambda v: check_steps("steps per block", v)),
              ("--draft-steps", draft_steps, lambda v: check_steps("draft steps", v)),
              ("--min-draft-confidence", min_draft_confidence, lambda v: check_fraction("min_draft_confidence", v))]
    for flag, value, check in checks:
        if value is not None:
            try:
                check(value)
            except ValueError as exc:
                raise ValueError(f"{flag}: {exc}" if cli else str(exc)) from None


def normalise_mode(mode: str) -> str:
    name = str(mode).strip().lower().replace("-", "_") if isinstance(mode, str) else None
    if name not in MODES:  # said as given: None read as the mode 'none'
        raise ValueError(f"unknown mode {mode!r}; choose one of {', '.join(MODES)}")
    return name


LAYER_SYMBOLS = {"linear_attention": "M", "moe": "E", "full_attention": "*", "mlp": "-"}
LAYER_KEY = "M Mamba-2, E MoE, * attention, - MLP"  # what layer_pattern's letters stand for (the app's labels)


def layer_pattern(layer_types) -> str:
    return "".join(LAYER_SYMBOLS[t] for t in layer_types)


def load_engine(model_dir=None, preset: str | None = None, ctx_device="cpu", den_device="cpu",
                dtype="fp32", seed: int = 0, den_dtype=None,
                input_major: bool = True) -> Engine:
    """Open a local checkpoint (default: the embedded model in assets/default) or a random preset.

    dtype: both towers; den_dtype: the denoiser's own, when it differs (e.g. a bf16 draft, fp32 verify);
    input_major: wide fp32 CPU linear weights stored (in, out) for faster decoding (twotower/weight_layout.py;
    False keeps nn.Linear's layout, the reference twin)."""
    from . import build_model
    from .config import cast_model
    from .checkpoint import from_pretrained
    from .weight_layout import store_input_major

    dtype = as_dtype("dtype", dtype)
    den_dtype = None if den_dtype is None else as_dtype("den_dtype", den_dtype)
    input_major = check_flag("input_major", input_major)  # "no" read as on
    if preset is not None and model_dir is not None:
        raise ValueError("give either a model directory or a preset, not both")
    if preset == "release":  # ~63 B random parameters: tens of GB before the first token, and nothing to see
        raise ValueError("the 'release' preset is the release's shape, for the memory plan (twotower plan --preset "
                         "release); to decode with the release, load its checkpoint with --model DIR")
    if preset is not None:
        model = cast_model(build_model(preset, seed=seed), dtype)
        name = f"random '{preset}' preset (seed {seed})"
        tokenizer = load_tokenizer(None, model.config)
    else:
        model_dir = check_model_dir(model_dir) if model_dir is not None else default_model_dir()
        from .checkpoint import load_config
        from .release_loader import is_release_layout, load_release_checkpoint

        # Everything that reads no weight comes first: the release's weights are ~118 GiB, and a wrong folder, a
        # device this machine lacks or a tokenizer that does not fit was said only after all of them were read.
        check_device("ctx_device", ctx_device)
        check_device("den_device", den_device)
        config = load_config(model_dir)  # not a model folder: said as such, not as a missing tokenizer
        tokenizer = load_tokenizer(model_dir, config)
        if tokenizer.mask_token_id != config.mask_token_id:  # e.g. a config.json without mask_token_id,
            # filled with the release's 3, beside a tokenizer whose mask piece is 4: the denoiser reads a wrong id
            raise ValueError(f"{model_dir}/config.json's mask_token_id {config.mask_token_id} is not the "
                             f"tokenizer's mask id {tokenizer.mask_token_id}: set mask_token_id there")
        if tokenizer.vocab_size > config.vocab_size:
            raise ValueError(f"the tokenizer in {model_dir} has {tokenizer.vocab_size} ids but config.json's "
                             f"vocab_size is {config.vocab_size}: they come from different models")
        if is_release_layout(model_dir):  # the release's names (sharded or one file), streamed to their devices
            model = load_release_checkpoint(model_dir, ctx_device, den_device, dtype)
        else:
            model = from_pretrained(model_dir, dtype=dtype)
        name = model_label(model_dir)
    model.place_towers_on_devices(ctx_device, den_device)
    if den_dtype is not None and den_dtype != dtype:
        model.set_denoiser_dtype(den_dtype)
    if input_major:  # last: the placement and dtypes above decide which weights qualify
        store_input_major(model)
    return Engine(model.eval(), tokenizer, name)
