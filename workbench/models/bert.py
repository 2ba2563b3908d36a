"""BERT (Devlin et al. 2019, "BERT: Pre-training of Deep Bidirectional Transformers").

What is distinctive about it:
- token + learned absolute position + token-type (segment) embeddings, summed, then LayerNorm;
- post-norm blocks: ``x = LN(x + Attention(x))``, then ``x = LN(x + FFN(x))``;
- bidirectional self-attention (padding is the only mask);
- heads: masked-LM (dense -> GELU -> LN -> unembedding tied to the token embedding) and a pooler
  (tanh of a dense layer on the [CLS] state) for sentence classification.

Because blocks are post-norm, the residual stream that a block hands on is the output of its
LayerNorm: ``hook_resid_mid`` is ``ln1``'s output and ``hook_resid_post`` is ``ln2``'s output, which is
Hugging Face's ``hidden_states[i + 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import Architecture
from ..components import MLP, Attention, LayerNorm, PostNormBlock, activation, additive_padding_mask, heads
from ..components.encoder import run_encoder_blocks, tokens_and_positions
from ..config import ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import FillMaskMixin, HookedTransformer
from ..outputs import EncoderOutput

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class BertConfig(ModelConfig):
    """BERT's hyper-parameters, with Hugging Face's names."""

    model_type = "bert"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                   "max_position_embeddings", "type_vocab_size")
    NON_NEGATIVE_FIELDS = ("initializer_range", "layer_norm_eps", "pad_token_id")
    PROBABILITY_FIELDS = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout")

    # Canonical names (readable and writable; see workbench.config).
    ATTRIBUTE_MAP = {
        "d_model": "hidden_size",
        "n_layers": "num_hidden_layers",
        "n_heads": "num_attention_heads",
        "d_mlp": "intermediate_size",
        "max_positions": "max_position_embeddings",
    }

    vocab_size: int = 30522  #: tokens in the vocabulary.
    hidden_size: int = 768  #: d_model (H in the paper).
    num_hidden_layers: int = 12  #: blocks (L).
    num_attention_heads: int = 12  #: heads per block (A).
    intermediate_size: int = 3072  #: d_mlp (4H in the paper).
    hidden_act: str = "gelu"  #: the feed-forward activation (``"gelu"`` is the exact, erf-based GELU).
    hidden_dropout_prob: float = 0.1  #: dropout on embeddings and block outputs.
    attention_probs_dropout_prob: float = 0.1  #: dropout on the attention pattern.
    max_position_embeddings: int = 512  #: the longest input, in tokens.
    type_vocab_size: int = 2  #: number of token types (segments).
    initializer_range: float = 0.02  #: std of the normal initialization.
    layer_norm_eps: float = 1e-12  #: LayerNorm epsilon.
    pad_token_id: int = 0  #: the padding token, whose embedding row is zero at initialization.
    position_embedding_type: str = "absolute"  #: only ``"absolute"`` is supported.
    classifier_dropout: float | None = None  #: dropout before a classifier (None: hidden_dropout_prob).
    is_decoder: bool = False  #: BERT used as a causal decoder (not supported).

    def validate(self) -> None:
        super().validate()
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} must be a multiple of num_attention_heads={self.num_attention_heads}"
            )
        if self.position_embedding_type != "absolute":
            raise ValueError(
                f"position_embedding_type={self.position_embedding_type!r} is not supported; "
                f"the workbench's BERT has absolute positions only"
            )
        if self.is_decoder:
            raise ValueError("is_decoder=True (BERT as a causal decoder) is not supported; use GPT or GPT-2")
        activation(self.hidden_act)  # fails early, naming the activation

    @property
    def head_dropout(self) -> float:
        """The dropout before a task head's classifier: ``classifier_dropout``, else ``hidden_dropout_prob``."""
        return self.classifier_dropout if self.classifier_dropout is not None else self.hidden_dropout_prob


