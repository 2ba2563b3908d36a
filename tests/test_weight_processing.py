"""Weight processing (workbench.weight_processing): each step leaves the outputs as they were (<= 1e-4 in
float32) on tiny perturbed GPT-2 and Llama models (grouped-query attention, biases, a tied unembedding,
Gemma's (1 + w) norm), puts the norms at their neutral values, makes direct logit attribution a sum of
per-component terms through the final norm's scale, and refuses the models it cannot process."""

from __future__ import annotations

import copy
import functools
import warnings

import pytest
import torch
from tiny_hf import tiny_model

import workbench as wb
from workbench.components import LayerNorm, RMSNorm
from workbench.provenance import model_fingerprint
from workbench.weight_processing import (
    center_unembed,
    center_writing_weights,
    fold_norms,
    fold_value_biases,
    process_weights,
    processing_steps,
)

TOLERANCE = 1e-4

# name -> (model_type, fields): the variants every step is checked on.
VARIANTS = {
    "gpt2": ("gpt2", {}),  # LayerNorm, biases everywhere, the unembedding tied to the embedding
    # RMSNorm, grouped-query attention (2 query heads per kv head), biases on every projection
    "llama": ("llama", dict(num_key_value_heads=2, attention_bias=True, mlp_bias=True)),
    "llama_tied": ("llama", dict(num_key_value_heads=1, tie_word_embeddings=True)),  # multi-query, no biases
    "gemma": ("gemma", dict(num_key_value_heads=2, head_dim=4)),  # (1 + w) RMSNorms, GeGLU, scaled embeddings
    "gemma2": (
        "gemma2",
        dict(num_key_value_heads=2, head_dim=4),
    ),  # sandwich norms, soft-capped scores, logits
    "gpt_neox": ("gpt_neox", dict(rotary_pct=0.5)),  # parallel attention + MLP, LayerNorm, biases
    "olmo2": ("olmo2", {}),  # norms after the sublayers only, q/k norms
}
# The variants whose final residual stream is a plain sum of what the components wrote (no norm after a
# sublayer) and whose logits are not soft-capped: direct logit attribution adds up to the logits there.
SUM_OF_COMPONENTS = ["gpt2", "llama", "llama_tied", "gemma", "gpt_neox"]
# Steps that keep the raw logits; center_unembed (and so process_weights) keeps the log-probabilities.
LOGIT_STEPS = {
    "fold_norms": fold_norms,
    "fold_value_biases": fold_value_biases,
    "all_but_center_unembed": lambda model: process_weights(model, center_unembed=False),
}


@functools.cache
def built_model(variant: str, task: str) -> wb.HookedTransformer:
    model_type, fields = VARIANTS[variant]
    return tiny_model(model_type, task, perturb=0.1, **fields)


def make_model(variant: str, task: str = "causal_lm") -> wb.HookedTransformer:
    """A fresh copy of the tiny perturbed model of ``variant`` (built once per test run)."""
    return copy.deepcopy(built_model(variant, task))


def inputs() -> dict[str, torch.Tensor]:
    """Two rows of token ids, the first left-padded by two positions."""
    ids = torch.randint(3, 60, (2, 9), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0
    return {"input_ids": ids, "attention_mask": mask}


def logits(model: wb.HookedTransformer) -> torch.Tensor:
    with torch.no_grad():
        return model(**inputs()).logits


def processed(model: wb.HookedTransformer, step, **kwargs) -> wb.HookedTransformer:
    """``step`` applied to a copy of ``model`` (the untie warning silenced: tested on its own below)."""
    model = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return step(model, **kwargs)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).detach().abs().max())


# Outputs unchanged ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("step", sorted(LOGIT_STEPS))
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_step_keeps_logits(variant, step):
    model = make_model(variant)
    after = processed(model, LOGIT_STEPS[step])
    assert max_diff(logits(after), logits(model)) <= TOLERANCE
    assert processing_steps(after) and processing_steps(model) == ()


@pytest.mark.parametrize("variant", sorted(set(VARIANTS) - {"gemma2"}))
def test_center_unembed_keeps_log_probabilities_and_centres(variant):
    model = make_model(variant)
    after = processed(model, center_unembed)
    assert max_diff(logits(after).log_softmax(-1), logits(model).log_softmax(-1)) <= TOLERANCE
    assert max_diff(logits(after), logits(model)) > 1e-3  # the raw logits did move
    assert after.unembed.weight.mean(0).abs().max() < 1e-6


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_process_weights_keeps_log_probabilities(variant):
    model = make_model(variant)
    after = processed(model, process_weights)
    assert max_diff(logits(after).log_softmax(-1), logits(model).log_softmax(-1)) <= TOLERANCE


