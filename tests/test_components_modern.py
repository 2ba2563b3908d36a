"""The parts of today's decoders in workbench.components, each against Hugging Face's own module or function on
random inputs (transformers 5.25, float32, max abs diff <= 1e-5): rotary positions with every scaling type,
partial rotary and both pair layouts; grouped-query attention with rotary positions, q/k norms, sliding windows,
soft-capping and the scale of Gemma 2; parallel and sandwich blocks; the gated MLP with a fused gate_up. Then
the hooks of these options, SDPA against the explicit softmax, the key/value cache, and the errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import (
    Gemma2Config,
    GPTNeoXConfig,
    LlamaConfig,
    Olmo2Config,
    Phi3Config,
    Qwen3Config,
)
from transformers.masking_utils import create_sliding_window_causal_mask
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS
from transformers.models.gemma2 import modeling_gemma2
from transformers.models.gpt_neox import modeling_gpt_neox
from transformers.models.gptj import modeling_gptj
from transformers.models.llama import modeling_llama
from transformers.models.olmo2 import modeling_olmo2
from transformers.models.phi3 import modeling_phi3
from transformers.models.qwen3 import modeling_qwen3

import workbench as wb
from workbench.components import (
    MLP,
    Attention,
    GatedMLP,
    KVCache,
    ParallelBlock,
    PostSublayerNormBlock,
    PreNormBlock,
    RMSNorm,
    RotaryEmbedding,
    SandwichBlock,
    SharedNormParallelBlock,
    causal_mask,
    positions_from_mask,
)
from workbench.components.fused import FusedSplit
from workbench.components.rotary import apply_rotary

ATOL = 1e-5
D_MODEL, LENGTH = 32, 7
# Left padding in the first row: its positions restart at 0 on the first real token.
ATTENTION_MASK = torch.tensor([[0, 0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 1]])


def assert_close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    diff = (actual - expected).abs().max().item()
    assert diff <= ATOL, f"max abs diff {diff:.3g} > {ATOL}"


def eager(config):
    config._attn_implementation = "eager"
    return config


def copy_linear(ours: nn.Linear, weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    with torch.no_grad():
        ours.weight.copy_(weight)
        if bias is not None:
            ours.bias.copy_(bias)


def copy_projections(ours: Attention, hf: nn.Module) -> None:
    """q_proj, k_proj, v_proj, o_proj (with biases where there are) -> q, k, v, o."""
    for mine, theirs in zip("qkvo", ("q_proj", "k_proj", "v_proj", "o_proj")):
        linear = getattr(hf, theirs)
        copy_linear(getattr(ours, mine), linear.weight, linear.bias)


def perturb(module: nn.Module) -> nn.Module:
    """Every parameter random (norm weights and biases included), so that none is left at its initial value."""
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3 + (1.0 if parameter.dim() == 1 else 0.0))
    return module


def left_padded_inputs():
    """x [2, LENGTH, D_MODEL], the padding-aware positions [2, LENGTH] and our additive causal mask."""
    torch.manual_seed(0)
    x = torch.randn(2, LENGTH, D_MODEL)
    positions = positions_from_mask(ATTENTION_MASK, LENGTH)
    return x, positions, causal_mask(ATTENTION_MASK, LENGTH, LENGTH, torch.float32, torch.device("cpu"))


def hook_order(module: nn.Module) -> list[str]:
    return [name for name, child in module.named_modules() if isinstance(child, wb.HookPoint)]


def to_hf_layout(x: torch.Tensor) -> torch.Tensor:
    """[batch, pos, head, d_head] -> Hugging Face's [batch, head, pos, d_head]."""
    return x.transpose(1, 2)


# Rotary positions: frequencies, cos and sin --------------------------------------------------------------

ROPE_CASES = {
    "default": {"rope_type": "default"},
    "linear": {"rope_type": "linear", "factor": 2.5},
    "dynamic": {"rope_type": "dynamic", "factor": 3.0},
    "llama3": {
        "rope_type": "llama3",
        "factor": 8.0,
        "low_freq_factor": 1.0,
        "high_freq_factor": 4.0,
        "original_max_position_embeddings": 16,
    },
    "yarn": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16, "beta_fast": 16},
    "yarn-mscale": {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 16,
        "mscale": 1.0,
        "mscale_all_dim": 0.5,
        "truncate": False,
    },
    "yarn-attention-factor": {
        "rope_type": "yarn",
        "factor": 2.0,
        "original_max_position_embeddings": 32,
        "attention_factor": 1.3,
    },
    "longrope": {
        "rope_type": "longrope",
        "short_factor": [1.0 + 0.1 * i for i in range(8)],
        "long_factor": [2.0 + 0.3 * i for i in range(8)],
        "original_max_position_embeddings": 16,
    },
    "longrope-factor": {
        "rope_type": "longrope",
        "short_factor": [1.0 + 0.2 * i for i in range(8)],
        "long_factor": [1.5 + 0.5 * i for i in range(8)],
        "original_max_position_embeddings": 16,
        "factor": 6.0,
    },
}


