"""The bridge on encoder-only families (workbench/bridge/families/encoders.py): ELECTRA (post-norm, BERT's
layout, its generator's MLM head and its discriminator), ModernBERT (pre-norm, rotary, alternating local
and global attention, fused GeGLU MLP), ALBERT (one layer module run for every layer) and DeBERTa-v2
(disentangled attention computed in its own module), on tiny random models with right-padded batches;
ELECTRA against the native BERT on the same weights; attribution, patching and a probe through the bridge."""

from __future__ import annotations

import pytest
import torch
from bridge_check import assert_close, check_family, random_perturbed

import workbench as wb
from workbench import interventions as iv
from workbench.probing import LinearProbe

transformers = pytest.importorskip("transformers")

IDS = torch.tensor([[5, 6, 7, 8, 9, 10, 11], [12, 13, 14, 15, 16, 17, 18]])
MASK = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])  # right padding
TYPES = torch.tensor([[0, 0, 0, 1, 1, 1, 1], [0, 0, 1, 1, 1, 0, 0]])
PADDED = {"input_ids": IDS, "attention_mask": MASK}


def tiny_electra(head=None, embedding_size=32, **overrides):
    """An ELECTRA with ``head`` (a transformers class; ElectraModel by default); an ``embedding_size`` below
    hidden_size (32) adds ``embeddings_project``."""
    config = transformers.ElectraConfig(
        vocab_size=100, embedding_size=embedding_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, attn_implementation="eager", **overrides,
    )
    torch.manual_seed(0)
    return random_perturbed((head or transformers.ElectraModel)(config))


def tiny_modernbert(head=None, **overrides):
    """A 3-layer ModernBERT: global, local (window of 2 on each side), global attention."""
    config = transformers.ModernBertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=40,
        max_position_embeddings=64, local_attention=4, global_attn_every_n_layers=2, pad_token_id=0,
        bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, attn_implementation="eager", **overrides,
    )
    torch.manual_seed(0)
    return random_perturbed((head or transformers.ModernBertForMaskedLM)(config))


def block_cache(model, inputs, block=0):
    _, cache = model.run_with_cache(dict(inputs), names_filter=lambda name: name.startswith(f"blocks.{block}."))
    return cache


def assert_attention_shapes(cache, block, batch=2, pos=7, heads=4, d_head=8):
    for name in ("q", "k", "v", "z"):
        assert cache[f"blocks.{block}.attn.hook_{name}"].shape == (batch, pos, heads, d_head), name
    assert cache[f"blocks.{block}.attn.hook_pattern"].shape == (batch, heads, pos, pos)


