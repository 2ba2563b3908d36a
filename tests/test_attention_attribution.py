"""workbench.attribution.attention against the plain references of attention_reference.py and hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from attention_reference import flow as ref_flow
from attention_reference import flow_networkx as ref_flow_networkx
from attention_reference import grad_attention as ref_grad_attention
from attention_reference import raw_attention as ref_raw_attention
from attention_reference import rollout as ref_rollout

from workbench.attribution.attention import (
    ATTENTION_METHODS,
    attention_flow,
    attention_rollout,
    grad_attention,
    layer_attention_matrices,
    raw_attention,
)

N_LAYERS, N_HEADS, N_POS = 3, 2, 5
QUERIES = [0, 2]
MASK = np.array([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])  # the second sequence has two padding positions


def random_patterns(seed=0, mask=None, causal=False, leak=False, shape=(N_LAYERS, 2, N_HEADS, N_POS, N_POS)):
    """Random row-stochastic attention [layer, batch, head, pos, pos] (float64).

    With ``mask``, real queries give padding keys no attention (as a masked softmax does) unless ``leak``;
    padding queries attend anywhere. ``causal``: each query attends to itself and earlier keys only.
    """
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(*shape, generator=generator, dtype=torch.float64) * 2
    n = shape[-1]
    if causal:
        scores = scores.masked_fill(torch.ones(n, n).triu(1).bool(), float("-inf"))
    if mask is not None and not leak:
        keys_padded = torch.as_tensor(mask == 0)[None, :, None, None, :]
        scores = scores.masked_fill(keys_padded, float("-inf"))
    return scores.softmax(-1)


@pytest.fixture
def patterns():
    return random_patterns(0, MASK)


def assert_close(actual, expected, atol=1e-10):
    np.testing.assert_allclose(
        torch.as_tensor(actual).detach().numpy(), np.asarray(expected), rtol=0, atol=atol
    )


# Against the references -------------------------------------------------------------------------------


@pytest.mark.parametrize("layer", [0, 1, -1])
@pytest.mark.parametrize("head", [None, 0, 1])
def test_raw_attention_matches_reference(patterns, layer, head):
    expected = ref_raw_attention(patterns.numpy(), QUERIES, layer, head, MASK)
    assert_close(raw_attention(patterns, QUERIES, layer, head, attention_mask=MASK), expected)


@pytest.mark.parametrize("add_residual", [True, False])
@pytest.mark.parametrize("leak", [False, True])
def test_rollout_matches_reference(add_residual, leak):
    patterns = random_patterns(1, MASK, leak=leak)
    expected = ref_rollout(patterns.numpy(), QUERIES, MASK, add_residual)
    assert_close(attention_rollout(patterns, QUERIES, MASK, add_residual), expected)


def test_rollout_without_mask_and_causal_matches_reference():
    patterns = random_patterns(2, causal=True)
    queries = [N_POS - 1, N_POS - 2]
    assert_close(attention_rollout(patterns, queries), ref_rollout(patterns.numpy(), queries))


@pytest.mark.parametrize("add_residual", [True, False])
@pytest.mark.parametrize("leak", [False, True])
def test_flow_matches_reference(add_residual, leak):
    patterns = random_patterns(3, MASK, leak=leak)
    expected = ref_flow(patterns.numpy(), QUERIES, MASK, add_residual)
    assert_close(attention_flow(patterns, QUERIES, MASK, add_residual), expected)


def test_flow_causal_matches_reference():
    patterns = random_patterns(4, causal=True)
    queries = [N_POS - 1, 1]
    assert_close(attention_flow(patterns, queries), ref_flow(patterns.numpy(), queries))


def test_flow_matches_networkx():
    pytest.importorskip("networkx")
    six_mask = np.array([[1] * 6, [1, 1, 1, 1, 0, 0]])
    for seed, mask, shape in [
        (10, MASK, None),
        (11, six_mask, (4, 2, 3, 6, 6)),
        (12, six_mask, (2, 2, 1, 6, 6)),
    ]:
        patterns = random_patterns(seed, mask, shape=shape or (N_LAYERS, 2, N_HEADS, N_POS, N_POS))
        expected = ref_flow_networkx(patterns.numpy(), QUERIES, mask)
        assert_close(attention_flow(patterns, QUERIES, mask), expected)
        # The two references agree with each other too.
        assert_close(ref_flow(patterns.numpy(), QUERIES, mask), expected)


@pytest.mark.parametrize("layer", [None, 0, -1])
def test_grad_attention_matches_reference(patterns, layer):
    gradients = torch.randn(patterns.shape, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expected = ref_grad_attention(patterns.numpy(), gradients.numpy(), QUERIES, layer, MASK)
    assert_close(grad_attention(patterns, gradients, QUERIES, layer, attention_mask=MASK), expected)


def test_grad_attention_with_autograd_gradients(patterns):
    """Gradients of a target that is linear in the patterns are its weights: check the clamp and the mean."""
    weights = torch.randn(patterns.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    leaf = patterns.clone().requires_grad_(True)
    (leaf * weights).sum().backward()
    expected = (patterns * weights).clamp(min=0).mean(dim=(0, 2))[torch.arange(2), torch.tensor(QUERIES)]
    expected = expected * torch.as_tensor(MASK)
    assert_close(grad_attention(patterns, leaf.grad, QUERIES, attention_mask=MASK), expected)


# Hand-computable cases --------------------------------------------------------------------------------


def test_identity_attention_is_one_hot_at_the_query():
    patterns = torch.eye(N_POS, dtype=torch.float64).expand(N_LAYERS, 2, N_HEADS, N_POS, N_POS)
    one_hot = np.eye(N_POS)[QUERIES]
    for add_residual in (True, False):
        assert_close(attention_rollout(patterns, QUERIES, add_residual=add_residual), one_hot)
        assert_close(attention_flow(patterns, QUERIES, add_residual=add_residual), one_hot)
    assert_close(raw_attention(patterns, QUERIES), one_hot)


def test_uniform_attention():
    n, n_layers = N_POS, N_LAYERS
    patterns = torch.full((n_layers, 2, N_HEADS, n, n), 1.0 / n, dtype=torch.float64)
    assert_close(raw_attention(patterns, QUERIES), np.full((2, n), 1.0 / n))
    # A = 0.5 J/n + 0.5 I, and J/n is idempotent: A^L = (1 - 0.5^L) J/n + 0.5^L I.
    expected = np.full((2, n), (1 - 0.5**n_layers) / n) + 0.5**n_layers * np.eye(n)[QUERIES]
    assert_close(attention_rollout(patterns, QUERIES), expected)
    assert_close(attention_rollout(patterns, QUERIES, add_residual=False), np.full((2, n), 1.0 / n))
    # One layer: the flow from j is the single edge's capacity A[q, j].
    assert_close(attention_flow(patterns[:1], QUERIES), 0.5 / n + 0.5 * np.eye(n)[QUERIES])


def test_one_layer_flow_equals_rollout_equals_the_query_row():
    patterns = random_patterns(7, MASK, shape=(1, 2, N_HEADS, N_POS, N_POS))
    rows = layer_attention_matrices(patterns, MASK)[0][torch.arange(2), torch.tensor(QUERIES)]
    assert_close(attention_rollout(patterns, QUERIES, MASK), rows)
    assert_close(attention_flow(patterns, QUERIES, MASK), rows)


def test_two_layer_example_of_the_module_docstring():
    w1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    w2 = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    patterns = torch.stack([w1, w2])[:, None, None]  # [layer=2, batch=1, head=1, 2, 2]
    assert_close(layer_attention_matrices(patterns)[:, 0], [[[1, 0], [0.5, 0.5]], [[0.5, 0.5], [0, 1]]], 1e-7)
    assert_close(raw_attention(patterns, [0]), [[0, 1]], 1e-7)
    assert_close(attention_rollout(patterns, [0]), [[0.75, 0.25]], 1e-7)
    assert_close(attention_flow(patterns, [0]), [[1.0, 0.5]], 1e-7)
    assert_close(attention_rollout(patterns, [0], add_residual=False), [[1, 0]], 1e-7)


def test_rollout_rows_sum_to_one_and_flow_is_at_most_one(patterns):
    assert_close(attention_rollout(patterns, QUERIES, MASK).sum(-1), [1.0, 1.0])
    flow = attention_flow(patterns, QUERIES, MASK)
    assert (flow >= 0).all() and (flow <= 1 + 1e-9).all()


# Padding ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["attention", "attention_rollout", "attention_flow", "grad_attention"])
def test_padding_gets_zero_and_does_not_leak(method):
    """Even when the patterns give padding attention (and padding queries attend to real tokens), padding
    keys score exactly 0, and the padded sequence scores as if it had been cut to its real tokens."""
    patterns = random_patterns(8, MASK, leak=True)
    gradients = torch.randn(patterns.shape, generator=torch.Generator().manual_seed(9), dtype=torch.float64)

    def run(p, g, queries, mask):
        if method == "grad_attention":
            return grad_attention(p, g, queries, attention_mask=mask)
        return ATTENTION_METHODS[method](p, queries, attention_mask=mask)

    scores = run(patterns, gradients, QUERIES, MASK)
    assert (scores[1, 3:] == 0).all()
    length = int(MASK[1].sum())
    cut = run(patterns[:, 1:, :, :length, :length], gradients[:, 1:, :, :length, :length], QUERIES[1:], None)
    if method == "attention":  # raw attention is not renormalized over the real keys
        cut = run(patterns[:, 1:, :, :length, :], gradients[:, 1:, :, :length, :], QUERIES[1:], None)[
            :, :length
        ]
    assert_close(scores[1:, :length], cut)
    # Changing anything in the padding rows and columns changes nothing.
    other = patterns.clone()
    other[:, 1, :, 3:, :] = 1.0
    other[:, 1, :, :, 3:] = 7.0
    assert_close(run(other, gradients, QUERIES, MASK), scores)


# Arguments --------------------------------------------------------------------------------------------


def test_query_position_forms(patterns):
    expected = attention_rollout(patterns, [4, 4])
    for queries in (4, -1, [4, -1], torch.tensor([4, 4]), np.array([-1, 4])):
        assert_close(attention_rollout(patterns, queries), expected)


def test_list_of_layers_float32_and_differentiable(patterns):
    layers = [p.float() for p in patterns]
    rollout = attention_rollout(layers, QUERIES)
    assert rollout.dtype == torch.float32 and rollout.shape == (2, N_POS)
    assert attention_flow(layers, QUERIES).dtype == torch.float32
    assert_close(rollout, attention_rollout(patterns, QUERIES), 1e-5)
    leaf = patterns.clone().requires_grad_(True)
    attention_rollout(leaf, QUERIES)[:, 1].sum().backward()
    assert leaf.grad is not None and leaf.grad.abs().sum() > 0


def test_methods_dict():
    assert set(ATTENTION_METHODS) == {"attention", "attention_rollout", "attention_flow", "grad_attention"}
    assert ATTENTION_METHODS["attention_flow"] is attention_flow


@pytest.mark.parametrize(
    "call, message",
    [
        (
            lambda p: attention_rollout(p[0], QUERIES),
            r"\[layer, batch, head, query_pos, key_pos\].*got shape \(2, 2, 5, 5\)",
        ),
        (lambda p: raw_attention(p[..., 0], QUERIES), r"5 dimensions"),
        (lambda p: attention_flow(p[..., :4], QUERIES), r"square attention.*query_pos=5, key_pos=4"),
        (lambda p: attention_rollout(p.long(), QUERIES), r"floating-point"),
        (lambda p: attention_rollout(p, [0, 5]), r"query position 5 \(sequence 1\) is out of range for 5"),
        (lambda p: attention_flow(p, [-6, 0]), r"query position -6 \(sequence 0\) is out of range"),
        (lambda p: raw_attention(p, [0, 1, 2]), r"one position per sequence, \[batch=2\]"),
        (lambda p: raw_attention(p, [0.0, 1.0]), r"must be integers"),
        (lambda p: attention_rollout(p, [0, 3], MASK), r"query position 3 of sequence 1 is padding"),
        (lambda p: attention_flow(p, [0, 1], MASK[:, :4]), r"attention_mask must be \[batch=2, key_pos=5\]"),
        (lambda p: attention_rollout(p, [0, 1], MASK * 2), r"only 0 \(padding\) and 1"),
        (lambda p: raw_attention(p, QUERIES, layer=3), r"layer 3 is out of range for 3 layers"),
        (lambda p: raw_attention(p, QUERIES, layer=-4), r"layer -4 is out of range"),
        (lambda p: grad_attention(p, p, QUERIES, layer=5), r"layer 5 is out of range for 3 layers"),
        (lambda p: raw_attention(p, QUERIES, head=2), r"head 2 is out of range for 2 heads"),
        (lambda p: raw_attention(p, QUERIES, layer=None), r"layer must be an int"),
        (lambda p: grad_attention(p, p[:2], QUERIES), r"gradients must have the shape of patterns"),
        (lambda p: attention_rollout([], QUERIES), r"empty list"),
    ],
)
def test_errors(patterns, call, message):
    with pytest.raises(ValueError, match=message):
        call(patterns)
