"""GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners").

What is distinctive about it:
- token + learned absolute position embeddings, no token types;
- pre-norm blocks: ``x = x + Attention(LN1(x))``, ``x = x + MLP(LN2(x))``, and a final LayerNorm;
- causal self-attention, with a key/value cache for incremental decoding;
- Hugging Face stores its projections as ``Conv1D`` ([in, out], the transpose of ``nn.Linear``) with q, k, v
  fused in one ``c_attn``: the weight conversion splits and transposes them, and fuses them back on save;
- the unembedding is tied to the token embedding.

Batching: position ids come from the attention mask (real tokens are counted, padding is skipped), so a
left- or right-padded batch gives every real token the activations it has alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import Architecture
from ..components import (
    MLP,
    Attention,
    KVCache,
    LayerNorm,
    PreNormBlock,
    activation,
    decoder_mask,
    positions_from_mask,
)
from ..components.fused import FusedSplit, FusedWeights
from ..components.heads import CausalLMHead, SequenceClassificationHead, body_forward
from ..config import ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import GenerationMixin, HookedTransformer
from ..outputs import DecoderOutput

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class GPT2Config(ModelConfig):
    """GPT-2's hyper-parameters, with Hugging Face's names.

    Hugging Face's ``summary_*`` settings (of its double-heads model) are not fields: they stay in ``extra``
    for round trips.
    """

    model_type = "gpt2"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head", "n_inner")
    NON_NEGATIVE_FIELDS = ("layer_norm_epsilon", "initializer_range", "bos_token_id", "eos_token_id", "pad_token_id")
    PROBABILITY_FIELDS = ("resid_pdrop", "embd_pdrop", "attn_pdrop", "classifier_dropout")

    # Canonical names (readable and writable; see workbench.config); d_mlp is derived (n_inner or 4 * n_embd).
    ATTRIBUTE_MAP = {"d_model": "n_embd", "n_layers": "n_layer", "n_heads": "n_head", "max_positions": "n_positions"}

    vocab_size: int = 50257  #: tokens in the vocabulary.
    n_positions: int = 1024  #: the longest input, in tokens.
    n_embd: int = 768  #: d_model.
    n_layer: int = 12  #: blocks.
    n_head: int = 12  #: heads per block.
    n_inner: int | None = None  #: d_mlp (None: 4 * n_embd).
    activation_function: str = "gelu_new"  #: the MLP activation (``"gelu_new"``, the tanh approximation).
    resid_pdrop: float = 0.1  #: dropout on block outputs.
    embd_pdrop: float = 0.1  #: dropout on embeddings.
    attn_pdrop: float = 0.1  #: dropout on attention patterns.
    layer_norm_epsilon: float = 1e-5  #: LayerNorm epsilon.
    initializer_range: float = 0.02  #: std of the normal initialization.
    scale_attn_weights: bool = True  #: divide attention scores by sqrt(d_head).
    scale_attn_by_inverse_layer_idx: bool = False  #: also divide them by (layer index + 1).
    #: Hugging Face's option to compute attention scores in float32 (same values up to rounding); kept for
    #: round trips, the workbench's attention does not read it.
    reorder_and_upcast_attn: bool = False
    bos_token_id: int | None = 50256  #: beginning-of-sequence token id.
    eos_token_id: int | None = 50256  #: end-of-sequence token id.
    pad_token_id: int | None = None  #: padding token id (GPT-2 has no padding token).
    #: dropout before Hugging Face's token classifier; kept for round trips (the workbench has no GPT-2
    #: token-classification head).
    classifier_dropout: float | None = None

    @property
    def d_mlp(self) -> int:
        return self.n_inner if self.n_inner is not None else 4 * self.n_embd

    @property
    def max_position_embeddings(self) -> int:
        return self.n_positions

    def validate(self) -> None:
        super().validate()
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be a multiple of n_head={self.n_head}")
        if self.extra.get("add_cross_attention"):
            raise ValueError("add_cross_attention=True (GPT-2 as an encoder-decoder's decoder) is not supported")
        activation(self.activation_function)

    def attention_scale(self, layer: int) -> float:
        """The factor on q.k in ``layer``."""
        scale = self.d_head**-0.5 if self.scale_attn_weights else 1.0
        return scale / (layer + 1) if self.scale_attn_by_inverse_layer_idx else scale


# Hugging Face's Conv1D weights (GPT and GPT-2), stored [in, out]; q/k/v as split by `FUSED_QKV`.
CONV1D_WEIGHTS = [
    "h.{i}.attn.c_attn.q.weight",
    "h.{i}.attn.c_attn.k.weight",
    "h.{i}.attn.c_attn.v.weight",
    "h.{i}.attn.c_proj.weight",
    "h.{i}.mlp.c_fc.weight",
    "h.{i}.mlp.c_proj.weight",
]

# Hugging Face parameter names <-> ours. GPT-2's c_attn holds q, k and v side by side: the `FUSED_QKV` rule
# splits it into c_attn.q / c_attn.k / c_attn.v first. Conv1D weights are [in, out]: transposed.
GPT2_KEY_MAP = KeyMap(
    [
        ("wte.weight", "embed.weight"),
        ("wpe.weight", "pos_embed.weight"),
        ("h.{i}.ln_1.{p}", "blocks.{i}.ln1.{p}"),
        ("h.{i}.attn.c_attn.q.{p}", "blocks.{i}.attn.q.{p}"),
        ("h.{i}.attn.c_attn.k.{p}", "blocks.{i}.attn.k.{p}"),
        ("h.{i}.attn.c_attn.v.{p}", "blocks.{i}.attn.v.{p}"),
        ("h.{i}.attn.c_proj.{p}", "blocks.{i}.attn.o.{p}"),
        ("h.{i}.ln_2.{p}", "blocks.{i}.ln2.{p}"),
        ("h.{i}.mlp.c_fc.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("h.{i}.mlp.c_proj.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("ln_f.{p}", "ln_final.{p}"),
    ],
    # The causal-mask buffers of older checkpoints.
    ignored=[r"^h\.\d+\.attn\.(bias|masked_bias)$"],
    transposed=CONV1D_WEIGHTS,
)
LM_HEAD_KEY_MAP = KeyMap([("lm_head.weight", "unembed.weight")])
SCORE_KEY_MAP = KeyMap([("score.weight", "classifier.weight")])


# ``...attn.c_attn.weight`` [d, 3d] / ``bias`` [3d] <-> ``...attn.c_attn.{q,k,v}.weight`` [d, d] / ``bias`` [d].
FUSED_QKV = FusedSplit("attn.c_attn", dim=-1)


# The model, top to bottom ----------------------------------------------------------------------------


class GPT2Model(FusedWeights, HookedTransformer):
    """The GPT-2 decoder: embeddings, pre-norm blocks, final LayerNorm.

    Hooks before the blocks: hook_embed, hook_pos_embed ([batch, pos, d_model]); after them
    ln_final.hook_scale / ln_final.hook_normalized.
    """

    config_class = GPT2Config
    body_key_map = GPT2_KEY_MAP
    base_model_prefix = "transformer"
    classifier_position = "last"
    fused_weights = (FUSED_QKV,)

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = nn.Embedding(config.n_positions, config.d_model)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.dropout = nn.Dropout(config.embd_pdrop)
        self.blocks = nn.ModuleList(self.make_block(config, layer) for layer in range(config.n_layers))
        self.ln_final = self.make_final_norm(config)

    def make_block(self, config: GPT2Config, layer: int) -> nn.Module:
        attn = Attention(config.d_model, config.n_heads, config.attn_pdrop, scale=config.attention_scale(layer))
        mlp = MLP(config.d_model, config.d_mlp, config.activation_function)
        return PreNormBlock(attn, mlp, config.d_model, config.layer_norm_epsilon, config.resid_pdrop)

    def make_final_norm(self, config: GPT2Config) -> nn.Module | None:
        return LayerNorm(config.d_model, config.layer_norm_epsilon)

    def decode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        use_cache: bool = False,
        head_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        token_type_ids: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Run embeddings, blocks and the final norm. Shapes as in :class:`DecoderOutput`.

        Args:
            attention_mask: [batch, past + pos], 1 for real tokens, 0 for padding (left or right).
            position_ids: [batch, pos]; default: counted over the real tokens of ``attention_mask``.
            past_key_values: a :class:`KVCache` from an earlier call (``use_cache=True`` returns one).
            output_hidden_states: n_layers + 1 states as Hugging Face gives them: the input of every block,
                then the final output after ``ln_final``.
            output_attentions: the attention pattern of every layer.

        Returns:
            :class:`DecoderOutput`.
        """
        if token_type_ids is not None:
            raise ValueError(
                f"{type(self).__name__} takes no token_type_ids (a tokenizer for another architecture made them?)"
            )
        token_embed = self.token_embeddings(input_ids, inputs_embeds)
        batch, new = token_embed.shape[:2]
        cache = past_key_values if past_key_values is not None else (KVCache() if use_cache else None)
        past = cache.past_length(new, attention_mask) if cache is not None else 0
        self.check_attention_mask(attention_mask, batch, past + new)
        self.check_sequence_length(past + new)
        self.check_embedding_ids(position_ids=(position_ids, self.pos_embed))
        if position_ids is None:
            if attention_mask is not None:
                position_ids = positions_from_mask(attention_mask, new)
            else:
                position_ids = torch.arange(past, past + new, device=token_embed.device).expand(batch, new)
        resid = self.dropout(self.hook_embed(token_embed) + self.hook_pos_embed(self.pos_embed(position_ids)))
        mask = decoder_mask(attention_mask, new, past + new, resid.dtype, resid.device)

        hidden_states = [] if output_hidden_states else None
        attentions = [] if output_attentions else None
        for layer, (block, block_head_mask) in enumerate(zip(self.blocks, self.layer_head_mask(head_mask))):
            if output_hidden_states:
                hidden_states.append(resid)
            past_kv = cache.layer(layer) if cache is not None else None
            resid, pattern = block(resid, mask, block_head_mask, output_attentions, past_kv)
            if output_attentions:
                attentions.append(pattern)
        if self.ln_final is not None:
            resid = self.ln_final(resid)
        if output_hidden_states:
            hidden_states.append(resid)
        return DecoderOutput(
            last_hidden_state=resid,
            past_key_values=cache if use_cache else None,
            hidden_states=tuple(hidden_states) if output_hidden_states else None,
            attentions=tuple(attentions) if output_attentions else None,
        )

    forward = body_forward(decode)


