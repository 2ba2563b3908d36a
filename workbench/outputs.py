"""Model outputs: dataclasses with the same field names and meaning as Hugging Face's.

Each output is also an ordered dict of its non-None fields (``out["logits"]``, ``out[0]``) and a registered
pytree node, so ``torch.export`` can return it. Under ``torch.jit.trace`` models return ``to_tuple()``.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, fields

import torch
import torch.utils._pytree as pytree


class ModelOutput(OrderedDict):
    """Base class: a dataclass whose non-None fields are also dict items, in field order."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        pytree.register_pytree_node(
            cls,
            lambda out: (list(out.values()), list(out.keys())),
            lambda values, keys: cls(**dict(zip(keys, values))),
            serialized_type_name=f"{cls.__module__}.{cls.__qualname__}",
        )

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                self[f.name] = value

    def __getitem__(self, key):
        if isinstance(key, (int, slice)):
            return self.to_tuple()[key]
        return super().__getitem__(key)

    def to_tuple(self) -> tuple:
        """The non-None fields, in order (what ``return_dict=False`` returns)."""
        return tuple(self.values())

    def returned(self, return_dict: bool = True):
        """What ``forward`` hands back: this output, or its tuple with ``return_dict=False`` and under
        ``torch.jit.trace`` (which cannot return dataclasses)."""
        return self if return_dict and not torch.jit.is_tracing() else self.to_tuple()


@dataclass
class EncoderOutput(ModelOutput):
    """Output of a bare encoder (Hugging Face's ``BaseModelOutputWithPooling``).

    Attributes:
        last_hidden_state: [batch, pos, d_model]
        pooler_output: [batch, d_model], where the model has a pooler.
        hidden_states: n_layers + 1 tensors [batch, pos, d_model]: the embeddings, then each block's output.
        attentions: n_layers tensors [batch, head, query_pos, key_pos].
    """

    last_hidden_state: torch.Tensor | None = None
    pooler_output: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class LogitsOutput(ModelOutput):
    """The fields of a head that returns one logits tensor: loss (scalar, when labels are given), logits,
    hidden_states, attentions. Each head kind below subclasses it and says what its logits' shape is."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MaskedLMOutput(LogitsOutput):
    """Attributes: loss (scalar, when labels are given); logits [batch, pos, vocab]; hidden_states; attentions."""


@dataclass
class SequenceClassifierOutput(LogitsOutput):
    """Attributes: loss (scalar, when labels are given); logits [batch, num_labels]; hidden_states; attentions."""


@dataclass
class DecoderOutput(ModelOutput):
    """Output of a bare decoder.

    Attributes:
        last_hidden_state: [batch, pos, d_model] (after the final LayerNorm where there is one).
        past_key_values: the :class:`~workbench.components.KVCache`, with ``use_cache=True``.
        hidden_states: n_layers + 1 tensors [batch, pos, d_model], as Hugging Face returns them.
        attentions: n_layers tensors [batch, head, query_pos, key_pos].
    """

    last_hidden_state: torch.Tensor | None = None
    past_key_values: object | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class CausalLMOutput(ModelOutput):
    """Attributes: loss (next-token cross-entropy, with labels); logits [batch, pos, vocab];
    past_key_values; hidden_states; attentions."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    past_key_values: object | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class TokenClassifierOutput(LogitsOutput):
    """Attributes: loss (with labels); logits [batch, pos, num_labels]; hidden_states; attentions."""


@dataclass
class QuestionAnsweringOutput(ModelOutput):
    """Attributes: loss (with start/end positions); start_logits, end_logits [batch, pos]; hidden_states;
    attentions."""

    loss: torch.Tensor | None = None
    start_logits: torch.Tensor | None = None
    end_logits: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None
    attentions: tuple[torch.Tensor, ...] | None = None


@dataclass
class MultipleChoiceOutput(LogitsOutput):
    """Attributes: loss (with labels); logits [batch, num_choices]; hidden_states and attentions of the
    flattened [batch * num_choices, pos] inputs."""