@pytest.mark.parametrize("variant", ["gpt2", "gpt_neox"])
def test_center_writing_weights_keeps_logits_on_layer_norm_models(variant):
    model = make_model(variant)
    after = processed(model, center_writing_weights)
    assert max_diff(logits(after), logits(model)) <= TOLERANCE
    writers = [getattr(after, name).weight for name in ("embed", "pos_embed") if hasattr(after, name)]
    assert writers and all(w.mean(-1).abs().max() < 1e-6 for w in writers)
    for block in after.blocks:
        for linear in (block.attn.o, block.mlp.fc_out):
            assert linear.weight.mean(0).abs().max() < 1e-6 and linear.bias.mean().abs() < 1e-6


def test_process_weights_skips_centring_writing_weights_on_rms_norm_models():
    after = processed(make_model("llama"), process_weights)
    assert processing_steps(after) == ("fold_norms", "center_unembed", "fold_value_biases")
    gpt2 = processed(make_model("gpt2"), process_weights)
    assert processing_steps(gpt2) == (
        "untie_embeddings",
        "fold_norms",
        "center_writing_weights",
        "center_unembed",
        "fold_value_biases",
    )


def test_fold_norms_keeps_sequence_classifier_scores():
    model = make_model("llama", task="sequence_classification")
    after = processed(model, fold_norms)
    assert max_diff(logits(after), logits(model)) <= TOLERANCE
    assert torch.equal(after.ln_final.weight, torch.ones_like(after.ln_final.weight))


def test_fold_norms_on_a_bare_model_keeps_its_final_norm_and_output():
    model = make_model("gpt2", task="base")
    after = processed(model, fold_norms)
    with torch.no_grad():
        before_out, after_out = model(**inputs()).last_hidden_state, after(**inputs()).last_hidden_state
    assert max_diff(after_out, before_out) <= TOLERANCE
    assert torch.equal(after.ln_final.weight, model.ln_final.weight)


# What the steps leave ------------------------------------------------------------------------------------


def stream_norms(model: wb.HookedTransformer) -> dict[str, torch.nn.Module]:
    """The norms that read the residual stream (before a sublayer, and the final one), by name."""
    names = [f"blocks.{i}.{ln}" for i in range(model.n_layers) for ln in ("ln1", "ln2")] + ["ln_final"]
    modules = dict(model.named_modules())
    return {name: modules[name] for name in names if modules.get(name) is not None}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_folded_norms_are_neutral_and_the_others_untouched(variant):
    model = make_model(variant)
    after = processed(model, fold_norms)
    folded = stream_norms(after)
    assert "ln_final" in folded
    neutral = 0.0 if variant.startswith("gemma") else 1.0  # Gemma's norms apply (1 + w): 1 at w = 0
    for norm in folded.values():
        assert torch.equal(norm.weight, torch.full_like(norm.weight, neutral))
        if isinstance(norm, LayerNorm):
            assert torch.equal(norm.bias, torch.zeros_like(norm.bias))
    before = dict(model.named_modules())
    others = [
        name
        for name, m in after.named_modules()
        if isinstance(m, (LayerNorm, RMSNorm)) and name not in folded
    ]
    for name in others:  # q/k norms and the norms after a sublayer (sandwich blocks, OLMo 2) stay
        assert torch.equal(dict(after.named_modules())[name].weight, before[name].weight), name
    assert bool(others) == (variant in ("gemma2", "olmo2"))


def test_fold_value_biases_moves_them_to_the_output_bias():
    after = processed(make_model("llama"), fold_value_biases)
    for block in after.blocks:
        assert torch.equal(block.attn.v.bias, torch.zeros_like(block.attn.v.bias))


def test_tied_unembedding_is_untied_with_a_warning_and_the_embedding_kept():
    model = make_model("gpt2")
    embed_before = model.embed.weight.detach().clone()
    with pytest.warns(UserWarning, match="unties them"):
        fold_norms(model)
    assert model.unembed.weight is not model.embed.weight
    assert torch.equal(model.embed.weight, embed_before)
    assert model.config.tie_word_embeddings is False
    assert model.weight_processing == ("untie_embeddings", "fold_norms")
    assert model.config.to_dict()["workbench_weight_processing"] == ["untie_embeddings", "fold_norms"]


