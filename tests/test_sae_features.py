"""Feature-level analysis with sparse dictionaries (workbench.sae): steering and ablation in any run and in
generation, attribution to features and attribution patching against exact computations, direct logit
effects by hand, and the feature dashboard."""

from __future__ import annotations

import math

import pytest
import torch

import workbench as wb
from workbench import sae, viz

TEXTS = [
    "The cat sat on the mat.",
    "A dog ran in the park today.",
    "She sells sea shells by the sea shore.",
]
CLEAN, CORRUPTED = "The cat sat on the mat.", "The dog sat on the mat."  # same length in the tiny tokenizer
HOOK = "blocks.0.hook_resid_post"
ACTS = f"{HOOK}.sae.hook_feature_acts"


@pytest.fixture(scope="module")
def lm():
    return wb.zoo.tiny("gpt2", task="causal_lm", device="cpu")


def random_dictionary(
    d_in: int, d_sae: int = 64, kind: str = "relu", decoder_scale: float = 1.0, seed: int = 0
):
    """A dictionary at HOOK with random parameters (biases included), so many features fire."""
    cfg = sae.SAEConfig(d_in=d_in, d_sae=d_sae, kind=kind, k=8 if kind == "topk" else None, hook_name=HOOK)
    dictionary = sae.SparseAutoencoder(cfg, seed=seed)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for parameter in dictionary.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
        dictionary.W_dec.mul_(decoder_scale)
    return dictionary


def active_feature(acts: torch.Tensor) -> int:
    """The feature active at the most positions (so edits are visible)."""
    return int((acts > 0).flatten(0, -2).sum(0).argmax())


# Steering and ablation --------------------------------------------------------------------------------------
def test_ablating_or_steering_a_feature_moves_the_activation_by_its_decoder_direction(lm):
    d = random_dictionary(lm.config.d_model)
    _, clean = lm.run_with_cache(TEXTS, names_filter=HOOK)
    x = clean[HOOK]
    with torch.no_grad():
        acts = d.encode(x)
    f = active_feature(acts)
    by_hand = {
        "ablate": x - acts[..., f : f + 1] * d.W_dec[f],
        "add": x + 2.5 * d.W_dec[f],
        "set": x + (1.5 - acts[..., f : f + 1]) * d.W_dec[f],
        "scale": x + 2.0 * acts[..., f : f + 1] * d.W_dec[f],
    }
    runs = {
        "ablate": d.ablated(lm, f),
        "add": d.steered(lm, {f: 2.5}),
        "set": d.steered(lm, {f: 1.5}, mode="set"),
        "scale": d.steered(lm, {f: 3.0}, mode="scale"),
    }
    for name, block in runs.items():
        with block:
            _, cache = lm.run_with_cache(TEXTS, names_filter=[HOOK, ACTS])
        torch.testing.assert_close(cache[HOOK], by_hand[name].detach(), rtol=1e-5, atol=1e-5, msg=name)
    ablated = cache[ACTS]  # the last block (scale): only feature f changed
    others = torch.arange(d.cfg.d_sae) != f
    torch.testing.assert_close(ablated[..., others], acts[..., others])
    assert not any(".sae." in name for name in lm.hook_names)


def test_steering_with_zero_is_a_no_op_and_steering_works_in_generate_and_run_with_hooks(lm):
    d = random_dictionary(lm.config.d_model)
    ids = lm.tokenize(TEXTS)
    clean = lm(**ids).logits
    with d.steered(lm, {3: 0.0, 5: 0.0}):
        torch.testing.assert_close(lm(**ids).logits, clean, rtol=1e-5, atol=1e-5)
    with d.steered(lm, {3: 1.0}, mode="scale"):
        torch.testing.assert_close(lm(**ids).logits, clean, rtol=1e-5, atol=1e-5)
    plain = lm.generate("The cat", max_new_tokens=6)
    with d.steered(lm, {7: 0.0}):
        assert lm.generate("The cat", max_new_tokens=6).text == plain.text

    # Steering while generating is adding value * W_dec[7] at the hook point at every step.
    direction = (40.0 * d.W_dec[7]).detach()
    by_hand = lm.generate("The cat", max_new_tokens=6, fwd_hooks=[(HOOK, lambda x, hook: x + direction)])
    with d.steered(lm, {7: 40.0}):
        steered = lm.generate("The cat", max_new_tokens=6)
        hooked = lm.run_with_hooks(
            TEXTS, fwd_hooks=[("blocks.1.hook_resid_post", lambda x, hook: None)]
        ).logits
    assert steered.text == by_hand.text and steered.text != plain.text
    expected = lm.run_with_hooks(TEXTS, fwd_hooks=[(HOOK, lambda x, hook: x + direction)]).logits
    torch.testing.assert_close(hooked, expected, rtol=1e-4, atol=1e-4)