# ELECTRA ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "embedding_size", "output"), [
    ("ElectraForMaskedLM", 24, "logits"),  # the generator: embeddings projected 24 -> 32
    ("ElectraForPreTraining", 32, "logits"),  # the discriminator: one logit per token
], ids=["generator_mlm", "discriminator"])
def test_electra_passes_the_family_checks(head, embedding_size, output):
    hf = tiny_electra(getattr(transformers, head), embedding_size)
    model = check_family(hf, {**PADDED, "token_type_ids": TYPES}, output=output)
    cache = block_cache(model, {**PADDED, "token_type_ids": TYPES})
    assert_attention_shapes(cache, 0)
    assert cache["blocks.0.mlp.hook_pre"].shape == (2, 7, 37)
    assert cache["blocks.0.mlp.hook_post"].shape == (2, 7, 37)
    # Post-norm (docs/hooks.md): resid_mid = LN1(resid_pre + attn_out), resid_post = LN2(resid_mid + mlp_out).
    layer = hf.electra.encoder.layer[0]
    assert_close(cache["blocks.0.hook_resid_mid"], cache["blocks.0.ln1.hook_normalized"], "resid_mid is ln1's")
    assert_close(cache["blocks.0.hook_resid_post"], cache["blocks.0.ln2.hook_normalized"], "resid_post is ln2's")
    with torch.no_grad():
        mid = layer.attention.output.LayerNorm(cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"])
        post = layer.output.LayerNorm(cache["blocks.0.hook_resid_mid"] + cache["blocks.0.hook_mlp_out"])
    assert_close(mid, cache["blocks.0.hook_resid_mid"], "LN1(resid_pre + attn_out)")
    assert_close(post, cache["blocks.0.hook_resid_post"], "LN2(resid_mid + mlp_out)")
    with torch.no_grad():
        activated = layer.intermediate.intermediate_act_fn(cache["blocks.0.mlp.hook_pre"])
    assert_close(activated, cache["blocks.0.mlp.hook_post"], "mlp.hook_post = act(mlp.hook_pre)")


def test_electra_embeddings_are_before_the_projection():
    """hook_embed / hook_pos_embed / hook_token_type_embed are embedding_size wide; their sum normalized is
    ln_embed, which projected is blocks.0.hook_resid_pre."""
    hf = tiny_electra(transformers.ElectraForMaskedLM, embedding_size=24)
    model = wb.from_hf(hf)
    inputs = {**PADDED, "token_type_ids": TYPES}
    _, cache = model.run_with_cache(dict(inputs), names_filter=lambda n: not n.startswith(("hf.", "blocks.1")))
    with torch.no_grad():
        summed = cache["hook_embed"] + cache["hook_pos_embed"] + cache["hook_token_type_embed"]
        normalized = hf.electra.embeddings.LayerNorm(summed)
        resid = hf.electra.embeddings_project(cache["ln_embed.hook_normalized"])
    assert cache["hook_embed"].shape == cache["hook_pos_embed"].shape == (2, 7, 24)
    assert_close(normalized, cache["ln_embed.hook_normalized"], "ln_embed")
    assert_close(resid, cache["blocks.0.hook_resid_pre"], "projected embeddings")


def test_electra_bridge_equals_the_native_bert(tmp_path):
    """An ElectraModel holding a BERT checkpoint's weights (embedding_size = hidden_size: no projection) is
    BERT: its bridged cache equals the native BERT's on every hook point they share, padding included."""
    bert_config = transformers.BertConfig(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, attn_implementation="eager",
    )
    torch.manual_seed(0)
    bert = random_perturbed(transformers.BertModel(bert_config))
    bert.save_pretrained(tmp_path)
    native = wb.AutoModel.from_pretrained(tmp_path)
    electra = tiny_electra()
    weights = {name: value for name, value in bert.state_dict().items() if not name.startswith("pooler.")}
    electra.load_state_dict(weights, strict=True)
    bridged = wb.from_hf(electra)
    inputs = {**PADDED, "token_type_ids": TYPES}
    _, ours = native.run_with_cache(dict(inputs))
    _, theirs = bridged.run_with_cache(dict(inputs))
    canonical = [name for name in theirs if not name.startswith("hf.")]
    assert len(canonical) == 4 + 2 * 14 and all(name in ours for name in canonical)
    for name in canonical:
        assert_close(theirs[name], ours[name], name)


def test_electra_logit_lens_decodes_through_the_generator_head():
    hf = tiny_electra(transformers.ElectraForMaskedLM)
    model = wb.from_hf(hf)
    _, cache = model.run_with_cache(dict(PADDED), names_filter="blocks.1.hook_resid_post")
    with torch.no_grad():
        assert_close(model.decode_residual(cache["blocks.1.hook_resid_post"]), hf(**PADDED).logits, "lens")


# ModernBERT -------------------------------------------------------------------------------------------------


def test_modernbert_passes_the_family_checks():
    hf = tiny_modernbert()
    assert hf.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    model = check_family(hf, PADDED)
    cache = block_cache(model, PADDED, block=1)
    assert_attention_shapes(cache, 1)
    # Pre-norm: the residual arithmetic holds exactly.
    assert_close(cache["blocks.1.hook_resid_mid"],
                 cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"], "resid_mid")
    assert_close(cache["blocks.1.hook_resid_post"],
                 cache["blocks.1.hook_resid_mid"] + cache["blocks.1.hook_mlp_out"], "resid_post")
    # The fused Wi is split: hook_post = act(hook_pre) * hook_pre_linear, and both halves are Wi's output.
    pre, linear = cache["blocks.1.mlp.hook_pre"], cache["blocks.1.mlp.hook_pre_linear"]
    post = cache["blocks.1.mlp.hook_post"]
    assert pre.shape == linear.shape == post.shape == (2, 7, 40)
    with torch.no_grad():
        assert_close(hf.model.layers[1].mlp.act(pre) * linear, post, "GeGLU")
        assert torch.equal(torch.cat([pre, linear], -1), hf.model.layers[1].mlp.Wi(
            hf.model.layers[1].mlp_norm(cache["blocks.1.hook_resid_mid"])))
    # The local layer's window: local_attention=4 lets query i see keys i-2 .. i+2.
    pattern = cache["blocks.1.attn.hook_pattern"]
    distance = (torch.arange(7)[:, None] - torch.arange(7)[None, :]).abs()
    assert torch.all(pattern[..., distance > 2] == 0) and torch.all(pattern[0][..., distance <= 2] > 0)
    assert torch.all(pattern[1, ..., 5:] == 0)  # padded keys get nothing


def test_modernbert_padded_row_equals_the_row_alone():
    """The eager path keeps padding (no unpadding): a right-padded row's real positions are the row alone."""
    model = wb.from_hf(tiny_modernbert())
    names = ["blocks.2.hook_resid_post", "blocks.1.attn.hook_pattern", "ln_final.hook_normalized"]
    _, padded = model.run_with_cache(dict(PADDED), names_filter=names)
    _, alone = model.run_with_cache(IDS[1:, :5], names_filter=names)
    assert_close(padded["blocks.2.hook_resid_post"][1, :5], alone["blocks.2.hook_resid_post"][0], "resid_post")
    assert_close(padded["ln_final.hook_normalized"][1, :5], alone["ln_final.hook_normalized"][0], "ln_final")
    assert_close(padded["blocks.1.attn.hook_pattern"][1, :, :5, :5], alone["blocks.1.attn.hook_pattern"][0],
                 "pattern")


def test_modernbert_last_hidden_state_is_ln_final():
    hf = tiny_modernbert(transformers.ModernBertModel)
    model = wb.from_hf(hf)
    reference = hf(**PADDED, output_hidden_states=True)
    _, cache = model.run_with_cache(dict(PADDED), names_filter=["ln_final.hook_normalized",
                                                                "blocks.2.hook_resid_post"])
    assert_close(cache["ln_final.hook_normalized"], reference.hidden_states[3], "hidden_states[n_layers]")
    assert_close(cache["ln_final.hook_normalized"], reference.last_hidden_state, "last_hidden_state")
    assert (cache["blocks.2.hook_resid_post"] - reference.hidden_states[3]).abs().max() > 1e-2


def test_modernbert_logit_lens_decodes_through_the_mlm_head():
    hf = tiny_modernbert()
    model = wb.from_hf(hf)
    _, cache = model.run_with_cache(dict(PADDED), names_filter="blocks.2.hook_resid_post")
    with torch.no_grad():
        assert_close(model.decode_residual(cache["blocks.2.hook_resid_post"]), hf(**PADDED).logits, "lens")


# ALBERT -----------------------------------------------------------------------------------------------------


def tiny_albert(head=None, groups=1, **overrides):
    """A 4-layer ALBERT whose ``groups`` layer modules are each run 4 / groups times."""
    config = transformers.AlbertConfig(
        vocab_size=100, embedding_size=24, hidden_size=32, num_hidden_layers=4, num_hidden_groups=groups,
        num_attention_heads=4, intermediate_size=37, max_position_embeddings=64, attn_implementation="eager",
        **overrides,
    )
    torch.manual_seed(0)
    return random_perturbed((head or transformers.AlbertForMaskedLM)(config))


@pytest.mark.parametrize("groups", [1, 2], ids=["one_shared_layer", "two_groups"])
def test_albert_passes_the_family_checks(groups):
    hf = tiny_albert(groups=groups)
    inputs = {**PADDED, "token_type_ids": TYPES}
    model = check_family(hf, inputs)
    assert model.n_layers == 4 and len(hf.albert.encoder.albert_layer_groups) == groups
    _, cache = model.run_with_cache(dict(inputs), names_filter=lambda name: name.startswith("blocks."))
    assert_attention_shapes(cache, 3)
    assert cache["blocks.3.mlp.hook_pre"].shape == cache["blocks.3.mlp.hook_post"].shape == (2, 7, 37)
    for i in range(4):  # post-norm, through the module each layer ran
        layer = hf.albert.encoder.albert_layer_groups[i * groups // 4].albert_layers[0]
        with torch.no_grad():
            mid = layer.attention.LayerNorm(cache[f"blocks.{i}.hook_resid_pre"] + cache[f"blocks.{i}.hook_attn_out"])
            post = layer.full_layer_layer_norm(cache[f"blocks.{i}.hook_resid_mid"] + cache[f"blocks.{i}.hook_mlp_out"])
        assert_close(mid, cache[f"blocks.{i}.hook_resid_mid"], f"LN1(resid_pre + attn_out) {i}")
        assert_close(post, cache[f"blocks.{i}.hook_resid_post"], f"LN2(resid_mid + mlp_out) {i}")
        if i:
            assert_close(cache[f"blocks.{i}.hook_resid_pre"], cache[f"blocks.{i - 1}.hook_resid_post"], f"layer {i}")


def test_albert_edits_one_layer_of_the_shared_module():
    """Zeroing blocks.2.hook_mlp_out changes layer 2 only: layers 0-1 are the clean run's, and layer 2's output
    is LN2(resid_mid) of the edited run; a module-path hook on the shared module fires once per layer."""
    hf = tiny_albert()
    model = wb.from_hf(hf)
    _, clean = model.run_with_cache(dict(PADDED), names_filter=lambda name: name.endswith("hook_resid_post"))
    zero = [("blocks.2.hook_mlp_out", lambda x, hook: torch.zeros_like(x))]
    _, edited = model.run_with_cache(dict(PADDED), fwd_hooks=zero,
                                     names_filter=lambda name: name.startswith("blocks."))
    for i in (0, 1):
        assert torch.equal(edited[f"blocks.{i}.hook_resid_post"], clean[f"blocks.{i}.hook_resid_post"])
    layer = hf.albert.encoder.albert_layer_groups[0].albert_layers[0]
    with torch.no_grad():
        assert_close(layer.full_layer_layer_norm(edited["blocks.2.hook_resid_mid"]),
                     edited["blocks.2.hook_resid_post"], "layer 2 without its MLP")
    assert (edited["blocks.3.hook_resid_post"] - clean["blocks.3.hook_resid_post"]).abs().max() > 1e-3
    calls = []
    model.run_with_hooks(dict(PADDED), fwd_hooks=[
        ("hf.albert.encoder.albert_layer_groups.0.albert_layers.0.ffn", lambda x, hook: calls.append(x.shape)),
    ])
    assert calls == [(2, 7, 37)] * 4


def test_albert_with_several_layers_per_group_is_refused_by_name():
    with pytest.raises(ValueError, match="inner_group_num=1"):
        wb.from_hf(tiny_albert(inner_group_num=2))


# DeBERTa-v2 -------------------------------------------------------------------------------------------------

DEBERTA_CONFIGS = {
    # DeBERTa-v3's layout: relative positions only, q/k projections shared with them, log buckets
    "v3": dict(relative_attention=True, position_biased_input=False, pos_att_type=["p2c", "c2p"],
               share_att_key=True, norm_rel_ebd="layer_norm", position_buckets=8, max_relative_positions=64),
    # DeBERTa-v2-xlarge's: absolute and relative positions, separate position projections, a ConvLayer
    "v2_conv": dict(relative_attention=True, pos_att_type=["p2c", "c2p"], max_relative_positions=16,
                    conv_kernel_size=3),
}


def tiny_deberta(layout, head=None):
    config = transformers.DebertaV2Config(
        vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, type_vocab_size=2, **DEBERTA_CONFIGS[layout],
    )
    torch.manual_seed(0)
    return random_perturbed((head or transformers.DebertaV2ForMaskedLM)(config))


@pytest.mark.parametrize("layout", sorted(DEBERTA_CONFIGS))
def test_deberta_v2_passes_the_family_checks(layout):
    hf = tiny_deberta(layout)
    inputs = {**PADDED, "token_type_ids": TYPES}
    model = check_family(hf, inputs)  # the pattern is read only: check_family expects its edit refused
    assert "blocks.0.attn.hook_pattern" in model.read_only_hooks
    cache = block_cache(model, inputs)
    attention = hf.deberta.encoder.layer[0].attention
    pattern, v, z = cache["blocks.0.attn.hook_pattern"], cache["blocks.0.attn.hook_v"], cache["blocks.0.attn.hook_z"]
    assert v.shape == z.shape == (2, 7, 4, 8) and pattern.shape == (2, 4, 7, 7)
    assert_close(torch.einsum("bhqk,bkhd->bqhd", pattern, v), z, "z = pattern @ v")
    with torch.no_grad():
        attn_out = attention.output.dense(z.flatten(2))
        mid = attention.output.LayerNorm(cache["blocks.0.hook_resid_pre"] + cache["blocks.0.hook_attn_out"])
    assert_close(attn_out, cache["blocks.0.hook_attn_out"], "attn_out = W_O z")
    assert_close(mid, cache["blocks.0.hook_resid_mid"], "LN1(resid_pre + attn_out)")
    assert torch.all(cache["blocks.0.hook_resid_pre"][1, 5:] == 0)  # the embeddings are masked
    assert cache["blocks.0.attn.hook_q"].shape == cache["blocks.0.attn.hook_k"].shape == (2, 7, 4, 8)
    if layout == "v3":  # the projections run again on the position table; the hooks hold the tokens' call
        assert "share_att_key" in model.bridge_notes
        with torch.no_grad():
            expected = attention.self.query_proj(cache["blocks.0.hook_resid_pre"]).view(2, 7, 4, 8)
        assert_close(cache["blocks.0.attn.hook_q"], expected, "hook_q is the tokens' projection")


def test_deberta_v2_q_and_k_edits_reach_the_scores():
    """Without shared position keys, hook_q / hook_k are the content projections: scaling every query to 0
    leaves only the position->content and masked terms, and the pattern changes; the ConvLayer mixes block 0's
    output after hook_resid_post."""
    model = wb.from_hf(tiny_deberta("v2_conv"))
    names = ["blocks.0.attn.hook_pattern", "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre"]
    _, clean = model.run_with_cache(dict(PADDED), names_filter=names)
    assert (clean["blocks.1.hook_resid_pre"] - clean["blocks.0.hook_resid_post"]).abs().max() > 1e-3
    for name in ("blocks.0.attn.hook_q", "blocks.0.attn.hook_k"):
        _, edited = model.run_with_cache(dict(PADDED), fwd_hooks=[(name, lambda x, hook: x * 0)], names_filter=names)
        assert (edited["blocks.0.attn.hook_pattern"] - clean["blocks.0.attn.hook_pattern"]).abs().max() > 1e-3


def test_deberta_v3_hook_q_edits_reach_the_pattern():
    model = wb.from_hf(tiny_deberta("v3"))
    _, clean = model.run_with_cache(dict(PADDED), names_filter="blocks.0.attn.hook_pattern")
    _, edited = model.run_with_cache(dict(PADDED), fwd_hooks=[("blocks.0.attn.hook_q", lambda q, hook: q * 0)],
                                     names_filter="blocks.0.attn.hook_pattern")
    assert (edited["blocks.0.attn.hook_pattern"] - clean["blocks.0.attn.hook_pattern"]).abs().max() > 1e-3


# The workbench on bridged encoders --------------------------------------------------------------------------

CLASSIFIERS = {
    "electra": lambda: tiny_electra(transformers.ElectraForSequenceClassification),
    "modernbert": lambda: tiny_modernbert(transformers.ModernBertForSequenceClassification),
}


def margin(output) -> torch.Tensor:
    """[batch] label 1's logit minus label 0's."""
    return output.logits[:, 1] - output.logits[:, 0]


def clean_and_corrupted():
    clean = torch.tensor([[1, 23, 45, 67, 12, 34, 2]])
    corrupted = clean.clone()
    corrupted[0, 2] = 89
    return clean, corrupted


@pytest.mark.parametrize("family", sorted(CLASSIFIERS))
def test_patching_restores_the_clean_run(family):
    """Patching all of blocks.0.hook_resid_pre restores the clean output exactly; patching the last layer's
    resid_post restores it at the first token (what the classifier reads) and nowhere else."""
    model = wb.from_hf(CLASSIFIERS[family]())
    assert model.classifier_position == "first"
    clean, corrupted = clean_and_corrupted()
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean, names_filter="blocks.0.hook_resid_pre")
        clean_value, corrupted_value = margin(model(clean)).item(), margin(model(corrupted)).item()
        patched = margin(model.run_with_hooks(
            corrupted, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: clean_cache[hook.name])])).item()
    assert abs(patched - clean_value) < 1e-5 and abs(clean_value - corrupted_value) > 1e-3
    result = iv.activation_patching(model, clean, corrupted, margin, hook="hook_resid_post", progress=False)
    last = result.matrix().loc[model.n_layers - 1]
    assert abs(last[0] - 1.0) < 1e-4
    assert last.drop(0).abs().max() < 1e-4


