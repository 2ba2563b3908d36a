"""benchmarks/gpu.py: what can be checked without a GPU — its FLOPs count equals torch's FLOP counter on tiny
models, its MFU arithmetic, and that it skips cleanly (exit 0, saying why) without CUDA."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_hf import tiny_model
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_bench():
    spec = importlib.util.spec_from_file_location("gpu_bench", ROOT / "benchmarks" / "gpu.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("model_type, task", [("llama", "causal_lm"), ("bert", "base")])
def test_forward_flops_equal_torchs_flop_counter(gpu_bench, model_type, task):
    model = tiny_model(model_type, task).eval()
    ids = torch.randint(0, model.config.vocab_size, (3, 11), generator=torch.Generator().manual_seed(0))
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(input_ids=ids, output_attentions=True)  # the explicit attention: matmuls the counter sees
    assert gpu_bench.model_forward_flops(model, 3, 11) == counter.get_total_flops()


def test_mfu_arithmetic_and_peaks(gpu_bench):
    assert gpu_bench.mfu(989e12 * 0.5, 1.0, 989e12) == pytest.approx(0.5)
    assert gpu_bench.mfu(2e12, 0.01, 1e15) == pytest.approx(0.2)
    assert gpu_bench.peak_bf16_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_bench.peak_bf16_flops("Some Other GPU") is None
    with pytest.raises(ValueError, match="seconds=0"):
        gpu_bench.mfu(1.0, 0, 1.0)
    # 2 FLOPs per weight per token, plus q.k and pattern.v: 2 * 2 * seq^2 * width per layer and sequence
    assert gpu_bench.forward_flops(100, 2, 8, 3, 5) == 2 * 100 * 15 + 4 * 2 * 3 * 25 * 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the skip without CUDA")
def test_gpu_benchmark_skips_cleanly_without_cuda():
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu.py"), "--quick"], capture_output=True,
                            text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert "CUDA is not available" in result.stdout
