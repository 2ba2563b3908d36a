"""Adapters of encoder-decoder families: T5 (and its gated v1.1 / Flan variant, and mT5) and BART.

An encoder-decoder has two stacks, hooked as ``encoder.blocks.{i}.…`` and ``decoder.blocks.{i}.…``; each
decoder block reads the encoder's output through a cross-attention (``decoder.blocks.{i}.cross_attn.hook_q`` …
``hook_z``, ``hook_cross_attn_out``). Both families' attention goes through transformers' attention registry,
so q/k/v/pattern/z come from the workbench attention function; T5's relative position bias is handed to the
family's own eager function as ``position_bias``, so the pattern includes it exactly.

- T5: pre-norm blocks with RMS norms and no biases; each sublayer is a wrapper (``layer.0`` self-attention,
  ``layer.1`` cross-attention in the decoder, ``layer[-1]`` the MLP) holding its norm and its module.
  Queries and keys are not scaled by d_head**-0.5 (T5 folds the scale into its weights).
- BART: post-norm blocks (LayerNorm after each residual add), learned positions, a LayerNorm of the
  embeddings before the first block, and no final norm.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..adapters import Adapter, Stack

# T5 -------------------------------------------------------------------------------------------------------


def _t5_stack(prefix: str, mlp_layer: int, gated: bool, cross: bool) -> Stack:
    """One T5 stack; the MLP is ``layer.{mlp_layer}`` (1 in the encoder, 2 in the decoder after the
    cross-attention). Gated variants (v1.1, Flan: ``feed_forward_proj="gated-gelu"``) have ``wi_0`` (through the
    activation) and ``wi_1`` (linear) instead of ``wi``."""
    mlp = f"layer.{mlp_layer}.DenseReluDense"
    return Stack(
        prefix=prefix, blocks=f"{prefix}block", embed=f"{prefix}embed_tokens", attn="layer.0.SelfAttention", ln1="layer.0.layer_norm",
        cross_attn="layer.1.EncDecAttention" if cross else None, ln2=f"layer.{mlp_layer}.layer_norm",
        mlp=mlp, mlp_in=f"{mlp}.wi_0" if gated else f"{mlp}.wi", mlp_in_linear=f"{mlp}.wi_1" if gated else None,
        mlp_out=f"{mlp}.wo", final_norm=f"{prefix}final_layer_norm",
        # T5LayerCrossAttention returns the residual stream after the cross-attention's add.
        extra={"hook_resid_mid_cross": ("layer.1", "out")} if cross else {},
    )


def _t5_for_config(adapter: Adapter, config: Any) -> Adapter:
    """The gated MLP where the config says so; T5EncoderModel (``is_encoder_decoder`` False) has the encoder
    stack alone, hooked as ``blocks.{i}`` like any encoder."""
    gated = bool(getattr(config, "is_gated_act", False))
    if not getattr(config, "is_encoder_decoder", True):
        return replace(adapter, stacks=(replace(_t5_stack("encoder.", 1, gated, cross=False), prefix=""),))
    return replace(adapter, stacks=(_t5_stack("encoder.", 1, gated, cross=False),
                                    _t5_stack("decoder.", 2, gated, cross=True)))


T5_NOTES = (
    "Encoder-decoder: encoder.blocks.{i}.* and decoder.blocks.{i}.* (decoder blocks add cross_attn.hook_q/k/v/"
    "pattern/z and hook_cross_attn_out; hook_k/hook_v of the cross-attention are over the encoder's positions). "
    "Pre-norm RMS blocks: hook_resid_mid = resid_pre + attn_out; decoder blocks add hook_resid_mid_cross "
    "(= resid_mid + cross_attn_out, the cross-attention sublayer's output), and hook_resid_post = "
    "resid_mid_cross + mlp_out. The cross-attention's RMS norm has no canonical hook point "
    "(hf.decoder.block.{i}.layer.1.layer_norm). hook_pattern includes the relative position bias (computed in "
    "block 0 and shared). Queries are not scaled by d_head**-0.5. Hugging Face's hidden_states[n_layers] is "
    "after the stack's final norm (and dropout), i.e. {encoder,decoder}.ln_final.hook_normalized, not the last "
    "hook_resid_post. Each stack runs its own embed_tokens (weights shared with `shared`): encoder.hook_embed "
    "and decoder.hook_embed. T5's logits are lm_head(ln_final * d_model**-0.5) where "
    "config.scale_decoder_outputs (tied embeddings; mT5 never scales): decode_residual (the logit lens) does "
    "the same. "
    "T5EncoderModel is hooked as blocks.{i}.*."
)

# BART -----------------------------------------------------------------------------------------------------


def _bart_stack(prefix: str, cross: bool) -> Stack:
    """One BART stack: post-norm, ``self_attn`` -> ``self_attn_layer_norm`` (-> ``encoder_attn`` ->
    ``encoder_attn_layer_norm``) -> ``fc1`` -> ``fc2`` -> ``final_layer_norm``."""
    return Stack(
        prefix=prefix, blocks=f"{prefix}layers", embed=f"{prefix}embed_tokens", attn="self_attn", cross_attn="encoder_attn" if cross else None,
        ln1="self_attn_layer_norm", resid_mid="self_attn_layer_norm", ln2="final_layer_norm", mlp="fc2",
        mlp_in="fc1", mlp_out="fc2", kind="post_norm",
        # post-norm: the residual stream after the cross-attention is its LayerNorm's output.
        extra={"hook_resid_mid_cross": ("encoder_attn_layer_norm", "out")} if cross else {},
    )


def _bart_for_config(adapter: Adapter, config: Any) -> Adapter:
    """BartForCausalLM (``is_encoder_decoder`` False) has the decoder stack alone, hooked as ``blocks.{i}``."""
    if not getattr(config, "is_encoder_decoder", True):
        return replace(adapter, stacks=(replace(_bart_stack("decoder.", cross=False), prefix=""),), embeds={
            "hook_pos_embed": "decoder.embed_positions"})
    return adapter


BART_NOTES = (
    "Encoder-decoder: encoder.blocks.{i}.* and decoder.blocks.{i}.* (decoder blocks add cross_attn.hook_q/k/v/"
    "pattern/z and hook_cross_attn_out). Post-norm blocks: hook_attn_out is the attention's output projection "
    "before the residual add; hook_resid_mid is ln1's output (self_attn_layer_norm), decoder blocks add "
    "hook_resid_mid_cross (encoder_attn_layer_norm's output) and hook_resid_post is ln2's output "
    "(final_layer_norm); hook_mlp_out is fc2's output before the add. blocks.0.hook_resid_pre is after the "
    "embeddings' LayerNorm (layernorm_embedding, no canonical hook point) of token embedding * embed_scale + "
    "learned positions. Each stack runs its own embed_tokens (`shared` is never called): encoder.hook_embed and "
    "decoder.hook_embed (before embed_scale); the learned positions are hf.model.{encoder,decoder}."
    "embed_positions (no hook_pos_embed: there are two). No final norm: Hugging Face's hidden_states[n_layers] "
    "is the last hook_resid_post. "
    "The logits add final_logits_bias (a buffer read from the checkpoint) to lm_head's output, and so does "
    "decode_residual (the logit lens). "
    "BartForCausalLM is hooked as blocks.{i}.*."
)

ADAPTERS = [
    Adapter(
        model_types=("t5", "mt5"),
        stacks=(_t5_stack("encoder.", 1, False, cross=False), _t5_stack("decoder.", 2, False, cross=True)),
        notes=T5_NOTES,
        decode_scale=lambda config: config.d_model ** -0.5 if getattr(config, "scale_decoder_outputs", False) else None,
        for_config=_t5_for_config,
    ),
    Adapter(
        model_types=("bart",),
        stacks=(_bart_stack("encoder.", cross=False), _bart_stack("decoder.", cross=True)),
        notes=BART_NOTES,
        logits_bias="final_logits_bias",
        for_config=_bart_for_config,
    ),
]
