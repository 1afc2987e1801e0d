"""TwoTower Playground engine: two-tower diffusion language models on transformers' NemotronH.

The names below load on first use (PEP 562): `twotower --help` and a mistyped flag answer before torch and
transformers are imported (~10 s on this project's CPU host), and `from twotower import X` works as before.
"""

import importlib

_EXPORTS = {
    "from_backbone": "checkpoint", "from_pretrained": "checkpoint", "save_pretrained": "checkpoint",
    "PRESETS": "config", "make_config": "config",
    "drain": "decoding", "generate_ar": "decoding", "generate_mask_diffusion": "decoding",
    "generate_mock_ar": "decoding", "iter_ar": "decoding", "iter_mask_diffusion": "decoding",
    "iter_mock_ar": "decoding",
    "GenerationResult": "events", "StepEvent": "events",
    "TwoTowerModel": "model",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'twotower' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value  # once: later lookups are plain attribute reads
    return value


def build_model(preset: str = "tiny", seed: int = 0, **overrides):
    """A randomly initialised two-tower model of a named preset (deterministic for a given seed)."""
    import torch

    from .config import make_config
    from .model import TwoTowerModel
    from .validation import SEED_LIMIT, check_int

    # the samplers' seed rule, checked here: torch's own errors were "invalid literal for int()" and "Overflow
    # when unpacking long long"; None is no seed for a build (its weights would differ on every call)
    torch.manual_seed(check_int("seed", seed, minimum=0, maximum=SEED_LIMIT - 1))
    return TwoTowerModel(make_config(preset, **overrides)).eval()


__all__ = [*_EXPORTS, "build_model"]
