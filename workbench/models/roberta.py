"""RoBERTa (Liu et al. 2019, "RoBERTa: A Robustly Optimized BERT Pretraining Approach").

The network is BERT's (:mod:`workbench.models.bert`); what differs is how it was trained and these details,
which are all this module overrides (the tokenizer's are in :mod:`workbench.tokenizers.wordpiece_bpe`, family
``"roberta_bpe"``):

- positions start after the padding token and skip it: a token's position id is ``padding_idx`` + the
  number of non-padding tokens up to and including it, and padding tokens get ``padding_idx`` itself
  (fairseq's ``make_positions``, Hugging Face's ``create_position_ids_from_input_ids``). Positions are
  therefore read from ``input_ids`` (``!= pad_token_id``), not from the attention mask; with
  ``inputs_embeds`` they are ``padding_idx + 1 ..``. So the position embedding has ``padding_idx`` too,
  and a model takes at most ``max_position_embeddings - pad_token_id - 1`` tokens (512 for roberta-base);
- a byte-level BPE vocabulary (GPT-2's) with ``<s> ... </s>`` around a text and ``<s> A </s></s> B </s>``
  around a pair; the tokenizer makes no ``token_type_ids`` (there is one token type in released models);
- parameters under ``roberta.`` in checkpoints with a head;
- no next-sentence head; the masked-LM head (``lm_head``: dense -> GELU -> LayerNorm -> unembedding tied
  to the token embedding) always uses the exact GELU, whatever ``hidden_act`` says;
- sentence classification reads the ``<s>`` state through its own head (dropout -> dense -> tanh ->
  dropout -> ``out_proj``), not through BERT's pooler, which RoBERTa's classifier does not have.

Hook names are BERT's, one for one (``hook_pos_embed`` holds the embeddings of these shifted positions);
heads add ``hook_logits`` (and the masked-LM head ``mlm_head.ln.*``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..architecture import Architecture
from ..components.heads import MaskedLMTransform, SequenceClassificationHead
from ..loading import KeyMap
from ..outputs import EncoderOutput
from .bert import (
    BertConfig,
    BertForMaskedLM,
    BertForMultipleChoice,
    BertForQuestionAnswering,
    BertForTokenClassification,
    BertModel,
)

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class RobertaConfig(BertConfig):
    """RoBERTa's hyper-parameters: BERT's fields (see :class:`BertConfig`) with Hugging Face's RobertaConfig
    defaults (a 50265-token vocabulary, ``<pad>`` = 1), plus the ids of ``<s>`` and ``</s>``.

    Released checkpoints set ``max_position_embeddings=514`` (512 tokens + the padding offset),
    ``type_vocab_size=1`` and ``layer_norm_eps=1e-5`` in their ``config.json``.

    Attributes:
        pad_token_id: the padding token; also the position embedding's padding index, after which positions start.
        bos_token_id, eos_token_id: ``<s>`` and ``</s>`` (informational; the tokenizer adds them).
    """

    model_type = "roberta"
    NON_NEGATIVE_FIELDS = (*BertConfig.NON_NEGATIVE_FIELDS, "bos_token_id", "eos_token_id")

    vocab_size: int = 50265
    pad_token_id: int = 1
    bos_token_id: int | None = 0
    eos_token_id: int | None = 2

    def validate(self) -> None:
        super().validate()
        if not isinstance(self.pad_token_id, int) or not 0 <= self.pad_token_id < self.vocab_size:
            raise ValueError(
                f"pad_token_id={self.pad_token_id!r}: RoBERTa needs the padding token's id (0 <= id < "
                f"vocab_size={self.vocab_size}), since its positions start after it"
            )
        if self.max_position_embeddings <= self.pad_token_id + 1:
            raise ValueError(
                f"max_position_embeddings={self.max_position_embeddings} leaves no position after the padding "
                f"index {self.pad_token_id}; RoBERTa's positions are pad_token_id + 1, pad_token_id + 2, ..."
            )


# Hugging Face parameter names <-> ours. The body's are BERT's (under "roberta." in head checkpoints).
ROBERTA_MLM_KEY_MAP = KeyMap(
    [
        ("lm_head.dense.{p}", "mlm_head.dense.{p}"),
        ("lm_head.layer_norm.{p}", "mlm_head.ln.{p}"),
        # As BERT's: the unembedding bias is stored as lm_head.bias and as the decoder's own bias. Hugging Face
        # ties the second to the first, but keeps them apart (and its forward uses the decoder's) when a
        # checkpoint has both with different values or tie_word_embeddings is false: so the decoder's wins.
        ("lm_head.decoder.bias", "unembed.bias"),
        ("lm_head.bias", "unembed.bias"),
        ("lm_head.decoder.weight", "unembed.weight"),
    ],
)

ROBERTA_CLASSIFIER_KEY_MAP = KeyMap(
    [
        ("classifier.dense.{p}", "classifier.dense.{p}"),
        ("classifier.out_proj.{p}", "classifier.out_proj.{p}"),
    ]
)


# The model -------------------------------------------------------------------------------------------


def positions_after_padding(input_ids: torch.Tensor, padding_idx: int) -> torch.Tensor:
    """[batch, pos] token ids -> [batch, pos] position ids: ``padding_idx`` + the count of non-padding tokens
    so far for real tokens, ``padding_idx`` for padding (so left or right padding does not shift them)."""
    real = input_ids.ne(padding_idx).long()
    return real.cumsum(-1) * real + padding_idx


class RobertaModel(BertModel):
    """The RoBERTa encoder: BERT's, with positions that start after the padding token and skip it.

    Hooks are BERT's: hook_embed, hook_pos_embed, hook_token_type_embed, ln_embed.*, then the blocks'.
    ``position_ids``, when not given, come from ``input_ids`` as in Hugging Face (see the module docstring);
    the attention mask is not consulted for them.
    """

    config_class = RobertaConfig
    base_model_prefix = "roberta"

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.padding_idx = config.pad_token_id
        self.pos_embed = nn.Embedding(config.max_position_embeddings, config.d_model, padding_idx=self.padding_idx)

    def position_ids_for(self, input_ids, position_ids, inputs_embeds) -> torch.Tensor | None:
        """RoBERTa's default positions, when none are given: from ``input_ids`` (padding skipped), or
        ``padding_idx + 1 ..`` for ``inputs_embeds``; checked against the table as given ones are."""
        if position_ids is None and (input_ids is None) != (inputs_embeds is None):  # else BERT's check raises
            if input_ids is not None and input_ids.dim() == 2:
                position_ids = positions_after_padding(input_ids, self.padding_idx)
            elif inputs_embeds is not None:
                length = inputs_embeds.shape[1]
                first = self.padding_idx + 1
                position_ids = torch.arange(first, first + length, device=inputs_embeds.device)
                position_ids = position_ids.expand(inputs_embeds.shape[:2])
        return position_ids

    def check_sequence_length(self, length: int) -> None:
        limit = self.config.max_position_embeddings - self.padding_idx - 1
        if not torch.jit.is_tracing() and length > limit:
            raise ValueError(
                f"the input has {length} tokens but {type(self).__name__} takes at most {limit} "
                f"(max_position_embeddings={self.config.max_position_embeddings}, less the padding index "
                f"{self.padding_idx} + 1 that its positions start after); truncate it, e.g. "
                f"tokenizer(text, truncation=True)"
            )


class RobertaForMaskedLM(RobertaModel, BertForMaskedLM):
    """RoBERTa with its masked-language-model head (``lm_head``). Adds the hooks ``mlm_head.ln.*`` and
    ``hook_logits`` [batch, pos, vocab]; ``decode_residual`` decodes any residual state (the logit lens)."""

    head_key_map = ROBERTA_MLM_KEY_MAP

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        # Hugging Face's RobertaLMHead uses the exact GELU, whatever hidden_act says.
        self.mlm_head = MaskedLMTransform(config.d_model, "gelu", config.layer_norm_eps)


class RobertaClassificationHead(nn.Module):
    """Sentence classification from the ``<s>`` state: dropout -> dense -> tanh -> dropout -> out_proj.

    [batch, pos, d_model] -> [batch, num_labels].
    """

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.dropout = nn.Dropout(config.head_dropout)
        self.out_proj = nn.Linear(config.d_model, config.num_labels)

    def forward(self, resid: torch.Tensor) -> torch.Tensor:
        x = self.dropout(resid[:, 0])
        x = self.dropout(torch.tanh(self.dense(x)))
        return self.out_proj(x)


class RobertaForSequenceClassification(SequenceClassificationHead, RobertaModel):
    """RoBERTa with its classification head on the ``<s>`` state (no pooler). Adds ``hook_logits``
    [batch, num_labels].

    ``forward`` is :meth:`SequenceClassificationHead.forward`: the inputs of :meth:`BertModel.forward` plus
    ``labels`` [batch] (class ids, or floats for regression); it returns :class:`SequenceClassifierOutput`.
    """

    head_key_map = ROBERTA_CLASSIFIER_KEY_MAP
    add_pooling_layer = False

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        self.classifier = RobertaClassificationHead(config)
        self.add_sequence_logits()

    def sequence_scores(self, body: EncoderOutput, input_ids=None, attention_mask=None) -> torch.Tensor:
        return self.classifier(body.last_hidden_state)  # [batch, num_labels], from the <s> state


class RobertaForTokenClassification(RobertaModel, BertForTokenClassification):
    """RoBERTa with a classifier on every token (NER, POS). Adds ``hook_logits`` [batch, pos, num_labels]."""


class RobertaForQuestionAnswering(RobertaModel, BertForQuestionAnswering):
    """RoBERTa with span start/end logits for extractive QA (SQuAD). Adds ``hook_logits`` [batch, pos, 2]."""


class RobertaForMultipleChoice(RobertaModel, BertForMultipleChoice):
    """RoBERTa scoring each choice from its pooled ``<s>`` state (this head keeps the pooler).

    Inputs are [batch, num_choices, pos]; adds ``hook_logits`` [batch, num_choices].
    """

    def __init__(self, config: RobertaConfig) -> None:
        super().__init__(config)
        # Hugging Face's RobertaForMultipleChoice drops out with hidden_dropout_prob, not classifier_dropout.
        self.classifier_dropout = nn.Dropout(config.hidden_dropout_prob)


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: positions start after the padding id (two more rows), one token type, its eps."""
    return {"max_position_embeddings": size.n_positions + 2, "type_vocab_size": 1, "layer_norm_eps": 1e-5}


ARCHITECTURE = Architecture(
    "RoBERTa", RobertaConfig, RobertaModel, default_task="masked_lm", masked_lm=RobertaForMaskedLM,
    sequence_classification=RobertaForSequenceClassification, multiple_choice=RobertaForMultipleChoice,
    token_classification=RobertaForTokenClassification, question_answering=RobertaForQuestionAnswering,
    tokenizer_family="roberta_bpe", name_patterns=(r"^(distil)?roberta",), tiny_config=tiny_config,
)