def llama_rope_config(rope_parameters: dict, max_positions: int = 64) -> LlamaConfig:
    return LlamaConfig(
        hidden_size=64,
        num_attention_heads=4,
        head_dim=16,
        max_position_embeddings=max_positions,
        rope_parameters=dict(rope_parameters, rope_theta=5000.0),
    )


@pytest.mark.parametrize("case", ROPE_CASES)
def test_rotary_frequencies_and_attention_factor_are_hugging_faces(case):
    config = llama_rope_config(ROPE_CASES[case])
    rope_type = ROPE_CASES[case]["rope_type"]
    if rope_type == "default":
        expected, factor = modeling_llama.LlamaRotaryEmbedding.compute_default_rope_parameters(config)
    else:
        expected, factor = ROPE_INIT_FUNCTIONS[rope_type](config)
    ours = RotaryEmbedding.from_rope_parameters(
        dict(ROPE_CASES[case], rope_theta=5000.0), d_head=16, max_positions=64
    )
    inv_freq, our_factor = ours.inverse_frequencies()
    assert_close(inv_freq, expected)
    assert our_factor == pytest.approx(factor, abs=1e-12)
    if rope_type != "default":
        assert factor != 1.0 or rope_type in ("linear", "dynamic", "llama3")


@pytest.mark.parametrize("case", ROPE_CASES)
@pytest.mark.parametrize("length", [10, 40, 100])  # within the original context, within the model's, beyond
def test_rotary_cos_and_sin_are_hugging_faces_at_every_length(case, length):
    # A fresh Hugging Face module per length: its dynamic type remembers the longest input seen so far.
    hf = modeling_llama.LlamaRotaryEmbedding(llama_rope_config(ROPE_CASES[case]))
    ours = RotaryEmbedding.from_rope_parameters(
        dict(ROPE_CASES[case], rope_theta=5000.0), d_head=16, max_positions=64
    )
    positions = torch.stack([torch.arange(length), torch.arange(length) + 3])
    cos, sin = hf(torch.zeros(2, length, 64), positions)
    angles = ours(positions)
    assert_close(angles.cos, cos)
    assert_close(angles.sin, sin)


def test_rotary_dynamic_and_longrope_frequencies_change_past_their_threshold():
    ours = RotaryEmbedding.from_rope_parameters(dict(ROPE_CASES["longrope"]), d_head=16, max_positions=64)
    short = ours(torch.arange(16)).cos[0, 5]
    long = ours(torch.arange(17)).cos[0, 5]
    assert not torch.allclose(short, long)
    dynamic = RotaryEmbedding.from_rope_parameters(dict(ROPE_CASES["dynamic"]), d_head=16, max_positions=64)
    assert torch.equal(dynamic(torch.arange(64)).cos[0, 5], RotaryEmbedding(16)(torch.arange(64)).cos[0, 5])
    assert not torch.allclose(
        dynamic(torch.arange(65)).cos[0, 5], RotaryEmbedding(16)(torch.arange(65)).cos[0, 5]
    )


