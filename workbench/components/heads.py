"""Task heads as mixins: one implementation per head kind, written once.

Head kinds: :class:`SequenceClassificationHead`, :class:`TokenClassificationHead`,
:class:`QuestionAnsweringHead`, :class:`MultipleChoiceHead`, and the language-model heads
:class:`MaskedLMHead` and :class:`CausalLMHead` (one :class:`LanguageModelHead` with a flag for the shift).
Sequence and token classification and the language models take one ``labels`` tensor and share one
``forward`` (:class:`LabelledHead`); question answering and multiple choice have their own.

A head mixin owns the part of ``forward`` that is the same for every architecture: its parameters, the
``labels`` -> loss rule (as Hugging Face computes it), ``hook_logits`` and the output it returns. An
architecture's head class names the mixin before its base model and supplies only what differs::

    class BertForTokenClassification(TokenClassificationHead, BertModel):
        head_key_map = CLASSIFIER_KEY_MAP          # its checkpoint names
        def __init__(self, config):
            super().__init__(config)
            self.add_token_classifier(config.d_model, config.num_labels, dropout=config.hidden_dropout_prob)

The body comes from the base model's ``encode`` (``decode`` for the decoders), which takes the same inputs as
its ``forward``; its output's other fields (``hidden_states``, ``attentions``, ``past_key_values``, and
``mems`` for XLNet and Transformer-XL) are copied into the head's output class (``head_output_class``) by
name. Parameter names (``classifier``, ``qa_outputs``, ``unembed``) are those the key maps already use, so
checkpoints load and save as before.

``forward`` takes ``input_ids`` and ``attention_mask`` by position, every other body input by keyword
(``token_type_ids=...``, ``langs=...``, ``mems=...``): one signature per head kind, whatever the architecture.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..heads import (
    last_real_token,
    multiple_choice_inputs,
    next_token_loss,
    sequence_classification_loss,
    span_loss,
    split_span_logits,
    token_cross_entropy,
)
from ..hook_points import HookPoint
from ..outputs import (
    CausalLMOutput,
    MaskedLMOutput,
    ModelOutput,
    MultipleChoiceOutput,
    QuestionAnsweringOutput,
    SequenceClassifierOutput,
    TokenClassifierOutput,
)
from .activations import activation
from .norms import LayerNorm
from .projections import unembed_rows

_OPTIONS = ("output_hidden_states", "output_attentions")


class TaskHead:
    """What every head mixin shares: running the body with checked inputs, and building the output.

    Every head's ``forward`` takes, besides its targets:

    - ``input_ids``: [batch, pos] token ids (or ``inputs_embeds=`` [batch, pos, d_model]);
    - ``attention_mask``: [batch, pos] (decoders with a cache: [batch, past + pos]), 1 for real tokens, 0 for
      padding;
    - ``output_hidden_states``, ``output_attentions``: also return these, as Hugging Face does;
    - ``return_dict``: False returns a tuple (also the case under ``torch.jit.trace``);
    - ``**inputs``: the base model's other inputs, by keyword, as its ``forward`` takes them
      (``token_type_ids=``, ``past_key_values=``, ``mems=``, ...); any other name is a TypeError.
    """

    head_output_class: type[ModelOutput]

    def run_body(
        self, input_ids, attention_mask, output_hidden_states: bool, output_attentions: bool, inputs
    ):
        """The base model's body function (``encode``, or ``decode`` for decoders) on the inputs; an input it
        does not take is a TypeError naming it."""
        accepted = _body_inputs(type(self))
        unknown = sorted(set(inputs) - set(accepted))
        if unknown:
            raise TypeError(
                f"{type(self).__name__}.forward got unexpected input(s) {unknown}; it takes input_ids, "
                f"attention_mask, {', '.join(n for n in accepted if n not in ('input_ids', 'attention_mask'))}"
            )
        return _body_runner(type(self))(
            self,
            input_ids=input_ids,
            attention_mask=attention_mask,
            output_hidden_states=output_hidden_states,
            output_attentions=output_attentions,
            **inputs,
        )

    def head_output(self, body: ModelOutput, **computed) -> ModelOutput:
        """``head_output_class`` with the head's own fields (``computed``) and the rest copied from ``body``."""
        output_class = self.head_output_class
        # the class's field names (dataclasses.fields of a class is a graph break under torch.compile)
        carried = {
            name: getattr(body, name) for name in output_class.__dataclass_fields__ if name not in computed
        }
        return output_class(**computed, **carried)


