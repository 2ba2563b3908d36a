"""The shared parts of workbench.components, each against its formula: fused-weight rules (split on load, fused
on save), the sinusoids, the relative shift, the sequence summary, RMSNorm and the gated MLP."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import workbench as wb
from workbench.components import GatedMLP, RMSNorm
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


# RMSNorm and the gated MLP ------------------------------------------------------------------------------


def test_rms_norm_follows_its_formula_and_llamas():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    norm = RMSNorm(6, eps=1e-6)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x = torch.randn(2, 3, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * norm.weight
    assert torch.allclose(norm(x), expected, atol=1e-6)
    llama = LlamaRMSNorm(6, eps=1e-6)
    llama.weight = norm.weight
    assert torch.equal(norm(x), llama(x))
    assert torch.equal(norm(x.half()), llama(x.half()))


def test_rms_norm_with_a_one_plus_w_weight_is_gemmas():
    from transformers.models.gemma.modeling_gemma import GemmaRMSNorm

    norm = RMSNorm(6, eps=1e-6, weight_offset=1.0)
    assert torch.equal(norm.weight, torch.zeros(6))  # (1 + 0): the identity scale
    with torch.no_grad():
        norm.weight.copy_(torch.randn(6))
    x = torch.randn(2, 3, 6)
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * (1 + norm.weight)
    assert torch.allclose(norm(x), expected, atol=1e-6)
    gemma = GemmaRMSNorm(6, eps=1e-6)
    gemma.weight = norm.weight
    assert torch.equal(norm(x), gemma(x))
    assert torch.equal(norm(x.bfloat16()), gemma(x.bfloat16()))


def test_rms_norm_hooks_read_and_patch_the_scale():
    norm = RMSNorm(4, eps=1e-5)
    x = torch.randn(2, 3, 4)
    seen = {}
    norm.hook_scale.add_hook(lambda tensor, hook: seen.setdefault("scale", tensor))
    out = norm(x)
    assert torch.allclose(seen["scale"], torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5))
    norm.hook_scale.remove_hooks()
    norm.hook_scale.add_hook(lambda tensor, hook: tensor * 2)
    assert torch.allclose(norm(x), out / 2, atol=1e-6)


def test_gated_mlp_follows_its_formula_and_llamas():
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    mlp = GatedMLP(8, 12, "silu")
    x = torch.randn(2, 3, 8)
    gate, linear = mlp.fc_gate(x), mlp.fc_in(x)
    expected = mlp.fc_out(F.silu(gate) * linear)
    seen = {}
    for name in ("hook_pre", "hook_pre_linear", "hook_post"):
        getattr(mlp, name).add_hook(lambda tensor, hook, name=name: seen.setdefault(name, tensor))
    assert torch.allclose(mlp(x), expected, atol=1e-6)
    assert torch.equal(seen["hook_pre"], gate) and torch.equal(seen["hook_pre_linear"], linear)
    assert torch.allclose(seen["hook_post"], F.silu(gate) * linear)
    llama = LlamaMLP(
        LlamaConfig(hidden_size=8, intermediate_size=12, hidden_act="silu", num_attention_heads=2)
    )
    llama.gate_proj, llama.up_proj, llama.down_proj = mlp.fc_gate, mlp.fc_in, mlp.fc_out
    assert torch.equal(mlp(x), llama(x))
    assert mlp.fc_gate.bias is None and GatedMLP(8, 12, "gelu", bias=True).fc_out.bias is not None


# Blocks -------------------------------------------------------------------------------------------------


def _hook_order(module: nn.Module) -> list[str]:
    return [name for name, child in module.named_modules() if isinstance(child, wb.HookPoint)]


def test_blocks_take_the_norm_as_a_parameter_and_register_hooks_in_forward_order():
    from workbench.components import MLP, Attention, PostNormBlock, PreNormBlock

    torch.manual_seed(0)
    attn, mlp = Attention(8, 2, 0.0), GatedMLP(8, 12, "silu")
    pre = PreNormBlock(attn, mlp, 8, 1e-6, 0.0, norm=lambda: RMSNorm(8, 1e-6)).eval()
    assert isinstance(pre.ln1, RMSNorm) and isinstance(pre.ln2, RMSNorm)
    order = _hook_order(pre)
    assert order.index("ln1.hook_normalized") < order.index("attn.hook_q")
    assert order.index("hook_resid_mid") < order.index("ln2.hook_scale") < order.index("mlp.hook_pre")
    x = torch.randn(2, 5, 8)
    mid = x + attn(pre.ln1(x))[0]
    assert torch.allclose(pre(x, None)[0], mid + mlp(pre.ln2(mid)), atol=1e-6)
    post = PostNormBlock(Attention(8, 2, 0.0), MLP(8, 12, "gelu"), 8, 1e-5, 0.0).eval()
    assert isinstance(post.ln1, wb.components.LayerNorm)
    order = _hook_order(post)
    assert order.index("hook_attn_out") < order.index("ln1.hook_scale") < order.index("hook_resid_mid")
    mid = post.ln1(x + post.attn(x)[0])
    assert torch.allclose(post(x, None)[0], post.ln2(mid + post.mlp(mid)), atol=1e-6)
    with pytest.raises(TypeError, match="abstract"):
        wb.components.ResidualBlock(attn, mlp, 8, 1e-5, 0.0)
