"""Hook points: the pinned name list, caching, patching, removal on error, head masking and ablation,
padding invariance, and tracing/export with no hooks attached."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import workbench as wb

EMBED_HOOKS = [
    "hook_embed",
    "hook_pos_embed",
    "hook_token_type_embed",
    "ln_embed.hook_scale",
    "ln_embed.hook_normalized",
]
BLOCK_HOOKS = [
    "hook_resid_pre",
    "attn.hook_q",
    "attn.hook_k",
    "attn.hook_v",
    "attn.hook_scores",
    "attn.hook_pattern",
    "attn.hook_z",
    "hook_attn_out",
    "ln1.hook_scale",
    "ln1.hook_normalized",
    "hook_resid_mid",
    "mlp.hook_pre",
    "mlp.hook_post",
    "hook_mlp_out",
    "ln2.hook_scale",
    "ln2.hook_normalized",
    "hook_resid_post",
]


def tiny_config(**fields):
    base = dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
                max_position_embeddings=32)
    return wb.BertConfig(**{**base, **fields})


@pytest.fixture(scope="module")
def tiny():
    return wb.BertModel.from_config(tiny_config(), seed=0)


@pytest.fixture(scope="module")
def ids():
    return torch.randint(1, 50, (2, 7), generator=torch.Generator().manual_seed(1))


def test_hook_names_are_pinned():
    model = wb.BertModel.from_config(tiny_config())
    expected = EMBED_HOOKS + [f"blocks.{i}.{name}" for i in range(2) for name in BLOCK_HOOKS]
    assert model.hook_names == expected
    mlm = wb.BertForMaskedLM.from_config(tiny_config())
    assert mlm.hook_names == expected + ["mlm_head.ln.hook_scale", "mlm_head.ln.hook_normalized", "hook_logits"]
    classifier = wb.BertForSequenceClassification.from_config(tiny_config())
    assert classifier.hook_names == expected + ["hook_logits"]


def test_cache_shapes_follow_the_docs(tiny, ids):
    _, cache = tiny.run_with_cache(ids)
    batch, pos, d_model, heads, d_head, d_mlp = 2, 7, 16, 4, 4, 24
    assert cache["blocks.1.attn.hook_q"].shape == (batch, pos, heads, d_head)
    assert cache["blocks.1.attn.hook_scores"].shape == (batch, heads, pos, pos)
    assert cache["blocks.1.attn.hook_pattern"].shape == (batch, heads, pos, pos)
    assert cache["blocks.1.attn.hook_z"].shape == (batch, pos, heads, d_head)
    assert cache["blocks.1.mlp.hook_post"].shape == (batch, pos, d_mlp)
    assert cache["blocks.0.ln1.hook_scale"].shape == (batch, pos, 1)
    assert cache.stack("hook_resid_post").shape == (2, batch, pos, d_model)
    assert cache.stack("attn.hook_pattern").shape == (2, batch, heads, pos, pos)
    assert set(cache.layer(1)) == set(BLOCK_HOOKS)
    # Each storage counted once: resid_post of block 0 is resid_pre of block 1, ln2's output is resid_post.
    distinct = {t.data_ptr(): t.numel() * 4 for t in cache.values()}
    assert cache.nbytes == sum(distinct.values()) < sum(t.numel() * 4 for t in cache.values())
    assert list(cache) == tiny.hook_names
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].sum(-1), torch.ones(batch, heads, pos))


def test_run_with_cache_does_not_change_the_output(tiny, ids):
    with torch.no_grad():
        plain = tiny(ids).last_hidden_state
        cached, _ = tiny.run_with_cache(ids)
    torch.testing.assert_close(cached.last_hidden_state, plain, atol=1e-5, rtol=0)


def test_names_filter_caches_only_what_it_selects(tiny, ids):
    _, one = tiny.run_with_cache(ids, names_filter="blocks.1.hook_resid_post")
    assert list(one) == ["blocks.1.hook_resid_post"]
    _, cache = tiny.run_with_cache(ids, names_filter=["hook_embed", "blocks.0.attn.hook_z"])
    assert list(cache) == ["hook_embed", "blocks.0.attn.hook_z"]
    _, cache = tiny.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_pattern"))
    assert list(cache) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    with pytest.raises(KeyError, match="blocks.1.hook_resid_mid"):
        cache["blocks.1.hook_resid_mid"]
    with pytest.raises(KeyError, match="for layers"):
        one.stack("hook_resid_post")


def test_patching_the_residual_stream_transplants_the_rest_of_the_forward(tiny):
    """Patching layer 0's output with another input's makes every later activation that input's."""
    generator = torch.Generator().manual_seed(2)
    clean, corrupt = torch.randint(1, 50, (2, 1, 6), generator=generator)
    with torch.no_grad():
        _, clean_cache = tiny.run_with_cache(clean)
        corrupt_out = tiny(corrupt).last_hidden_state
        patched = tiny.run_with_hooks(
            corrupt, fwd_hooks=[("blocks.0.hook_resid_post", lambda x, hook: clean_cache[hook.name])]
        ).last_hidden_state
    torch.testing.assert_close(patched, clean_cache["blocks.1.hook_resid_post"], atol=1e-6, rtol=0)
    assert (patched - corrupt_out).abs().max() > 1e-2


