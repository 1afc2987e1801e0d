import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# One thread: on a loaded 2-core machine two OpenMP threads spend most of each tiny op waiting on each other.
torch.set_num_threads(1)

from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()


@pytest.fixture
def tiny_model():
    from twotower import build_model

    return build_model("tiny", seed=0)
