"""Adapters of encoder-only families with no native implementation: ELECTRA, ModernBERT, ALBERT, DeBERTa-v2.

ELECTRA is BERT's layout (post-norm blocks, the attention's output projection and LayerNorm in
``attention.output``); ModernBERT is pre-norm with rotary positions, alternating local (sliding-window) and
global attention, and a GeGLU MLP whose two input projections are one fused linear layer (``Wi``); ALBERT is
post-norm with one layer module run for every layer; DeBERTa-v2 is BERT's layout with disentangled
(content and relative-position) attention computed inside its own module.

Their masked-LM heads' transforms (dense -> activation -> LayerNorm before the unembedding) are on the model
with the head, not the base model: ``decode`` names them (paths looked up on the base model, then on the top
model), so the logit lens passes through them where the model has them.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..adapters import Adapter, Stack
from .native import BERT_EMBEDS, BERT_LIKE  # BERT's block and embeddings, as ELECTRA's and DeBERTa's

POST_NORM_NOTE = (
    "Post-norm blocks as BERT's (docs/hooks.md): hook_attn_out is the attention's output projection before the "
    "residual add and LayerNorm, hook_resid_mid is ln1's output, hook_resid_post ln2's; hook_mlp_out is the "
    "MLP's last linear layer before the add."
)
NO_HEAD_NOTE = "The logit lens does not pass through DeBERTa's MLM head transform (not mapped)."

# ALBERT: one AlbertLayer per group; every path is from the group.
ALBERT_LAYER = "albert_layers.0."
ALBERT_STACK = Stack(
    blocks="encoder.albert_layer_groups", layers_from_config="num_hidden_layers", kind="post_norm",
    attn=ALBERT_LAYER + "attention", attn_out=ALBERT_LAYER + "attention.dense",
    ln1=ALBERT_LAYER + "attention.LayerNorm", resid_mid=ALBERT_LAYER + "attention.LayerNorm",
    mlp=ALBERT_LAYER + "ffn_output", mlp_in=ALBERT_LAYER + "ffn", mlp_out=ALBERT_LAYER + "ffn_output",
    ln2=ALBERT_LAYER + "full_layer_layer_norm",
)


def one_layer_per_group(adapter: Adapter, config: Any) -> Adapter:
    """ALBERT's hook points are per AlbertLayer: a group of several layers (``inner_group_num`` > 1, which no
    released checkpoint has) would run them all inside one block, so it is refused by name."""
    inner = getattr(config, "inner_group_num", 1)
    if inner != 1:
        raise ValueError(
            f"the bridge's ALBERT adapter needs inner_group_num=1 (one AlbertLayer per group), got {inner}; pass "
            f"wb.from_hf(model, adapter=...) with blocks at the groups' albert_layers to map it otherwise"
        )
    return adapter


SHARED_KEY_NOTE = (
    "This model shares its q/k projections with the relative positions (share_att_key, as DeBERTa-v3): "
    "query_proj (for p2c) and key_proj (for c2p) also project the relative-position table in every layer; "
    "attn.hook_q and attn.hook_k are their first call, on the tokens (an edit leaves the position terms' "
    "projections as they were)."
)


def content_projections_first(adapter: Adapter, config: Any) -> Adapter:
    """DeBERTa with ``share_att_key`` calls query_proj (``p2c``) and key_proj (``c2p``) a second time per
    layer, on the relative-position table, after the tokens' call: hook_q and hook_k read the first call only."""
    if not (getattr(config, "relative_attention", False) and getattr(config, "share_att_key", False)):
        return adapter
    terms = getattr(config, "pos_att_type", None) or []
    calls = {"attn.hook_q": 2 if "p2c" in terms else 1, "attn.hook_k": 2 if "c2p" in terms else 1}
    stack = replace(adapter.stacks[0], calls_per_layer=calls)
    return replace(adapter, stacks=(stack,), notes=f"{adapter.notes} {SHARED_KEY_NOTE}")


