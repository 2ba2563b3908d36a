"""Adapters of decoder-only families whose attention does not go through transformers' attention registry:
q, k, v and z are read at the projections, the pattern from what the attention module returns (read only)."""

from __future__ import annotations

from ..adapters import Adapter, Stack

ADAPTERS = [
    Adapter(
        model_types=("bloom",),
        stacks=(Stack(
            blocks="h", ln1="input_layernorm", attn="self_attention", attn_out="self_attention.dense",
            attention="projections", qkv="self_attention.query_key_value", qkv_layout="per_head",
            z="self_attention.dense", ln2="post_attention_layernorm", mlp="mlp.dense_4h_to_h",
            mlp_in="mlp.dense_h_to_4h", mlp_out="mlp.dense_4h_to_h", final_norm="ln_f",
        ),),
        embeds={"ln_embed.hook_normalized": "word_embeddings_layernorm"},
        notes="ALiBi positions (no position embeddings); the fused query_key_value is split per head "
              "(hook_q/hook_k/hook_v are its parts, editable); attn.hook_pattern is read only (BLOOM forms its "
              "output inside the attention module); hook_attn_out / hook_mlp_out are the dense projections' "
              "outputs, before BLOOM's in-module residual adds; hook_embed is before word_embeddings_layernorm.",
    ),
    Adapter(
        model_types=("gpt_neo",),
        stacks=(Stack(
            blocks="h", ln1="ln_1", attn="attn", attention="projections", q="attn.attention.q_proj",
            k="attn.attention.k_proj", v="attn.attention.v_proj", z="attn.attention.out_proj", ln2="ln_2",
            mlp="mlp", mlp_in="mlp.c_fc", mlp_out="mlp.c_proj", final_norm="ln_f",
        ),),
        embeds={"hook_pos_embed": "wpe"},
        notes="Local (windowed) and global attention layers alternate as attention_types says; scores are not "
              "scaled by 1/sqrt(d_head) (as the original); attn.hook_pattern is read only (computed inside "
              "GPTNeoSelfAttention).",
    ),
]
