"""Bridge adapters of Falcon (its three block layouts, multi-query, ALiBi), GPT-J, CodeGen and Mixtral
(workbench/bridge/families/decoders.py): the family checks on padded batches, the residual arithmetic of
parallel and sequential blocks, the shapes of q/k/v/z and the MLP, Mixtral's router, generation, and
attribution, activation patching and a probe on three of the families."""

from __future__ import annotations

import pytest
import torch
from bridge_check import assert_close, check_family, random_perturbed

import workbench as wb
from workbench import interventions as iv
from workbench.probing import LinearProbe

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
SIZES = dict(d_model=32, n_layers=2, n_heads=4, d_head=8)


def tiny(model_class, config):
    torch.manual_seed(0)
    return random_perturbed(model_class(config))


def falcon(vocab_size=100, **layout):
    config = transformers.FalconConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                                       num_attention_heads=4, max_position_embeddings=64, attn_implementation="eager",
                                       **layout)
    return tiny(transformers.FalconForCausalLM, config)


def gptj(vocab_size=100):
    config = transformers.GPTJConfig(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                                     n_positions=64, n_inner=48, bos_token_id=1, eos_token_id=2,
                                     attn_implementation="eager")
    return tiny(transformers.GPTJForCausalLM, config)


def codegen(vocab_size=100):
    config = transformers.CodeGenConfig(vocab_size=vocab_size, n_embd=32, n_layer=2, n_head=4, rotary_dim=4,
                                        n_positions=64, n_ctx=64, n_inner=48, bos_token_id=1, eos_token_id=2,
                                        attn_implementation="eager")
    return tiny(transformers.CodeGenForCausalLM, config)


def mixtral(vocab_size=100):
    config = transformers.MixtralConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=40,
                                        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                        num_local_experts=4,
                                        num_experts_per_tok=2, max_position_embeddings=64,
                                        attn_implementation="eager")
    return tiny(transformers.MixtralForCausalLM, config)


# family -> (builder, block kind, key/value heads, MLP width (None: no mlp.hook_pre/post), has ln2)
FAMILIES = {
    "falcon_new_architecture": (lambda **sizes: falcon(new_decoder_architecture=True, num_kv_heads=2, **sizes),
                                "parallel", 2, 128, True),
    "falcon_new_architecture_one_norm": (
        lambda **sizes: falcon(new_decoder_architecture=True, num_kv_heads=2, num_ln_in_parallel_attn=1, **sizes),
        "parallel", 2, 128, False),
    "falcon_multi_query_parallel": (lambda **sizes: falcon(multi_query=True, parallel_attn=True, **sizes),
                                    "parallel", 1, 128, False),
    "falcon_sequential_alibi": (lambda **sizes: falcon(multi_query=False, parallel_attn=False, alibi=True, bias=True,
                                                       **sizes),
                                "pre_norm", 4, 128, True),
    "gptj": (gptj, "parallel", 4, 48, False),
    "codegen": (codegen, "parallel", 4, 48, False),
    "mixtral": (mixtral, "pre_norm", 2, None, True),
}
# Falcon's parallel blocks add the attention output into the MLP's output tensor in place, after the hook.
MLP_OUT_MUTATED = {"falcon_new_architecture", "falcon_new_architecture_one_norm", "falcon_multi_query_parallel"}


@pytest.mark.parametrize("family", FAMILIES)
def test_family_checks_and_shapes(family):
    make, kind, kv_heads, d_mlp, has_ln2 = FAMILIES[family]
    model = check_family(make(), {"input_ids": IDS, "attention_mask": MASK})
    points = model.hook_points()
    assert ("blocks.0.hook_resid_mid" in points) == (kind == "pre_norm")
    assert ("blocks.0.ln2.hook_normalized" in points) == has_ln2
    assert ("blocks.0.mlp.hook_pre" in points) == (d_mlp is not None)
    _, cache = model.run_with_cache(IDS, names_filter=lambda name: name.startswith("blocks.1."))
    batch, pos, heads, d_head = 2, 7, SIZES["n_heads"], SIZES["d_head"]
    assert cache["blocks.1.attn.hook_q"].shape == (batch, pos, heads, d_head)
    assert cache["blocks.1.attn.hook_k"].shape == (batch, pos, kv_heads, d_head)
    assert cache["blocks.1.attn.hook_v"].shape == (batch, pos, kv_heads, d_head)
    assert cache["blocks.1.attn.hook_z"].shape == (batch, pos, heads, d_head)
    assert cache["blocks.1.attn.hook_pattern"].shape == (batch, heads, pos, pos)
    if d_mlp is not None:
        assert cache["blocks.1.mlp.hook_pre"].shape == (batch, pos, d_mlp)
        assert cache["blocks.1.mlp.hook_post"].shape == (batch, pos, d_mlp)
    assert model.config.n_kv_heads == kv_heads