_BODY_ARGS = """
        Every base model's ``forward`` also takes (as :func:`body_forward` makes it):
            input_ids: [batch, pos] token ids (or ``inputs_embeds`` [batch, pos, d_model]).
            attention_mask: [batch, pos], 1 for real tokens, 0 for padding (unless said otherwise above).
            head_mask: [head] or [layer, head]; 1 keeps a head, 0 removes its output.
            output_hidden_states, output_attentions: also return these, as Hugging Face does.
            return_dict: (keyword only) False returns a tuple (also the case under ``torch.jit.trace``).
        """


def body_forward(body: Callable) -> Callable:
    """A base model's ``forward`` made from its body function (``encode``, or ``decode`` for decoders): the
    same inputs in the same order, plus ``return_dict``; its signature and docstring are the body's (with the
    arguments every base model shares, documented once in ``_BODY_ARGS``), so they are written once::

        class BertModel(HookedTransformer):
            def encode(self, input_ids=None, attention_mask=None, token_type_ids=None, ...) -> EncoderOutput:
                ...
            forward = body_forward(encode)

    The head mixins call the body function itself, which never turns its output into a tuple.
    """
    name = body.__name__

    @functools.wraps(body)
    def forward(self, *args, return_dict: bool = True, **kwargs):
        return getattr(self, name)(*args, **kwargs).returned(return_dict)

    signature = inspect.signature(body)
    return_dict = inspect.Parameter(
        "return_dict", inspect.Parameter.KEYWORD_ONLY, default=True, annotation="bool"
    )
    forward.__signature__ = signature.replace(parameters=[*signature.parameters.values(), return_dict])
    forward.__name__ = "forward"
    forward.__qualname__ = body.__qualname__.rsplit(".", 1)[0] + ".forward"
    forward.__doc__ = (body.__doc__ or "").rstrip() + "\n" + _BODY_ARGS
    del forward.__wrapped__  # help() and inspect read __signature__, with return_dict
    return forward


def _body_runner(cls: type):
    """The base model's function that runs the body: ``encode`` (encoders) or ``decode`` (decoders)."""
    return cls.encode if hasattr(cls, "encode") else cls.decode


def _body_inputs(cls: type) -> tuple[str, ...]:
    cached = cls.__dict__.get("_body_input_names")
    if cached is None:
        parameters = inspect.signature(_body_runner(cls)).parameters
        cached = tuple(n for n in parameters if n != "self" and n not in _OPTIONS)
        cls._body_input_names = cached
    return cached


class LabelledHead(TaskHead):
    """The ``forward`` of the heads whose targets are one ``labels`` tensor (token and sequence classification,
    language models): run the body, then the head kind's :meth:`head_fields` (its logits, through
    ``hook_logits``, and its loss)."""

    def head_fields(
        self,
        body: ModelOutput,
        input_ids: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        labels: torch.Tensor | None,
    ) -> dict[str, torch.Tensor | None]:
        """The head's own fields of ``head_output_class`` (``logits``, ``loss``, ...) from the body's output."""
        raise NotImplementedError(f"{type(self).__name__} must define head_fields")

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        return_dict: bool = True,
        **inputs,
    ):
        """The head's logits, and their loss when ``labels`` are given; the other arguments are
        :class:`TaskHead`'s.

        Args:
            labels: the targets, as the head kind takes them (-100 = ignored where there is one per token):
                token classification: [batch, pos] class ids;
                sequence classification: [batch] class ids, [batch, num_labels] 0/1 targets (multi-label) or
                [batch] values (regression), the loss by ``config.problem_type`` as Hugging Face infers it;
                language models: [batch, pos] token ids, at the same position (masked LM) or one ahead
                (causal LM).

        Returns:
            the head's ``head_output_class`` (:class:`TokenClassifierOutput`, :class:`SequenceClassifierOutput`,
            :class:`MaskedLMOutput`, :class:`CausalLMOutput` or the architecture's) with ``logits``.
        """
        body = self.run_body(input_ids, attention_mask, output_hidden_states, output_attentions, inputs)
        computed = self.head_fields(body, input_ids, attention_mask, labels)
        return self.head_output(body, **computed).returned(return_dict)


