"""Adapters of state-space families: Mamba.

A Mamba block is ``x + mixer(norm(x))``: one RMS norm and one mixer (a gated, convolved selective scan) per
block, no attention and no MLP. So a bridged Mamba has the residual hook points, ``ln1.hook_normalized`` (the
mixer's input) and ``hook_mixer_out`` (what the block adds to the residual stream), and ``ln_final``.
"""

from __future__ import annotations

from ..adapters import Adapter, Stack

ADAPTERS = [
    Adapter(
        model_types=("mamba",),
        stacks=(Stack(blocks="layers", attn=None, ln1="norm", mlp=None, final_norm="norm_f", attention="none",
                      extra={"hook_mixer_out": ("mixer", "out")}),),
        mask_with_cache=False,
        notes="No attention and no MLP: per block hook_resid_pre, ln1.hook_normalized (the mixer's input), "
              "hook_mixer_out [batch, pos, d_model] (the mixer's output, what the block adds: hook_resid_post = "
              "hook_resid_pre + hook_mixer_out; with residual_in_fp32 the sum is in float32) and "
              "hook_resid_post; no hook_resid_mid. The mixer's inside (in_proj, conv1d, x_proj, dt_proj, "
              "out_proj) is reachable as hf.backbone.layers.{i}.mixer.*. Hugging Face's hidden_states do not "
              "start with the embeddings: hidden_states[i] is blocks.{i}.hook_resid_post and "
              "hidden_states[n_layers] is ln_final.hook_normalized. The recurrent state is Hugging Face's "
              "cache (forward argument `cache`, formerly `cache_params`), not a key/value cache; a cached step gets no "
              "attention mask (the mixer would multiply its one-token input by the whole mask), as in Hugging "
              "Face's generate.",
    ),
]
