"""The fast paths give the results of the reference paths: the fused causal kernel (``is_causal``, no mask
written out) = the explicit softmax; the in-place softmax = ``torch.softmax`` and never overwrites cached
scores; the static key/value cache = concatenation; reused cache buffers = fresh ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tiny_gpt2 import save_tiny_gpt2

import workbench as wb
from workbench.components import Attention, CausalMask, causal_mask, decoder_mask
from workbench.components.attention import softmax_last

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """A tiny random GPT-2 LM with its byte-level BPE tokenizer, and Hugging Face's copy of it."""
    folder = tmp_path_factory.mktemp("tiny-gpt2-fast")
    hf = save_tiny_gpt2(folder)
    return wb.load(folder, device="cpu"), hf


# Masks ---------------------------------------------------------------------------------------------------


def test_decoder_mask_is_the_cheapest_mask_that_says_the_same():
    ones = torch.ones(2, 5, dtype=torch.long)
    assert decoder_mask(ones, 1, 5, torch.float32, CPU) is None  # one query that sees every key
    assert decoder_mask(None, 1, 5, torch.float32, CPU) is None
    lazy = decoder_mask(ones, 5, 5, torch.float32, CPU)
    assert isinstance(lazy, CausalMask) and lazy.is_square
    assert torch.equal(lazy.tensor(), causal_mask(None, 5, 5, torch.float32, CPU))
    assert lazy.tensor() is lazy.tensor()  # built once, shared by every layer
    padded = ones.clone()
    padded[1, 0] = 0
    assert torch.equal(decoder_mask(padded, 5, 5, torch.float32, CPU), causal_mask(padded, 5, 5, torch.float32, CPU))
    assert torch.equal(decoder_mask(padded, 1, 5, torch.float32, CPU), causal_mask(padded, 1, 5, torch.float32, CPU))
    with pytest.raises(ValueError, match="attention_mask covers 4 positions"):
        decoder_mask(ones[:, :4], 5, 5, torch.float32, CPU)


@pytest.mark.parametrize(
    "options",
    [{}, {"n_kv_heads": 2}, {"sliding_window": 3}, {"n_kv_heads": 1, "sliding_window": 2}],
    ids=["mha", "gqa", "window", "mqa-window"],
)
@pytest.mark.parametrize("past", [0, 3])
def test_fused_causal_attention_equals_the_explicit_pattern(options, past):
    torch.manual_seed(0)
    attn = Attention(32, 4, 0.0, **options).eval()
    x = torch.randn(2, 7, 32)
    keys = past + 7
    mask = CausalMask(7, keys, torch.float32, CPU)
    cache = wb.components.KVCache()
    if past:  # the past positions' keys and values, as a decoding step finds them
        attn(torch.randn(2, past, 32), causal_mask(None, past, past, torch.float32, CPU), past=cache.layer(0))
    cache_copy = wb.components.KVCache()
    cache_copy.keys, cache_copy.values = list(cache.keys), list(cache.values)
    with torch.no_grad():
        fused, none = attn(x, mask, past=cache.layer(0) if past else None)
        explicit, pattern = attn(x, causal_mask(None, 7, keys, torch.float32, CPU), need_pattern=True,
                                 past=cache_copy.layer(0) if past else None)
    assert none is None and pattern.shape == (2, 4, 7, keys)
    torch.testing.assert_close(fused, explicit, atol=1e-5, rtol=1e-5)
    assert torch.all(pattern.triu(diagonal=past + 1) == 0)  # nothing after the query


def test_unpadded_forward_takes_is_causal_in_every_layer_nobody_watches(lm, monkeypatch):
    model, hf = lm
    calls = []
    sdpa = F.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append((kwargs.get("is_causal", False), kwargs.get("attn_mask") is None))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", spy)
    ids = torch.randint(1, 99, (2, 9), generator=torch.Generator().manual_seed(0)).clamp(max=model.config.vocab_size - 1)
    with torch.no_grad():
        _, cache = model.run_with_cache(ids, names_filter="blocks.0.attn.hook_pattern")  # layer 0 explicit
        logits = model(input_ids=ids).logits
        expected = hf(input_ids=ids).logits
    assert calls == [(True, True)] * (model.n_layers - 1) + [(True, True)] * model.n_layers
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    assert torch.allclose(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(()))


