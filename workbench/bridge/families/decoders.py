"""Adapters of decoder-only families with parallel blocks or sparse experts: Falcon, GPT-J, CodeGen, Mixtral.

- **Falcon**: three block layouts chosen by its config. ``new_decoder_architecture`` (Falcon-40B/180B):
  attention and MLP in parallel, each with its own LayerNorm (``ln_attn``, ``ln_mlp``), grouped-query
  attention; the older parallel layout (Falcon-7B): one ``input_layernorm`` feeding both, multi-query
  attention (one key/value head); ``parallel_attn=False`` (Falcon-RW): a sequential pre-norm block. Rotary
  positions or ALiBi (added to the attention mask, so it is in ``hook_pattern``).
- **GPT-J** and **CodeGen**: parallel blocks, one ``ln_1`` feeding attention and MLP; rotary positions on the
  first ``rotary_dim`` dimensions of each head (pairs of neighbouring dimensions). CodeGen's fused ``qkv_proj``
  interleaves q, v, k over four model-parallel shards; the bridge reads q, k and v after the split (from the
  attention function), so the layout does not show.
- **Mixtral**: a Llama-like pre-norm block whose MLP is a sparse mixture of experts. The router's logits are
  ``blocks.{i}.hook_router_logits``; the experts are fused 3D parameters run in one loop inside
  ``MixtralExperts``, so no module holds one expert's output (see the adapter's notes).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..adapters import Adapter, Stack

#: True of every family here, as of GPT-2 and Llama in transformers.
LAST_HIDDEN_STATE = (" Hugging Face's hidden_states[i] is blocks.{i}.hook_resid_pre, but its last entry is after the "
                     "final norm (ln_final.hook_normalized), not the last block's hook_resid_post.")

# Falcon -------------------------------------------------------------------------------------------------

_FALCON_MLP = dict(mlp="mlp", mlp_in="mlp.dense_h_to_4h", mlp_out="mlp.dense_4h_to_h")

#: The new decoder architecture with two LayerNorms: ``x + attn(ln_attn(x)) + mlp(ln_mlp(x))``.
FALCON_PARALLEL_TWO_NORMS = Stack(
    blocks="h", attn="self_attention", ln1="ln_attn", ln2="ln_mlp", final_norm="ln_f", kind="parallel",
    copy_outputs=("hook_mlp_out",), **_FALCON_MLP,
)
#: Falcon-7B's layout (and the new architecture with ``num_ln_in_parallel_attn=1``):
#: ``x + attn(ln(x)) + mlp(ln(x))`` with one LayerNorm.
FALCON_PARALLEL_ONE_NORM = replace(FALCON_PARALLEL_TWO_NORMS, ln1="input_layernorm", ln2=None)
#: ``parallel_attn=False`` (Falcon-RW): ``x + attn(ln1(x))``, then ``+ mlp(ln2(...))``.
FALCON_SEQUENTIAL = replace(
    FALCON_PARALLEL_TWO_NORMS, ln1="input_layernorm", ln2="post_attention_layernorm", kind="pre_norm",
    copy_outputs=(),
)


def falcon_stack(config: Any) -> Stack:
    """The block layout a Falcon config builds (mirrors ``FalconDecoderLayer.__init__`` and ``forward``)."""
    if config.new_decoder_architecture:
        # FalconDecoderLayer sets num_ln_in_parallel_attn to 2 when it is None for the new architecture.
        two_norms = config.num_ln_in_parallel_attn in (None, 2)
        return FALCON_PARALLEL_TWO_NORMS if two_norms else FALCON_PARALLEL_ONE_NORM
    return FALCON_PARALLEL_ONE_NORM if config.parallel_attn else FALCON_SEQUENTIAL


FALCON = Adapter(
    model_types=("falcon",),
    stacks=(FALCON_PARALLEL_TWO_NORMS,),
    for_config=lambda adapter, config: replace(adapter, stacks=(falcon_stack(config),)),
    notes="Falcon: the block layout follows the config (new_decoder_architecture: parallel attention and MLP with "
          "ln1 = ln_attn, ln2 = ln_mlp; parallel_attn: one input_layernorm (ln1) feeds both, no ln2; otherwise a "
          "sequential pre-norm block). Parallel blocks have no hook_resid_mid (resid_post = resid_pre + attn_out + "
          "mlp_out); there Hugging Face adds the attention output into the MLP's output tensor in place, so the "
          "bridge hands it a copy of the MLP output whenever hook_mlp_out is hooked (the cache keeps the MLP's "
          "own output; hf.<...>.mlp, a module path, is not copied and reads mlp_out + attn_out after the "
          "forward). Multi-query models (multi_query without the new architecture) have hook_k/hook_v [batch, "
          "pos, 1, d_head]; the new architecture has num_kv_heads key/value heads. hook_q/hook_k are after the "
          "rotary rotation; ALiBi models add their position bias to the attention mask, so it is inside "
          "hook_pattern." + LAST_HIDDEN_STATE,
)

# GPT-J and CodeGen --------------------------------------------------------------------------------------

#: ``x + attn(ln_1(x)) + mlp(ln_1(x))``: one LayerNorm feeds both sublayers.
GPTJ_LIKE = Stack(
    blocks="h", attn="attn", ln1="ln_1", mlp="mlp", mlp_in="mlp.fc_in", mlp_out="mlp.fc_out", final_norm="ln_f",
    kind="parallel",
)

GPTJ = Adapter(
    model_types=("gptj",),
    stacks=(GPTJ_LIKE,),
    notes="GPT-J: parallel blocks with one LayerNorm (ln1 = ln_1 feeds attention and MLP; no ln2, no "
          "hook_resid_mid; resid_post = resid_pre + attn_out + mlp_out). hook_q/hook_k are after the rotary "
          "rotation, which turns only the first rotary_dim dimensions of each head, as pairs of neighbouring "
          "dimensions (GPT-J's rotate_every_two, not Llama's halves)." + LAST_HIDDEN_STATE,
)

CODEGEN = Adapter(
    model_types=("codegen",),
    stacks=(GPTJ_LIKE,),
    notes="CodeGen: GPT-J's block (parallel, one LayerNorm ln_1; no ln2, no hook_resid_mid; resid_post = "
          "resid_pre + attn_out + mlp_out). Its fused qkv_proj interleaves q, v and k over four model-parallel "
          "shards; hook_q/hook_k/hook_v are after that split (and q, k after the partial rotary rotation), "
          "[batch, pos, head, d_head] like every family's. hf.<...>.attn.qkv_proj is the fused projection in its "
          "own layout." + LAST_HIDDEN_STATE,
)

# Mixtral ------------------------------------------------------------------------------------------------

MIXTRAL_STACK = Stack(
    blocks="layers", ln1="input_layernorm", ln2="post_attention_layernorm", mlp="mlp", final_norm="norm",
    extra={"mlp.hook_router_logits": ("mlp.gate", "out")}, read_only=("mlp.hook_router_logits",),
    experts="mlp.experts",
)

MIXTRAL = Adapter(
    model_types=("mixtral",),
    stacks=(MIXTRAL_STACK,),
    notes="Mixtral: a Llama-like pre-norm block whose MLP is a sparse mixture of experts. hook_mlp_out is the "
          "mixture's output (the routing-weighted sum of the chosen experts). blocks.{i}.mlp.hook_router_logits "
          "[batch, pos, n_experts] is the router's output, read only (the router picks its top-k experts inside "
          "the same module: an edit could not change the routing; a hook returning one is an error). "
          "blocks.{i}.mlp.experts.{e}.hook_out [batch, pos, d_model] is expert e's output before its routing "
          "weight, zero at tokens not routed to it (an edit there has no effect: their weight is 0); a run that "
          "hooks them computes the mixture with the workbench's experts function (the same loop as Hugging "
          "Face's eager one). There is no mlp.hook_pre/hook_post (no single MLP). hook_q/hook_k are "
          "after the rotary rotation; hook_k/hook_v have num_key_value_heads heads." + LAST_HIDDEN_STATE,
)

ADAPTERS = [FALCON, GPTJ, CODEGEN, MIXTRAL]
