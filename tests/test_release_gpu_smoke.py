"""scripts/gpu_smoke.py: its CPU path (tiny widths) passes every check, and it refuses clearly without CUDA."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_smoke.py"


@pytest.fixture(scope="module")
def smoke():
    spec = importlib.util.spec_from_file_location("gpu_smoke", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cpu_small_path_passes_every_check(smoke, capsys):
    assert smoke.main(["--device", "cpu", "--small", "--repeats", "1", "--new-tokens", "6"]) == 0
    out = capsys.readouterr().out
    assert "FAIL" not in out and "all checks passed" in out
    for check in ("context tower logits", "denoiser block logits", "seeded block scan vs token-by-token, device (S=4",
                  "(S=13, chunk 8)", "mode diffusion", "mode mock_ar", "mode ar"):
        assert check in out
    for kind in ("mamba", "attention", "moe"):
        assert f"context   {kind}" in out or f"context  {kind}" in out
    assert "denoiser block (4 tokens)" in out


def test_failed_comparison_is_reported(smoke, capsys):
    report = smoke.Report(tol=1e-6)
    report.close("x", torch.tensor([1.0, 2.0]), torch.tensor([1.0, 2.1]))
    report.equal("y", [1, 2, 3], [1, 5, 3])
    out = capsys.readouterr().out
    assert report.failures == ["x", "y"] and "FAIL x" in out and "first difference at token 1" in out


def test_reference_paths_swap_back_the_pytorch_functions(smoke):
    from transformers.models.nemotron_h import modeling_nemotron_h as module

    before = module.mamba2_chunk_scan
    with smoke.torch_reference_paths():
        assert module.mamba2_chunk_scan.__module__ == module.__name__
        assert not hasattr(module.mamba2_chunk_scan, "__wrapped__")
    assert module.mamba2_chunk_scan is before


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message shown without CUDA")
def test_without_cuda_it_says_so(smoke, capsys):
    assert smoke.main([]) == 2
    assert "no CUDA device is visible" in capsys.readouterr().err
