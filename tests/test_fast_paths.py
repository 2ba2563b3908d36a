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


def test_in_place_softmax_equals_torch_softmax_and_reuses_the_scores():
    scores = torch.randn(2, 3, 5, 5) * 10
    scores[0, 0, 0, 1:] = torch.finfo(torch.float32).min  # a masked row
    expected = scores.softmax(-1)
    out = softmax_last(scores, in_place=True)
    assert out.data_ptr() == scores.data_ptr()
    torch.testing.assert_close(out, expected, atol=1e-7, rtol=1e-6)
    half = torch.randn(2, 5, dtype=torch.bfloat16)
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
