"""CUDA paths: run where a GPU is present (skipped on CPU-only machines, such as CI)."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import save_tiny_hf

import workbench as wb

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def test_load_picks_the_gpu_and_matches_the_cpu(minilm):
    gpu = wb.load("minilm")
    assert gpu.device.type == "cuda"
    texts = ["The keys to the cabinet are on the table.", "Short."]
    with torch.no_grad():
        on_gpu = gpu(**gpu.tokenize(texts), output_hidden_states=True, output_attentions=True)
        on_cpu = minilm(**minilm.tokenize(texts), output_hidden_states=True, output_attentions=True)
    for a, b in zip(on_gpu.hidden_states + on_gpu.attentions, on_cpu.hidden_states + on_cpu.attentions):
        assert a.device.type == "cuda"
        assert (a.cpu() - b).abs().max().item() <= 1e-3  # TF32 and kernel choices differ from the CPU


def test_parity_with_hugging_face_on_the_gpu(tmp_path):
    hf_model = save_tiny_hf(tmp_path, "bert", "masked_lm").cuda()
    ours = wb.AutoModelForMaskedLM.from_pretrained(tmp_path, device="cuda")
    ids = torch.randint(1, 99, (3, 12), device="cuda")
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        expected = hf_model(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
        got = ours(input_ids=ids, attention_mask=mask, output_hidden_states=True, output_attentions=True)
    for a, b in zip((got.logits, *got.hidden_states, *got.attentions),
                    (expected.logits, *expected.hidden_states, *expected.attentions)):
        assert (a - b).abs().max().item() <= 1e-4


def test_cache_can_be_moved_off_the_gpu():
    gpu = wb.load("minilm", device="cuda")
    _, cache = gpu.run_with_cache("The keys are on the table.", device="cpu")
    assert all(t.device.type == "cpu" for t in cache.values())
    _, cache = gpu.run_with_cache("The keys are on the table.")
    assert all(t.device.type == "cuda" for t in cache.values())
    assert cache.to("cpu")["blocks.0.attn.hook_pattern"].device.type == "cpu"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_runs_with_hooks(dtype, minilm):
    half = wb.load("minilm", device="cuda", dtype=dtype)
    text = "The keys to the cabinet are on the table."
    with torch.no_grad():
        out, cache = half.run_with_cache(text)
        reference = minilm(**minilm.tokenize(text)).last_hidden_state
    assert cache["blocks.5.attn.hook_pattern"].dtype == dtype
    assert torch.isfinite(out.last_hidden_state).all()
    assert (out.last_hidden_state.float().cpu() - reference).abs().max().item() < 0.1
    with wb.ablate_heads(half, {0: [1]}):
        ablated = half(**half.tokenize(text)).last_hidden_state
    assert (ablated - out.last_hidden_state).abs().max() > 0