class TokenClassificationHead(LabelledHead):
    """Mixin: a linear classifier on every token (NER, POS), optionally after dropout.

    Adds ``classifier_dropout`` (when a rate is given), ``classifier`` and ``hook_logits``
    [batch, pos, num_labels]. ``labels``: [batch, pos] class ids, -100 ignored (cross-entropy as Hugging
    Face's). The output class is ``head_output_class`` (default :class:`TokenClassifierOutput`).
    """

    head_output_class = TokenClassifierOutput

    def add_token_classifier(self, d_model: int, num_labels: int, dropout: float | None) -> None:
        """Call from ``__init__`` after the body: ``dropout=None`` puts no dropout before the classifier."""
        if dropout is not None:
            self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_model, num_labels)
        self.hook_logits = HookPoint()  # [batch, pos, num_labels]

    def head_fields(self, body, input_ids, attention_mask, labels):
        hidden = body.last_hidden_state
        if hasattr(self, "classifier_dropout"):
            hidden = self.classifier_dropout(hidden)
        logits = self.hook_logits(self.classifier(hidden))  # [batch, pos, num_labels]
        return {"loss": None if labels is None else token_cross_entropy(logits, labels), "logits": logits}


class QuestionAnsweringHead(TaskHead):
    """Mixin: span start/end logits for extractive QA (SQuAD), a linear ``qa_outputs`` on every token.

    Adds ``qa_dropout`` (when a rate is given), ``qa_outputs`` and ``hook_logits`` [batch, pos, 2]
    (start, end). The output class is ``head_output_class`` (default :class:`QuestionAnsweringOutput`).
    """

    head_output_class = QuestionAnsweringOutput

    def add_span_head(self, d_model: int, dropout: float | None = None, num_labels: int = 2) -> None:
        """Call from ``__init__`` after the body; ``num_labels`` (the config's) must be 2: start and end."""
        if num_labels != 2:
            raise ValueError(f"question answering needs num_labels=2 (start, end), got {num_labels}")
        if dropout is not None:
            self.qa_dropout = nn.Dropout(dropout)
        self.qa_outputs = nn.Linear(d_model, 2)
        self.hook_logits = HookPoint()  # [batch, pos, 2]: start, end

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        start_positions: torch.Tensor | None = None,
        end_positions: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        return_dict: bool = True,
        **inputs,
    ):
        """Answer-span start and end logits, and their loss when both positions are given; the other arguments
        are :class:`TaskHead`'s.

        Args:
            start_positions, end_positions: [batch], the answer's first and last token; the loss is the mean
                of the two cross-entropies, positions outside the input ignored (as in Hugging Face).

        Returns:
            ``head_output_class`` (:class:`QuestionAnsweringOutput`) with start_logits and end_logits [batch, pos].
        """
        body = self.run_body(input_ids, attention_mask, output_hidden_states, output_attentions, inputs)
        hidden = body.last_hidden_state
        if hasattr(self, "qa_dropout"):
            hidden = self.qa_dropout(hidden)
        start_logits, end_logits = split_span_logits(self.hook_logits(self.qa_outputs(hidden)))
        loss = None
        if start_positions is not None and end_positions is not None:
            loss = span_loss(start_logits, end_logits, start_positions, end_positions)
        out = self.head_output(body, loss=loss, start_logits=start_logits, end_logits=end_logits)
        return out.returned(return_dict)


