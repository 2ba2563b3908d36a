"""XLM (Lample & Conneau 2019, "Cross-lingual Language Model Pretraining").

What is distinctive about it:
- a **language embedding**: besides token and position embeddings, every token may carry a language id
  (the ``langs`` input, [batch, pos]) whose embedding is added (multilingual checkpoints, ``n_langs > 1``
  and ``use_lang_emb``); ``config.lang2id`` maps names (``"en"``) to ids;
- positions are learned, or sinusoids (``sinusoidal_embeddings``: Vaswani et al.'s table, written at
  initialization and saved with the weights; Hugging Face leaves it trainable);
- the summed embeddings go through a LayerNorm (``layer_norm_emb``);
- post-norm blocks, like BERT's: attention -> dropout -> residual add -> ``layer_norm1``; FFN -> residual
  add -> ``layer_norm2``; d_mlp = 4 * d_model, GELU (``gelu_activation``) or ReLU;
- one model for both objectives: bidirectional (MLM/TLM checkpoints) or, with ``causal=True`` (the
  ``xlm-clm-*`` checkpoints), causal self-attention;
- padding is handled twice, as the original code (and Hugging Face's port) does: padded keys are masked in
  attention (bidirectional models only: causal models mask the future, not padding), and the hidden state
  of every padded position is multiplied by 0 after the embeddings and after every block;
- the prediction layer (``pred_layer.proj``) is a linear map with a bias, its weight tied to the token
  embedding; the classifier is Hugging Face's "sequence summary" (first token -> dropout -> linear);
- task heads as Hugging Face's: token classification (dropout -> ``classifier`` on every token), extractive
  QA (``XLMForQuestionAnsweringSimple``: ``qa_outputs`` -> start/end logits; Hugging Face's beam-search
  ``XLMForQuestionAnswering`` SQuAD head is not ported) and multiple choice (the sequence summary of each
  choice -> ``logits_proj`` to one score).

Quirks kept for parity with Hugging Face:
- without ``attention_mask``, the padding mask counts the tokens that are not ``pad_token_id`` and keeps
  that many positions from the left (``lengths``), wherever the padding tokens are;
- ``token_type_ids``, when given, are looked up in the *token* embedding table and added;
- the LM loss compares logits[t] with labels[t] (no shift), also for causal models;
- positions are 0..pos-1 whatever the padding (left padding shifts them).

Hooks before the blocks: hook_embed, hook_pos_embed, hook_lang_embed (when the model has language
embeddings and ``langs`` is given), hook_token_type_embed (when ``token_type_ids`` is given), then
ln_embed.*. Padded positions are zeroed after ``ln_embed`` (so ``blocks.0.hook_resid_pre`` equals
Hugging Face's ``hidden_states[0]`` everywhere and ``ln_embed.hook_normalized`` equals it at real tokens),
and after ``ln2`` (so ``hook_resid_post`` equals ``hidden_states[i + 1]`` everywhere and
``ln2.hook_normalized`` equals it at real tokens).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..architecture import Architecture
from ..components import MLP, Attention, LayerNorm, PostNormBlock, activation, causal_mask, heads
from ..components.encoder import run_encoder_blocks, tokens_and_positions
from ..components.positions import sinusoid_table
from ..components.summary import SUMMARY_TYPES, SequenceSummary
from ..config import ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import HookedTransformer
from ..outputs import EncoderOutput

# Configuration ---------------------------------------------------------------------------------------

@dataclass
class XLMConfig(ModelConfig):
    """XLM's hyper-parameters, with Hugging Face's names (``configuration_xlm.py``).

    ``n_layers`` and ``n_heads`` are both Hugging Face's fields and the workbench's canonical names (same
    meaning); ``d_model`` is ``emb_dim`` and ``d_mlp`` is ``4 * emb_dim``.
    """

    model_type = "xlm"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = ("vocab_size", "emb_dim", "n_layers", "n_heads", "max_position_embeddings", "n_langs",
                   "start_n_top", "end_n_top")
    NON_NEGATIVE_FIELDS = ("embed_init_std", "init_std", "layer_norm_eps", "unk_index", "mask_index",
                           "mask_token_id", "lang_id", "pad_token_id", "bos_token_id", "eos_token_id")
    PROBABILITY_FIELDS = ("dropout", "attention_dropout", "summary_first_dropout")

    ATTRIBUTE_MAP = {"d_model": "emb_dim", "max_positions": "max_position_embeddings"}
    # Hugging Face's other names (its attribute_map) and those of older config.json files.
    HF_ALIASES = {
        "hidden_size": "emb_dim", "num_attention_heads": "n_heads", "num_hidden_layers": "n_layers",
        "n_words": "vocab_size", "bos_index": "bos_token_id", "eos_index": "eos_token_id",
        "pad_index": "pad_token_id",
    }

    vocab_size: int = 30145  #: tokens in the vocabulary (older files: ``n_words``).
    emb_dim: int = 2048  #: d_model.
    n_layers: int = 12  #: blocks.
    n_heads: int = 16  #: heads per block.
    dropout: float = 0.1  #: dropout on embeddings and block outputs.
    attention_dropout: float = 0.1  #: dropout on the attention pattern.
    gelu_activation: bool = True  #: GELU (exact, erf-based) in the FFN; False: ReLU.
    #: fixed sinusoidal positions instead of learned ones (initialization only: the table is a parameter
    #: saved in checkpoints, as in Hugging Face).
    sinusoidal_embeddings: bool = False
    causal: bool = False  #: causal self-attention (the xlm-clm-* checkpoints).
    asm: bool = False  #: an adaptive-softmax prediction layer (not supported).
    n_langs: int = 1  #: languages; language embeddings exist when ``n_langs > 1`` and ``use_lang_emb``.
    use_lang_emb: bool = True  #: whether language embeddings are used.
    max_position_embeddings: int = 512  #: the longest input, in tokens.
    embed_init_std: float = 2048**-0.5  #: std of the normal initialization of the embeddings.
    layer_norm_eps: float = 1e-12  #: LayerNorm epsilon.
    init_std: float = 0.02  #: std of the normal initialization of the linear layers.
    unk_index: int = 3  #: id of ``<unk>`` in the original vocabularies.
    mask_index: int = 5  #: id of the mask token in the original vocabularies.
    is_encoder: bool = True  #: must be True (Hugging Face's XLM is an encoder only).
    #: The sequence-classification head (Hugging Face's sequence summary). The state it takes: ``first``,
    #: ``last``, ``mean`` or ``cls_index`` (= last).
    summary_type: str = "first"
    summary_use_proj: bool = True  #: whether a linear projection follows the summary.
    summary_activation: str | None = None  #: the activation after the projection (None: none).
    summary_proj_to_labels: bool = True  #: the projection's width: ``num_labels`` (False: d_model).
    summary_first_dropout: float = 0.1  #: dropout on the summary, before the projection.
    start_n_top: int = 5  #: SQuAD setting, kept for round trips.
    end_n_top: int = 5  #: SQuAD setting, kept for round trips.
    mask_token_id: int | None = 0  #: Hugging Face's generation setting, kept for round trips.
    lang_id: int = 0  #: Hugging Face's generation setting, kept for round trips.
    pad_token_id: int | None = 2  #: padding token id (older files: ``pad_index``).
    bos_token_id: int | None = 0  #: beginning-of-sequence token id (older files: ``bos_index``).
    eos_token_id: int | list[int] | None = 1  #: end-of-sequence token id (older files: ``eos_index``).
    lang2id: dict[str, int] | None = None  #: language names -> ids of multilingual checkpoints.
    id2lang: dict[int, str] | None = None  #: ids -> language names of multilingual checkpoints.

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.id2lang is not None:
            self.id2lang = {int(k): v for k, v in self.id2lang.items()}

    # Canonical names: n_layers and n_heads are fields, d_model and max_positions in ATTRIBUTE_MAP.
    @property
    def d_mlp(self) -> int:
        return 4 * self.emb_dim

    @property
    def has_lang_embeddings(self) -> bool:
        return self.n_langs > 1 and self.use_lang_emb

    @property
    def summary_last_dropout(self) -> float:
        """Not a field of Hugging Face's XLMConfig either: read from the file's extra keys (default 0)."""
        return float(self.extra.get("summary_last_dropout") or 0.0)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        for key in ("lang2id", "id2lang"):  # Hugging Face writes them only when set
            if out[key] is None:
                del out[key]
        if self.id2lang is not None:
            out["id2lang"] = {str(k): v for k, v in self.id2lang.items()}
        return out

    def validate(self) -> None:
        super().validate()
        if self.emb_dim % self.n_heads:
            raise ValueError(f"emb_dim={self.emb_dim} must be a multiple of n_heads={self.n_heads}")
        if self.asm:
            raise ValueError("asm=True (an adaptive-softmax prediction layer) is not supported")
        if not self.is_encoder:
            raise ValueError("is_encoder=False is not supported (Hugging Face's XLM is an encoder only)")
        if self.n_langs < 1:
            raise ValueError(f"n_langs must be at least 1, got {self.n_langs}")
        if self.summary_type not in SUMMARY_TYPES:
            raise ValueError(f"summary_type {self.summary_type!r} is not supported; supported: {SUMMARY_TYPES}")
        if self.summary_activation and self.summary_activation != "linear":
            activation(self.summary_activation)  # fails early, naming the activation

    def lang_to_id(self, lang: int | str) -> int:
        """A language id from its name (``"fr"``, through ``lang2id``) or the id itself."""
        if isinstance(lang, str):
            if not self.lang2id or lang not in self.lang2id:
                raise ValueError(f"unknown language {lang!r}; this model's lang2id is {self.lang2id}")
            return self.lang2id[lang]
        return int(lang)


def sinusoidal_positions(n_positions: int, dim: int) -> torch.Tensor:
    """[n_positions, dim]: XLM's sinusoid table (Vaswani et al. 2017, section 3.5), as Hugging Face's
    ``create_sinusoidal_embeddings`` computes it (see :func:`~workbench.components.positions.sinusoid_table`)."""
    return sinusoid_table(n_positions, dim)


# Hugging Face parameter names <-> ours. One line per tensor family; `{i}` is the layer, `{p}` weight|bias.
XLM_KEY_MAP = KeyMap(
    [
        ("embeddings.weight", "embed.weight"),
        ("position_embeddings.weight", "pos_embed.weight"),
        ("lang_embeddings.weight", "lang_embed.weight"),
        ("layer_norm_emb.{p}", "ln_embed.{p}"),
        ("attentions.{i}.q_lin.{p}", "blocks.{i}.attn.q.{p}"),
        ("attentions.{i}.k_lin.{p}", "blocks.{i}.attn.k.{p}"),
        ("attentions.{i}.v_lin.{p}", "blocks.{i}.attn.v.{p}"),
        ("attentions.{i}.out_lin.{p}", "blocks.{i}.attn.o.{p}"),
        ("layer_norm1.{i}.{p}", "blocks.{i}.ln1.{p}"),
        ("ffns.{i}.lin1.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("ffns.{i}.lin2.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("layer_norm2.{i}.{p}", "blocks.{i}.ln2.{p}"),
    ],
    # The non-persistent position-id buffer that older checkpoints saved.
    ignored=[r"(^|\.)position_ids$"],
)
PRED_LAYER_KEY_MAP = KeyMap([("pred_layer.proj.{p}", "unembed.{p}")])
SEQUENCE_SUMMARY_KEY_MAP = KeyMap([("sequence_summary.summary.{p}", "classifier.{p}")])
CLASSIFIER_KEY_MAP = KeyMap([("classifier.{p}", "classifier.{p}")])
QA_KEY_MAP = KeyMap([("qa_outputs.{p}", "qa_outputs.{p}")])
MULTIPLE_CHOICE_KEY_MAP = SEQUENCE_SUMMARY_KEY_MAP + KeyMap([("logits_proj.{p}", "logits_proj.{p}")])


# The model, top to bottom ----------------------------------------------------------------------------


class XLMBlock(PostNormBlock):
    """BERT's post-norm block, plus XLM's zeroing of padded positions after the second LayerNorm.

    ``hook_resid_post`` is ``ln2``'s output times ``keep`` [batch, pos, 1] (1 real, 0 padding); the other
    hooks are those of :class:`~workbench.components.PostNormBlock`.
    """

    def forward(
        self,
        resid_pre: torch.Tensor,
        mask: torch.Tensor | None,
        keep: torch.Tensor,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """resid_pre: [batch, pos, d_model] -> (resid_post [batch, pos, d_model], pattern or None)."""
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out, pattern = self.attn(resid_pre, mask, head_mask, need_pattern)
        attn_out = self.hook_attn_out(self.dropout(attn_out))
        resid_mid = self.hook_resid_mid(self.ln1(resid_pre + attn_out))
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(resid_mid)))
        resid_post = self.hook_resid_post(self.ln2(resid_mid + mlp_out) * keep)
        return resid_post, pattern


class XLMModel(HookedTransformer):
    """The XLM transformer: embeddings (token, position, language), then post-norm blocks.

    Hooks before the blocks: hook_embed, hook_pos_embed, hook_lang_embed (only in models with language
    embeddings), hook_token_type_embed ([batch, pos, d_model]) and ln_embed.*.
    """

    config_class = XLMConfig
    body_key_map = XLM_KEY_MAP
    base_model_prefix = "transformer"

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model, padding_idx=config.pad_token_id)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.pos_embed = nn.Embedding(config.max_position_embeddings, config.d_model)
        self.hook_pos_embed = HookPoint()  # [batch, pos, d_model]
        if config.has_lang_embeddings:
            self.lang_embed = nn.Embedding(config.n_langs, config.d_model)
            self.hook_lang_embed = HookPoint()  # [batch, pos, d_model]
        self.hook_token_type_embed = HookPoint()  # [batch, pos, d_model]
        self.ln_embed = LayerNorm(config.d_model, config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        act = "gelu" if config.gelu_activation else "relu"
        self.blocks = nn.ModuleList(
            XLMBlock(
                Attention(config.d_model, config.n_heads, config.attention_dropout),
                MLP(config.d_model, config.d_mlp, act),
                config.d_model, config.layer_norm_eps, config.dropout,
            )
            for _ in range(config.n_layers)
        )

    def init_weights(self) -> None:
        """As Hugging Face: linear layers normal(init_std), embeddings normal(embed_init_std) with a zero
        padding row, sinusoids in the position table when ``sinusoidal_embeddings``."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=self.config.init_std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                nn.init.normal_(module.weight, std=self.config.embed_init_std)
                if module.padding_idx is not None:
                    with torch.no_grad():
                        module.weight[module.padding_idx].zero_()
        if self.config.sinusoidal_embeddings:
            with torch.no_grad():
                self.pos_embed.weight.copy_(sinusoidal_positions(*self.pos_embed.weight.shape))

    def padding_mask(
        self,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        lengths: torch.Tensor | None,
        batch: int,
        length: int,
        device: torch.device,
    ) -> torch.Tensor:
        """[batch, pos], nonzero at real tokens: ``attention_mask`` if given, else the first ``lengths``
        positions of each row, ``lengths`` defaulting to the count of tokens that are not padding (Hugging
        Face's ``get_masks``)."""
        if attention_mask is not None:
            return attention_mask
        if lengths is not None:
            if lengths.shape != (batch,) or (not torch.jit.is_tracing() and lengths.max().item() > length):
                raise ValueError(f"lengths must be [batch] = [{batch}] values of at most {length}, got {lengths.tolist()}")
        elif input_ids is not None:
            lengths = (input_ids != self.config.pad_token_id).sum(dim=1)
        else:
            lengths = torch.full((batch,), length, dtype=torch.long, device=device)
        return torch.arange(length, device=device)[None, :] < lengths[:, None]

    def embed_tokens(
        self,
        input_ids: torch.Tensor | None,
        langs: torch.Tensor | int | str | None,
        token_type_ids: torch.Tensor | None,
        position_ids: torch.Tensor | None,
        inputs_embeds: torch.Tensor | None,
    ) -> torch.Tensor:
        """Token + position (+ language) (+ token-type) embeddings, normalized: -> [batch, pos, d_model]."""
        token_embed, position_ids = tokens_and_positions(
            self, input_ids, inputs_embeds, position_ids, token_type_ids=(token_type_ids, self.embed)
        )
        batch, length = token_embed.shape[:2]
        resid = self.hook_embed(token_embed) + self.hook_pos_embed(self.pos_embed(position_ids))
        if langs is not None and self.config.has_lang_embeddings:
            if not isinstance(langs, torch.Tensor):
                langs = torch.full((batch, length), self.config.lang_to_id(langs), device=token_embed.device)
            resid = resid + self.hook_lang_embed(self.lang_embed(langs))
        if token_type_ids is not None:
            # Hugging Face's XLM looks token types up in the token embedding table.
            resid = resid + self.hook_token_type_embed(self.embed(token_type_ids))
        return self.dropout(self.ln_embed(resid))

    def encode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        langs: torch.Tensor | int | str | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        head_mask: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
    ) -> EncoderOutput:
        """Run embeddings and blocks. Shapes as in :class:`EncoderOutput` (no pooler).

        Args:
            langs: [batch, pos] language ids, or one id or name (``"fr"``, through ``config.lang2id``) for
                every token; ignored by models without language embeddings.
            token_type_ids: [batch, pos]; looked up in the token embedding table, as Hugging Face does.
            position_ids: [batch, pos] (default 0..pos-1).
            lengths: [batch], real tokens per row (right padding), instead of ``attention_mask``.

        Returns:
            :class:`EncoderOutput` (last_hidden_state, hidden_states, attentions).
        """
        resid = self.embed_tokens(input_ids, langs, token_type_ids, position_ids, inputs_embeds)
        self.check_attention_mask(attention_mask, *resid.shape[:2])
        batch, length = resid.shape[:2]
        real = self.padding_mask(input_ids, attention_mask, lengths, batch, length, resid.device)
        keep = real[:, :, None].to(resid.dtype)  # [batch, pos, 1]
        if self.config.causal:  # the future is masked; padding is not (Hugging Face's get_masks)
            mask = causal_mask(None, length, length, resid.dtype, resid.device)
        else:
            mask = torch.zeros(real.shape, dtype=resid.dtype, device=resid.device)
            mask = mask.masked_fill(real == 0, torch.finfo(resid.dtype).min)[:, None, None, :]
        resid = resid * keep
        resid, hidden_states, attentions = run_encoder_blocks(
            self.blocks, resid, self.layer_head_mask(head_mask), output_hidden_states, output_attentions,
            mask, keep,
        )
        return EncoderOutput(
            last_hidden_state=resid,
            hidden_states=hidden_states,
            attentions=attentions,
        )

    forward = heads.body_forward(encode)


