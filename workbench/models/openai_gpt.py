"""GPT (Radford et al. 2018, "Improving Language Understanding by Generative Pre-Training").

Written as a diff of GPT-2, its successor, which shares the decoder loop (causal attention, key/value
cache, positions counted over real tokens) and the heads. What differs:
- post-norm blocks, like BERT: ``x = LN1(x + Attention(x))``, ``x = LN2(x + MLP(x))``;
- no final LayerNorm: the last block's output is the representation (the logit lens decodes it as is);
- its ``afn="gelu"`` is the tanh approximation (Hugging Face maps it to ``gelu_new``);
- parameter names ``tokens_embed``, ``positions_embed``; ``Conv1D`` projections as in GPT-2;
- a ``</w>``-suffixed BPE vocabulary, lowercased (the tokenizer's business).
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..architecture import Architecture
from ..components import MLP, Attention, PostNormBlock
from ..loading import KeyMap
from .gpt2 import (
    CONV1D_WEIGHTS,
    LM_HEAD_KEY_MAP,
    SCORE_KEY_MAP,
    GPT2Config,
    GPT2ForSequenceClassification,
    GPT2LMHeadModel,
    GPT2Model,
)

# Hugging Face's names for GPT's activations (openai/modeling_openai.py ACT_FNS): its "gelu" is gelu_new.
OPENAI_ACTIVATIONS = {"gelu": "gelu_new", "relu": "relu", "silu": "silu", "swish": "silu"}


@dataclass
class OpenAIGPTConfig(GPT2Config):
    """GPT's hyper-parameters, with Hugging Face's names (those of GPT-2, plus ``afn`` for the activation)."""

    model_type = "openai-gpt"

    vocab_size: int = 40478
    n_positions: int = 512
    afn: str = "gelu"  #: the MLP activation, in GPT's naming (``"gelu"`` means the tanh approximation).
    bos_token_id: int | None = None
    eos_token_id: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        # GPT-2's fields that GPT's config.json does not have are not written back.
        self.activation_function = OPENAI_ACTIVATIONS.get(self.afn, self.afn)

    def validate(self) -> None:
        if self.afn not in OPENAI_ACTIVATIONS:
            raise ValueError(f"unsupported afn {self.afn!r}; GPT's activations are {sorted(OPENAI_ACTIVATIONS)}")
        super().validate()

    def to_dict(self) -> dict:
        out = super().to_dict()
        for gpt2_only in ("activation_function", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
                          "reorder_and_upcast_attn", "n_inner"):
            out.pop(gpt2_only, None)
        return out


OPENAI_GPT_KEY_MAP = KeyMap(
    [
        ("tokens_embed.weight", "embed.weight"),
        ("positions_embed.weight", "pos_embed.weight"),
        ("h.{i}.attn.c_attn.q.{p}", "blocks.{i}.attn.q.{p}"),
        ("h.{i}.attn.c_attn.k.{p}", "blocks.{i}.attn.k.{p}"),
        ("h.{i}.attn.c_attn.v.{p}", "blocks.{i}.attn.v.{p}"),
        ("h.{i}.attn.c_proj.{p}", "blocks.{i}.attn.o.{p}"),
        ("h.{i}.ln_1.{p}", "blocks.{i}.ln1.{p}"),
        ("h.{i}.mlp.c_fc.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("h.{i}.mlp.c_proj.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("h.{i}.ln_2.{p}", "blocks.{i}.ln2.{p}"),
    ],
    ignored=[r"^h\.\d+\.attn\.bias$", r"^position_ids$"],
    transposed=CONV1D_WEIGHTS,
)


class OpenAIGPTModel(GPT2Model):
    """The GPT decoder: GPT-2's loop with post-norm blocks and no final LayerNorm."""

    config_class = OpenAIGPTConfig
    body_key_map = OPENAI_GPT_KEY_MAP

    def make_block(self, config: OpenAIGPTConfig, layer: int) -> nn.Module:
        attn = Attention(config.d_model, config.n_heads, config.attn_pdrop)
        mlp = MLP(config.d_model, config.d_mlp, config.activation_function)
        return PostNormBlock(attn, mlp, config.d_model, config.layer_norm_epsilon, config.resid_pdrop)

    def make_final_norm(self, config: OpenAIGPTConfig) -> nn.Module | None:
        return None


class OpenAIGPTLMHeadModel(OpenAIGPTModel, GPT2LMHeadModel):
    """GPT with its language-modelling head (tied unembedding); ``hook_logits`` [batch, pos, vocab]."""

    head_key_map = LM_HEAD_KEY_MAP


class OpenAIGPTForSequenceClassification(OpenAIGPTModel, GPT2ForSequenceClassification):
    """GPT with a linear classifier read at the last real token; ``hook_logits`` [batch, num_labels]."""

    head_key_map = SCORE_KEY_MAP


ARCHITECTURE = Architecture(
    "GPT", OpenAIGPTConfig, OpenAIGPTModel, tokenizer_family="word_end_bpe", name_patterns=(r"^openai-gpt",),
    causal_lm=OpenAIGPTLMHeadModel, sequence_classification=OpenAIGPTForSequenceClassification,
    default_task="causal_lm",
)