@pytest.mark.parametrize("family", sorted(CLASSIFIERS))
def test_integrated_gradients_are_complete(family):
    """Scores sum to f(input) - f(baseline) up to the reported convergence delta; padding gets nothing."""
    model = wb.from_hf(CLASSIFIERS[family]())
    attr = wb.attribute(model, PADDED, target=lambda out: out.logits[:, 1], method="integrated_gradients",
                        n_steps=32)
    base = wb.attribution.baseline_ids(model, IDS)
    with torch.no_grad():
        at_input = model(**PADDED).logits[:, 1]
        at_baseline = model(input_ids=base, attention_mask=MASK).logits[:, 1]
    delta = attr.convergence_delta["integrated_gradients"]
    total = attr["integrated_gradients"].sum(1)
    torch.testing.assert_close(total - (at_input - at_baseline), delta, atol=1e-5, rtol=0)
    assert delta.abs().max() < 0.05 * (at_input - at_baseline).abs().max() + 1e-4
    assert torch.all(attr["integrated_gradients"][1, 5:] == 0)


def test_a_class_index_target_on_a_bridged_classifier():
    model = wb.from_hf(CLASSIFIERS["electra"]())
    attr = wb.attribute(model, PADDED, target=1, method="saliency")
    assert torch.equal(attr.target_values, model(**PADDED).logits[:, 1].detach())