class XLMWithLMHeadModel(heads.MaskedLMHead, XLMModel):
    """XLM with its prediction layer: a linear map with a bias, the weight tied to the token embedding.

    Adds ``hook_logits`` [batch, pos, vocab]. The same head serves the MLM and the causal checkpoints: the
    loss compares logits[t] with labels[t], not shifted (Hugging Face's XLM, causal checkpoints included).
    ``forward`` is :meth:`LanguageModelHead.forward`: the inputs of :meth:`XLMModel.forward` plus ``labels``
    [batch, pos] (-100 = ignored); it returns :class:`MaskedLMOutput`.
    """

    head_key_map = PRED_LAYER_KEY_MAP

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.add_unembed(config.d_model, config.vocab_size)  # no norm comes after the last block

    def init_weights(self) -> None:
        super().init_weights()
        if self.config.tie_word_embeddings:  # the Linear init above overwrote the shared embedding
            with torch.no_grad():
                nn.init.normal_(self.embed.weight, std=self.config.embed_init_std)
                self.embed.weight[self.config.pad_token_id].zero_()


class XLMSequenceSummary(SequenceSummary):
    """Hugging Face's sequence summary (:class:`~workbench.components.summary.SequenceSummary`: the first token by
    default -> dropout -> linear -> activation -> dropout), its projection stored as ``classifier`` (Hugging
    Face's ``sequence_summary.summary``)."""

    summary_projection = "classifier"


