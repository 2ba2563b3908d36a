"""Adapters of encoder-only families with no native implementation: ELECTRA and ModernBERT.

ELECTRA is BERT's layout (post-norm blocks, the attention's output projection and LayerNorm in
``attention.output``); ModernBERT is pre-norm with rotary positions, alternating local (sliding-window) and
global attention, and a GeGLU MLP whose two input projections are one fused linear layer (``Wi``).
"""

from __future__ import annotations

from ..adapters import Adapter, Stack

#: BERT's block: ``attention.self`` computes q/k/v and z (through the attention registry),
#: ``attention.output`` projects, adds the residual and normalizes; ``intermediate`` and ``output`` are the MLP.
BERT_LIKE = Stack(
    blocks="encoder.layer", attn="attention.self", attn_out="attention.output.dense",
    ln1="attention.output.LayerNorm", resid_mid="attention.output.LayerNorm", ln2="output.LayerNorm",
    mlp="output.dense", mlp_in="intermediate.dense", mlp_out="output.dense", kind="post_norm",
)

ADAPTERS = [
    Adapter(
        model_types=("electra",),
        stacks=(BERT_LIKE,),
        embeds={"hook_pos_embed": "embeddings.position_embeddings",
                "hook_token_type_embed": "embeddings.token_type_embeddings"},
        decode=(),
        notes="Post-norm blocks as BERT's (docs/hooks.md): hook_attn_out is the attention's output projection "
              "before the residual add and LayerNorm; hook_resid_mid is ln1's output and hook_resid_post "
              "ln2's; hook_mlp_out is the MLP's last linear layer before the add. hook_embed, hook_pos_embed "
              "and hook_token_type_embed are [batch, pos, embedding_size]; where embedding_size differs from "
              "hidden_size, blocks.0.hook_resid_pre is after embeddings_project. No ln_embed hook points (the "
              "embeddings' LayerNorm is hf.<base>.embeddings.LayerNorm). The heads (the generator's "
              "generator_predictions, the discriminator's discriminator_predictions) are outside the base "
              "model: the logit lens does not pass through the generator's dense -> gelu -> LayerNorm.",
    ),
    Adapter(
        model_types=("modernbert",),
        stacks=(Stack(blocks="layers", attn="attn", ln1="attn_norm", ln2="mlp_norm", mlp="mlp", mlp_in="mlp.Wi",
                      mlp_out="mlp.Wo", final_norm="final_norm"),),
        notes="Pre-norm blocks; layer 0's ln1 is an identity (attn_norm). hook_q/hook_k are after the rotary "
              "rotation (local and global layers rotate with their own theta); in the local layers "
              "hook_pattern is 0 outside the sliding window. mlp.hook_pre is the fused Wi output [batch, pos, "
              "2 * d_mlp]: its first half goes through the activation (the canonical hook_pre), its second "
              "half is the linear gate (hook_pre_linear); mlp.hook_post [batch, pos, d_mlp] is what Wo reads. "
              "Hugging Face's last hidden state is after final_norm (ln_final), so hidden_states[n_layers] is "
              "ln_final.hook_normalized, not blocks.{n-1}.hook_resid_post. The MLM head's dense -> gelu -> "
              "LayerNorm is outside the base model: the logit lens decodes through final_norm only.",
    ),
]
