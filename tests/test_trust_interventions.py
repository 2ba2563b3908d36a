"""API-level checks of the interventions that can fail: nothing patched gives 0, everything patched gives 1
(through ``activation_patching`` itself, by position and by head, on every architecture and on MiniLM), and
attribution patching agrees with exact activation patching: equal in the limit of a small corruption (the
error shrinks in proportion to it) and rank-correlated over MiniLM's heads on a real minimal pair."""

from __future__ import annotations

import pytest
import torch
from tiny_hf import architectures_with, clean_and_corrupted, tiny_classifier
from tiny_hf import logit_margin as METRIC

import workbench as wb
from workbench import interventions as iv

ARCHITECTURES = architectures_with("sequence_classification")

CORRUPTED_POSITION = 2  # clean_and_corrupted() changes this token
CORRUPTED_HEAD = 2


def corrupt_head(z, hook):
    """A corruption that lives in one head's output only: patching that head undoes all of it."""
    z = z.clone()
    z[:, :, CORRUPTED_HEAD] += 1.0
    return z


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_nothing_patched_gives_0_and_everything_patched_gives_1_by_position(model_type):
    """At layer 0's residual input the runs differ only at the changed token: patching it is patching
    everything that differs (1), patching any other position patches nothing (0). Float64 makes it exact."""
    model = tiny_classifier(model_type).double()
    clean, corrupted = clean_and_corrupted()
    result = iv.activation_patching(model, clean, corrupted, METRIC, hook="hook_resid_pre", progress=False)
    first = result.matrix().loc[0]
    assert first[CORRUPTED_POSITION] == pytest.approx(1.0, abs=1e-9)
    assert first.drop(CORRUPTED_POSITION).abs().max() < 1e-9
    if model_type in ("gpt2", "openai-gpt", "transfo-xl"):  # causal: states before the change are equal
        assert result.matrix().loc[:, : CORRUPTED_POSITION - 1].abs().max().max() < 1e-9


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_nothing_patched_gives_0_and_everything_patched_gives_1_by_head(model_type):
    """The corrupted run differs from the clean one in one head of the last layer (a corruption hook):
    patching that head gives 1, every other head (and every head of layer 0) gives 0."""
    model = tiny_classifier(model_type).double()
    clean, _ = clean_and_corrupted()
    result = iv.activation_patching(
        model,
        clean,
        clean,
        METRIC,
        by="head",
        progress=False,
        corruption_hooks=[("blocks.1.attn.hook_z", corrupt_head)],
    )
    matrix = result.matrix()
    assert matrix.shape == (2, 4)
    assert matrix.loc[1, CORRUPTED_HEAD] == pytest.approx(1.0, abs=1e-9)
    others = matrix.to_numpy().copy()
    others[1, CORRUPTED_HEAD] = 0.0
    assert abs(others).max() < 1e-9


def test_nothing_and_everything_on_minilm():
    model = wb.load("minilm", device="cpu")
    clean, corrupted = "The doctor said that she would call back.", "The doctor said that he would call back."
    direction = _final_mean(model, clean) - _final_mean(model, corrupted)

    def metric(out):
        return out.last_hidden_state.mean(1) @ direction

    position = model.to_str_tokens(clean).index("she")
    by_pos = iv.activation_patching(model, clean, corrupted, metric, hook="hook_resid_pre", progress=False)
    first = by_pos.matrix().loc[0]
    assert first[position] == pytest.approx(1.0, abs=1e-4)
    assert first.drop(position).abs().max() < 1e-4
    by_head = iv.activation_patching(
        model,
        clean,
        clean,
        metric,
        by="head",
        progress=False,
        corruption_hooks=[("blocks.5.attn.hook_z", corrupt_head)],
    )
    matrix = by_head.matrix().to_numpy().copy()
    assert matrix.shape == (6, 12)
    assert matrix[5, CORRUPTED_HEAD] == pytest.approx(1.0, abs=1e-4)
    matrix[5, CORRUPTED_HEAD] = 0.0
    assert abs(matrix).max() < 1e-4


def _final_mean(model, text):
    with torch.no_grad():
        return model.run_with_hooks(text).last_hidden_state[0].mean(0)