def test_processing_changes_the_fingerprint():
    model = make_model("llama")
    before = model_fingerprint(model)
    fold_value_biases(fold_norms(model))
    after = model_fingerprint(model)
    assert after["weights"] != before["weights"] and after["config"] != before["config"]


def test_wb_weight_processing_is_the_module():
    assert wb.weight_processing.fold_norms is fold_norms


# Direct logit attribution ----------------------------------------------------------------------------------


def component_contributions(model: wb.HookedTransformer, cache) -> dict[str, torch.Tensor]:
    """What each component writes to the final residual stream [batch, pos, d_model]: the embeddings, each
    head (its hook_z through its slice of attn.o), each attention's output bias, each MLP."""
    parts = {name: cache[name] for name in ("hook_embed", "hook_pos_embed") if name in cache}
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        z = cache[f"blocks.{layer}.attn.hook_z"]  # [batch, pos, head, d_head]
        per_head = attn.o.weight.view(-1, attn.n_heads, attn.d_head)  # [d_model, head, d_head]
        for head in range(attn.n_heads):
            parts[f"L{layer}H{head}"] = z[:, :, head] @ per_head[:, head].T
        if attn.o.bias is not None:
            parts[f"L{layer}.o_bias"] = attn.o.bias.expand_as(parts["hook_embed"])
        parts[f"L{layer}.mlp"] = cache[f"blocks.{layer}.hook_mlp_out"]
    return parts


@pytest.mark.parametrize("variant", SUM_OF_COMPONENTS)
def test_direct_logit_attribution_sums_to_the_logits(variant):
    model = processed(make_model(variant), process_weights)
    with torch.no_grad():
        out, cache = model.run_with_cache(inputs())
        scale = cache["ln_final.hook_scale"]  # [batch, pos, 1]
        centre = isinstance(model.ln_final, LayerNorm)
        direct = {}
        for name, part in component_contributions(model, cache).items():
            part = part - part.mean(-1, keepdim=True) if centre else part
            direct[name] = (part / scale) @ model.unembed.weight.T  # [batch, pos, vocab]
    bias = model.unembed.bias if model.unembed.bias is not None else 0.0
    final_resid = cache[f"blocks.{model.n_layers - 1}.hook_resid_post"]
    assert max_diff(sum(component_contributions(model, cache).values()), final_resid) <= TOLERANCE
    assert max_diff(sum(direct.values()) + bias, out.logits) <= TOLERANCE


# Refusals ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["llama", "gemma"])
def test_center_writing_weights_refused_on_rms_norm_models(variant):
    model = make_model(variant)
    with pytest.raises(ValueError, match="RMSNorm, which does not subtract the mean"):
        center_writing_weights(model)
    assert processing_steps(model) == ()


@pytest.mark.parametrize(
    ("model_type", "task"), [("bert", "masked_lm"), ("openai-gpt", "causal_lm"), ("distilbert", "masked_lm")]
)
def test_post_norm_models_are_refused(model_type, task):
    model = tiny_model(model_type, task)
    for step in (fold_norms, center_writing_weights, fold_value_biases, process_weights):
        with pytest.raises(ValueError, match="post-norm"):
            step(model)


def test_models_without_component_blocks_are_refused():
    with pytest.raises(ValueError, match="pre-norm decoders"):
        fold_norms(tiny_model("xlnet", "base"))


@pytest.mark.parametrize("variant", ["gemma2", "olmo2"])
def test_center_writing_weights_refused_where_norms_follow_the_sublayers(variant):
    with pytest.raises(ValueError, match="pass each sublayer's output through a norm"):
        center_writing_weights(make_model(variant))


def test_center_unembed_refused_on_soft_capped_logits():
    with pytest.raises(ValueError, match="soft-caps its logits"):
        center_unembed(make_model("gemma2"))


def test_center_unembed_keeps_a_masked_lm_s_log_probabilities():
    """Centring the unembedding needs no pre-norm model: it works after BERT's transform too."""
    model = tiny_model("bert", "masked_lm", perturb=0.1)
    after = processed(model, center_unembed)
    assert max_diff(logits(after).log_softmax(-1), logits(model).log_softmax(-1)) <= TOLERANCE


def test_center_unembed_needs_an_unembedding():
    with pytest.raises(ValueError, match="no unembedding"):
        center_unembed(make_model("gpt2", task="base"))
