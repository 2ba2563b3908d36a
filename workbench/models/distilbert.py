"""DistilBERT (Sanh et al. 2019, "DistilBERT, a distilled version of BERT: smaller, faster, cheaper and lighter").

A BERT distilled into half the depth; what is distinctive about it:
- 6 layers by default (BERT-base's width: 768, 12 heads, 3072), initialized from every other BERT layer;
- no token-type (segment) embeddings and no pooler: token + absolute position embeddings, summed, then
  LayerNorm; its tokenizer (BERT's WordPiece) makes ``input_ids`` and ``attention_mask`` only;
- position embeddings learned, or fixed sinusoids (``sinusoidal_pos_embds``, Vaswani et al. 2017) that are
  nonetheless stored in the checkpoint as ``position_embeddings.weight`` and loaded from it;
- the same post-norm blocks as BERT: ``x = LN(x + Attention(x))`` (``sa_layer_norm``), then
  ``x = LN(x + FFN(x))`` (``output_layer_norm``); LayerNorm epsilon fixed at 1e-12; dropout on the FFN's
  output but not on the attention's;
- its own parameter and config names (``dim``, ``n_layers``, ``n_heads``, ``hidden_dim``; ``q_lin``,
  ``ffn.lin1``, ``vocab_projector``...), mapped to the same workbench names and hooks as BERT's;
- heads: masked LM (``vocab_transform`` -> activation -> ``vocab_layer_norm`` -> ``vocab_projector`` tied to
  the token embedding) and, for sentence tasks, ``pre_classifier`` -> ReLU -> ``classifier`` on the [CLS]
  state instead of BERT's tanh pooler.

As in BERT, ``hook_resid_mid`` is ``ln1``'s output and ``hook_resid_post`` is ``ln2``'s output, which is
Hugging Face's ``hidden_states[i + 1]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..architecture import Architecture
from ..components import MLP, Attention, LayerNorm, PostNormBlock, additive_padding_mask, heads
from ..components import activation as activation_function
from ..components.encoder import run_encoder_blocks, tokens_and_positions
from ..components.positions import sinusoid_table
from ..config import ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import FillMaskMixin, HookedTransformer
from ..outputs import EncoderOutput

# DistilBERT's LayerNorms all use this epsilon; it is not in the config.
LAYER_NORM_EPS = 1e-12

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class DistilBertConfig(ModelConfig):
    """DistilBERT's hyper-parameters, with Hugging Face's names.

    Hugging Face's own names ``n_layers`` and ``n_heads`` are already the workbench's canonical names, so
    here they are plain fields; ``d_model``, ``d_head`` and ``d_mlp`` are properties as on every config.
    BERT-style names (``hidden_size``, ``num_hidden_layers``, ``num_attention_heads``, Hugging Face's
    ``attribute_map``) are accepted by :meth:`from_dict` as aliases.
    """

    model_type = "distilbert"
    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = ("vocab_size", "max_position_embeddings", "n_layers", "n_heads", "dim", "hidden_dim")
    NON_NEGATIVE_FIELDS = ("initializer_range", "pad_token_id", "bos_token_id", "eos_token_id")
    PROBABILITY_FIELDS = ("dropout", "attention_dropout", "qa_dropout", "seq_classif_dropout")
    # Hugging Face's other names (its attribute_map).
    HF_ALIASES = {"hidden_size": "dim", "num_hidden_layers": "n_layers", "num_attention_heads": "n_heads"}

    # Canonical names (readable and writable; see workbench.config); n_layers and n_heads are fields.
    ATTRIBUTE_MAP = {"d_model": "dim", "d_mlp": "hidden_dim", "max_positions": "max_position_embeddings"}

    vocab_size: int = 30522  #: tokens in the vocabulary.
    max_position_embeddings: int = 512  #: the longest input, in tokens.
    sinusoidal_pos_embds: bool = False  #: position embeddings initialized as fixed sinusoids (else random).
    n_layers: int = 6  #: blocks.
    n_heads: int = 12  #: heads per block.
    dim: int = 768  #: d_model.
    hidden_dim: int = 4 * 768  #: d_mlp.
    dropout: float = 0.1  #: dropout on embeddings and on the FFN's output.
    attention_dropout: float = 0.1  #: dropout on the attention pattern.
    activation: str = "gelu"  #: the FFN and MLM-head activation (``"gelu"`` is the exact, erf-based GELU).
    initializer_range: float = 0.02  #: std of the normal initialization.
    qa_dropout: float = 0.1  #: dropout before the question-answering head.
    seq_classif_dropout: float = 0.2  #: dropout before the sequence-classification and multiple-choice head.
    pad_token_id: int | None = 0  #: the padding token, whose embedding row is zero at initialization.
    eos_token_id: int | list[int] | None = None  #: kept for Hugging Face's config; unused.
    bos_token_id: int | None = None  #: kept for Hugging Face's config; unused.


    def validate(self) -> None:
        super().validate()
        if self.dim % self.n_heads:
            raise ValueError(f"dim={self.dim} must be a multiple of n_heads={self.n_heads}")
        activation_function(self.activation)  # fails early, naming the activation


def sinusoidal_position_embeddings(n_pos: int, dim: int) -> torch.Tensor:
    """[n_pos, dim]: DistilBERT's sinusoid table, bitwise Hugging Face's ``create_sinusoidal_embeddings`` (see
    :func:`~workbench.components.positions.sinusoid_table`)."""
    return sinusoid_table(n_pos, dim)


# Hugging Face parameter names <-> ours. One line per tensor family; `{i}` is the layer, `{p}` weight|bias.
DISTILBERT_KEY_MAP = KeyMap(
    [
        ("embeddings.word_embeddings.weight", "embed.weight"),
        ("embeddings.position_embeddings.weight", "pos_embed.weight"),
        ("embeddings.LayerNorm.{p}", "ln_embed.{p}"),
        ("transformer.layer.{i}.attention.q_lin.{p}", "blocks.{i}.attn.q.{p}"),
        ("transformer.layer.{i}.attention.k_lin.{p}", "blocks.{i}.attn.k.{p}"),
        ("transformer.layer.{i}.attention.v_lin.{p}", "blocks.{i}.attn.v.{p}"),
        ("transformer.layer.{i}.attention.out_lin.{p}", "blocks.{i}.attn.o.{p}"),
        ("transformer.layer.{i}.sa_layer_norm.{p}", "blocks.{i}.ln1.{p}"),
        ("transformer.layer.{i}.ffn.lin1.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("transformer.layer.{i}.ffn.lin2.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("transformer.layer.{i}.output_layer_norm.{p}", "blocks.{i}.ln2.{p}"),
    ],
    # A non-persistent buffer that older checkpoints saved.
    ignored=[r"embeddings\.position_ids$"],
)

MLM_KEY_MAP = KeyMap(
    [
        ("vocab_transform.{p}", "mlm_head.dense.{p}"),
        ("vocab_layer_norm.{p}", "mlm_head.ln.{p}"),
        ("vocab_projector.{p}", "unembed.{p}"),
    ]
)
CLS_CLASSIFIER_KEY_MAP = KeyMap([("pre_classifier.{p}", "pre_classifier.{p}"), ("classifier.{p}", "classifier.{p}")])
TOKEN_CLASSIFIER_KEY_MAP = KeyMap([("classifier.{p}", "classifier.{p}")])
QA_KEY_MAP = KeyMap([("qa_outputs.{p}", "qa_outputs.{p}")])


# The model, top to bottom ----------------------------------------------------------------------------


class DistilBertFFN(MLP):
    """The MLP with dropout on its output: DistilBERT drops out the FFN's output but not the attention's, so
    its blocks are built with no dropout of their own and the FFN carries it (same hooks as :class:`MLP`)."""

    def __init__(self, d_model: int, d_mlp: int, act: str, dropout: float) -> None:
        super().__init__(d_model, d_mlp, act)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(super().forward(x))


class DistilBertModel(HookedTransformer):
    """The DistilBERT encoder: embeddings and a stack of post-norm blocks (no pooler).

    Hooks before the blocks: hook_embed, hook_pos_embed ([batch, pos, d_model]; the sinusoids too, when
    ``sinusoidal_pos_embds``) and ln_embed.* (whose output is blocks.0.hook_resid_pre).
    """

    config_class = DistilBertConfig
    body_key_map = DISTILBERT_KEY_MAP
    base_model_prefix = "distilbert"

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = nn.Embedding(config.max_position_embeddings, config.d_model)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        self.ln_embed = LayerNorm(config.d_model, LAYER_NORM_EPS)
        self.dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            PostNormBlock(
                Attention(config.d_model, config.n_heads, config.attention_dropout),
                DistilBertFFN(config.d_model, config.d_mlp, config.activation, config.dropout),
                config.d_model, LAYER_NORM_EPS, dropout=0.0,
            )
            for _ in range(config.n_layers)
        )

    def init_weights(self) -> None:
        super().init_weights()
        if self.config.sinusoidal_pos_embds:
            with torch.no_grad():
                self.pos_embed.weight.copy_(
                    sinusoidal_position_embeddings(self.config.max_position_embeddings, self.config.d_model)
                )

    def reject_token_types(self, token_type_ids: torch.Tensor | None) -> None:
        if token_type_ids is not None:
            raise ValueError(
                f"{type(self).__name__} takes no token_type_ids: DistilBERT has no token-type (segment) "
                f"embeddings; pass input_ids and attention_mask only (a BERT tokenizer makes token_type_ids)"
            )

    def embed_tokens(
        self,
        input_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token + position embeddings, normalized: [batch, pos] -> [batch, pos, d_model]."""
        self.reject_token_types(token_type_ids)
        token_embed, position_ids = tokens_and_positions(self, input_ids, inputs_embeds, position_ids)
        token_embed = self.hook_embed(token_embed)
        pos_embed = self.hook_pos_embed(self.pos_embed(position_ids))
        return self.dropout(self.ln_embed(token_embed + pos_embed))

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        token_type_ids: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Run embeddings and blocks. Shapes as in :class:`EncoderOutput` (``pooler_output`` is None).

        Args:
            position_ids: [batch, pos] (default 0..pos-1).
            token_type_ids: not taken: an error that says so (rather than a TypeError).

        Returns:
            :class:`EncoderOutput` (last_hidden_state, hidden_states, attentions; no pooler_output).
        """
        resid = self.embed_tokens(input_ids, position_ids, inputs_embeds, token_type_ids)
        self.check_attention_mask(attention_mask, *resid.shape[:2])
        mask = additive_padding_mask(attention_mask, resid.dtype)
        resid, hidden_states, attentions = run_encoder_blocks(
            self.blocks, resid, self.layer_head_mask(head_mask), output_hidden_states, output_attentions, mask
        )
        return EncoderOutput(
            last_hidden_state=resid,
            hidden_states=hidden_states,
            attentions=attentions,
        )

    forward = heads.body_forward(encode)


class DistilBertForMaskedLM(heads.MaskedLMHead, DistilBertModel, FillMaskMixin):
    """DistilBERT with its masked-language-model head: ``vocab_transform`` -> activation ->
    ``vocab_layer_norm`` (``mlm_head``, see :class:`MaskedLMTransform`), then ``vocab_projector`` tied to the
    token embedding. Adds ``mlm_head.ln.*`` and ``hook_logits`` [batch, pos, vocab].

    ``forward`` is :meth:`LanguageModelHead.forward`: the inputs of :meth:`DistilBertModel.forward` plus
    ``labels`` [batch, pos] (-100 = ignored); it returns :class:`MaskedLMOutput`.
    """

    head_key_map = MLM_KEY_MAP

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        transform = heads.MaskedLMTransform(config.d_model, config.activation, LAYER_NORM_EPS)
        self.add_unembed(config.d_model, config.vocab_size, transform=transform)  # vocab_projector


class DistilBertSequenceScoring:
    """Mixin of DistilBERT's sequence heads, named before the head mixin: the state a sequence is scored from
    is ``pre_classifier`` -> ReLU on the [CLS] state (instead of BERT's tanh pooler), then dropout
    (``seq_classif_dropout``) -> ``classifier``."""

    def add_pre_classifier(self, config: DistilBertConfig, n_out: int) -> None:
        """``pre_classifier``, then the dropout, ``classifier`` (d_model -> n_out) and ``hook_logits``."""
        self.pre_classifier = nn.Linear(config.d_model, config.d_model)
        self.add_sequence_classifier(config.d_model, n_out, config.seq_classif_dropout)

    def sequence_state(self, body: EncoderOutput, input_ids=None, attention_mask=None) -> torch.Tensor:
        return F.relu(self.pre_classifier(body.last_hidden_state[:, 0]))  # [batch, d_model]


class DistilBertForSequenceClassification(
    DistilBertSequenceScoring, heads.SequenceClassificationHead, DistilBertModel
):
    """DistilBERT with ``pre_classifier`` -> ReLU -> dropout -> ``classifier`` on the [CLS] state.
    Adds ``hook_logits`` [batch, num_labels].

    ``forward`` is :meth:`SequenceClassificationHead.forward`: the inputs of :meth:`DistilBertModel.forward`
    plus ``labels`` [batch] (class ids, or floats for regression); it returns :class:`SequenceClassifierOutput`.
    """

    head_key_map = CLS_CLASSIFIER_KEY_MAP

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.add_pre_classifier(config, config.num_labels)


class DistilBertForTokenClassification(heads.TokenClassificationHead, DistilBertModel):
    """DistilBERT with a classifier on every token (NER, POS): dropout (``config.dropout``) -> linear.
    Adds ``hook_logits`` [batch, pos, num_labels].

    ``forward`` is :meth:`TokenClassificationHead.forward`: the inputs of :meth:`DistilBertModel.forward`
    plus ``labels`` [batch, pos] (-100 = ignored); it returns :class:`TokenClassifierOutput`.
    """

    head_key_map = TOKEN_CLASSIFIER_KEY_MAP

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.add_token_classifier(config.d_model, config.num_labels, config.dropout)


class DistilBertForQuestionAnswering(heads.QuestionAnsweringHead, DistilBertModel):
    """DistilBERT with span start/end logits for extractive QA (SQuAD): dropout (``config.qa_dropout``)
    -> linear. Adds ``hook_logits`` [batch, pos, 2].

    ``forward`` is :meth:`QuestionAnsweringHead.forward`: the inputs of :meth:`DistilBertModel.forward` plus
    the answer's ``start_positions``/``end_positions`` [batch]; it returns :class:`QuestionAnsweringOutput`.
    """

    head_key_map = QA_KEY_MAP

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.add_span_head(config.d_model, dropout=config.qa_dropout, num_labels=config.num_labels)


class DistilBertForMultipleChoice(DistilBertSequenceScoring, heads.MultipleChoiceHead, DistilBertModel):
    """DistilBERT scoring each choice with ``pre_classifier`` -> ReLU -> dropout -> ``classifier`` on its
    [CLS] state (SWAG, RACE, ARC).

    ``forward`` is :meth:`MultipleChoiceHead.forward`: the inputs of :meth:`DistilBertModel.forward`, each
    [batch, num_choices, ...], plus ``labels`` [batch]; adds ``hook_logits`` [batch, num_choices].
    """

    head_key_map = CLS_CLASSIFIER_KEY_MAP
    choice_inputs = ("input_ids", "attention_mask", "inputs_embeds", "position_ids")

    def __init__(self, config: DistilBertConfig) -> None:
        super().__init__(config)
        self.add_pre_classifier(config, 1)


# DistilBERT's checkpoints name their own tokenizer class: BERT's WordPiece, without token_type_ids.
ARCHITECTURE = Architecture(
    "DistilBERT", DistilBertConfig, DistilBertModel, tokenizer_family="wordpiece",
    tokenizer_class="DistilBertTokenizer", masked_lm=DistilBertForMaskedLM, default_task="masked_lm",
    multiple_choice=DistilBertForMultipleChoice, question_answering=DistilBertForQuestionAnswering,
    sequence_classification=DistilBertForSequenceClassification,
    token_classification=DistilBertForTokenClassification, name_patterns=(r"^distilbert",),
)