def test_hook_returning_none_leaves_the_activation(tiny, ids):
    seen = []
    with torch.no_grad():
        out = tiny.run_with_hooks(ids, fwd_hooks=[(lambda n: n.endswith("hook_z"), lambda x, hook: seen.append(hook.layer))])
        plain = tiny(ids)
    assert seen == [0, 1]
    torch.testing.assert_close(out.last_hidden_state, plain.last_hidden_state, atol=1e-5, rtol=0)


def test_hooks_are_removed_after_an_exception(tiny, ids):
    def explode(x, hook):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        tiny.run_with_hooks(ids, fwd_hooks=[("blocks.1.hook_mlp_out", explode)])
    with pytest.raises(RuntimeError, match="boom"), tiny.hooks([("hook_embed", explode)]):
        tiny(ids)
    assert not any(point.is_active for point in tiny.hook_points().values())
    tiny(ids)  # runs clean


def test_unknown_hook_name_suggests_the_right_one(tiny, ids):
    with pytest.raises(KeyError, match="blocks.0.attn.hook_pattern"):
        tiny.run_with_cache(ids, names_filter="blocks.0.attn.hook_patern")
    with pytest.raises(KeyError, match="not a hook point"):
        tiny.run_with_hooks(ids, fwd_hooks=[("blocks.9.hook_resid_post", lambda x, hook: x)])


def test_fused_attention_is_used_when_nobody_looks(tiny, ids, monkeypatch):
    calls = []
    real_sdpa = F.scaled_dot_product_attention

    def counting_sdpa(*args, **kwargs):
        calls.append(1)
        return real_sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_sdpa)
    tiny(ids)
    assert len(calls) == 2
    calls.clear()
    tiny.run_with_cache(ids, names_filter="blocks.1.attn.hook_pattern")
    assert len(calls) == 1  # layer 1 computes its pattern explicitly; layer 0 stays fused
    calls.clear()
    tiny(ids, output_attentions=True)
    assert calls == []


def test_head_mask_removes_exactly_the_masked_heads(tiny, ids):
    head_mask = torch.ones(2, 4)
    head_mask[1, 2] = 0.0
    with torch.no_grad():
        _, cache = tiny.run_with_cache(ids, head_mask=head_mask)
        _, plain = tiny.run_with_cache(ids)
        ablated = wb.head_ablation_hooks(tiny, {1: [2]})
        by_hook = tiny.run_with_hooks(ids, fwd_hooks=ablated).last_hidden_state
    z = cache["blocks.1.attn.hook_z"]
    assert torch.all(z[:, :, 2] == 0)
    torch.testing.assert_close(z[:, :, [0, 1, 3]], plain["blocks.1.attn.hook_z"][:, :, [0, 1, 3]])
    torch.testing.assert_close(by_hook, cache["blocks.1.hook_resid_post"], atol=1e-6, rtol=0)
    with pytest.raises(ValueError, match=r"\[2, 4\]"):
        tiny(ids, head_mask=torch.ones(3, 4))


def test_mean_ablation_uses_the_reference_mean(tiny, ids):
    reference = torch.randint(1, 50, (4, 7), generator=torch.Generator().manual_seed(3))
    _, ref_cache = tiny.run_with_cache(reference, names_filter="blocks.0.attn.hook_z")
    mean = ref_cache["blocks.0.attn.hook_z"].mean((0, 1))  # [head, d_head]
    with wb.ablate_heads(tiny, [(0, 1), (0, 3)], mode="mean", reference=reference):
        _, cache = tiny.run_with_cache(ids, names_filter="blocks.0.attn.hook_z")
    z = cache["blocks.0.attn.hook_z"]
    torch.testing.assert_close(z[:, :, 1], mean[1].expand(2, 7, -1))
    torch.testing.assert_close(z[:, :, 3], mean[3].expand(2, 7, -1))
    assert not any(point.is_active for point in tiny.hook_points().values())
    with pytest.raises(ValueError, match="head 4"):
        wb.head_ablation_hooks(tiny, {0: [4]})


def test_padding_does_not_change_any_real_tokens_activations(minilm):
    texts = ["The keys to the cabinet are on the table.", "Hi.", "A sentence of middling length here."]
    names = lambda n: n.endswith(("hook_resid_post", "hook_pattern", "hook_z", "mlp.hook_post"))  # noqa: E731
    _, batch_cache = minilm.run_with_cache(texts, names_filter=names)
    for row, text in enumerate(texts):
        _, alone = minilm.run_with_cache(text, names_filter=names)
        n = len(alone.tokens)
        for name, tensor in alone.items():
            batched = batch_cache[name][row : row + 1]
            if name.endswith("hook_pattern"):
                batched = batched[:, :, :n, :n]
                assert torch.all(batch_cache[name][row, :, :n, n:] == 0)  # no attention to padding
            else:
                batched = batched[:, :n]
            diff = (batched - tensor).abs().max().item()
            assert diff <= 1e-4, f"{name} of {text!r} changes by {diff:.2e} when padded in a batch"


