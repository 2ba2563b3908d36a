"""Adapters of decoder-only families whose blocks are the Llama or GPT-2 layout (and OPT)."""

from __future__ import annotations

from dataclasses import replace

from ..adapters import Adapter, Stack

LLAMA_LIKE = Stack(
    blocks="layers", ln1="input_layernorm", ln2="post_attention_layernorm", mlp="mlp", mlp_in="mlp.gate_proj",
    mlp_in_linear="mlp.up_proj", mlp_out="mlp.down_proj", final_norm="norm",
)

ADAPTERS = [
    Adapter(
        model_types=("llama", "mistral", "qwen2", "qwen3"),
        stacks=(LLAMA_LIKE,),
        notes="As the native implementation's names; hook_q/hook_k are after the rotary rotation "
              "(the native hook_rot_q/hook_rot_k).",
    ),
    Adapter(
        model_types=("phi3",),
        stacks=(replace(LLAMA_LIKE, mlp_in="mlp.gate_up_proj", mlp_in_fused=True, mlp_in_linear=None),),
        notes="As Llama's; the fused gate_up_proj is split: its first half (the gate, through silu) is "
              "mlp.hook_pre, its second mlp.hook_pre_linear. q/k/v come from the attention function (after the "
              "fused qkv_proj is split and rotated), so the fusion never shows.",
    ),
    Adapter(
        model_types=("olmo2",),
        stacks=(replace(LLAMA_LIKE, ln1=None, attn_out="post_attention_layernorm", ln2=None,
                        mlp="post_feedforward_layernorm"),),
        notes="Norms after the sublayers: hook_attn_out is post_attention_layernorm's output and hook_mlp_out "
              "post_feedforward_layernorm's (the native ln1_post / ln2_post outputs); no ln1/ln2 hooks.",
    ),
    Adapter(
        model_types=("gpt2",),
        stacks=(Stack(blocks="h", attn="attn", ln1="ln_1", ln2="ln_2", mlp="mlp", mlp_in="mlp.c_fc",
                      mlp_out="mlp.c_proj", final_norm="ln_f"),),
        embeds={"hook_pos_embed": "wpe"},
    ),
    Adapter(
        model_types=("opt",),
        stacks=(Stack(blocks="decoder.layers", ln1="self_attn_layer_norm", ln2="final_layer_norm", mlp="fc2",
                      mlp_in="fc1", mlp_out="fc2", final_norm="decoder.final_layer_norm"),),
        embeds={"hook_pos_embed": "decoder.embed_positions"},
        decode=("decoder.final_layer_norm", "decoder.project_out"),
        for_config=lambda adapter, config: adapter if getattr(config, "do_layer_norm_before", True) else replace(
            adapter, stacks=(replace(adapter.stacks[0], kind="post_norm", resid_mid="self_attn_layer_norm"),)
        ),
        notes="OPT-350m normalizes after the sublayers (do_layer_norm_before=False): there ln1/ln2 come after "
              "the residual adds (hook_resid_mid is ln1's output). hook_embed is [batch, pos, "
              "word_embed_proj_dim] (before project_in where the widths differ).",
    ),
]