@pytest.mark.parametrize("family", FAMILIES)
def test_hugging_face_s_last_hidden_state_is_after_the_final_norm(family):
    """hidden_states[i] is blocks.{i}.hook_resid_pre for every block (check_family), but the last entry is the
    final norm's output, not the last block's resid_post (the adapters' notes say so)."""
    hf = FAMILIES[family][0]()
    model = wb.from_hf(hf)
    with torch.no_grad():
        last = hf(IDS, output_hidden_states=True).hidden_states[-1]
    _, cache = model.run_with_cache(IDS, names_filter=["ln_final.hook_normalized", "blocks.1.hook_resid_post"])
    assert_close(cache["ln_final.hook_normalized"], last, "the last hidden state")
    assert (cache["blocks.1.hook_resid_post"] - last).abs().max() > 1e-2


def residual_parts(model, read_during_forward: bool) -> dict[str, torch.Tensor]:
    """Every block's residual and sublayer outputs on IDS: from run_with_cache, or copied by hook functions
    while the forward runs (before anything after the hook can change the tensor)."""
    wanted = lambda name: name.startswith("blocks.") and name.endswith(  # noqa: E731
        ("hook_resid_pre", "hook_resid_mid", "hook_resid_post", "hook_attn_out", "hook_mlp_out"))
    if not read_during_forward:
        return model.run_with_cache(IDS, names_filter=wanted)[1]
    parts = {}

    def keep(x, hook):
        parts[hook.name] = x.clone()

    model.run_with_hooks(IDS, fwd_hooks=[(wanted, keep)])
    return parts


def assert_residual_arithmetic(parts, kind: str, n_layers: int) -> None:
    for i in range(n_layers):
        pre, attn, mlp = (parts[f"blocks.{i}.{name}"] for name in ("hook_resid_pre", "hook_attn_out",
                                                                     "hook_mlp_out"))
        post = parts[f"blocks.{i}.hook_resid_post"]
        if kind == "parallel":
            assert_close(post, pre + attn + mlp, f"block {i}: resid_post = resid_pre + attn_out + mlp_out")
        else:
            mid = parts[f"blocks.{i}.hook_resid_mid"]
            assert_close(mid, pre + attn, f"block {i}: resid_mid = resid_pre + attn_out")
            assert_close(post, mid + mlp, f"block {i}: resid_post = resid_mid + mlp_out")
        if i + 1 < n_layers:
            assert torch.equal(parts[f"blocks.{i + 1}.hook_resid_pre"], post)


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_arithmetic_as_hook_functions_see_it(family):
    make, kind, *_ = FAMILIES[family]
    assert_residual_arithmetic(residual_parts(wb.from_hf(make()), read_during_forward=True), kind, 2)


@pytest.mark.parametrize("family", FAMILIES)
def test_residual_arithmetic_of_the_cache(family):
    """Also where Falcon adds the attention output into the MLP's output tensor in place after the MLP
    (MLP_OUT_MUTATED): the bridge hands Hugging Face a copy (Stack.copy_outputs), the cache keeps the MLP's."""
    make, kind, *_ = FAMILIES[family]
    assert_residual_arithmetic(residual_parts(wb.from_hf(make()), read_during_forward=False), kind, 2)


@pytest.mark.parametrize("layout, ln1, ln2", [
    (dict(new_decoder_architecture=True, num_kv_heads=2), "ln_attn", "ln_mlp"),
    (dict(multi_query=True, parallel_attn=True), "input_layernorm", None),
    (dict(parallel_attn=False), "input_layernorm", "post_attention_layernorm"),
])
def test_falcon_norm_hooks_read_the_layout_s_norms(layout, ln1, ln2):
    hf = falcon(**layout)
    model = wb.from_hf(hf)
    _, cache = model.run_with_cache(IDS, names_filter=lambda name: name.startswith("blocks.0."))
    block = hf.transformer.h[0]
    with torch.no_grad():
        expected = getattr(block, ln1)(cache["blocks.0.hook_resid_pre"])
    assert_close(cache["blocks.0.ln1.hook_normalized"], expected, f"ln1 is {ln1}")
    if ln2 is not None:
        with torch.no_grad():  # the new architecture's ln_mlp reads the block input, the sequential one resid_mid
            source = cache["blocks.0.hook_resid_pre"] if ln2 == "ln_mlp" else cache["blocks.0.hook_resid_mid"]
            expected = getattr(block, ln2)(source)
        assert_close(cache["blocks.0.ln2.hook_normalized"], expected, f"ln2 is {ln2}")