def test_text_inputs_and_tokens(minilm):
    _, cache = minilm.run_with_cache("The keys to the cabinet.")
    assert cache.tokens == ["[CLS]", "the", "keys", "to", "the", "cabinet", ".", "[SEP]"]
    _, cache = minilm.run_with_cache(["One.", "Two words."])
    assert cache.tokens == [["[CLS]", "one", ".", "[SEP]", "[PAD]"], ["[CLS]", "two", "words", ".", "[SEP]"]]
    ids = minilm.tokenize("The keys.")["input_ids"][0]
    _, cache = minilm.run_with_cache(ids)
    assert cache.tokens == ["[CLS]", "the", "keys", ".", "[SEP]"]
    assert cache["blocks.0.hook_resid_pre"].shape == (1, 5, 384)


def test_traces_and_exports_with_no_hooks(tiny, ids):
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():
        expected = tiny(ids, mask)
        traced = torch.jit.trace(tiny, (ids, mask))
        torch.testing.assert_close(traced(ids, mask)[0], expected.last_hidden_state)
        torch.testing.assert_close(traced(ids, mask)[1], expected.pooler_output)
        exported = torch.export.export(tiny, (ids, mask))
        out = exported.module()(ids, mask)
    torch.testing.assert_close(out.last_hidden_state, expected.last_hidden_state)
    # The model still hooks normally after tracing.
    _, cache = tiny.run_with_cache(ids, names_filter="blocks.0.hook_resid_post")
    assert len(cache) == 1


def test_layer_norm_scale_is_the_same_whether_read_or_edited(tiny, ids):
    """Caching hook_scale keeps the fused kernel; an editing hook takes the explicit formula. Both agree."""
    names = ["blocks.0.hook_resid_pre", "blocks.0.hook_attn_out", "blocks.0.ln1.hook_scale"]
    with torch.no_grad():
        _, cache = tiny.run_with_cache(ids, names_filter=names)
        summed = cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"]
        centred = summed - summed.mean(-1, keepdim=True)
        scale = (centred.pow(2).mean(-1, keepdim=True) + tiny.config.layer_norm_eps).sqrt()
        torch.testing.assert_close(cache["blocks.0.ln1.hook_scale"], scale)

        _, edited = tiny.run_with_cache(
            ids, names_filter="blocks.0.hook_resid_mid",
            fwd_hooks=[("blocks.0.ln1.hook_scale", lambda s, hook: s * 2)],
        )
    ln = tiny.blocks[0].ln1
    torch.testing.assert_close(edited["blocks.0.hook_resid_mid"], centred / (2 * scale) * ln.weight + ln.bias)


def test_hooks_by_hand_run_in_order_and_come_off(ids):
    model = wb.BertModel.from_config(tiny_config(), seed=0)
    point = model.hook_points()["blocks.0.hook_mlp_out"]
    assert point.name == "blocks.0.hook_mlp_out" and point.layer == 0
    order = []
    first = point.add_hook(lambda x, hook: order.append("first") or x * 0)
    point.add_hook(lambda x, hook: order.append(("second", x.abs().max().item())))
    model(ids)
    assert order == ["first", ("second", 0.0)]  # the second hook sees the first one's replacement
    first.remove()
    first.remove()  # twice is harmless
    assert point.is_active
    model.reset_hooks()
    assert not any(p.is_active for p in model.hook_points().values())


def test_refresh_hook_points_after_replacing_a_module(ids):
    model = wb.BertModel.from_config(tiny_config(), seed=0)
    old = model.hook_points()["blocks.1.mlp.hook_post"]
    model.blocks[1].mlp = wb.components.MLP(16, 24, "relu")
    assert model.hook_points()["blocks.1.mlp.hook_post"] is old  # kept until refreshed
    new = model.refresh_hook_points()["blocks.1.mlp.hook_post"]
    assert new is model.blocks[1].mlp.hook_post and new is not old
    _, cache = model.run_with_cache(ids, names_filter="blocks.1.mlp.hook_post")
    assert torch.all(cache["blocks.1.mlp.hook_post"] >= 0)  # the new MLP's relu


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc only")
def test_keep_freed_memory_stops_repeated_caches_from_page_faulting():
    """After keep_freed_memory(), a repeated full cache reuses the process's memory: (almost) no page faults.
    (Without it, this loop faults ~8k pages on every call: measured 9055, 8065, 7873, 7841.)"""
    import subprocess
    import sys

    script = (
        "import resource, torch, workbench as wb\n"
        "assert wb.keep_freed_memory()\n"
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
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    first, last = map(int, result.stdout.split())
    assert last < first / 10, (first, last)
