"""Interventions on every registered architecture: activation patching, attribution patching, causal
tracing, ablation sweeps and steering."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import (
    TINY_SIZES,
    architectures_with,
    clean_and_corrupted,
    tiny_classifier,
    tiny_config,
    tiny_model,
)
from tiny_hf import logit_margin as METRIC

import workbench as wb
from workbench import interventions as iv

ARCHITECTURES = architectures_with("sequence_classification")


def test_every_registered_architecture_is_covered():
    """tiny_hf builds the tiny config of every classifier with the shared sizes (a new architecture that needs
    fields of its own gets them in tiny_hf.TINY_EXTRA)."""
    for model_type in ARCHITECTURES:
        config = tiny_config(model_type)
        for name in ("d_model", "n_layers", "n_heads", "vocab_size"):
            assert getattr(config, name) == TINY_SIZES[name], (model_type, name)


def read_position(model) -> int:
    """Where the classifier reads the last layer: the first token for encoders, the last for decoders."""
    return -1 if model.classifier_position == "last" else 0


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_activation_patching_restores_what_the_head_reads(model_type):
    model = tiny_classifier(model_type)
    clean, corrupted = clean_and_corrupted()
    result = iv.activation_patching(model, clean, corrupted, METRIC, hook="hook_resid_post", progress=False)
    assert list(result.frame.columns) == ["layer", "pos", "value"] and len(result.frame) == 2 * 7
    assert abs(result.clean_metric - result.corrupted_metric) > 1e-3
    last = result.matrix().loc[1]
    read = read_position(model) % 7
    assert abs(last[read] - 1.0) < 1e-4, "patching the state the head reads restores the clean output"
    others = last.drop(read)
    if model_type != "xlm":  # XLM's summary head reads the first token too, but see the assertion above
        assert others.abs().max() < 1e-4, "patching states the head does not read changes nothing"


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_patching_every_position_restores_the_clean_run_exactly(model_type):
    model = tiny_classifier(model_type)
    clean, corrupted = clean_and_corrupted()
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(clean, names_filter="blocks.0.hook_resid_pre")
        clean_value = METRIC(model(clean)).item()
        corrupted_value = METRIC(model(corrupted)).item()
        patched = METRIC(model.run_with_hooks(
            corrupted, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, hook: clean_cache[hook.name])])).item()
    assert abs(patched - clean_value) < 1e-5 and abs(clean_value - corrupted_value) > 1e-3


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_attribution_patching_agrees_with_exact_patching(model_type):
    """At the last layer the two agree on what matters: zero wherever the head does not read (exactly: the
    gradient there is 0) and the same sign where it reads. Elsewhere the estimate is first order, and on
    these random nonlinear models only its shape and normalization are asserted."""
    model = tiny_classifier(model_type)
    clean, corrupted = clean_and_corrupted()
    exact = iv.activation_patching(model, clean, corrupted, METRIC, hook="hook_resid_post", progress=False)
    estimate = iv.attribution_patching(model, clean, corrupted, METRIC, hook="hook_resid_post")
    assert list(estimate.frame.columns) == ["layer", "pos", "value"] and len(estimate.frame) == len(exact.frame)
    assert estimate.clean_metric == pytest.approx(exact.clean_metric, abs=1e-5)
    assert estimate.corrupted_metric == pytest.approx(exact.corrupted_metric, abs=1e-5)
    read = read_position(model) % 7
    last_exact, last_estimate = exact.matrix().loc[1], estimate.matrix().loc[1]
    assert (last_exact[read] > 0) == (last_estimate[read] > 0)
    if model_type != "xlm":
        assert last_estimate.drop(read).abs().max() < 1e-6


def test_attribution_patching_is_exact_when_the_metric_is_linear():
    """GPT has no final norm: its classifier is linear in the last layer's residual state, so there the
    gradient estimate equals exact patching (to float precision)."""
    model = tiny_classifier("openai-gpt")
    clean, corrupted = clean_and_corrupted()
    exact = iv.activation_patching(model, clean, corrupted, METRIC, hook="hook_resid_post", progress=False)
    estimate = iv.attribution_patching(model, clean, corrupted, METRIC, hook="hook_resid_post")
    last_exact = exact.matrix().loc[1].to_numpy()
    last_estimate = estimate.matrix().loc[1].to_numpy()
    assert abs(last_exact - last_estimate).max() < 1e-4
    assert abs(last_exact[-1] - 1.0) < 1e-4


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_head_patching_and_head_sweep(model_type):
    model = tiny_classifier(model_type)
    clean, corrupted = clean_and_corrupted()
    by_head = iv.activation_patching(model, clean, corrupted, METRIC, by="head", progress=False)
    assert list(by_head.frame.columns) == ["layer", "head", "value"] and len(by_head.frame) == 2 * 4
    sweep = iv.head_ablation_sweep(model, clean, METRIC, progress=False)
    assert sweep.shape == (2, 4)
    head_mask = torch.ones(2, 4)
    head_mask[1, 3] = 0
    with torch.no_grad():
        base = METRIC(model(clean)).item()
        masked = METRIC(model(clean, head_mask=head_mask)).item()
    assert abs(sweep.loc[1, 3] - (masked - base)) < 1e-5, "zero-ablating a head equals masking it with head_mask"


def test_mean_and_resample_ablation_by_hand():
    model = tiny_classifier("bert")
    reference = torch.randint(3, 60, (3, 7), generator=torch.Generator().manual_seed(5))
    inputs = torch.randint(3, 60, (2, 7), generator=torch.Generator().manual_seed(6))
    hook = "blocks.0.mlp.hook_post"
    _, ref_cache = model.run_with_cache(reference, names_filter=hook)
    mean = ref_cache[hook].mean((0, 1))
    with model.hooks(iv.ablation_hooks(model, hook, mode="mean", reference=reference, neurons=[0, 5])):
        _, cache = model.run_with_cache(inputs, names_filter=hook)
    torch.testing.assert_close(cache[hook][..., [0, 5]], mean[[0, 5]].expand(2, 7, 2))
    _, plain = model.run_with_cache(inputs, names_filter=hook)
    torch.testing.assert_close(cache[hook][..., 1:5], plain[hook][..., 1:5])
    with model.hooks(iv.ablation_hooks(model, hook, mode="resample", reference=reference, seed=0)):
        _, resampled = model.run_with_cache(inputs, names_filter=hook)
    assert any(torch.allclose(resampled[hook][0], ref_cache[hook][i]) for i in range(3))
    with model.hooks(iv.ablation_hooks(model, hook, positions=[2])):
        _, zeroed = model.run_with_cache(inputs, names_filter=hook)
    assert torch.all(zeroed[hook][:, 2] == 0) and torch.equal(zeroed[hook][:, 3], plain[hook][:, 3])


def test_causal_tracing_heatmap():
    model = tiny_classifier("gpt2")
    ids = torch.randint(3, 60, (1, 6), generator=torch.Generator().manual_seed(2))
    result = iv.causal_tracing(model, ids, METRIC, noised_positions=[1, 2], samples=2, progress=False)
    matrix = result.matrix()
    assert matrix.shape == (2, 6)
    assert abs(matrix.loc[1, 5] - 1.0) < 1e-4  # restoring the last state the head reads restores everything
    assert (matrix.loc[0, [0]] .abs() < 1e-4).all()  # before the noised tokens nothing was corrupted
    assert result.extra["noised_positions"] == [1, 2]
    assert result.figure().data[0].z.shape == (2, 6)


def test_steering_with_a_difference_of_means_moves_the_output():
    model = tiny_classifier("gpt2")
    positive = torch.randint(3, 30, (4, 6), generator=torch.Generator().manual_seed(3))
    negative = torch.randint(30, 60, (4, 6), generator=torch.Generator().manual_seed(4))
    vector = iv.difference_of_means(model, positive, negative, "blocks.0.hook_resid_post")
    assert vector.shape == (16,)
    hook = "blocks.0.hook_resid_post"
    _, positive_cache = model.run_with_cache(positive, names_filter=hook)
    with torch.no_grad():
        plain = model.run_with_hooks(negative).logits
        with iv.steer(model, hook, vector, scale=1.0):
            steered, steered_cache = model.run_with_cache(negative, names_filter=hook)
    # Steering by the difference of means moves the negative inputs' mean activation onto the positive mean.
    torch.testing.assert_close(steered_cache[hook].mean((0, 1)), positive_cache[hook].mean((0, 1)), atol=1e-5, rtol=0)
    assert (steered.logits - plain).abs().max() > 1e-3
    assert not any(point.is_active for point in model.hook_points().values())


def test_steering_acts_during_generation(tmp_path):
    from tiny_gpt2 import save_tiny_gpt2

    save_tiny_gpt2(tmp_path)
    lm = wb.load(tmp_path, device="cpu")
    target = lm.tokenizer.encode(" mat", add_special_tokens=False)[-1]
    hooks = iv.steering_hooks("blocks.1.hook_resid_post", lm.unembed.weight[target].detach(), scale=50.0)
    steered = lm.generate("The capital", max_new_tokens=5, stop_at_eos=False, fwd_hooks=hooks)
    assert steered.new_token_ids[0].count(target) >= 3


def test_errors_name_the_problem():
    model = tiny_classifier("bert")
    clean, _ = clean_and_corrupted(7)
    shorter, _ = clean_and_corrupted(5)
    with pytest.raises(ValueError, match="same token shape"):
        iv.activation_patching(model, clean, shorter, METRIC, progress=False)
    with pytest.raises(KeyError, match="not a hook point"):
        iv.activation_patching(model, clean, clean, METRIC, hook="hook_resid_middle", progress=False)
    with pytest.raises(ValueError, match="head 4"):
        iv.head_ablation_hooks(model, {1: [4]})
    with pytest.raises(ValueError, match="one value per sequence"):
        iv.activation_patching(model, clean, clean, lambda out: out.logits.sum(), progress=False)
    with pytest.raises(ValueError, match="nothing to restore"):
        iv.activation_patching(model, clean, clean, METRIC, progress=False)


def test_logit_difference_reads_language_model_logits():
    model = tiny_model("gpt2", "causal_lm")
    ids = torch.randint(3, 60, (2, 5))
    metric = iv.logit_difference(model, 7, 9)
    with torch.no_grad():
        logits = model(ids).logits
    torch.testing.assert_close(metric(model(ids)), logits[:, -1, 7] - logits[:, -1, 9])


@pytest.mark.parametrize("task", ["masked_lm", "causal_lm"])
def test_patching_runs_on_language_model_heads(task):
    model_type = "bert" if task == "masked_lm" else "gpt2"
    model = tiny_model(model_type, task, perturb=0.2)
    clean, corrupted = clean_and_corrupted()
    position = 4 if task == "masked_lm" else -1
    metric = iv.logit_difference(model, 11, 13, position=position)
    result = iv.activation_patching(model, clean, corrupted, metric, hook="hook_resid_post", progress=False)
    assert abs(result.matrix().loc[1, position % 7] - 1.0) < 1e-4