def test_mixtral_router_logits_are_hugging_face_s():
    hf = mixtral()
    model = wb.from_hf(hf)
    with torch.no_grad():
        reference = hf(IDS, attention_mask=MASK, output_router_logits=True)
    _, cache = model.run_with_cache({"input_ids": IDS, "attention_mask": MASK})
    for i, logits in enumerate(reference.router_logits):  # Hugging Face's [batch * pos, n_experts]
        assert cache[f"blocks.{i}.mlp.hook_router_logits"].shape == (2, 7, 4)
        assert_close(cache[f"blocks.{i}.mlp.hook_router_logits"].reshape(-1, 4), logits, f"router logits {i}")
        with torch.no_grad():
            moe = hf.model.layers[i].mlp(cache[f"blocks.{i}.ln2.hook_normalized"])
        assert_close(cache[f"blocks.{i}.hook_mlp_out"], moe, f"hook_mlp_out {i} is the mixture's output")


def test_mixtral_expert_outputs_sum_to_the_mixture():
    """Each expert's output [batch, pos, d_model] (zero where the token is not routed to it), weighted by the
    router's renormalized top-k probabilities, sums to hook_mlp_out; the logits are Hugging Face's."""
    hf = mixtral()
    model = wb.from_hf(hf)
    names = [f"blocks.0.mlp.experts.{e}.hook_out" for e in range(4)]
    out, cache = model.run_with_cache(IDS, names_filter=[*names, "blocks.0.mlp.hook_router_logits",
                                                         "blocks.0.hook_mlp_out"])
    with torch.no_grad():
        assert_close(out.logits, hf(IDS).logits, "logits with the experts hooked")
    probs = cache["blocks.0.mlp.hook_router_logits"].float().softmax(-1)
    top, chosen = probs.topk(2, dim=-1)
    weights = torch.zeros_like(probs).scatter(-1, chosen, top / top.sum(-1, keepdim=True))
    mixture = sum(weights[..., e, None] * cache[name] for e, name in enumerate(names))
    assert_close(mixture, cache["blocks.0.hook_mlp_out"], "weighted experts")
    assert all(torch.all(cache[name][weights[..., e] == 0] == 0) for e, name in enumerate(names))


def test_mixtral_expert_edits_reach_the_output_and_router_edits_are_refused():
    hf = mixtral()
    model = wb.from_hf(hf)
    with torch.no_grad():
        clean = hf(IDS).logits
        edited = model.run_with_hooks(IDS, fwd_hooks=[("blocks.0.mlp.experts.1.hook_out", lambda x, h: x * 3)]).logits
    assert (edited - clean).abs().max() > 1e-3
    assert "blocks.0.mlp.hook_router_logits" in model.read_only_hooks
    with pytest.raises(ValueError, match="read only"):
        model.run_with_hooks(IDS, fwd_hooks=[("blocks.0.mlp.hook_router_logits", lambda x, h: x * 0)])
    assert hf.config._experts_implementation != "workbench"


# The workbench on top: generation, patching, attribution, a probe ----------------------------------------


@pytest.mark.parametrize("family", ["falcon_sequential_alibi", "mixtral"])
def test_generate_matches_hugging_face_with_hooks_every_step(family):
    """Left-padded prompts, Hugging Face's key/value cache underneath (ALiBi built from the attention mask in
    Falcon-RW's case): the bridged generate picks Hugging Face's greedy tokens, the pattern hook seeing every
    step."""
    tokenizer = wb.zoo.tiny("gpt2", task="causal_lm", device="cpu").tokenizer
    hf = FAMILIES[family][0](vocab_size=2000)  # the stand-in tokenizer's vocabulary
    model = wb.from_hf(hf, tokenizer=tokenizer)
    prompts, shapes = ["the keys to the", "a dog"], []
    result = model.generate(prompts, max_new_tokens=4,
                            fwd_hooks=[("blocks.0.attn.hook_pattern", lambda x, hook: shapes.append(x.shape[2:]))])
    assert [tuple(shape) for shape in shapes] == [(7, 7), (1, 8), (1, 9), (1, 10)]
    encoding = model.tokenize(prompts, padding_side="left")
    with torch.no_grad():
        expected = hf.generate(**encoding, max_new_tokens=4, do_sample=False, pad_token_id=tokenizer.eos_token_id)
    assert result.new_token_ids == expected[:, encoding["input_ids"].shape[1]:].tolist()


