"""The shared parts of workbench.components, each against its formula: fused-weight rules (split on load, fused
on save), the sinusoids, the relative shift and the sequence summary."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.components.fused import FusedSplit, HeadShapedProjections, join_fused, split_fused
from workbench.components.positions import distance_sinusoids, inverse_frequencies, rel_shift, sinusoid_table
from workbench.components.summary import SequenceSummary

# Fused weights -----------------------------------------------------------------------------------------


def test_fused_split_cuts_gpt2_c_attn_along_the_last_dimension_and_joins_it_back():
    rule = FusedSplit("attn.c_attn", dim=-1)
    weight, bias = torch.randn(4, 12), torch.randn(12)
    state = {"h.0.attn.c_attn.weight": weight, "h.0.attn.c_attn.bias": bias, "h.0.ln_1.weight": torch.ones(4)}
    split = rule.split(state)
    assert set(split) == {f"h.0.attn.c_attn.{n}.{p}" for n in "qkv" for p in ("weight", "bias")} | {
        "h.0.ln_1.weight"
    }
    assert torch.equal(split["h.0.attn.c_attn.k.weight"], weight[:, 4:8])
    assert torch.equal(split["h.0.attn.c_attn.v.bias"], bias[8:])
    joined = rule.join(split)
    assert joined.keys() == state.keys()
    assert all(torch.equal(joined[key], state[key]) for key in state)


def test_fused_split_cuts_transfo_xl_qkv_net_along_the_first_dimension():
    rule = FusedSplit("dec_attn.qkv_net", dim=0, params=("weight",))
    weight = torch.randn(3 * 6, 5)
    split = rule.split({"layers.1.dec_attn.qkv_net.weight": weight})
    assert torch.equal(split["layers.1.dec_attn.qkv_net.q.weight"], weight[:6])
    assert torch.equal(split["layers.1.dec_attn.qkv_net.v.weight"], weight[12:])
    assert torch.equal(rule.join(split)["layers.1.dec_attn.qkv_net.weight"], weight)


def test_fused_split_names_the_key_that_does_not_split_and_the_part_that_is_missing():
    rule = FusedSplit("attn.c_attn", dim=-1)
    with pytest.raises(wb.CheckpointError, match=r"h\.3\.attn\.c_attn\.weight has shape \(4, 10\)"):
        rule.split({"h.3.attn.c_attn.weight": torch.zeros(4, 10)})
    parts = rule.split({"h.0.attn.c_attn.weight": torch.zeros(4, 12)})
    del parts["h.0.attn.c_attn.v.weight"]
    with pytest.raises(wb.CheckpointError, match=r"h\.0\.attn\.c_attn\.v\.weight missing"):
        rule.join(parts)


def test_head_shaped_projections_are_linear_weights_and_back():
    rule = HeadShapedProjections("rel_attn", names=("q", "o"), outputs=("o",))
    q, o = torch.randn(8, 2, 4), torch.randn(8, 2, 4)
    split = split_fused([rule], {"layer.0.rel_attn.q": q, "layer.0.rel_attn.o": o, "mask_emb": torch.ones(1)})
    x = torch.randn(3, 8)
    # nn.Linear with the split weight computes Hugging Face's einsum("...d,dnh->...nh") for q ...
    expected_q = torch.einsum("bd,dnh->bnh", x, q).reshape(3, 8)
    assert torch.allclose(F.linear(x, split["layer.0.rel_attn.q.weight"]), expected_q, atol=1e-6)
    # ... and the output projection maps heads back to d_model (einsum("...nh,dnh->...d")).
    z = torch.randn(3, 2, 4)
    expected_o = torch.einsum("bnh,dnh->bd", z, o)
    assert torch.allclose(F.linear(z.flatten(1), split["layer.0.rel_attn.o.weight"]), expected_o, atol=1e-6)
    joined = join_fused([rule], split, SimpleNamespace(n_heads=2, d_head=4))
    assert joined.keys() == {"layer.0.rel_attn.q", "layer.0.rel_attn.o", "mask_emb"}
    assert torch.equal(joined["layer.0.rel_attn.q"], q) and torch.equal(joined["layer.0.rel_attn.o"], o)
    with pytest.raises(wb.CheckpointError, match=r"layer\.0\.rel_attn\.q has shape \(8, 8\)"):
        rule.split({"layer.0.rel_attn.q": torch.zeros(8, 8)})


# Positions ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(64, 32), (64, 17), (512, 768)])
def test_sinusoid_table_is_bitwise_hugging_faces_for_xlm_and_distilbert(shape):
    from transformers.models.distilbert.modeling_distilbert import create_sinusoidal_embeddings as distilbert
    from transformers.models.xlm.modeling_xlm import create_sinusoidal_embeddings as xlm

    n, dim = shape
    table = sinusoid_table(n, dim)
    assert torch.equal(table, xlm(n, dim, torch.empty(n, dim)))
    assert torch.equal(table, distilbert(n, dim, torch.empty(n, dim)))


def test_distance_sinusoids_follow_the_formula():
    distances = torch.tensor([3.0, 0.0, -2.0])
    table = distance_sinusoids(distances, inverse_frequencies(6))
    for row, d in enumerate(distances.tolist()):
        for k in range(3):
            angle = torch.tensor(d / 10000 ** (2 * k / 6))
            assert torch.allclose(table[row, k], angle.sin()) and torch.allclose(
                table[row, 3 + k], angle.cos()
            )


@pytest.mark.parametrize("query_len, rel_len, key_len", [(3, 8, 5), (4, 5, 4), (1, 6, 5)])
def test_rel_shift_reads_row_j_plus_query_len_minus_i(query_len, rel_len, key_len):
    scores = torch.randn(2, 3, query_len, rel_len)
    shifted = rel_shift(scores, key_len)
    assert shifted.shape == (2, 3, query_len, key_len)
    for i in range(query_len):
        for j in range(key_len):
            if j + query_len - i < rel_len:
                assert torch.equal(shifted[..., i, j], scores[..., i, j + query_len - i])
    with pytest.raises(ValueError, match=f"at most {rel_len - 1} keys"):
        rel_shift(scores, rel_len)


# Sequence summary ---------------------------------------------------------------------------------------


class _Head(SequenceSummary, nn.Module):
    summary_projection = "proj"

    def __init__(self, **fields):
        super().__init__()
        config = dict(
            d_model=4,
            num_labels=3,
            summary_type="first",
            summary_use_proj=True,
            summary_proj_to_labels=True,
            summary_activation="tanh",
            summary_first_dropout=0.0,
            summary_last_dropout=0.0,
        )
        self.init_summary(SimpleNamespace(**{**config, **fields}))


@pytest.mark.parametrize(
    "kind, pick",
    [
        ("first", lambda r: r[:, 0]),
        ("last", lambda r: r[:, -1]),
        ("cls_index", lambda r: r[:, -1]),
        ("mean", lambda r: r.mean(1)),
    ],
)
def test_sequence_summary_picks_projects_and_activates(kind, pick):
    head = _Head(summary_type=kind).eval()
    resid = torch.randn(2, 5, 4)
    assert torch.allclose(head.sequence_summary(resid), torch.tanh(head.proj(pick(resid))))
    plain = _Head(summary_type=kind, summary_use_proj=False, summary_activation="linear").eval()
    assert plain.proj is None and torch.equal(plain.sequence_summary(resid), pick(resid))
    assert _Head(summary_proj_to_labels=False).proj.out_features == 4


def test_sequence_summary_rejects_an_unknown_summary_type():
    with pytest.raises(ValueError, match="summary_type 'attn' is not supported"):
        _Head(summary_type="attn")
