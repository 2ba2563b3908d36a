"""Parts that several architectures share, each with its hook points: one module per kind of part
(``norms``, ``attention``, ``mlp``, ``blocks``, ``positions``, ``masks``, ``kv_cache``, ``activations``,
``heads``: the task-head mixins).

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
from .blocks import PostNormBlock, PreNormBlock, ResidualBlock
from .heads import MultipleChoiceHead, QuestionAnsweringHead, TaskHead, TokenClassificationHead
from .kv_cache import KVCache, LayerKV
from .masks import additive_padding_mask, causal_mask
from .mlp import MLP, GatedMLP
from .norms import LayerNorm, RMSNorm
from .positions import positions_from_mask

__all__ = [
    "ACTIVATIONS",
    "MLP",
    "Attention",
    "GatedMLP",
    "KVCache",
    "LayerKV",
    "LayerNorm",
    "MultipleChoiceHead",
    "PostNormBlock",
    "PreNormBlock",
    "QuestionAnsweringHead",
    "RMSNorm",
    "ResidualBlock",
    "TaskHead",
    "TokenClassificationHead",
    "activation",
    "additive_padding_mask",
    "attention_scores",
    "causal_mask",
    "gelu_new",
    "positions_from_mask",
]