class GPT2LMHeadModel(CausalLMHead, GPT2Model, GenerationMixin):
    """GPT-2 with its language-modelling head (the unembedding, tied to the token embedding).

    Adds ``hook_logits`` [batch, pos, vocab]; generation and the logit lens live in
    :mod:`workbench.generation` and :mod:`workbench.lens`. ``forward`` is :meth:`LanguageModelHead.forward`:
    the inputs of :meth:`GPT2Model.forward` (``past_key_values=``, ``use_cache=``, ...) plus ``labels``
    [batch, pos] (-100 = ignored; position t predicts token t + 1); it returns :class:`CausalLMOutput`.
    """

    head_key_map = LM_HEAD_KEY_MAP

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.add_unembed(config.d_model, config.vocab_size, bias=False)

    def decode_residual(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits of a residual-stream state [..., d_model] -> [..., vocab]: the final norm, then the
        unembedding (the logit lens)."""
        return self.lm_logits(self.ln_final(resid) if self.ln_final is not None else resid)


class GPT2ForSequenceClassification(SequenceClassificationHead, GPT2Model):
    """GPT-2 with a linear classifier (``score``, no bias) read at the last real token of each row
    (``classifier_position = "last"``). Adds ``hook_logits`` [batch, num_labels].

    The last real token comes from the attention mask (or, without one, from ``pad_token_id`` as Hugging Face
    does), so left and right padding both work. ``forward`` is :meth:`SequenceClassificationHead.forward`: the
    inputs of :meth:`GPT2Model.forward` plus ``labels`` [batch]; it returns :class:`SequenceClassifierOutput`.
    """

    head_key_map = SCORE_KEY_MAP

    def __init__(self, config: GPT2Config) -> None:
        super().__init__(config)
        self.add_sequence_classifier(config.d_model, config.num_labels, bias=False)


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in's MLP width (GPT-2's ``n_inner``; None would mean 4 * d_model)."""
    return {"n_inner": size.d_mlp}


ARCHITECTURE = Architecture(
    "GPT-2", GPT2Config, GPT2Model, causal_lm=GPT2LMHeadModel, default_task="causal_lm",
    sequence_classification=GPT2ForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^(distil)?gpt2",), tiny_config=tiny_config,
)