def test_rotation_is_llamas_apply_rotary_pos_emb_and_keeps_dot_products_relative():
    torch.manual_seed(0)
    q, k = torch.randn(2, 6, 4, 16), torch.randn(2, 6, 2, 16)
    positions = torch.arange(6)[None].repeat(2, 1) + torch.tensor([[0], [5]])
    angles = RotaryEmbedding(16, base=500.0)(positions)
    hf_cos, hf_sin = modeling_llama.LlamaRotaryEmbedding(
        LlamaConfig(
            hidden_size=64,
            num_attention_heads=4,
            rope_parameters={"rope_theta": 500.0, "rope_type": "default"},
        )
    )(q, positions)
    hf_q, hf_k = modeling_llama.apply_rotary_pos_emb(to_hf_layout(q), to_hf_layout(k), hf_cos, hf_sin)
    assert_close(angles.rotate(q), to_hf_layout(hf_q))
    assert_close(angles.rotate(k), to_hf_layout(hf_k))
    # q_i . k_j depends on i - j only: shifting every position by 5 leaves the scores as they were.
    scores = torch.einsum("bqhd,bkhd->bhqk", angles.rotate(q[:, :, :2]), angles.rotate(k))
    shifted = RotaryEmbedding(16, base=500.0)(positions[:1] + 5)
    scores_shifted = torch.einsum("bqhd,bkhd->bhqk", shifted.rotate(q[:1, :, :2]), shifted.rotate(k[:1]))
    torch.testing.assert_close(scores[:1], scores_shifted, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("rope", [{"rope_type": "default"}, {"rope_type": "linear", "factor": 2.0}])
def test_partial_rotary_is_gpt_neoxs(rope):
    """GPT-NeoX rotates the first rotary_pct of each head's dimensions and passes the rest."""
    config = GPTNeoXConfig(
        hidden_size=64,
        num_attention_heads=4,
        max_position_embeddings=32,
        rope_parameters=dict(rope, rope_theta=10000.0, partial_rotary_factor=0.25),
    )
    hf = modeling_gpt_neox.GPTNeoXRotaryEmbedding(config)
    ours = RotaryEmbedding.from_rope_parameters(config.rope_parameters, d_head=16, max_positions=32)
    assert ours.rotary_dim == 4
    torch.manual_seed(0)
    q, k = torch.randn(2, 5, 4, 16), torch.randn(2, 5, 4, 16)
    positions = torch.arange(5)[None].repeat(2, 1)
    cos, sin = hf(q, positions)
    angles = ours(positions)
    assert_close(angles.cos, cos)
    hf_q, hf_k = modeling_gpt_neox.apply_rotary_pos_emb(to_hf_layout(q), to_hf_layout(k), cos, sin)
    assert_close(angles.rotate(q), to_hf_layout(hf_q))
    assert_close(angles.rotate(k), to_hf_layout(hf_k))
    assert torch.equal(angles.rotate(q)[..., 4:], q[..., 4:])


def test_interleaved_rotary_is_gpt_js():
    """GPT-J pairs dimensions 2k, 2k + 1 and rotates the first rotary_dim of each head."""
    torch.manual_seed(0)
    rotary_dim, positions = 8, torch.tensor([[0, 1, 2, 3, 4], [3, 4, 5, 6, 7]])
    x = torch.randn(2, 5, 3, 16)  # GPT-J's layout is ours: [batch, pos, head, d_head]
    sincos = modeling_gptj.create_sinusoidal_positions(16, rotary_dim)[positions]
    sin, cos = torch.split(sincos, rotary_dim // 2, dim=-1)
    expected = torch.cat(
        [modeling_gptj.apply_rotary_pos_emb(x[..., :rotary_dim], sin, cos), x[..., rotary_dim:]], dim=-1
    )
    angles = RotaryEmbedding(rotary_dim, interleaved=True)(positions)
    assert angles.interleaved
    assert_close(angles.rotate(x), expected)
    assert_close(apply_rotary(x, angles.cos, angles.sin, interleaved=True), expected)


def test_rotary_names_an_unknown_type_and_a_missing_parameter():
    with pytest.raises(ValueError, match=r"unknown rope_type 'ntk-by-parts'; supported: default, linear"):
        RotaryEmbedding(16, scaling={"rope_type": "ntk-by-parts"})
    with pytest.raises(ValueError, match=r"rope_type 'llama3' needs low_freq_factor, high_freq_factor"):
        RotaryEmbedding(16, scaling={"rope_type": "llama3", "factor": 8.0}, max_positions=64)
    with pytest.raises(ValueError, match=r"rope_type 'dynamic' needs max_positions"):
        RotaryEmbedding(16, scaling={"type": "dynamic", "factor": 2.0})  # old configs say "type"
    with pytest.raises(ValueError, match=r"rotary_dim=1"):
        RotaryEmbedding(1)


def test_rotary_embedding_builds_on_the_meta_device_and_stays_float32():
    with torch.device("meta"):
        rotary = RotaryEmbedding(16, scaling={"rope_type": "linear", "factor": 2.0})
    rotary.to(torch.bfloat16)
    angles = rotary(torch.arange(4))
    assert angles.cos.dtype == torch.float32 and angles.cos.device.type == "cpu"
    assert_close(
        angles.cos, RotaryEmbedding(16, scaling={"rope_type": "linear", "factor": 2.0})(torch.arange(4)).cos
    )


# Attention against Hugging Face's -----------------------------------------------------------------------


def llama_config(n_heads=4, n_kv_heads=2, d_head=8, bias=True, **extra) -> LlamaConfig:
    return eager(
        LlamaConfig(
            hidden_size=D_MODEL,
            num_attention_heads=n_heads,
            num_key_value_heads=n_kv_heads,
            head_dim=d_head,
            intermediate_size=48,
            max_position_embeddings=64,
            attention_bias=bias,
            rms_norm_eps=1e-6,
            rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
            **extra,
        )
    )


@pytest.mark.parametrize(
    "n_heads, n_kv_heads, d_head, bias",
    [
        (4, 2, 8, True),
        (4, 1, 16, False),
        (4, 4, 8, True),
        (8, 2, 6, False),
    ],  # GQA, MQA + wide heads, MHA, narrow
)
def test_grouped_query_attention_with_rotary_positions_is_llamas(n_heads, n_kv_heads, d_head, bias):
    config = llama_config(n_heads, n_kv_heads, d_head, bias)
    hf = perturb(modeling_llama.LlamaAttention(config, layer_idx=0)).eval()
    ours = Attention(
        D_MODEL, n_heads, 0.0, n_kv_heads=n_kv_heads, d_head=d_head, bias=bias, rotary=True
    ).eval()
    copy_projections(ours, hf)
    x, positions, mask = left_padded_inputs()
    cos, sin = modeling_llama.LlamaRotaryEmbedding(config)(x, positions)
    expected, expected_pattern = hf(x, position_embeddings=(cos, sin), attention_mask=mask)
    rotary = RotaryEmbedding(d_head)(positions)
    out, pattern = ours(x, mask, need_pattern=True, rotary=rotary)
    assert_close(out, expected)
    assert_close(pattern, expected_pattern)
    assert_close(ours(x, mask, rotary=rotary)[0], expected)  # the SDPA path


def qwen3_config(**extra) -> Qwen3Config:
    return eager(
        Qwen3Config(
            hidden_size=D_MODEL,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=12,  # independent of hidden_size / heads
            intermediate_size=48,
            num_hidden_layers=1,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
            use_sliding_window=True,
            sliding_window=3,
            max_window_layers=0,
            **extra,
        )
    )


def test_per_head_qk_norms_and_a_sliding_window_are_qwen3s():
    config = qwen3_config()
    assert config.layer_types == ["sliding_attention"]
    hf = perturb(modeling_qwen3.Qwen3Attention(config, layer_idx=0)).eval()
    ours = Attention(
        D_MODEL,
        4,
        0.0,
        n_kv_heads=2,
        d_head=12,
        bias=False,
        qk_norm=lambda width: RMSNorm(width, 1e-6),
        rotary=True,
        sliding_window=3,
    ).eval()
    copy_projections(ours, hf)
    with torch.no_grad():
        ours.q_norm.weight.copy_(hf.q_norm.weight)
        ours.k_norm.weight.copy_(hf.k_norm.weight)
    x, positions, mask = left_padded_inputs()
    # Hugging Face's own sliding-window mask from the 2-d attention mask; ours adds the window to the causal mask.
    hf_mask = create_sliding_window_causal_mask(config, x, ATTENTION_MASK, None)
    cos, sin = modeling_qwen3.Qwen3RotaryEmbedding(config)(x, positions)
    expected, expected_pattern = hf(x, position_embeddings=(cos, sin), attention_mask=hf_mask)
    rotary = RotaryEmbedding(12, base=config.rope_parameters["rope_theta"])(positions)
    out, pattern = ours(x, mask, need_pattern=True, rotary=rotary)
    assert_close(out, expected)
    assert_close(pattern, expected_pattern)
    assert pattern[1, :, 6, :4].abs().max() == 0  # query 6 sees keys 4, 5, 6 only
    assert_close(ours(x, mask, rotary=rotary)[0], expected)  # the SDPA path, the window in its mask


def gemma2_config() -> Gemma2Config:
    return eager(
        Gemma2Config(
            hidden_size=D_MODEL,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            intermediate_size=48,
            num_hidden_layers=2,
            max_position_embeddings=64,
            query_pre_attn_scalar=20,
            attn_logit_softcapping=0.5,  # low, so that the cap bends the scores
            sliding_window=4,
            rms_norm_eps=1e-6,
            hidden_activation="gelu_pytorch_tanh",
        )
    )


def gemma2_attention(config: Gemma2Config, hf: nn.Module) -> Attention:
    ours = Attention(
        D_MODEL,
        4,
        0.0,
        scale=config.query_pre_attn_scalar**-0.5,
        n_kv_heads=2,
        d_head=16,
        bias=False,
        rotary=True,
        sliding_window=config.sliding_window if hf.sliding_window else None,
        softcap=config.attn_logit_softcapping,
    ).eval()
    copy_projections(ours, hf)
    return ours


@pytest.mark.parametrize("layer", [0, 1])  # Gemma 2 alternates local (sliding) and global layers
def test_soft_capping_the_scale_and_the_window_are_gemma2s(layer):
    config = gemma2_config()
    hf = perturb(modeling_gemma2.Gemma2Attention(config, layer_idx=layer)).eval()
    assert (hf.sliding_window is not None) == (config.layer_types[layer] == "sliding_attention")
    ours = gemma2_attention(config, hf)
    x, positions, mask = left_padded_inputs()
    hf_mask = (
        create_sliding_window_causal_mask(config, x, ATTENTION_MASK, None) if hf.sliding_window else mask
    )
    cos, sin = modeling_gemma2.Gemma2RotaryEmbedding(config)(x, positions)
    expected, expected_pattern = hf(x, position_embeddings=(cos, sin), attention_mask=hf_mask)
    out, pattern = ours(x, mask, need_pattern=True, rotary=RotaryEmbedding(16)(positions))
    assert_close(out, expected)
    assert_close(pattern, expected_pattern)
    uncapped = Attention(D_MODEL, 4, 0.0, n_kv_heads=2, d_head=16, bias=False, rotary=True).eval()
    uncapped.load_state_dict(ours.state_dict())
    assert not torch.allclose(
        uncapped(x, mask, rotary=RotaryEmbedding(16)(positions))[0], expected, atol=1e-3
    )


# Blocks against Hugging Face's decoder layers -------------------------------------------------------------


def test_pre_norm_block_with_rms_norms_swiglu_and_gqa_is_a_llama_layer():
    config = llama_config(mlp_bias=False)
    hf = perturb(modeling_llama.LlamaDecoderLayer(config, layer_idx=0)).eval()
    norm = lambda: RMSNorm(D_MODEL, 1e-6)  # noqa: E731
    attn = Attention(D_MODEL, 4, 0.0, n_kv_heads=2, d_head=8, rotary=True)
    ours = PreNormBlock(attn, GatedMLP(D_MODEL, 48, "silu"), D_MODEL, 1e-6, 0.0, norm=norm).eval()
    copy_projections(ours.attn, hf.self_attn)
    copy_gated_mlp(ours.mlp, hf.mlp)
    copy_norm(ours.ln1, hf.input_layernorm)
    copy_norm(ours.ln2, hf.post_attention_layernorm)
    x, positions, mask = left_padded_inputs()
    cos, sin = modeling_llama.LlamaRotaryEmbedding(config)(x, positions)
    expected = hf(x, position_embeddings=(cos, sin), attention_mask=mask)
    assert_close(ours(x, mask, rotary=RotaryEmbedding(8)(positions))[0], expected)


def copy_gated_mlp(ours: GatedMLP, hf: nn.Module) -> None:
    for mine, theirs in (("fc_gate", "gate_proj"), ("fc_in", "up_proj"), ("fc_out", "down_proj")):
        linear = getattr(hf, theirs)
        copy_linear(getattr(ours, mine), linear.weight, linear.bias)


def copy_norm(ours: nn.Module, hf: nn.Module) -> None:
    with torch.no_grad():
        ours.weight.copy_(hf.weight)
        if getattr(hf, "bias", None) is not None:
            ours.bias.copy_(hf.bias)


def test_parallel_block_with_partial_rotary_is_a_gpt_neox_layer():
    config = eager(
        GPTNeoXConfig(
            hidden_size=D_MODEL,
            num_attention_heads=4,
            intermediate_size=48,
            max_position_embeddings=64,
            rotary_pct=0.5,
            use_parallel_residual=True,
            layer_norm_eps=1e-5,
            hidden_act="gelu",
        )
    )
    hf = perturb(modeling_gpt_neox.GPTNeoXLayer(config, layer_idx=0)).eval()
    attn = Attention(D_MODEL, 4, 0.0, rotary=True)
    ours = ParallelBlock(attn, MLP(D_MODEL, 48, "gelu"), D_MODEL, 1e-5, 0.0).eval()
    # GPT-NeoX fuses q, k, v per head: rows [head, (q | k | v), d_head] of query_key_value.
    fused_w = hf.attention.query_key_value.weight.view(4, 3, 8, D_MODEL)
    fused_b = hf.attention.query_key_value.bias.view(4, 3, 8)
    for index, name in enumerate("qkv"):
        copy_linear(
            getattr(attn, name), fused_w[:, index].reshape(D_MODEL, D_MODEL), fused_b[:, index].flatten()
        )
    copy_linear(attn.o, hf.attention.dense.weight, hf.attention.dense.bias)
    copy_linear(ours.mlp.fc_in, hf.mlp.dense_h_to_4h.weight, hf.mlp.dense_h_to_4h.bias)
    copy_linear(ours.mlp.fc_out, hf.mlp.dense_4h_to_h.weight, hf.mlp.dense_4h_to_h.bias)
    copy_norm(ours.ln1, hf.input_layernorm)
    copy_norm(ours.ln2, hf.post_attention_layernorm)
    x, positions, mask = left_padded_inputs()
    cos, sin = modeling_gpt_neox.GPTNeoXRotaryEmbedding(config)(x, positions)
    expected = hf(x, attention_mask=mask, position_embeddings=(cos, sin))
    rotary = RotaryEmbedding.from_rope_parameters(config.rope_parameters, d_head=8, max_positions=64)
    assert rotary.rotary_dim == 4
    assert_close(ours(x, mask, rotary=rotary(positions))[0], expected)


def test_parallel_block_with_a_shared_norm_feeds_both_sublayers_the_same_input():
    torch.manual_seed(0)
    block = SharedNormParallelBlock(Attention(8, 2, 0.0), MLP(8, 16, "gelu_new"), 8, 1e-5, 0.0).eval()
    assert block.ln2 is None
    assert [name for name in hook_order(block) if name.startswith("hook")] == [
        "hook_resid_pre",
        "hook_attn_out",
        "hook_mlp_out",
        "hook_resid_post",
    ]
    x = torch.randn(2, 4, 8)
    normed = block.ln1(x)
    expected = block.mlp(normed) + block.attn(normed)[0] + x
    assert_close(block(x, None)[0], expected)


def test_sandwich_block_is_a_gemma2_layer():
    config = gemma2_config()
    hf = perturb(modeling_gemma2.Gemma2DecoderLayer(config, layer_idx=0)).eval()
    norm = lambda: RMSNorm(D_MODEL, 1e-6, weight_offset=1.0)  # noqa: E731  Gemma's (1 + w)
    attn = gemma2_attention(config, hf.self_attn)
    ours = SandwichBlock(
        attn, GatedMLP(D_MODEL, 48, "gelu_pytorch_tanh"), D_MODEL, 1e-6, 0.0, norm=norm
    ).eval()
    copy_gated_mlp(ours.mlp, hf.mlp)
    for mine, theirs in (
        ("ln1", "input_layernorm"),
        ("ln1_post", "post_attention_layernorm"),
        ("ln2", "pre_feedforward_layernorm"),
        ("ln2_post", "post_feedforward_layernorm"),
    ):
        copy_norm(getattr(ours, mine), getattr(hf, theirs))
    x, positions, mask = left_padded_inputs()
    hf_mask = create_sliding_window_causal_mask(config, x, ATTENTION_MASK, None)
    cos, sin = modeling_gemma2.Gemma2RotaryEmbedding(config)(x, positions)
    expected = hf(x, position_embeddings=(cos, sin), attention_mask=hf_mask)
    assert_close(ours(x, mask, rotary=RotaryEmbedding(16)(positions))[0], expected)


def test_sandwich_block_without_pre_norms_and_whole_projection_qk_norms_is_an_olmo2_layer():
    config = eager(
        Olmo2Config(
            hidden_size=D_MODEL,
            num_attention_heads=4,
            num_key_value_heads=2,
            intermediate_size=48,
            max_position_embeddings=64,
            rms_norm_eps=1e-6,
        )
    )
    hf = perturb(modeling_olmo2.Olmo2DecoderLayer(config, layer_idx=0)).eval()
    norm = lambda width=D_MODEL: RMSNorm(width, 1e-6, cast_after_weight=True)  # noqa: E731  OLMo 2's order
    attn = Attention(
        D_MODEL, 4, 0.0, n_kv_heads=2, bias=False, qk_norm=norm, qk_norm_per_head=False, rotary=True
    )
    ours = PostSublayerNormBlock(attn, GatedMLP(D_MODEL, 48, "silu"), D_MODEL, 1e-6, 0.0, norm=norm).eval()
    assert ours.ln1 is None and ours.ln2 is None
    assert attn.q_norm.weight.shape == (32,) and attn.k_norm.weight.shape == (16,)
    copy_projections(attn, hf.self_attn)
    copy_norm(attn.q_norm, hf.self_attn.q_norm)
    copy_norm(attn.k_norm, hf.self_attn.k_norm)
    copy_gated_mlp(ours.mlp, hf.mlp)
    copy_norm(ours.ln1_post, hf.post_attention_layernorm)
    copy_norm(ours.ln2_post, hf.post_feedforward_layernorm)
    x, positions, mask = left_padded_inputs()
    cos, sin = modeling_olmo2.Olmo2RotaryEmbedding(config)(x, positions)
    expected = hf(x, attention_mask=mask, position_embeddings=(cos, sin))
    assert_close(ours(x, mask, rotary=RotaryEmbedding(8)(positions))[0], expected)


def test_gated_mlp_from_a_fused_gate_up_is_phi3s():
    config = Phi3Config(hidden_size=D_MODEL, intermediate_size=48, hidden_act="silu")
    hf = perturb(modeling_phi3.Phi3MLP(config)).eval()
    rule = FusedSplit("mlp.gate_up_proj", dim=0, parts=("gate", "up"), params=("weight",))
    state = rule.split({"layers.0.mlp.gate_up_proj.weight": hf.gate_up_proj.weight})
    ours = GatedMLP(D_MODEL, 48, "silu")
    copy_linear(ours.fc_gate, state["layers.0.mlp.gate_up_proj.gate.weight"])
    copy_linear(ours.fc_in, state["layers.0.mlp.gate_up_proj.up.weight"])
    copy_linear(ours.fc_out, hf.down_proj.weight)
    x = torch.randn(2, 5, D_MODEL)
    assert_close(ours(x), hf(x))


# Hooks, fast path, cache ----------------------------------------------------------------------------------


def modern_attention(**options) -> Attention:
    torch.manual_seed(0)
    defaults = dict(n_kv_heads=2, d_head=8, qk_norm=lambda width: RMSNorm(width, 1e-6), rotary=True)
    return perturb(Attention(D_MODEL, 4, 0.0, **{**defaults, **options})).eval()


def test_attention_hooks_fire_in_forward_order_with_the_documented_shapes():
    attn = modern_attention(sliding_window=3)
    assert hook_order(attn) == [
        "hook_q",
        "hook_k",
        "hook_v",
        "q_norm.hook_scale",
        "q_norm.hook_normalized",
        "k_norm.hook_scale",
        "k_norm.hook_normalized",
        "hook_rot_q",
        "hook_rot_k",
        "hook_scores",
        "hook_pattern",
        "hook_z",
    ]
    x, positions, mask = left_padded_inputs()
    seen: dict[str, tuple[int, ...]] = {}
    for name, point in attn.named_modules():
        if isinstance(point, wb.HookPoint):
            point.add_hook(
                lambda tensor, hook, name=name: seen.update({name: tuple(tensor.shape)}), read_only=True
            )
    attn(x, mask, rotary=RotaryEmbedding(8)(positions))
    batch, pos = 2, LENGTH
    assert seen == {
        "hook_q": (batch, pos, 4, 8),
        "hook_k": (batch, pos, 2, 8),
        "hook_v": (batch, pos, 2, 8),
        "q_norm.hook_scale": (batch, pos, 4, 1),
        "q_norm.hook_normalized": (batch, pos, 4, 8),
        "k_norm.hook_scale": (batch, pos, 2, 1),
        "k_norm.hook_normalized": (batch, pos, 2, 8),
        "hook_rot_q": (batch, pos, 4, 8),
        "hook_rot_k": (batch, pos, 2, 8),
        "hook_scores": (batch, 4, pos, pos),
        "hook_pattern": (batch, 4, pos, pos),  # per query head
        "hook_z": (batch, pos, 4, 8),
    }


def test_the_default_attention_keeps_the_hooks_and_parameters_of_bert_and_gpt2():
    attn = Attention(D_MODEL, 4, 0.1)
    assert hook_order(attn) == ["hook_q", "hook_k", "hook_v", "hook_scores", "hook_pattern", "hook_z"]
    assert list(attn.state_dict()) == [f"{name}.{param}" for name in "qkvo" for param in ("weight", "bias")]
    assert attn.q_norm is None and not attn.rotary and attn.n_kv_heads == 4


def test_editing_the_rotated_keys_changes_the_output_and_kv_heads_map_to_query_head_groups():
    attn = modern_attention()
    x, positions, mask = left_padded_inputs()
    rotary = RotaryEmbedding(8)(positions)
    clean, pattern = attn(x, mask, need_pattern=True, rotary=rotary)

    def zero_kv_head_1(k, hook):
        k = k.clone()
        k[:, :, 1] = 0
        return k

    attn.hook_rot_k.add_hook(zero_kv_head_1)
    _, patched = attn(x, mask, need_pattern=True, rotary=rotary)
    attn.hook_rot_k.remove_hooks()
    # Query heads 0, 1 read kv head 0 (unchanged); heads 2, 3 read kv head 1 (all scores 0: uniform over keys).
    assert torch.equal(patched[:, :2], pattern[:, :2])
    assert not torch.allclose(patched[:, 2:], pattern[:, 2:])
    visible = mask[1, 0, -1] == 0
    assert_close(patched[1, 2, -1, visible], torch.full((int(visible.sum()),), 1 / int(visible.sum())))


@pytest.mark.parametrize(
    "options", [{}, {"sliding_window": 2}, {"n_kv_heads": 1}, {"n_kv_heads": 4, "qk_norm": None}]
)
def test_the_sdpa_path_equals_the_explicit_softmax(options):
    attn = modern_attention(**options)
    x, positions, mask = left_padded_inputs()
    rotary = RotaryEmbedding(8)(positions)
    fast, none = attn(x, mask, rotary=rotary)
    assert none is None
    explicit, pattern = attn(x, mask, need_pattern=True, rotary=rotary)
    assert pattern is not None
    assert_close(fast, explicit)
    handle = attn.hook_scores.add_hook(lambda scores, hook: None, read_only=True)
    assert not attn.fast_path(need_pattern=False)
    assert_close(attn(x, mask, rotary=rotary)[0], explicit)
    handle.remove()
    assert attn.fast_path(need_pattern=False)
    assert not modern_attention(softcap=5.0).fast_path(need_pattern=False)


@pytest.mark.parametrize("window", [None, 3])
def test_attention_with_the_kv_cache_equals_one_full_pass(window):
    attn = modern_attention(sliding_window=window)
    x, positions, mask = left_padded_inputs()
    rotary = RotaryEmbedding(8)
    full, full_pattern = attn(x, mask, need_pattern=True, rotary=rotary(positions))
    cache, outs, patterns = KVCache(), [], []
    for start, stop in ((0, 4), (4, 5), (5, LENGTH)):  # a prompt, then one token at a time
        step_mask = causal_mask(
            ATTENTION_MASK[:, :stop], stop - start, stop, torch.float32, torch.device("cpu")
        )
        step_rotary = rotary(positions[:, start:stop])
        out, pattern = attn(
            x[:, start:stop], step_mask, need_pattern=True, past=cache.layer(0), rotary=step_rotary
        )
        outs.append(out)
        patterns.append(nn.functional.pad(pattern, (0, LENGTH - stop)))
    assert cache.keys[0].shape == (2, LENGTH, 2, 8)  # kv heads are cached, not repeated per query head
    # Padding queries see no key at all (a uniform pattern over however many keys there are): compare the rest.
    real = ATTENTION_MASK.bool()
    assert_close(torch.cat(outs, dim=1)[real], full[real])
    assert_close(torch.cat(patterns, dim=2).transpose(1, 2)[real], full_pattern.transpose(1, 2)[real])


def test_a_sliding_window_masks_keys_window_or_more_positions_back():
    attn = modern_attention(sliding_window=2)
    x = torch.randn(1, 5, D_MODEL)
    mask = causal_mask(None, 5, 5, torch.float32, torch.device("cpu"))
    _, pattern = attn(x, mask, need_pattern=True, rotary=RotaryEmbedding(8)(torch.arange(5)))
    seen = pattern[0, 0] > 0
    expected = torch.tensor([[j in (i - 1, i) and j >= 0 for j in range(5)] for i in range(5)])
    assert torch.equal(seen, expected)


# Errors ----------------------------------------------------------------------------------------------------


def test_attention_names_the_bad_argument():
    with pytest.raises(ValueError, match=r"n_heads=6 is not a multiple of n_kv_heads=4"):
        Attention(D_MODEL, 6, 0.0, n_kv_heads=4, d_head=8)
    with pytest.raises(ValueError, match=r"d_model=32 is not a multiple of the number of heads n_heads=6"):
        Attention(D_MODEL, 6, 0.0)
    with pytest.raises(ValueError, match=r"sliding_window=0"):
        Attention(D_MODEL, 4, 0.0, sliding_window=0)
    x = torch.randn(1, 3, D_MODEL)
    with pytest.raises(ValueError, match=r"rotary=True"):
        Attention(D_MODEL, 4, 0.0, rotary=True)(x)
    with pytest.raises(ValueError, match=r"built without rotary=True"):
        Attention(D_MODEL, 4, 0.0)(x, rotary=RotaryEmbedding(8)(torch.arange(3)))