# The softmax -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16])
def test_in_place_softmax_is_torch_softmax_bit_for_bit_and_reuses_the_scores(dtype):
    """On the CPU, in place and out= are aten's softmax kernel writing over its input or into the given tensor:
    the values of torch.softmax exactly (rows longer than the kernel's vectors included)."""
    for shape in [(2, 3, 5, 5), (3, 4097), (1, 1)]:
        scores = (torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 10).to(dtype)
        scores[..., 0, 1:] = torch.finfo(dtype).min  # a masked row
        expected = scores.softmax(-1)
        into = torch.empty_like(scores)
        assert softmax_last(scores, in_place=False, out=into) is into and torch.equal(into, expected)
        out = softmax_last(scores, in_place=True)
        assert out.data_ptr() == scores.data_ptr()
        assert torch.equal(out, expected), shape


def test_in_place_softmax_of_a_strided_tensor_uses_the_formula():
    scores = (torch.randn(4, 6) * 10).t()  # not contiguous: the max-subtracted formula, in place
    expected = scores.softmax(-1)
    out = softmax_last(scores, in_place=True)
    assert out.data_ptr() == scores.data_ptr()
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=1e-6)
    half = torch.randn(6, 4, dtype=torch.bfloat16).t()
    assert softmax_last(half, in_place=True).data_ptr() != half.data_ptr()  # half precision: torch.softmax


def test_cached_scores_are_not_overwritten_by_the_pattern(lm):
    model, _ = lm
    names = ["blocks.1.attn.hook_scores", "blocks.1.attn.hook_pattern"]
    _, both = model.run_with_cache("The cat sat on the mat", names_filter=names)
    _, scores_only = model.run_with_cache("The cat sat on the mat", names_filter=names[:1])
    _, pattern_only = model.run_with_cache("The cat sat on the mat", names_filter=names[1:])
    torch.testing.assert_close(both[names[1]], both[names[0]].softmax(-1))
    torch.testing.assert_close(scores_only[names[0]], both[names[0]])
    torch.testing.assert_close(pattern_only[names[1]], both[names[1]])


# The key/value cache and generation ----------------------------------------------------------------------


def test_reserved_cache_writes_in_place_and_equals_concatenation():
    torch.manual_seed(0)
    grown, reserved = wb.components.KVCache(), wb.components.KVCache()
    prompt = (torch.randn(2, 3, 4, 5), torch.randn(2, 3, 4, 5))
    grown.update(0, *prompt)
    reserved.update(0, *prompt)
    reserved.reserve(6)
    buffer = reserved.key_buffers[0].data_ptr()
    for new in (1, 2, 1):  # the last step does not fit in 6 positions: concatenation takes over
        step = (torch.randn(2, new, 4, 5), torch.randn(2, new, 4, 5))
        expected, got = grown.update(0, *step), reserved.update(0, *step)
        assert torch.equal(expected[0], got[0]) and torch.equal(expected[1], got[1])
        if len(reserved) <= 6:
            assert got[0].data_ptr() == buffer  # a view of the reserved buffer, nothing copied
    assert len(reserved) == 7
    reserved.reorder(torch.tensor([1]))
    assert torch.equal(reserved.keys[0], grown.keys[0][1:])
    with pytest.raises(ValueError, match="capacity=2"):
        reserved.reserve(2)


def test_generation_records_candidates_only_when_asked_and_matches_hugging_face(lm):
    model, hf = lm
    prompts = ["The cat sat on", "Hello"]  # left-padded batch
    plain = model.generate(prompts, max_new_tokens=5, stop_at_eos=False)
    bare = model.generate(prompts, max_new_tokens=5, stop_at_eos=False, top_candidates=0)
    assert bare.new_token_ids == plain.new_token_ids
    assert bare.steps["top_tokens"].map(len).eq(0).all() and plain.steps["top_tokens"].map(len).eq(5).all()
    assert bare.steps["probability"].tolist() == plain.steps["probability"].tolist()
    encoding = model.tokenize(prompts, padding_side="left")
    expected = hf.generate(**encoding, max_new_tokens=5, do_sample=False, eos_token_id=None)
    assert plain.input_ids.tolist() == expected.tolist()
    with pytest.raises(ValueError, match="top_candidates"):
        model.generate(prompts, max_new_tokens=1, top_candidates=-1)


