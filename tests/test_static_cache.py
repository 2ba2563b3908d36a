"""The static key/value cache (``KVCache.reserve(capacity, static=True)``): attention over every slot with the
attention mask saying which are filled gives the logits of the growing cache, for every decoder family with a
key/value cache, on a left-padded batch, with sliding windows measured from the right slot; and what it refuses.
What ``generate`` does with it on a compiled model is in test_compile.py."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import architectures_with, tiny_model

from workbench.components.kv_cache import KVCache

CACHED_DECODERS = [t for t in architectures_with("causal_lm") if t not in ("transfo-xl", "xlm", "xlnet")]
WINDOWED = {"mistral": {"sliding_window": 3}, "gemma2": {"sliding_window": 3}}  # 3 < the 5-token prompt


def prompt_and_steps():
    """A left-padded [2, 5] prompt with its mask, and 4 new tokens per row."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(3, 60, (2, 5), generator=generator)
    mask = torch.ones(2, 5, dtype=torch.long)
    mask[1, :2] = 0
    return ids, mask, torch.randint(3, 60, (2, 4), generator=generator)


@pytest.mark.parametrize("model_type", CACHED_DECODERS)
def test_static_cache_gives_the_growing_caches_logits(model_type):
    model = tiny_model(model_type, "causal_lm", perturb=0.1, **WINDOWED.get(model_type, {})).eval()
    ids, mask, steps = prompt_and_steps()
    capacity = ids.shape[1] + steps.shape[1]
    slots = torch.zeros(2, capacity, dtype=torch.long)  # the mask of every slot, filled as tokens come
    slots[:, :5] = mask
    with torch.no_grad():
        growing = model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        static = model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        static.reserve(capacity, static=True)
        assert static.static and len(static) == 5 and static.keys[0].shape[1] == capacity
        for step in range(steps.shape[1]):
            slots[:, 5 + step] = 1
            token = steps[:, step : step + 1]
            expected = model(
                input_ids=token, attention_mask=slots[:, : 6 + step], past_key_values=growing
            ).logits
            got = model(input_ids=token, attention_mask=slots, past_key_values=static, use_cache=True).logits
            static.advance()
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert len(static) == capacity
    for layer in range(len(growing.keys)):  # the slots hold what the growing cache holds
        torch.testing.assert_close(static.keys[layer], growing.keys[layer], atol=1e-6, rtol=1e-6)


def test_a_sliding_window_is_measured_from_the_query_slot_not_the_last_slot():
    # Query at slot 5 of 12 with a window of 3 sees slots 3-5; measured from slot 11 it would see none of
    # the filled ones. The growing cache is the reference; a model without the window gives other logits.
    ids, mask, steps = prompt_and_steps()
    windowed = tiny_model("mistral", "causal_lm", perturb=0.1, sliding_window=3).eval()
    slots = torch.zeros(2, 12, dtype=torch.long)
    slots[:, :6] = torch.cat([mask, torch.ones(2, 1, dtype=torch.long)], dim=1)
    with torch.no_grad():
        cache = windowed(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        growing = windowed(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        cache.reserve(12, static=True)
        got = windowed(input_ids=steps[:, :1], attention_mask=slots, past_key_values=cache).logits
        expected = windowed(
            input_ids=steps[:, :1], attention_mask=slots[:, :6], past_key_values=growing
        ).logits
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    assert not torch.isnan(got).any()


def test_static_cache_takes_one_position_with_the_mask_of_every_slot():
    model = tiny_model("llama", "causal_lm").eval()
    ids, mask, steps = prompt_and_steps()
    with torch.no_grad():
        cache = model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        cache.reserve(9, static=True)
        with pytest.raises(ValueError, match="one new position per call.*got 2 new positions"):
            model(
                input_ids=steps[:, :2],
                attention_mask=torch.ones(2, 9, dtype=torch.long),
                past_key_values=cache,
            )
        with pytest.raises(ValueError, match="all its 9 slots.*no attention_mask"):
            model(input_ids=steps[:, :1], past_key_values=cache)
        with pytest.raises(ValueError, match=r"attention_mask has shape \(2, 6\).*expected \[2, 9\]"):
            model(
                input_ids=steps[:, :1],
                attention_mask=torch.ones(2, 6, dtype=torch.long),
                past_key_values=cache,
            )
    assert len(cache) == 5  # nothing written by the refused calls


def test_static_cache_reuses_given_buffers_and_reorder_goes_back_to_growing():
    model = tiny_model("gpt2", "causal_lm").eval()
    ids, mask, _ = prompt_and_steps()
    with torch.no_grad():
        first = model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        first.reserve(9, static=True)
        first.key_buffers[0].fill_(float("nan"))  # a previous generation's leftovers
        second = model(input_ids=ids, attention_mask=mask, use_cache=True).past_key_values
        expected = [k.clone() for k in second.keys]
        second.reserve(9, static=True, buffers=(first.key_buffers, first.value_buffers))
    assert second.key_buffers[0] is first.key_buffers[0]
    torch.testing.assert_close(second.keys[0][:, :5], expected[0])
    assert not second.keys[0][:, 5:].isnan().any()  # unwritten slots are zero, not the leftovers
    second.reorder(torch.tensor([1]))
    assert not second.static and len(second) == 5 and second.keys[0].shape == (1, 5, *expected[0].shape[2:])


def test_a_cache_with_no_layers_stays_growing():
    cache = KVCache()
    cache.reserve(4, static=True)
    assert not cache.static and len(cache) == 0