class XLMForSequenceClassification(XLMSequenceSummary, heads.SequenceClassificationHead, XLMModel):
    """XLM with Hugging Face's sequence summary: one state per sequence (``summary_type``: the first token
    by default) -> dropout -> linear (``summary_use_proj``) -> activation (``summary_activation``).

    Adds ``hook_logits`` [batch, num_labels]. ``forward`` is :meth:`SequenceClassificationHead.forward`: the
    inputs of :meth:`XLMModel.forward` plus ``labels`` [batch]; it returns :class:`SequenceClassifierOutput`.
    """

    head_key_map = SEQUENCE_SUMMARY_KEY_MAP

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.init_summary(config)
        self.add_sequence_logits()

    def sequence_scores(self, body: EncoderOutput, input_ids=None, attention_mask=None) -> torch.Tensor:
        return self.sequence_summary(body.last_hidden_state)  # [batch, num_labels]: the summary projects


class XLMForTokenClassification(heads.TokenClassificationHead, XLMModel):
    """XLM with a classifier on every token (NER, POS): dropout (``config.dropout``) -> linear.

    Adds ``hook_logits`` [batch, pos, num_labels]. ``forward`` is :meth:`TokenClassificationHead.forward`:
    the inputs of :meth:`XLMModel.forward` plus ``labels`` [batch, pos] (-100 = ignored); it returns
    :class:`TokenClassifierOutput`.
    """

    head_key_map = CLASSIFIER_KEY_MAP

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.add_token_classifier(config.d_model, config.num_labels, config.dropout)


