"""Adapters of encoder-only families with no native implementation: ELECTRA, ModernBERT, ALBERT, DeBERTa-v2.

ELECTRA is BERT's layout (post-norm blocks, the attention's output projection and LayerNorm in
``attention.output``); ModernBERT is pre-norm with rotary positions, alternating local (sliding-window) and
global attention, and a GeGLU MLP whose two input projections are one fused linear layer (``Wi``); ALBERT is
post-norm with one layer module run for every layer; DeBERTa-v2 is BERT's layout with disentangled
(content and relative-position) attention computed inside its own module.

None of their masked-LM heads is in the base model (ELECTRA's ``generator_predictions``, ModernBERT's ``head``,
ALBERT's ``predictions``, DeBERTa's ``cls`` / ``lm_predictions``: dense -> activation -> LayerNorm before the
unembedding), so the logit lens (``decode``, read from the base model) does not pass through them.
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
NO_HEAD_NOTE = "The MLM head is outside the base model: the logit lens does not pass through it."

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
    "query_proj and key_proj also project the relative-position table in every layer, so attn.hook_q and "
    "attn.hook_k are not mapped (they never fire); hook_v, hook_z and hook_pattern are."
)


def content_projections_only(adapter: Adapter, config: Any) -> Adapter:
    """DeBERTa with ``share_att_key`` calls query_proj and key_proj a second time per layer, on the relative-
    position table: taps on them would read (and edit) that call too, so hook_q and hook_k are not mapped."""
    if getattr(config, "relative_attention", False) and getattr(config, "share_att_key", False):
        stack = replace(adapter.stacks[0], q=None, k=None)
        return replace(adapter, stacks=(stack,), notes=f"{adapter.notes} {SHARED_KEY_NOTE}")
    return adapter


ADAPTERS = [
    Adapter(
        model_types=("electra",),
        stacks=(BERT_LIKE,),
        embeds=BERT_EMBEDS,
        decode=(),
        notes=f"{POST_NORM_NOTE} hook_embed, hook_pos_embed, hook_token_type_embed and ln_embed are [batch, pos, "
              f"embedding_size]; where embedding_size differs from hidden_size, blocks.0.hook_resid_pre is "
              f"embeddings_project's output. The generator's head (generator_predictions) and the "
              f"discriminator's (discriminator_predictions) are outside the base model: the logit lens does "
              f"not pass through the generator's dense -> gelu -> LayerNorm.",
    ),
    Adapter(
        model_types=("modernbert",),
        stacks=(Stack(blocks="layers", attn="attn", ln1="attn_norm", ln2="mlp_norm", mlp="mlp", mlp_in="mlp.Wi",
                      mlp_out="mlp.Wo", final_norm="final_norm"),),
        embeds={"ln_embed.hook_normalized": "embeddings.norm"},
        notes="Pre-norm blocks; hook_embed is before the embeddings' LayerNorm (ln_embed, whose output is "
              "blocks.0.hook_resid_pre); layer 0's ln1 is an identity (attn_norm). hook_q/hook_k are after the "
              "rotary rotation (local and global layers rotate with their own theta); in the local layers "
              "hook_pattern is 0 outside the sliding window. mlp.hook_pre is the fused Wi output [batch, pos, "
              "2 * d_mlp]: its first half goes through the activation (the canonical hook_pre), its second half "
              "is the linear gate (hook_pre_linear); mlp.hook_post [batch, pos, d_mlp] is what Wo reads. Hugging "
              "Face's last hidden state is after final_norm, so hidden_states[n_layers] is "
              "ln_final.hook_normalized, not the last hook_resid_post. The MLM head (dense -> gelu -> LayerNorm) "
              "is outside the base model: the logit lens decodes through final_norm only.",
    ),
    Adapter(
        model_types=("albert",),
        stacks=(ALBERT_STACK,),
        embeds=BERT_EMBEDS,
        decode=(),
        for_config=one_layer_per_group,
        notes=f"One layer module per group (num_hidden_groups, usually 1) runs for every layer: blocks.{{i}} are "
              f"the calls of the shared AlbertLayer (layer i runs group i * num_hidden_groups // "
              f"num_hidden_layers), each with hook points of its own; hf.<path> hooks of the shared modules fire "
              f"once per layer. {POST_NORM_NOTE} hook_embed, hook_pos_embed, hook_token_type_embed and "
              f"ln_embed are [batch, pos, embedding_size]; blocks.0.hook_resid_pre is after "
              f"embedding_hidden_mapping_in. {NO_HEAD_NOTE}",
    ),
    Adapter(
        model_types=("deberta-v2",),
        stacks=(replace(BERT_LIKE, attention="projections", q="attention.self.query_proj",
                        k="attention.self.key_proj", v="attention.self.value_proj", z="attention.output.dense"),),
        embeds=BERT_EMBEDS,
        decode=(),
        for_config=content_projections_only,
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
