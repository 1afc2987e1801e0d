import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()


@pytest.fixture
def tiny_model():
    from twotower import build_model

    return build_model("tiny", seed=0)