def _embedding_nudge(eps: float, d_model: int):
    direction = torch.randn(d_model, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def nudge(embed, hook):
        embed = embed.clone()
        embed[:, CORRUPTED_POSITION] += eps * direction
        return embed

    return [("hook_embed", nudge)]


@pytest.mark.parametrize("model_type", ARCHITECTURES)
@pytest.mark.parametrize(("hook", "by"), [("hook_resid_pre", "pos"), ("attn.hook_z", "head")])
def test_attribution_patching_equals_exact_patching_in_the_limit_of_a_small_corruption(model_type, hook, by):
    """The gradient estimate is first order: its error (normalized units, every layer and slot) shrinks in
    proportion to the corruption, 10x smaller corruption -> about 10x smaller error, and is small at 1e-5.
    (The constant is the model's curvature: measured at 1e-4, 3e-4 for Llama, 1e-4 for GPT-2, 9e-3 for the
    tiny GPT-NeoX, each 10x less at 1e-5.)"""
    model = tiny_classifier(model_type).double()
    clean, _ = clean_and_corrupted()
    d_model = model.run_with_cache(clean, names_filter="hook_embed")[1]["hook_embed"].shape[-1]
    errors = []
    for eps in (1e-4, 1e-5):
        hooks = _embedding_nudge(eps, d_model)
        exact = iv.activation_patching(
            model, clean, clean, METRIC, hook=hook, by=by, corruption_hooks=hooks, progress=False
        )
        estimate = iv.attribution_patching(
            model, clean, clean, METRIC, hook=hook, by=by, corruption_hooks=hooks
        )
        assert estimate.corrupted_metric == pytest.approx(exact.corrupted_metric, abs=1e-12)
        errors.append((exact.matrix() - estimate.matrix()).abs().to_numpy().max())
    assert errors[1] < 0.15 * errors[0], f"the error does not shrink with the corruption: {errors}"
    assert errors[1] < 5e-3


def test_attribution_patching_ranks_minilm_heads_like_exact_patching():
    """On a real minimal pair (she/he) with a linear read-out of the final states, the estimate ranks the 72
    heads as exact patching does (Spearman > 0.95; measured 0.999) and is within 0.05 of it everywhere
    (measured 0.009)."""
    model = wb.load("minilm", device="cpu")
    clean = "The doctor said that she would call back tomorrow."
    corrupted = "The doctor said that he would call back tomorrow."
    direction = _final_mean(model, clean) - _final_mean(model, corrupted)

    def metric(out):
        return out.last_hidden_state.mean(1) @ direction

    exact = iv.activation_patching(model, clean, corrupted, metric, by="head", progress=False)
    estimate = iv.attribution_patching(model, clean, corrupted, metric, by="head")
    assert len(exact.frame) == len(estimate.frame) == 6 * 12
    assert exact.frame.value.abs().max() > 0.1, "the pair must have effects to rank"
    rho = exact.frame.value.corr(estimate.frame.value, method="spearman")
    assert rho > 0.95, f"Spearman {rho:.3f}"
    assert (exact.frame.value - estimate.frame.value).abs().max() < 0.05


def test_a_double_precision_model_keeps_double_precision_metrics():
    """Metrics were rounded to float32, so small effects on a float64 model lost their precision (the error
    of the small-corruption check stopped shrinking below 1e-3)."""
    model = tiny_classifier("gpt2").double()
    clean, corrupted = clean_and_corrupted()
    result = iv.activation_patching(model, clean, corrupted, METRIC, progress=False)
    with torch.no_grad():
        expected = METRIC(model(clean)).item()
    assert result.clean_metric == expected


def test_attribution_patching_by_head_needs_a_per_head_hook():
    model = tiny_classifier("bert")
    clean, corrupted = clean_and_corrupted()
    with pytest.raises(ValueError, match="per-head hook"):
        iv.attribution_patching(model, clean, corrupted, METRIC, hook="hook_resid_post", by="head")


@pytest.mark.parametrize("model_type", ARCHITECTURES)
def test_causal_tracing_runs_on_every_architecture(model_type):
    """Transformer-XL's adaptive embeddings have no ``.weight``: causal tracing raised AttributeError there.
    The noise is scaled by the std of what hook_embed sees; restoring every noised state is not asserted
    (states mix), but restoring the last layer's state the classifier reads restores the clean run."""
    model = tiny_classifier(model_type)
    clean, _ = clean_and_corrupted()
    result = iv.causal_tracing(
        model, clean, METRIC, noised_positions=[CORRUPTED_POSITION], samples=2, progress=False
    )
    assert result.matrix().shape == (2, 7)
    read = -1 if model.classifier_position == "last" else 0
    assert result.matrix().loc[1].iloc[read] == pytest.approx(1.0, abs=1e-4)
    with torch.no_grad():
        every_token = model.embed(torch.arange(model.config.vocab_size)[None])
    assert result.extra["noise_std"] == pytest.approx(3.0 * every_token.std().item(), rel=1e-5)
