"""Adapters of families the workbench also implements natively (BERT, RoBERTa, DistilBERT, GPT, GPT-NeoX,
Gemma, Gemma 2), so ``wb.from_hf`` works on any Hugging Face model of them, and so the bridge can be checked
against the native implementation (tests/test_bridge.py: equal caches)."""

from __future__ import annotations

from dataclasses import replace

from ..adapters import Adapter, Stack
from .decoders_core import LLAMA_LIKE

BERT_LIKE = Stack(
    blocks="encoder.layer", kind="post_norm", attn="attention.self", attn_out="attention.output.dense",
    resid_mid="attention.output.LayerNorm", ln1="attention.output.LayerNorm", mlp="output.dense",
    mlp_in="intermediate.dense", mlp_out="output.dense", ln2="output.LayerNorm",
)
BERT_EMBEDS = {
    "hook_pos_embed": "embeddings.position_embeddings",
    "hook_token_type_embed": "embeddings.token_type_embeddings",
    "ln_embed.hook_normalized": "embeddings.LayerNorm",
}

ADAPTERS = [
    Adapter(model_types=("bert", "roberta"), stacks=(BERT_LIKE,), embeds=BERT_EMBEDS,
            notes="Post-norm: hook_resid_mid is ln1's output, hook_resid_post ln2's (as the native model)."),
    Adapter(
        model_types=("distilbert",),
        stacks=(Stack(blocks="transformer.layer", kind="post_norm", attn="attention", resid_mid="sa_layer_norm",
                      ln1="sa_layer_norm", mlp="ffn", mlp_in="ffn.lin1", mlp_out="ffn.lin2", ln2="output_layer_norm"),),
        embeds={"hook_pos_embed": "embeddings.position_embeddings", "ln_embed.hook_normalized": "embeddings.LayerNorm"},
        notes="Post-norm, as BERT.",
    ),
    Adapter(
        model_types=("openai-gpt",),
        stacks=(Stack(blocks="h", kind="post_norm", attn="attn", attention="projections", qkv="attn.c_attn",
                      z="attn.c_proj", resid_mid="ln_1", ln1="ln_1", mlp="mlp", mlp_in="mlp.c_fc",
                      mlp_out="mlp.c_proj", ln2="ln_2"),),
        embeds={"hook_pos_embed": "positions_embed"},
        notes="Post-norm; the fused c_attn is split [q | k | v]; attn.hook_pattern is read only (formed inside "
              "the attention module).",
    ),
    Adapter(
        model_types=("gpt_neox",),
        stacks=(Stack(blocks="layers", kind="parallel", attn="attention", ln1="input_layernorm",
                      ln2="post_attention_layernorm", mlp="mlp", mlp_in="mlp.dense_h_to_4h",
                      mlp_out="mlp.dense_4h_to_h", final_norm="final_layer_norm"),),
        for_config=lambda adapter, config: adapter if getattr(config, "use_parallel_residual", True) else replace(
            adapter, stacks=(replace(adapter.stacks[0], kind="pre_norm"),)
        ),
        notes="Parallel blocks (use_parallel_residual): no hook_resid_mid; hook_q/hook_k after the partial "
              "rotary rotation (the native hook_rot_q/hook_rot_k).",
    ),
    Adapter(
        model_types=("gemma",),
        stacks=(LLAMA_LIKE,),
        notes="hook_embed is the embedding table's output, before Gemma's sqrt(d_model) scaling (the native "
              "hook_embed is after it; blocks.0.hook_resid_pre is after it in both).",
    ),
    Adapter(
        model_types=("gemma2",),
        stacks=(replace(LLAMA_LIKE, attn_out="post_attention_layernorm", ln2="pre_feedforward_layernorm",
                        mlp="post_feedforward_layernorm"),),
        notes="Sandwich norms: hook_attn_out is post_attention_layernorm's output and hook_mlp_out "
              "post_feedforward_layernorm's (as the native ln1_post / ln2_post outputs); hook_embed is before "
              "the sqrt(d_model) scaling.",
    ),
]
