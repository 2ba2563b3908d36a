"""Parts that several architectures share, each with its hook points: one module per kind of part.

- ``norms``: LayerNorm, RMSNorm (also Gemma's (1 + w) weight).
- ``attention``: multi-head / grouped-query / multi-query attention with optional q/k norms, rotary positions,
  a sliding window and soft-capping; the relative attention core of Transformer-XL and XLNet.
- ``rotary``: rotary position embeddings with Hugging Face's scaling types, partial and interleaved.
- ``positions``: position ids, sinusoids (absolute and relative) and the relative shift.
- ``mlp``: the plain and the gated (SwiGLU, GeGLU) feed-forward networks.
- ``blocks``: post-norm, pre-norm, sandwich and parallel blocks (and their variants), the norm a parameter.
- ``masks``, ``kv_cache``, ``activations``: additive masks, the key/value cache, activation functions by name.
- ``heads``: the task-head mixins; ``summary``: the sequence summary of XLNet and XLM.
- ``fused``: rules for tensors stored fused in Hugging Face checkpoints (split on load, fused on save).

Dimension names used in shapes throughout the workbench (and their names in the papers):

- ``batch``: sequences in a batch.
- ``pos``, ``query_pos``, ``key_pos``: token positions (Vaswani et al.'s sequence index).
- ``d_model``: width of the residual stream (BERT's ``hidden_size``, H).
- ``head``: attention heads (``num_attention_heads``, A); ``d_head = d_model / head`` (their d_k = d_v).
- ``d_mlp``: width of the feed-forward layer (``intermediate_size``, 4H in BERT).
- ``vocab``: vocabulary size.
"""

from .activations import ACTIVATIONS, activation, gelu_new
from .attention import Attention, attention_scores
from .blocks import (
    ParallelBlock,
    PostNormBlock,
    PostSublayerNormBlock,
    PreNormBlock,
    ResidualBlock,
    SandwichBlock,
    SerialBlock,
    SharedNormParallelBlock,
)
from .heads import MultipleChoiceHead, QuestionAnsweringHead, TaskHead, TokenClassificationHead
from .kv_cache import KVCache, LayerKV
from .masks import CausalMask, additive_padding_mask, causal_mask, decoder_mask
from .mlp import MLP, GatedMLP
from .norms import LayerNorm, RMSNorm
from .positions import positions_from_mask
from .rotary import RotaryAngles, RotaryEmbedding, apply_rotary

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Attention",
    "CausalMask",
    "GatedMLP",
    "KVCache",
    "LayerKV",
    "LayerNorm",
    "MultipleChoiceHead",
    "ParallelBlock",
    "PostNormBlock",
    "PostSublayerNormBlock",
    "PreNormBlock",
    "QuestionAnsweringHead",
    "RMSNorm",
    "ResidualBlock",
    "RotaryAngles",
    "RotaryEmbedding",
    "SandwichBlock",
    "SerialBlock",
    "SharedNormParallelBlock",
    "TaskHead",
    "TokenClassificationHead",
    "activation",
    "additive_padding_mask",
    "apply_rotary",
    "attention_scores",
    "causal_mask",
    "decoder_mask",
    "gelu_new",
    "positions_from_mask",
]