def test_steering_refuses_bad_modes_and_features(lm):
    d = random_dictionary(lm.config.d_model)
    with pytest.raises(ValueError, match="mode='clamp'"), d.steered(lm, {1: 1.0}, mode="clamp"):
        pass
    with pytest.raises(IndexError, match=r"\[0, 64\)"), d.ablated(lm, [64]):
        pass
    with pytest.raises(TypeError, match="mapping"), d.steered(lm, [1, 2]):
        pass


# Attribution to features -------------------------------------------------------------------------------------
def test_gradient_x_activation_sums_to_the_first_order_prediction_of_a_linear_target(lm):
    """A target linear in the hooked activation (error term held): the scores add up exactly to the
    target's change when every feature is ablated."""
    d = random_dictionary(lm.config.d_model, kind="topk")
    v = torch.randn(lm.config.d_model, generator=torch.Generator().manual_seed(5))
    target = wb.attribution.activation_target(HOOK, lambda a: (a @ v).sum(-1))
    result = d.feature_attribution(lm, TEXTS, target)
    assert result.scores.shape == (3, lm.tokenize(TEXTS)["input_ids"].shape[1], d.cfg.d_sae)
    seen = {}
    with d.ablated(lm, range(d.cfg.d_sae)):
        lm.run_with_hooks(TEXTS, fwd_hooks=[(HOOK, lambda a, hook: seen.setdefault("a", a))])
    mask = lm.tokenize(TEXTS)["attention_mask"][..., None]
    ablated = ((seen["a"] @ v)[..., None] * mask).sum((1, 2))
    full = ((lm.run_with_cache(TEXTS, names_filter=HOOK)[1][HOOK] @ v)[..., None] * mask).sum((1, 2))
    torch.testing.assert_close(result.scores.sum((1, 2)), (full - ablated).detach(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(
        result.target_values, (lm.run_with_cache(TEXTS, names_filter=HOOK)[1][HOOK] @ v).sum(-1)
    )
    assert (result.scores[mask[..., 0] == 0] == 0).all()
    top = result.top(5)
    assert len(top) == 5 and top["score"].abs().is_monotonic_decreasing


def test_attribution_patching_matches_exact_feature_patching_for_small_changes(lm):
    """With small decoder rows every single-feature patch is a small change: the first-order estimate
    must match patching the feature exactly (clean value into the corrupted run, error term on)."""
    d = random_dictionary(lm.config.d_model, decoder_scale=0.02)
    a_id, b_id = 300, 301

    def metric(out):
        return out.logits[:, -1, a_id] - out.logits[:, -1, b_id]

    result = d.attribution_patching(lm, CLEAN, CORRUPTED, metric)
    ids = lm.tokenize(CORRUPTED)["input_ids"]
    base = float(metric(lm(ids)).detach())
    assert float(result.target_values[0]) == pytest.approx(base, rel=1e-4)
    checked = 0
    for row in result.top(6).itertuples():
        if row.activation == row.clean_activation:
            continue

        def patch(acts, hook, p=row.position, f=row.feature, value=row.clean_activation):
            acts = acts.clone()
            acts[0, p, f] = value
            return acts

        with d.spliced(lm, error_term=True):
            exact = float(metric(lm.run_with_hooks(ids, fwd_hooks=[(ACTS, patch)])).detach()) - base
        assert row.score == pytest.approx(exact, rel=0.05, abs=1e-6), (row.position, row.feature)
        checked += 1
    assert checked >= 3


def test_attribution_patching_needs_inputs_of_the_same_length(lm):
    d = random_dictionary(lm.config.d_model)
    with pytest.raises(ValueError, match="same positions"):
        d.attribution_patching(lm, "The cat", "The cat sat", lambda out: out.logits[:, -1, 0])


# Direct logit effects -----------------------------------------------------------------------------------------
def test_logit_effects_of_a_pre_norm_model_equal_the_hand_computation(lm):
    d = random_dictionary(lm.config.d_model)
    frame = d.logit_effects(lm, k=4, features=[2, 9])
    assert len(frame) == 2 * 2 * 4 and "frozen at 1" in frame.attrs["note"]
    w, W_U = lm.ln_final.weight.detach(), lm.unembed.weight.detach()
    for feature in (2, 9):
        row = d.W_dec[feature].detach()
        by_hand = (w * (row - row.mean())) @ W_U.T  # [vocab]
        got = frame[(frame["feature"] == feature) & (frame["side"] == "top")]
        assert got["token_id"].tolist() == by_hand.topk(4).indices.tolist()
        torch.testing.assert_close(
            torch.tensor(got["effect"].tolist()), by_hand.topk(4).values, rtol=1e-4, atol=1e-5
        )
        low = frame[(frame["feature"] == feature) & (frame["side"] == "bottom")]
        assert low["token_id"].tolist() == (-by_hand).topk(4).indices.tolist()


def test_logit_effects_through_a_masked_lm_head_and_without_an_unembedding():
    mlm = wb.zoo.tiny("bert", task="masked_lm", device="cpu")
    d = random_dictionary(mlm.config.d_model)
    frame = d.logit_effects(mlm, k=3, features=[1])
    rows = d.W_dec[[1]].detach()
    by_hand = (mlm.decode_residual(rows) - mlm.decode_residual(torch.zeros_like(rows)))[0]
    top = frame[frame["side"] == "top"]
    assert top["token_id"].tolist() == by_hand.topk(3).indices.tolist()
    assert "nonlinear" in frame.attrs["note"]
    with pytest.raises(ValueError, match="no unembedding"):
        d.logit_effects(wb.zoo.tiny("bert", task="base", device="cpu"))
    wrong = sae.SparseAutoencoder(sae.SAEConfig(d_in=7, d_sae=4, hook_name=HOOK))
    with pytest.raises(ValueError, match="d_out=7"):
        wrong.logit_effects(mlm)


# The dashboard ----------------------------------------------------------------------------------------------
def test_feature_dashboard_builds_names_its_data_and_counts_the_examples(lm):
    d = sae.train(lm, HOOK, TEXTS * 4, d_sae=32, kind="topk", k=4, steps=3, batch_size=16, progress=False)
    examples = d.top_examples(lm, TEXTS, n=5)
    feature = int(examples["feature"].iloc[0])
    view = viz.feature_dashboard(d, examples, feature, model=lm, data="toy sentences", split="test")
    histogram = view.figure(0)
    title = histogram.layout.title.text
    assert "gpt2 (random stand-in)" in title and "toy sentences (test)" in title and "n=3 texts" in title
    assert f"{examples.attrs['tokens']} tokens" in title
    assert sum(histogram.data[0].y) == (examples["feature"] == feature).sum()
    assert len(view.figures()) == 2 and "direct logit effects" in view.figure(1).layout.title.text
    page = view.to_html()
    assert 'data-wb-view="feature_dashboard"' in page and "random stand-in" in page
    coloured = 'font-weight:bold" title="activation '
    assert page.count(coloured) == (examples["feature"] == feature).sum()  # one coloured token per example
    without_model = viz.feature_dashboard(d, examples, feature)  # the label then comes from the dictionary
    assert "gpt2 (random stand-in)" in without_model.figure(0).layout.title.text
    assert len(without_model.figures()) == 1  # no model: no logit effects
    other = int(examples["feature"].unique()[-1])
    view.controls["feature"].value = other
    assert sum(view.figure(0).data[0].y) == (examples["feature"] == other).sum()
    assert math.isclose(view.figure_widgets[0].data[0].y.sum(), (examples["feature"] == other).sum())
    with pytest.raises(ValueError, match="top_examples"):
        viz.feature_dashboard(d, examples.drop(columns=["token"]), feature)