class SequenceScoring(TaskHead):
    """What the sequence-level heads (sequence classification, multiple choice) share: one state per sequence
    and the scores read from it.

    The default is Hugging Face's for most architectures: :meth:`sequence_state` is the pooler's output where
    the body has a pooler (BERT), else the state at ``classifier_position`` (``"first"``: the first token;
    ``"last"``: the last real token, for decoders); :meth:`sequence_scores` is ``classifier`` on it, after
    ``classifier_dropout`` where :meth:`add_sequence_classifier` was given a rate. An architecture overrides
    :meth:`sequence_state` (DistilBERT's ``pre_classifier``, XLNet's sequence summary) or
    :meth:`sequence_scores` (RoBERTa's classification head, XLM's summary), in the head class or in a mixin
    named before this one.
    """

    def add_sequence_classifier(self, d_in: int, n_out: int, dropout: float | None = None, bias: bool = True):
        """Call from ``__init__`` after the body (and any parameters of :meth:`sequence_state`): adds
        ``classifier_dropout`` (when a rate is given), ``classifier`` (d_in -> n_out) and ``hook_logits``."""
        if dropout is not None:
            self.classifier_dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(d_in, n_out, bias=bias)
        self.add_sequence_logits()

    def add_sequence_logits(self) -> None:
        """Adds ``hook_logits``, last: call it after the scoring parameters when not using
        :meth:`add_sequence_classifier`."""
        self.hook_logits = HookPoint()  # [batch, num_labels] or [batch, num_choices]

    def sequence_state(
        self, body: ModelOutput, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """[batch, d]: the state a sequence is scored from (see the class)."""
        pooled = getattr(body, "pooler_output", None)
        if pooled is not None:
            return pooled
        hidden = body.last_hidden_state
        if self.classifier_position == "last":
            last = last_real_token(input_ids, attention_mask, self.config.pad_token_id, hidden)
            return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return hidden[:, 0]

    def sequence_scores(
        self, body: ModelOutput, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """[batch, n_out]: ``classifier`` on the (dropped-out) :meth:`sequence_state`. ``input_ids`` and
        ``attention_mask`` are those the body ran on (flattened over choices for multiple choice)."""
        state = self.sequence_state(body, input_ids, attention_mask)
        if hasattr(self, "classifier_dropout"):
            state = self.classifier_dropout(state)
        return self.classifier(state)


class SequenceClassificationHead(SequenceScoring, LabelledHead):
    """Mixin: one label (or value) per sequence: sentiment, entailment, regression (GLUE).

    The architecture builds its scoring in ``__init__`` (usually :meth:`add_sequence_classifier`) and, where
    Hugging Face's differs from the default, overrides :meth:`sequence_state` or :meth:`sequence_scores`.
    Adds ``hook_logits`` [batch, num_labels]. ``labels``: [batch] class ids, [batch, num_labels] 0/1 targets
    (multi-label) or [batch] values (regression); the loss follows ``config.problem_type``, inferred as
    Hugging Face does when unset (:func:`workbench.heads.sequence_classification_loss`). The output class is
    ``head_output_class`` (default :class:`SequenceClassifierOutput`).
    """

    head_output_class = SequenceClassifierOutput

    def head_fields(self, body, input_ids, attention_mask, labels):
        logits = self.hook_logits(
            self.sequence_scores(body, input_ids, attention_mask)
        )  # [batch, num_labels]
        loss = None
        if labels is not None:
            loss = sequence_classification_loss(
                logits, labels, self.config.num_labels, self.config.problem_type
            )
        return {"loss": loss, "logits": logits}


class MultipleChoiceHead(SequenceScoring):
    """Mixin: one score per choice (SWAG, RACE, ARC) from the choice's pooled or summary state.

    The architecture supplies what differs: ``choice_inputs``, the inputs that come as
    [batch, num_choices, ...] and are flattened to [batch * num_choices, ...] before the body (the others,
    such as ``head_mask`` or one language for every token, pass unchanged); its scoring, as for sequence
    classification (:class:`SequenceScoring`: ``add_sequence_classifier(d, 1, ...)``, and
    :meth:`sequence_state` or :meth:`sequence_scores` where they differ), one score per flattened choice.
    Hidden states and attentions are those of the flattened inputs, as in Hugging Face. The output class is
    ``head_output_class`` (default :class:`MultipleChoiceOutput`).
    """

    head_output_class = MultipleChoiceOutput
    choice_inputs: tuple[str, ...] = (
        "input_ids",
        "attention_mask",
        "token_type_ids",
        "position_ids",
        "inputs_embeds",
    )

    def prepare_choice_inputs(self, inputs: dict) -> dict:
        """The inputs before flattening; an architecture may drop or check some here (default: unchanged)."""
        return inputs

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        *,
        attention_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        return_dict: bool = True,
        **inputs,
    ):
        """Choice logits, and their loss when ``labels`` are given; the other arguments are :class:`TaskHead`'s,
        with a choice axis.

        Only ``input_ids`` is taken by position (architectures order the others differently: XLNet's
        second input is ``token_type_ids``), every other input by keyword.

        Args:
            input_ids: [batch, num_choices, pos] token ids (or ``inputs_embeds=`` [batch, num_choices, pos, d]);
                ``attention_mask`` and the other inputs in ``choice_inputs`` also have the choice axis.
            labels: [batch], the index of the right choice (cross-entropy over the choices).

        Returns:
            ``head_output_class`` (:class:`MultipleChoiceOutput`) with logits [batch, num_choices].
        """
        inputs = self.prepare_choice_inputs(
            {"input_ids": input_ids, "attention_mask": attention_mask, **inputs}
        )
        per_choice = {
            name: inputs.pop(name)
            for name in self.choice_inputs
            if name in inputs and (inputs[name] is None or isinstance(inputs[name], torch.Tensor))
        }
        num_choices, flat = multiple_choice_inputs(**per_choice)
        inputs.update(flat)
        input_ids, attention_mask = inputs.pop("input_ids", None), inputs.pop("attention_mask", None)
        body = self.run_body(input_ids, attention_mask, output_hidden_states, output_attentions, inputs)
        scores = self.sequence_scores(body, input_ids, attention_mask)  # [batch * num_choices, 1]
        logits = self.hook_logits(scores.view(-1, num_choices))
        loss = F.cross_entropy(logits, labels.view(-1)) if labels is not None else None
        return self.head_output(body, loss=loss, logits=logits).returned(return_dict)


class LanguageModelHead(LabelledHead):
    """Mixin: a distribution over the vocabulary at every position (or every prediction, for XLNet's query
    stream), and its loss.

    The loss compares logits[t] with labels[t] (``shift_labels = False``: masked LM, and XLNet and XLM whose
    labels are already the targets), or with labels[t + 1] (``shift_labels = True``: causal LM, as Hugging
    Face shifts it); -100 labels are ignored. :class:`MaskedLMHead` and :class:`CausalLMHead` are the two
    presets. The architecture supplies its output layer: usually :meth:`add_unembed` in ``__init__`` (an
    optional ``transform`` first: BERT's dense -> act -> LayerNorm, stored as ``mlm_head``), or its own
    :meth:`lm_logits`; :meth:`lm_fields` where its loss has other rules (Transformer-XL's adaptive softmax).
    :meth:`decode_residual` decodes any residual-stream state (the logit lens). The output class is
    ``head_output_class``.
    """

    head_output_class = MaskedLMOutput
    shift_labels: bool = False

    def add_unembed(
        self, d_model: int, vocab_size: int, bias: bool = True, transform: nn.Module | None = None
    ):
        """Call from ``__init__`` after the body: ``mlm_head`` (the ``transform``, when given), ``unembed``
        (d_model -> vocab, its weight tied to the token embedding ``embed`` when
        ``config.tie_word_embeddings``) and ``hook_logits`` [batch, pos, vocab]."""
        if transform is not None:
            self.mlm_head = transform
        self.unembed = nn.Linear(d_model, vocab_size, bias=bias)
        if self.config.tie_word_embeddings:
            self.unembed.weight = self.embed.weight
        self.hook_logits = HookPoint()  # [batch, pos, vocab]

    def tied_parameter_names(self) -> set[str]:
        names = set(super().tied_parameter_names())
        if self.config.tie_word_embeddings and "unembed" in self._modules:
            names.add("unembed.weight")
        return names

    def lm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """[..., d_model] (the body's output) -> [..., vocab]: ``unembed``, after ``mlm_head`` if there is one."""
        if "mlm_head" in self._modules:
            hidden = self.mlm_head(hidden)
        return unembed_rows(self.unembed, hidden)  # a decoding step's few rows: in blocks of the matrix

    def decode_residual(self, resid: torch.Tensor) -> torch.Tensor:
        """Logits [..., vocab] of any residual-stream state [..., d_model], for the logit lens: :meth:`lm_logits`
        (an architecture with a final norm that the body applies puts it first)."""
        return self.lm_logits(resid)

    def head_fields(self, body, input_ids, attention_mask, labels):
        logits = self.hook_logits(self.lm_logits(body.last_hidden_state))  # [batch, pos, vocab]
        return self.lm_fields(logits, labels)

    def lm_fields(self, logits: torch.Tensor, labels: torch.Tensor | None) -> dict[str, torch.Tensor | None]:
        """The head's own fields of ``head_output_class``: the logits and, with labels, the loss."""
        if labels is None:
            return {"loss": None, "logits": logits}
        loss = next_token_loss(logits, labels) if self.shift_labels else token_cross_entropy(logits, labels)
        return {"loss": loss, "logits": logits}


class MaskedLMHead(LanguageModelHead):
    """Mixin: masked language modelling (BERT's objective): logits[t] against labels[t], -100 ignored;
    returns :class:`MaskedLMOutput`. See :class:`LanguageModelHead`."""


class CausalLMHead(LanguageModelHead):
    """Mixin: causal language modelling: logits[t] predict labels[t + 1], -100 ignored, as Hugging Face shifts
    them; returns :class:`CausalLMOutput` (with ``past_key_values``). See :class:`LanguageModelHead`."""

    head_output_class = CausalLMOutput
    shift_labels = True


class MaskedLMTransform(nn.Module):
    """The transform a masked LM applies before its unembedding (BERT's, RoBERTa's, DistilBERT's): dense ->
    activation -> LayerNorm, [..., d_model] -> [..., d_model]. Parameters ``dense``, ``ln`` (with its hooks)."""

    def __init__(self, d_model: int, act: str, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)
        self.act = activation(act)
        self.ln = LayerNorm(d_model, eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(self.act(self.dense(x)))
