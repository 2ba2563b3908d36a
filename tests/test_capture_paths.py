"""Capturing every hook: the causal products over the lower triangle give the reference scores, pattern and
output; ``run_with_cache(out=previous_cache)`` writes into the previous cache's tensors (attention's scores and
pattern computed right there), equals a fresh cache, and names the hook on a mismatch; the allocator
threshold follows the cache's size."""

from __future__ import annotations

import ctypes
import types

import pytest
import torch
from tiny_hf import save_tiny_hf, tiny_model

import workbench as wb
from workbench.components import Attention, CausalMask, causal_mask
from workbench.components import attention as attention_module
from workbench.components.attention import attention_scores, causal_mix, causal_scores

CPU = torch.device("cpu")
SCORES, PATTERN = "blocks.1.attn.hook_scores", "blocks.1.attn.hook_pattern"


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 3 query rows, so that the tiny models' short sequences run several blocks, the last one
    partial."""
    monkeypatch.setattr(attention_module, "CAUSAL_ROW_BLOCK", 3)


@pytest.fixture(scope="module")
def gpt2():
    return tiny_model("gpt2", "causal_lm", perturb=0.3).eval()


def ids(length: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(1, 60, (batch, length), generator=torch.Generator().manual_seed(seed))


# The causal products -------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 3, 10])
def test_causal_products_equal_the_masked_full_products(small_blocks, length):
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, length, 4, 8, generator=generator) for _ in range(3))
    expected = attention_scores(q, k, causal_mask(None, length, length, torch.float32, CPU), 0.35)
    into = torch.full((2, 4, length, length), float("nan"))  # whatever the buffer held is overwritten
    scores = causal_scores(q, k, 0.35, into)
    assert scores is into
    above = torch.ones(length, length, dtype=torch.bool).triu(1)
    assert torch.all(scores[..., above] == torch.finfo(torch.float32).min)
    torch.testing.assert_close(scores, expected, atol=1e-6, rtol=1e-6)
    pattern = scores.softmax(-1)
    z = causal_mix(pattern, v)  # [batch, pos, head, d_head]
    torch.testing.assert_close(z, (pattern @ v.transpose(1, 2)).transpose(1, 2), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("n_kv_heads", [4, 2])
def test_explicit_causal_attention_equals_the_reference_path(small_blocks, n_kv_heads):
    """A square CausalMask takes the blocked products; a mask tensor (or a gradient to record) the full ones."""
    torch.manual_seed(0)
    attn = Attention(16, 4, 0.0, n_kv_heads=n_kv_heads).eval()
    x = torch.randn(2, 8, 16)
    with torch.no_grad():
        fast, fast_pattern = attn(x, CausalMask(8, 8, torch.float32, CPU), need_pattern=True)
        reference, pattern = attn(x, causal_mask(None, 8, 8, torch.float32, CPU), need_pattern=True)
    torch.testing.assert_close(fast, reference, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(fast_pattern, pattern, atol=1e-6, rtol=1e-6)
    with_grad, _ = attn(x.requires_grad_(), CausalMask(8, 8, torch.float32, CPU), need_pattern=True)
    with_grad.sum().backward()  # the reference path records the gradient
    torch.testing.assert_close(with_grad.detach(), reference, atol=1e-6, rtol=1e-6)


def test_captured_scores_and_pattern_match_hugging_face(tmp_path, small_blocks):
    hf = save_tiny_hf(tmp_path, "gpt2", "causal_lm", perturb=0.3)
    model = wb.load(tmp_path, device="cpu")
    input_ids = ids(11)
    with torch.no_grad():
        expected = hf(input_ids=input_ids, output_attentions=True).attentions
        logits, cache = model.run_with_cache(input_ids)
        plain = model(input_ids=input_ids).logits  # the fused kernel
    torch.testing.assert_close(logits.logits, plain, atol=1e-5, rtol=1e-5)
    for layer, attentions in enumerate(expected):
        pattern = cache[f"blocks.{layer}.attn.hook_pattern"]
        torch.testing.assert_close(pattern, attentions, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(pattern, cache[f"blocks.{layer}.attn.hook_scores"].softmax(-1))


def test_a_hook_that_edits_the_scores_gets_the_full_product(gpt2, small_blocks, monkeypatch):
    """Where a hook may edit the scores (here: unmasks the future), pattern @ v runs over every key."""

    def see_the_future(scores, hook):
        return scores.clamp(min=-5.0)

    input_ids = ids(8)
    with torch.no_grad():
        edited = gpt2.run_with_hooks(input_ids, [(SCORES, see_the_future)]).logits
        monkeypatch.setattr(attention_module, "CAUSAL_ROW_BLOCK", 1000)  # one block: the full product
        reference = gpt2.run_with_hooks(input_ids, [(SCORES, see_the_future)]).logits
        plain = gpt2(input_ids=input_ids).logits
    torch.testing.assert_close(edited, reference, atol=1e-5, rtol=1e-5)
    assert (edited - plain).abs().max() > 1e-3  # the edit matters


# Reusing a cache's tensors -------------------------------------------------------------------------------


def test_out_reuses_the_previous_tensors_and_equals_a_fresh_cache(gpt2, small_blocks, monkeypatch):
    with torch.no_grad():
        _, previous = gpt2.run_with_cache(ids(7, seed=1))
        storage = {name: tensor.data_ptr() for name, tensor in previous.items()}
        computed_into = []
        monkeypatch.setattr(
            attention_module,
            "causal_scores",
            lambda q, k, scale, out: computed_into.append(out.data_ptr()) or causal_scores(q, k, scale, out),
        )
        output, reused = gpt2.run_with_cache(ids(7, seed=2), out=previous)
        _, fresh = gpt2.run_with_cache(ids(7, seed=2))
    assert list(reused) == list(fresh)
    for name in fresh:
        assert torch.equal(reused[name], fresh[name]), name
        assert reused[name].data_ptr() == storage[name], name
        assert previous[name].data_ptr() == storage[name]  # the old cache object holds the new values too
    torch.testing.assert_close(output.logits, fresh["hook_logits"])
    scores = [previous[f"blocks.{i}.attn.hook_scores"].data_ptr() for i in range(2)]
    assert computed_into[:2] == scores  # the scores were computed in the cache's tensors: no copy


def test_out_with_only_the_pattern_computes_it_in_place(gpt2, small_blocks):
    with torch.no_grad():
        _, previous = gpt2.run_with_cache(ids(9, seed=1), names_filter=PATTERN)
        _, reused = gpt2.run_with_cache(ids(9, seed=2), names_filter=PATTERN, out=previous)
        _, fresh = gpt2.run_with_cache(ids(9, seed=2), names_filter=PATTERN)
    assert reused[PATTERN].data_ptr() == previous[PATTERN].data_ptr()
    assert torch.equal(reused[PATTERN], fresh[PATTERN])


def test_out_with_editing_hooks_equals_a_fresh_cache(gpt2):
    """A hook replaces block 1's residual input: it no longer shares a tensor with block 0's output, as it did
    in the previous cache; the two names then get their own values."""
    hooks = [("blocks.1.hook_resid_pre", lambda resid, hook: resid * 2)]
    with torch.no_grad():
        _, previous = gpt2.run_with_cache(ids(6, seed=1))
        assert previous["blocks.0.hook_resid_post"] is previous["blocks.1.hook_resid_pre"]
        _, reused = gpt2.run_with_cache(ids(6, seed=2), fwd_hooks=hooks, out=previous)
        _, fresh = gpt2.run_with_cache(ids(6, seed=2), fwd_hooks=hooks)
    for name in fresh:
        assert torch.equal(reused[name], fresh[name]), name
    assert not torch.equal(reused["blocks.0.hook_resid_post"], reused["blocks.1.hook_resid_pre"])


def test_out_on_a_padded_encoder_equals_a_fresh_cache():
    bert = tiny_model("bert").eval()
    inputs = {"input_ids": ids(6), "attention_mask": torch.tensor([[1] * 6, [1] * 4 + [0] * 2])}
    with torch.no_grad():
        _, previous = bert.run_with_cache({**inputs, "input_ids": ids(6, seed=3)})
        _, reused = bert.run_with_cache(inputs, out=previous)
        _, fresh = bert.run_with_cache(inputs)
    for name in fresh:
        assert torch.equal(reused[name], fresh[name]), name
        assert reused[name].data_ptr() == previous[name].data_ptr(), name


def test_out_mismatches_name_the_hook(gpt2):
    with torch.no_grad():
        _, previous = gpt2.run_with_cache(ids(6))
        with pytest.raises(ValueError, match=r"out\['hook_embed'\] is \[2, 6, 16\].*caches \[2, 5, 16\]"):
            gpt2.run_with_cache(ids(5), out=previous)
        with pytest.raises(ValueError, match=r"out\['hook_embed'\].*torch.float32.*torch.bfloat16"):
            gpt2.run_with_cache(ids(6), out=previous, dtype=torch.bfloat16)
        _, partial = gpt2.run_with_cache(ids(6), names_filter=PATTERN)
        with pytest.raises(ValueError, match=f"out= has no tensor for '{SCORES}'"):
            gpt2.run_with_cache(ids(6), names_filter=[SCORES, PATTERN], out=partial)
        with pytest.raises(TypeError, match="out must be an ActivationCache"):
            gpt2.run_with_cache(ids(6), out=dict(previous))


# The allocator threshold -------------------------------------------------------------------------------


def test_a_threshold_above_what_mallopt_takes_turns_trimming_off(monkeypatch):
    calls = []

    class Mallopt:  # glibc's mallopt as ctypes gives it: argtypes are set on it
        argtypes = None

        def __call__(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(wb.memory.sys, "platform", "linux")
    monkeypatch.setattr(ctypes, "CDLL", lambda name: types.SimpleNamespace(mallopt=Mallopt()))
    assert wb.memory.keep_freed_memory(2**30)
    assert wb.memory.keep_freed_memory(4 * 2**30)
    trim, mmap = -1, -3  # glibc's M_TRIM_THRESHOLD and M_MMAP_THRESHOLD
    assert calls == [(trim, 2**30), (mmap, 2**30), (trim, -1), (mmap, 2**31 - 1)]