# Three families, one per kind of block: parallel with one norm and multi-query, parallel with fused qkv, experts.
DOWNSTREAM = ["falcon_multi_query_parallel", "codegen", "mixtral"]
CLEAN = torch.tensor([[5, 6, 7, 8, 9, 10, 11]])
CORRUPTED = torch.tensor([[5, 6, 40, 8, 9, 10, 11]])


@pytest.mark.parametrize("family", DOWNSTREAM)
def test_activation_patching_through_the_bridge(family):
    model = wb.from_hf(FAMILIES[family][0]())
    metric = iv.logit_difference(model, 3, 4)
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(CLEAN, names_filter="blocks.0.hook_resid_pre")
        clean_value, corrupted_value = metric(model(CLEAN)).item(), metric(model(CORRUPTED)).item()
        patched = metric(model.run_with_hooks(
            CORRUPTED, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: clean_cache[hook.name])])).item()
    assert abs(clean_value - corrupted_value) > 1e-3
    assert abs(patched - clean_value) < 1e-5, "patching the whole first residual restores the clean run"
    result = iv.activation_patching(model, CLEAN, CORRUPTED, metric, hook="hook_resid_post", progress=False)
    last = result.matrix().loc[1]
    assert abs(last[6] - 1.0) < 1e-4, "the last position of the last block is all the metric reads"
    assert last.drop(6).abs().max() < 1e-4
    first = result.matrix().loc[0]
    assert first[:2].abs().max() < 1e-4, "positions before the corrupted token are the same in both runs"


@pytest.mark.parametrize("family", DOWNSTREAM)
def test_integrated_gradients_through_the_bridge(family):
    """Completeness: the attributions sum to the target's change from the baseline up to the reported
    convergence delta, which is small where the model is smooth; on a padded batch, padding gets nothing."""
    model = wb.from_hf(FAMILIES[family][0]())
    inputs = {"input_ids": IDS, "attention_mask": MASK}
    attr = wb.attribute(model, inputs, target=7, method="integrated_gradients", n_steps=32)
    base = wb.attribution.baseline_ids(model, IDS)
    with torch.no_grad():
        at_input = model(**inputs).logits.log_softmax(-1)[[0, 1], [6, 4], 7]
        at_baseline = model(input_ids=base, attention_mask=MASK).logits.log_softmax(-1)[[0, 1], [6, 4], 7]
    total = attr["integrated_gradients"].sum(1)
    delta = attr.convergence_delta["integrated_gradients"]
    torch.testing.assert_close(total - (at_input - at_baseline), delta, atol=1e-5, rtol=0)
    if family != "mixtral":  # top-k routing jumps where the chosen experts change: the integral is not smooth
        assert delta.abs().max() < 0.05 * (at_input - at_baseline).abs().max() + 1e-3
    assert torch.all(attr["integrated_gradients"][1, 5:] == 0)


@pytest.mark.parametrize("family", DOWNSTREAM)
def test_a_probe_reads_the_token_from_bridged_activations(family):
    """A linear probe on each layer's resid_post tells which half of an 8-token vocabulary the current token is
    from, on held-out sequences: the residual stream carries the token's identity."""
    model = wb.from_hf(FAMILIES[family][0]())
    ids = 20 + torch.randint(0, 8, (40, 6), generator=torch.Generator().manual_seed(0))
    _, cache = model.run_with_cache(ids, names_filter=lambda name: name.endswith("hook_resid_post"))
    features = torch.stack([cache[f"blocks.{i}.hook_resid_post"].reshape(-1, 32) for i in range(2)])
    labels = (ids.reshape(-1) < 24).long()
    train, test = slice(0, 6 * 30), slice(6 * 30, None)
    probe = LinearProbe(2).fit(features[:, train], labels[train])
    accuracy = probe.score(features[:, test], labels[test])["accuracy"]
    assert accuracy.shape == (2,) and accuracy.min() > 0.9, accuracy