ADAPTERS = [
    Adapter(
        model_types=("electra",),
        stacks=(BERT_LIKE,),
        embeds=BERT_EMBEDS,
        decode=("generator_predictions",),
        notes=f"{POST_NORM_NOTE} hook_embed, hook_pos_embed, hook_token_type_embed and ln_embed are [batch, pos, "
              f"embedding_size]; where embedding_size differs from hidden_size, blocks.0.hook_resid_pre is "
              f"embeddings_project's output. The logit lens of a generator (ElectraForMaskedLM) decodes through "
              f"generator_predictions (dense -> gelu -> LayerNorm), then the unembedding.",
    ),
    Adapter(
        model_types=("modernbert",),
        stacks=(Stack(blocks="layers", attn="attn", ln1="attn_norm", ln2="mlp_norm", mlp="mlp", mlp_in="mlp.Wi",
                      mlp_in_fused=True, mlp_out="mlp.Wo", final_norm="final_norm"),),
        embeds={"ln_embed.hook_normalized": "embeddings.norm"},
        decode=("final_norm", "head"),
        notes="Pre-norm blocks; hook_embed is before the embeddings' LayerNorm (ln_embed, whose output is "
              "blocks.0.hook_resid_pre); layer 0's ln1 is an identity (attn_norm). hook_q/hook_k are after the "
              "rotary rotation (local and global layers rotate with their own theta); in the local layers "
              "hook_pattern is 0 outside the sliding window. The fused Wi output is split: its first half, which "
              "goes through the activation, is mlp.hook_pre, its second half (the linear gate) "
              "mlp.hook_pre_linear, both [batch, pos, d_mlp]; mlp.hook_post is what Wo reads. Hugging Face's last "
              "hidden state is after final_norm, so hidden_states[n_layers] is ln_final.hook_normalized, not the "
              "last hook_resid_post. The logit lens of ModernBertForMaskedLM decodes through final_norm and the "
              "head (dense -> gelu -> LayerNorm), then the unembedding.",
    ),
    Adapter(
        model_types=("albert",),
        stacks=(ALBERT_STACK,),
        embeds=BERT_EMBEDS,
        decode=("predictions.dense", "predictions.activation", "predictions.LayerNorm"),
        for_config=one_layer_per_group,
        notes=f"One layer module per group (num_hidden_groups, usually 1) runs for every layer: blocks.{{i}} are "
              f"the calls of the shared AlbertLayer (layer i runs group i * num_hidden_groups // "
              f"num_hidden_layers), each with hook points of its own; hf.<path> hooks of the shared modules fire "
              f"once per layer. {POST_NORM_NOTE} hook_embed, hook_pos_embed, hook_token_type_embed and "
              f"ln_embed are [batch, pos, embedding_size]; blocks.0.hook_resid_pre is after "
              f"embedding_hidden_mapping_in. The logit lens of AlbertForMaskedLM decodes through the head's "
              f"dense -> activation -> LayerNorm (to embedding_size), then the unembedding.",
    ),
    Adapter(
        model_types=("deberta-v2",),
        stacks=(replace(BERT_LIKE, attention="projections", q="attention.self.query_proj",
                        k="attention.self.key_proj", v="attention.self.value_proj", z="attention.output.dense"),),
        embeds=BERT_EMBEDS,
        decode=(),
        for_config=content_projections_first,
        notes=f"Disentangled attention computed inside DisentangledSelfAttention: hook_q/hook_k/hook_v are the "
              f"projections' outputs (editable; the relative-position terms c2p/p2c read the same q and k), "
              f"hook_z the output projection's input, attn.hook_pattern read only (the probabilities returned "
              f"with output_attentions, which a hooked run turns on). {POST_NORM_NOTE} ln_embed's output is "
              f"multiplied by the attention mask (padded positions zeroed) to give blocks.0.hook_resid_pre; "
              f"hook_pos_embed fires only with position_biased_input (DeBERTa-v3 has no absolute positions); "
              f"the relative-position table is hf.<base>.encoder.rel_embeddings (and encoder.LayerNorm). With "
              f"conv_kernel_size > 0 the encoder's ConvLayer mixes block 0's output after hook_resid_post, so "
              f"blocks.1.hook_resid_pre differs from blocks.0.hook_resid_post. {NO_HEAD_NOTE}",
    ),
]