class XLMForQuestionAnsweringSimple(heads.QuestionAnsweringHead, XLMModel):
    """XLM with span start/end logits for extractive QA (SQuAD): a linear ``qa_outputs`` on every token.

    Hugging Face's name (its ``XLMForQuestionAnswering`` is a different, beam-search SQuAD head, not ported).
    Adds ``hook_logits`` [batch, pos, 2]: start, end. ``forward`` is :meth:`QuestionAnsweringHead.forward`:
    the inputs of :meth:`XLMModel.forward` plus the answer's ``start_positions``/``end_positions`` [batch]
    (positions outside the input are ignored, as in Hugging Face); it returns
    :class:`QuestionAnsweringOutput`.
    """

    head_key_map = QA_KEY_MAP

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        # Hugging Face sizes qa_outputs by num_labels, then splits it into 2: only 2 loads the same
        self.add_span_head(config.d_model, num_labels=config.num_labels)


class XLMForMultipleChoice(heads.MultipleChoiceHead, XLMSequenceSummary, XLMModel):
    """XLM scoring each choice: the sequence summary of the choice (see :class:`SequenceSummary`, to
    ``num_labels`` values) -> ``logits_proj``, a linear map to one score.

    ``forward`` is :meth:`MultipleChoiceHead.forward`: the inputs of :meth:`XLMModel.forward`, each
    [batch, num_choices, ...] (``langs`` may also be one id or name for every token), plus ``labels``
    [batch]; adds ``hook_logits`` [batch, num_choices]. ``lengths`` is ignored with a warning, as Hugging
    Face does: pass ``attention_mask`` (or let the pad ids mark the padding).
    """

    head_key_map = MULTIPLE_CHOICE_KEY_MAP
    choice_inputs = ("input_ids", "attention_mask", "langs", "token_type_ids", "position_ids", "inputs_embeds")

    def __init__(self, config: XLMConfig) -> None:
        super().__init__(config)
        self.init_summary(config)
        # As Hugging Face: the summary must produce num_labels values (summary_proj_to_labels, the default).
        self.logits_proj = nn.Linear(config.num_labels, 1)
        self.add_sequence_logits()

    def prepare_choice_inputs(self, inputs: dict) -> dict:
        if inputs.pop("lengths", None) is not None:
            warnings.warn(
                "lengths cannot be used with XLM's multiple-choice model (Hugging Face ignores it too); "
                "pass attention_mask instead",
                stacklevel=4,
            )
        return inputs

    def sequence_scores(self, body: EncoderOutput, input_ids=None, attention_mask=None) -> torch.Tensor:
        return self.logits_proj(self.sequence_summary(body.last_hidden_state))  # [batch * num_choices, 1]


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: XLM's own names for the unknown and mask tokens' ids, and its embedding init."""
    ids = vocabulary.ids
    return {"embed_init_std": size.d_model**-0.5, "unk_index": ids["unk_token"], "mask_index": ids["mask_token"]}


# XLM-RoBERTa (xlm-roberta-*) is another architecture (RoBERTa's, with a SentencePiece vocabulary): its
# names are not XLM's. One LM head serves both objectives; the checkpoint's config.causal says which.
ARCHITECTURE = Architecture(
    "XLM", XLMConfig, XLMModel, masked_lm=XLMWithLMHeadModel, causal_lm=XLMWithLMHeadModel,
    default_task="masked_lm", zero_shot="by_config", multiple_choice=XLMForMultipleChoice,
    sequence_classification=XLMForSequenceClassification, token_classification=XLMForTokenClassification,
    question_answering=XLMForQuestionAnsweringSimple, tokenizer_family="xlm",
    name_patterns=(r"^xlm-(?!roberta)",), tiny_config=tiny_config,
)