# Hugging Face parameter names <-> ours. One line per tensor family; `{i}` is the layer, `{p}` weight|bias.
BERT_KEY_MAP = KeyMap(
    [
        ("embeddings.word_embeddings.weight", "embed.weight"),
        ("embeddings.position_embeddings.weight", "pos_embed.weight"),
        ("embeddings.token_type_embeddings.weight", "token_type_embed.weight"),
        ("embeddings.LayerNorm.{p}", "ln_embed.{p}"),
        ("encoder.layer.{i}.attention.self.query.{p}", "blocks.{i}.attn.q.{p}"),
        ("encoder.layer.{i}.attention.self.key.{p}", "blocks.{i}.attn.k.{p}"),
        ("encoder.layer.{i}.attention.self.value.{p}", "blocks.{i}.attn.v.{p}"),
        ("encoder.layer.{i}.attention.output.dense.{p}", "blocks.{i}.attn.o.{p}"),
        ("encoder.layer.{i}.attention.output.LayerNorm.{p}", "blocks.{i}.ln1.{p}"),
        ("encoder.layer.{i}.intermediate.dense.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("encoder.layer.{i}.output.dense.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("encoder.layer.{i}.output.LayerNorm.{p}", "blocks.{i}.ln2.{p}"),
        ("pooler.dense.{p}", "pooler.{p}"),
    ],
    # Non-persistent buffers that older checkpoints saved.
    ignored=[r"embeddings\.position_ids$", r"embeddings\.token_type_ids$"],
)

MLM_KEY_MAP = KeyMap(
    [
        ("cls.predictions.transform.dense.{p}", "mlm_head.dense.{p}"),
        ("cls.predictions.transform.LayerNorm.{p}", "mlm_head.ln.{p}"),
        # The unembedding bias is stored twice; they differ only in untied checkpoints, where the decoder's
        # own bias is the one Hugging Face's forward uses, so it wins. Saving writes both.
        ("cls.predictions.decoder.bias", "unembed.bias"),
        ("cls.predictions.bias", "unembed.bias"),
        ("cls.predictions.decoder.weight", "unembed.weight"),
    ],
)

CLASSIFIER_KEY_MAP = KeyMap([("classifier.{p}", "classifier.{p}")])
QA_KEY_MAP = KeyMap([("qa_outputs.{p}", "qa_outputs.{p}")])


# The model, top to bottom ----------------------------------------------------------------------------


class BertModel(HookedTransformer):
    """The BERT encoder: embeddings, a stack of post-norm blocks, and (optionally) the pooler.

    Hooks before the blocks: hook_embed, hook_pos_embed, hook_token_type_embed ([batch, pos, d_model]) and
    ln_embed.* (whose output is blocks.0.hook_resid_pre).
    """

    config_class = BertConfig
    body_key_map = BERT_KEY_MAP
    base_model_prefix = "bert"
    add_pooling_layer = True

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = nn.Embedding(config.max_position_embeddings, config.d_model)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.token_type_embed = nn.Embedding(config.type_vocab_size, config.d_model)
        self.hook_token_type_embed = HookPoint()  # [batch, pos, d_model]
        self.ln_embed = LayerNorm(config.d_model, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.blocks = nn.ModuleList(
            PostNormBlock(
                Attention(config.d_model, config.n_heads, config.attention_probs_dropout_prob),
                MLP(config.d_model, config.d_mlp, config.hidden_act),
                config.d_model, config.layer_norm_eps, config.hidden_dropout_prob,
            )
            for _ in range(config.n_layers)
        )
        self.pooler = nn.Linear(config.d_model, config.d_model) if self.add_pooling_layer else None

    def position_ids_for(
        self, input_ids: torch.Tensor | None, position_ids: torch.Tensor | None, inputs_embeds: torch.Tensor | None
    ) -> torch.Tensor | None:
        """The position ids to embed: those given (None: 0..pos-1). RoBERTa computes its own."""
        return position_ids

    def embed_tokens(
        self,
        input_ids: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        """Token + position + token-type embeddings, normalized: [batch, pos] -> [batch, pos, d_model]."""
        token_embed, position_ids = tokens_and_positions(
            self, input_ids, inputs_embeds, self.position_ids_for(input_ids, position_ids, inputs_embeds),
            token_type_ids=(token_type_ids, self.token_type_embed),
        )
        if token_type_ids is None:
            token_type_ids = torch.zeros(token_embed.shape[:2], dtype=torch.long, device=token_embed.device)
        token_embed = self.hook_embed(token_embed)
        pos_embed = self.hook_pos_embed(self.pos_embed(position_ids))
        type_embed = self.hook_token_type_embed(self.token_type_embed(token_type_ids))
        return self.dropout(self.ln_embed(token_embed + type_embed + pos_embed))

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """Run embeddings and blocks (and the pooler, if any). Shapes as in :class:`EncoderOutput`.

        Args:
            token_type_ids: [batch, pos] segment ids (default all 0).
            position_ids: [batch, pos] (default 0..pos-1).

        Returns:
            :class:`EncoderOutput` (last_hidden_state, pooler_output, hidden_states, attentions).
        """
        resid = self.embed_tokens(input_ids, token_type_ids, position_ids, inputs_embeds)
        self.check_attention_mask(attention_mask, *resid.shape[:2])
        mask = additive_padding_mask(attention_mask, resid.dtype)
        resid, hidden_states, attentions = run_encoder_blocks(
            self.blocks, resid, self.layer_head_mask(head_mask), output_hidden_states, output_attentions, mask
        )
        pooled = torch.tanh(self.pooler(resid[:, 0])) if self.pooler is not None else None
        return EncoderOutput(
            last_hidden_state=resid,
            pooler_output=pooled,
            hidden_states=hidden_states,
            attentions=attentions,
        )

    forward = heads.body_forward(encode)


class BertForMaskedLM(heads.MaskedLMHead, BertModel, FillMaskMixin):
    """BERT with its masked-language-model head: ``mlm_head`` (dense -> activation -> LayerNorm, see
    :class:`MaskedLMTransform`), then the unembedding tied to the token embedding. Adds the hooks
    ``mlm_head.ln.*`` and ``hook_logits`` [batch, pos, vocab]; ``decode_residual`` decodes any residual state
    (the logit lens).

    ``forward`` is :meth:`LanguageModelHead.forward`: the inputs of :meth:`BertModel.forward` plus ``labels``
    [batch, pos] (-100 = ignored); it returns :class:`MaskedLMOutput`.
    """

    head_key_map = MLM_KEY_MAP
    add_pooling_layer = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        transform = heads.MaskedLMTransform(config.d_model, config.hidden_act, config.layer_norm_eps)
        self.add_unembed(config.d_model, config.vocab_size, transform=transform)


class BertForSequenceClassification(heads.SequenceClassificationHead, BertModel):
    """BERT with a classifier on the pooled [CLS] state: dropout (``classifier_dropout``, else
    ``hidden_dropout_prob``) -> linear. Adds ``hook_logits`` [batch, num_labels].

    ``forward`` is :meth:`SequenceClassificationHead.forward`: the inputs of :meth:`BertModel.forward` plus
    ``labels`` [batch] (class ids, or floats for regression); it returns :class:`SequenceClassifierOutput`.
    """

    head_key_map = CLASSIFIER_KEY_MAP

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.add_sequence_classifier(config.d_model, config.num_labels, config.head_dropout)


class BertForTokenClassification(heads.TokenClassificationHead, BertModel):
    """BERT with a classifier on every token (NER, POS): dropout (``classifier_dropout``, else
    ``hidden_dropout_prob``) -> linear. Adds ``hook_logits`` [batch, pos, num_labels].

    ``forward`` is :meth:`TokenClassificationHead.forward`: the inputs of :meth:`BertModel.forward` plus
    ``labels`` [batch, pos] (-100 = ignored); it returns :class:`TokenClassifierOutput`.
    """

    head_key_map = CLASSIFIER_KEY_MAP
    add_pooling_layer = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.add_token_classifier(config.d_model, config.num_labels, config.head_dropout)


class BertForQuestionAnswering(heads.QuestionAnsweringHead, BertModel):
    """BERT with span start/end logits for extractive QA (SQuAD). Adds ``hook_logits`` [batch, pos, 2].

    ``forward`` is :meth:`QuestionAnsweringHead.forward`: the inputs of :meth:`BertModel.forward` plus the
    answer's ``start_positions``/``end_positions`` [batch]; it returns :class:`QuestionAnsweringOutput`.
    """

    head_key_map = QA_KEY_MAP
    add_pooling_layer = False

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.add_span_head(config.d_model)


class BertForMultipleChoice(heads.MultipleChoiceHead, BertModel):
    """BERT scoring each choice from its pooled [CLS] state (SWAG, RACE, ARC): dropout -> linear.

    ``forward`` is :meth:`MultipleChoiceHead.forward`: the inputs of :meth:`BertModel.forward`, each
    [batch, num_choices, ...], plus ``labels`` [batch]; adds ``hook_logits`` [batch, num_choices].
    """

    head_key_map = CLASSIFIER_KEY_MAP

    def __init__(self, config: BertConfig) -> None:
        super().__init__(config)
        self.add_sequence_classifier(config.d_model, 1, config.head_dropout)  # on the pooled state


ARCHITECTURE = Architecture(
    "BERT", BertConfig, BertModel, masked_lm=BertForMaskedLM, default_task="masked_lm",
    sequence_classification=BertForSequenceClassification, token_classification=BertForTokenClassification,
    question_answering=BertForQuestionAnswering, multiple_choice=BertForMultipleChoice,
    tokenizer_family="wordpiece", name_patterns=(r"^bert", r".*minilm"),
)