def test_a_probe_reads_token_identity_from_the_bridged_residual_stream():
    """Which of two token groups a position holds is linearly decodable from every layer of a bridged ELECTRA
    (token identity survives a few random layers); the same probe on shuffled labels is at chance."""
    model = wb.from_hf(tiny_electra())
    generator = torch.Generator().manual_seed(0)
    groups = torch.tensor([10, 11, 12, 13, 14, 15, 60, 61, 62, 63, 64, 65])
    ids = groups[torch.randint(0, 12, (60, 8), generator=generator)]
    labels = (ids >= 60).long().flatten()
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(model.n_layers)]
    _, cache = model.run_with_cache(ids, names_filter=names)
    features = torch.stack([cache[name].flatten(0, 1) for name in names])  # [layer, token, d_model]
    train, test = slice(0, 320), slice(320, None)
    probe = lambda: LinearProbe(2, weight_decay=1e-2, max_epochs=200)  # noqa: E731
    accuracy = probe().fit(features[:, train], labels[train]).score(features[:, test], labels[test])
    assert accuracy["accuracy"].min() > 0.95, accuracy["accuracy"]
    shuffled = labels[torch.randperm(len(labels), generator=generator)]
    control = probe().fit(features[:, train], shuffled[train]).score(features[:, test], shuffled[test])
    assert control["accuracy"].max() < 0.7, control["accuracy"]
