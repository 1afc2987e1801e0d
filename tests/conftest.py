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


@pytest.fixture(autouse=True)
def one_thread():
    """Every test starts on one thread, whatever the test before it ran (the CLI's --threads and the GPU smoke
    script set the count): tiny models gain nothing from threads, and on a loaded machine two OpenMP threads
    wait on each other for tens of ms per op (measured: 37 s against 0.5 s for test_release_loader's generations)."""
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def engine():
    """The tiny random preset's engine, one per test module (read-only at inference: its tests share it)."""
    from twotower.engine import load_engine

    return load_engine(preset="tiny")


@pytest.fixture
def tiny_model():
    from twotower import build_model

    return build_model("tiny", seed=0)
