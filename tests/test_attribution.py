"""Token attribution: integrated-gradients completeness, saliency and input x gradient against hand-written
autograd, every method on every architecture (padded batches included), and clear errors."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import architectures_with, has_field, tiny_model

import workbench as wb
from workbench.attribution.core import ATTENTION_METHOD_NAMES, GRADIENT_METHODS, PERTURBATION_METHODS

ARCHITECTURES = architectures_with("sequence_classification")


def tiny(model_type: str, task: str = "sequence_classification", seed: int = 0):
    """A tiny model with three labels, its random weights sharpened so that the inputs matter."""
    return tiny_model(model_type, task, seed=seed, perturb=0.2, num_labels=3)


def padded_ids():
    ids = torch.randint(3, 60, (2, 6), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("model_type", ["bert", "gpt2"])
def test_integrated_gradients_completeness_on_tiny_models(model_type):
    model = tiny(model_type)
    inputs = padded_ids()
    attr = wb.attribute(model, inputs, target=2, method="integrated_gradients", n_steps=200)
    base = wb.attribution.baseline_ids(model, inputs["input_ids"])
    with torch.no_grad():
        at_input = model(**inputs).logits[:, 2]
        at_baseline = model(input_ids=base, attention_mask=inputs["attention_mask"]).logits[:, 2]
    delta = attr.convergence_delta["integrated_gradients"]
    total = attr["integrated_gradients"].sum(1)
    torch.testing.assert_close(total - (at_input - at_baseline), delta, atol=1e-5, rtol=0)
    assert delta.abs().max() < 0.02 * (at_input - at_baseline).abs().max() + 1e-4  # 200 steps: small
    assert torch.all(attr["integrated_gradients"][1, 4:] == 0)  # padding gets nothing


def test_integrated_gradients_completeness_on_real_minilm():
    clf = wb.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2)
    torch.manual_seed(0)
    torch.nn.init.normal_(clf.classifier.weight, std=1.0)
    attr = wb.attribute(clf, "The movie was not good at all.", target=1, n_steps=100)
    delta = attr.convergence_delta["integrated_gradients"].abs().item()
    assert delta < 0.05 * attr["integrated_gradients"].abs().sum().item() + 1e-3
    frame = attr.to_frame()
    assert list(frame["token"]) == ["[CLS]", "the", "movie", "was", "not", "good", "at", "all", ".", "[SEP]"]


def test_saliency_and_input_x_gradient_equal_hand_written_autograd():
    model = tiny("bert")
    inputs = padded_ids()
    attr = wb.attribute(model, inputs, target=1, method=["saliency", "input_x_gradient"])
    _, cache = model.run_with_cache(inputs, names_filter="hook_embed")
    embeds = cache["hook_embed"].clone().requires_grad_()
    with model.hooks([("hook_embed", lambda act, hook: embeds)]):
        model(**inputs).logits[:, 1].sum().backward()
    mask = inputs["attention_mask"]
    torch.testing.assert_close(attr["saliency"], embeds.grad.norm(dim=-1) * mask, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(attr["input_x_gradient"], (embeds.grad * embeds).sum(-1).detach() * mask,
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_every_captum_method_runs_on_every_architecture(model_type):
    model = tiny(model_type)
    methods = [*GRADIENT_METHODS, *PERTURBATION_METHODS]
    attr = wb.attribute(model, padded_ids(), target=0, method=methods, n_steps=8, n_samples=30)
    assert attr.methods == methods
    for name in methods:
        scores = attr[name]
        assert scores.shape == (2, 6) and torch.isfinite(scores).all(), name
        assert torch.all(scores[1, 4:] == 0), f"{name} gives padding a score"
        assert scores[0].abs().sum() > 0, f"{name} gives nothing"


def test_language_model_targets_are_token_log_probabilities():
    model = tiny("gpt2", task="causal_lm")
    inputs = padded_ids()
    attr = wb.attribute(model, inputs, target=7, method="integrated_gradients", n_steps=100)
    with torch.no_grad():
        logits = model(**inputs).logits
    expected = torch.stack([logits[0, 5].log_softmax(-1)[7], logits[1, 3].log_softmax(-1)[7]])  # last real tokens
    torch.testing.assert_close(attr.target_values, expected, atol=1e-5, rtol=0)


def test_callable_targets_read_any_activation():
    model = tiny("bert")
    direction = torch.randn(16, generator=torch.Generator().manual_seed(2))
    on_logits = wb.attribute(model, padded_ids(), target=lambda out: out.logits[:, 0] - out.logits[:, 1], n_steps=20)
    assert on_logits["integrated_gradients"].shape == (2, 6)
    neuron = wb.attribution.activation_target("blocks.1.hook_resid_post", lambda act: act[:, 0] @ direction)
    attr = wb.attribute(model, padded_ids(), target=neuron, method=["integrated_gradients", "saliency"], n_steps=50)
    _, cache = model.run_with_cache(padded_ids(), names_filter="blocks.1.hook_resid_post")
    torch.testing.assert_close(attr.target_values, cache["blocks.1.hook_resid_post"][:, 0] @ direction)
    assert attr["saliency"][0].abs().sum() > 0


def test_errors_name_the_problem():
    model = tiny("bert")
    with pytest.raises(ValueError, match="out of range"):
        wb.attribute(model, padded_ids(), target=3)
    with pytest.raises(ValueError, match="unknown attribution method"):
        wb.attribute(model, padded_ids(), target=0, method="shapley_magic")
    minilm = wb.AutoModelForSequenceClassification.from_pretrained("minilm", num_labels=2)
    with pytest.raises(ValueError, match="empty"):
        wb.attribute(minilm, "   ", target=0)
    with pytest.raises(ValueError, match="function of the output"):
        wb.attribute(wb.AutoModel.from_pretrained("minilm"), "Hello.", target=0)
    assert set(wb.attribution.methods()) == {*GRADIENT_METHODS, *PERTURBATION_METHODS, *ATTENTION_METHOD_NAMES}


def test_faithfulness_curves_and_aopc():
    model = tiny("bert")
    inputs = padded_ids()
    result = wb.attribution.evaluate(model, inputs, target=2, methods=["integrated_gradients", "occlusion"],
                                     n_steps=20)
    assert set(result.frame["method"]) == {"integrated_gradients", "occlusion", "random"}
    assert len(result.frame) == 3 * 2
    curves = result.curves
    deletion = curves[(curves["curve"] == "deletion") & (curves["method"] == "occlusion") & (curves["text_index"] == 0)]
    with torch.no_grad():
        full = model(**inputs).logits[0, 2].item()
        emptied = model(input_ids=wb.attribution.baseline_ids(model, inputs["input_ids"]),
                        attention_mask=inputs["attention_mask"]).logits[0, 2].item()
    assert deletion["value"].iloc[0] == pytest.approx(full, abs=1e-5)  # nothing deleted yet
    assert deletion["value"].iloc[-1] == pytest.approx(emptied, abs=1e-5)  # everything deleted
    assert list(deletion["k"]) == list(range(len(deletion)))
    row = result.frame[(result.frame["method"] == "occlusion") & (result.frame["text_index"] == 0)].iloc[0]
    assert row["deletion_aopc"] == pytest.approx(full - deletion["value"].iloc[1:].mean(), abs=1e-5)
    # Occlusion's first deletion is, by construction, the single most damaging one.
    singles = curves[(curves["curve"] == "deletion") & (curves["text_index"] == 0) & (curves["k"] == 1)]
    assert singles.set_index("method")["value"]["occlusion"] == pytest.approx(singles["value"].min(), abs=1e-5)
    assert list(result.summary().columns) == ["deletion_aopc", "insertion_aopc"]
    assert len(result.figure().data) == 2 * 3


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_attention_methods_run_on_every_architecture(model_type):
    model = tiny(model_type)
    attr = wb.attribute(model, padded_ids(), target=1, method=list(ATTENTION_METHOD_NAMES))
    for name in ATTENTION_METHOD_NAMES:
        scores = attr[name]
        assert scores.shape == (2, 6) and torch.isfinite(scores).all(), name
        assert torch.all(scores[1, 4:] == 0), f"{name} gives padding a score"
        assert torch.all(scores >= 0), name
    # Rollout is a distribution over the input tokens.
    torch.testing.assert_close(attr["attention_rollout"].sum(1), torch.ones(2), atol=1e-5, rtol=0)
    # Raw attention is the pattern row the head reads, averaged over heads, at the last layer.
    _, cache = model.run_with_cache(padded_ids(), names_filter="blocks.1.attn.hook_pattern")
    query = 5 if model.classifier_position == "last" else 0
    pattern = cache["blocks.1.attn.hook_pattern"][0, :, query, -6:]  # Transformer-XL: memory keys come first
    torch.testing.assert_close(attr["attention"][0], pattern.mean(0))
    assert not any(point.is_active for point in model.hook_points().values())


def test_direct_logit_attribution_adds_up_to_the_logit():
    model = tiny("gpt2", task="causal_lm")
    inputs = padded_ids()
    frame = wb.attribution.direct_logit_attribution(model, inputs, token=7)
    assert len(frame) == 2 + 2 * (4 + 2) + 1  # embeddings, 4 heads + bias + MLP per layer, the LN bias
    with torch.no_grad():
        logit = model(**inputs).logits[0, 5, 7].item()
    assert frame["value"].sum() == pytest.approx(logit, abs=1e-4)
    assert set(frame[frame["component"] == "head"]["head"]) == {0, 1, 2, 3}
    with pytest.raises(ValueError, match="pre-norm"):
        wb.attribution.direct_logit_attribution(tiny("bert", task="masked_lm"), inputs, token=7)


PRE_NORM_LMS = [t for t in architectures_with("causal_lm") if t not in ("openai-gpt", "transfo-xl", "xlnet", "xlm")]


@pytest.mark.parametrize("model_type", PRE_NORM_LMS)
def test_direct_logit_attribution_adds_up_to_the_logit_of_every_pre_norm_decoder(model_type):
    # RMSNorm (no centring, Gemma's (1 + w)), grouped-query heads, parallel blocks, norms after the sublayers.
    grouped = {"n_kv_heads": 2} if has_field(model_type, "n_kv_heads") else {}
    model = tiny_model(model_type, "causal_lm", perturb=0.1, **grouped)
    inputs = padded_ids()
    frame = wb.attribution.direct_logit_attribution(model, inputs, token=7)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=lambda name: name.startswith("hook_logits"))
    uncapped = "hook_logits_uncapped" if "hook_logits_uncapped" in cache else "hook_logits"
    logit = cache[uncapped][0, 5, 7].item()
    assert frame["value"].sum() == pytest.approx(logit, abs=1e-4)
    heads = frame[frame["component"] == "head"]
    assert heads.empty or set(heads["head"]) == {0, 1, 2, 3}  # one row per query head


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z"])
def test_layer_integrated_gradients_at_a_hook_point_is_complete(hook):
    model = tiny("bert")
    inputs = padded_ids()
    scores = wb.attribution.layer_attribute(model, inputs, target=2, hook=hook, n_steps=300)
    base = wb.attribution.baseline_ids(model, inputs["input_ids"])
    # Completeness at a layer: f(x) minus f(x with that layer's activation taken from the baseline run)
    # (for a full residual state that is f(baseline); for one sublayer the rest still comes from x).
    _, base_cache = model.run_with_cache({"input_ids": base, "attention_mask": inputs["attention_mask"]},
                                         names_filter=hook)
    with torch.no_grad():
        at_input = model(**inputs).logits[:, 2]
        at_baseline_layer = model.run_with_hooks(
            inputs, fwd_hooks=[(hook, lambda act, h: base_cache[hook])]).logits[:, 2]
    difference = at_input - at_baseline_layer
    assert scores.shape == ((2, 6) if hook.endswith("resid_post") else (2, 6, 4))
    total = scores.flatten(1).sum(1)
    assert torch.allclose(total, difference, atol=0.02 * difference.abs().max().item() + 1e-3)
