"""TwoTower Playground engine: two-tower diffusion language models on transformers' NemotronH."""

from .checkpoint import from_backbone, from_pretrained, save_pretrained
from .config import PRESETS, make_config
from .decoding import (
    drain,
    generate_ar,
    generate_mask_diffusion,
    generate_mock_ar,
    iter_ar,
    iter_mask_diffusion,
    iter_mock_ar,
)
from .events import GenerationResult, StepEvent
from .model import TwoTowerModel


def build_model(preset: str = "tiny", seed: int = 0, **overrides) -> TwoTowerModel:
    """A randomly initialised two-tower model of a named preset (deterministic for a given seed)."""
    import torch

    torch.manual_seed(seed)
    return TwoTowerModel(make_config(preset, **overrides)).eval()


__all__ = [
    "PRESETS", "GenerationResult", "StepEvent", "TwoTowerModel", "build_model", "drain", "from_backbone",
    "from_pretrained", "generate_ar", "generate_mask_diffusion", "generate_mock_ar", "iter_ar",
    "iter_mask_diffusion", "iter_mock_ar", "make_config", "save_pretrained",
]