# Capture without allocator stalls ----------------------------------------------------------------------

CAPTURE_SCRIPT = (
    "import resource, torch, workbench as wb\n"
    "wb.memory.CAPTURE_KEEP_FREED_BYTES = 2**20  # this small model's full cache is ~5 MiB\n"
    "m = wb.BertModel.from_config(wb.BertConfig(vocab_size=50, hidden_size=64, num_hidden_layers=4,"
    " num_attention_heads=4, intermediate_size=256), seed=0)\n"
    "ids = torch.randint(0, 50, (8, 128))\n"
    "faults = []\n"
    "with torch.inference_mode():\n"
    "    for _ in range(4):\n"
    "        m(ids)  # other work in between, as in a notebook (by default glibc then trims the heap)\n"
    "        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
    "        out, cache = m.run_with_cache(ids); del out, cache\n"
    "        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n"
    "print(faults[0], faults[-1])\n"
)


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc only")
def test_a_large_capture_keeps_freed_memory_by_default():
    """The first large CPU cache makes glibc keep freed memory: the next captures (almost) stop page-faulting."""
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", CAPTURE_SCRIPT], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    first, last = map(int, result.stdout.split())
    assert last < first / 10, (first, last)


def test_the_allocator_setting_comes_once_for_a_large_cpu_cache_unless_opted_out(monkeypatch):
    calls = []
    monkeypatch.setattr(wb.memory, "keep_freed_memory", lambda *args: calls.append(args) or True)
    monkeypatch.setitem(wb.memory._auto_keep_freed, "done", False)
    monkeypatch.setitem(wb.memory._auto_keep_freed, "enabled", True)
    monkeypatch.setitem(wb.memory._auto_keep_freed, "threshold", 0)
    wb.memory.auto_keep_freed_memory(False)
    wb.memory.note_capture(2**30, on_cpu=True)
    assert calls == []  # opted out
    wb.memory.auto_keep_freed_memory(True)
    wb.memory.note_capture(2**20, on_cpu=True)  # a small cache
    wb.memory.note_capture(2**30, on_cpu=False)  # a GPU cache: not glibc's memory
    assert calls == []
    wb.memory.note_capture(2**30, on_cpu=True)
    wb.memory.note_capture(2**30, on_cpu=True)
    assert calls == [(2**31,)]  # twice the cache: the freed cache lies at the top of the heap
    wb.memory.note_capture(2**29, on_cpu=True)  # smaller: the threshold stays
    wb.memory.note_capture(3 * 2**30, on_cpu=True)  # larger: raised (above 2 GiB - 1 glibc never trims)
    assert calls == [(2**31,), (3 * 2**31,)]


# Cache dtype and offloading ----------------------------------------------------------------------------------


def test_cache_dtype_converts_floating_activations_only(lm):
    model, _ = lm
    _, full = model.run_with_cache("The cat sat on the mat")
    _, half = model.run_with_cache("The cat sat on the mat", dtype=torch.bfloat16)
    assert list(half) == list(full)
    for name, tensor in half.items():
        assert tensor.dtype == torch.bfloat16, name
        kept = full[name] > torch.finfo(torch.float32).min / 2  # masked scores: float32's minimum is -inf in bf16
        expected = full[name][kept]
        torch.testing.assert_close(tensor.float()[kept], expected, atol=0.05 * expected.abs().max().item(), rtol=0.02)
    with pytest.raises(ValueError, match="dtype=torch.int64"):
        model.run_with_cache("The cat", dtype=torch.int64)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA: offloading copies on a CUDA side stream")
def test_offloaded_capture_on_gpu_equals_the_gpu_cache(tmp_path):
    """On a GPU, run_with_cache(device="cpu") copies asynchronously into pinned memory: the values equal the
    cache kept on the GPU."""
    model = wb.load(save_and_path(tmp_path), device="cuda")
    _, on_gpu = model.run_with_cache("The cat sat on the mat")
    _, offloaded = model.run_with_cache("The cat sat on the mat", device="cpu")
    assert list(offloaded) == list(on_gpu)
    for name, tensor in offloaded.items():
        assert tensor.device.type == "cpu" and tensor.is_pinned(), name
        torch.testing.assert_close(tensor, on_gpu[name].cpu(), atol=0, rtol=0)


def save_and_path(folder):
    save_tiny_gpt2(folder)
    return folder
