"""Qwen2 and Qwen2.5 (Yang et al. 2024, "Qwen2 Technical Report"; Qwen1.5 checkpoints have the same layout):
Mistral's layout with biased q/k/v projections and sliding windows on chosen layers only.

What differs from :mod:`workbench.models.mistral` (itself Llama with a sliding window):
- the q, k and v projections have biases, the output projection has none;
- the window is per layer, as Hugging Face's ``Qwen2Config`` reads it: ``use_sliding_window`` turns windows on
  (off, ``sliding_window`` is cleared to null, as Hugging Face writes it), and ``layer_types`` lists
  ``"full_attention"`` or ``"sliding_attention"`` per layer; without a list, layers from
  ``max_window_layers`` on slide and the ones below it attend fully;
- its defaults are Hugging Face's (vocabulary 151936, context 32768, no special token ids).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..architecture import Architecture
from ..config import ConfigError
from .llama import LlamaConfig
from .mistral import MistralForCausalLM, MistralForSequenceClassification, MistralModel

LAYER_TYPES = ("full_attention", "sliding_attention")


@dataclass
class Qwen2Config(LlamaConfig):
    """Qwen2's hyper-parameters, with Hugging Face's names: Llama's, Qwen2's defaults and the sliding-window
    layers."""

    model_type = "qwen2"
    SIZE_FIELDS = (*LlamaConfig.SIZE_FIELDS, "sliding_window")
    NON_NEGATIVE_FIELDS = (*LlamaConfig.NON_NEGATIVE_FIELDS, "max_window_layers")

    vocab_size: int = 151936  #: tokens in the vocabulary.
    intermediate_size: int = 22016  #: d_mlp, the width of the gated MLP.
    #: Key/value heads per block: Hugging Face's Qwen2Config (and Qwen3Config) default 32 when config.json
    #: omits the field, whatever num_attention_heads is; an explicit null means as many as query heads.
    num_key_value_heads: int | None = 32
    max_position_embeddings: int = 32768  #: the context it was trained for.
    #: Biases on the q, k and v projections (Qwen2 always has them; Hugging Face's Qwen2 reads no such field,
    #: and the output projection has none).
    attention_bias: bool = True
    bos_token_id: int | None = None  #: the beginning-of-text token (Qwen's tokenizers add none).
    eos_token_id: int | list[int] | None = None  #: the end-of-text token.
    use_sliding_window: bool = False  #: whether any layer has a sliding window.
    #: The last positions a query of a sliding layer sees, itself included (cleared to None when
    #: ``use_sliding_window`` is off).
    sliding_window: int | None = 4096
    max_window_layers: int = 28  #: without ``layer_types``: layers from this one on slide.
    #: ``"full_attention"`` or ``"sliding_attention"`` per layer (None: from ``max_window_layers``).
    layer_types: list[str] | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        # As Hugging Face's Qwen2Config.__post_init__, which writes both back to config.json.
        if not self.use_sliding_window:
            self.sliding_window = None
        if self.layer_types is None:
            sliding = self.sliding_window is not None
            self.layer_types = [
                LAYER_TYPES[sliding and layer >= self.max_window_layers] for layer in range(self.n_layers)
            ]

    def validate(self) -> None:
        super().validate()
        if len(self.layer_types) != self.n_layers or not set(self.layer_types) <= set(LAYER_TYPES):
            raise ConfigError(
                f"layer_types={self.layer_types!r} must give one of {LAYER_TYPES} for each of the "
                f"num_hidden_layers={self.n_layers} layers",
                field="layer_types",
            )

    def attention_parameters(self) -> int:
        """Llama's count with biases on q, k and v only (the output projection has none)."""
        return super().attention_parameters() - (self.d_model if self.attention_bias else 0)

    def layer_window(self, layer: int) -> int | None:
        """The sliding window of layer ``layer``'s attention (None: full causal attention)."""
        return self.sliding_window if self.layer_types[layer] == "sliding_attention" else None


class Qwen2Model(MistralModel):
    """The Qwen2 decoder: :class:`~workbench.models.mistral.MistralModel` (Llama with sliding windows, here on
    the sliding layers only) with biases on q, k and v. Hooks as Llama's; in sliding layers
    ``attn.hook_pattern`` is 0 outside the window."""

    config_class = Qwen2Config

    def attention_options(self, config: Qwen2Config, layer: int) -> dict[str, Any]:
        return {**super().attention_options(config, layer), "out_bias": False}


class Qwen2ForCausalLM(Qwen2Model, MistralForCausalLM):
    """Qwen2 predicting the next token (Hugging Face's ``lm_head``; tied to the token embedding in the
    small releases): as :class:`~workbench.models.llama.LlamaForCausalLM`."""


class Qwen2ForSequenceClassification(Qwen2Model, MistralForSequenceClassification):
    """Qwen2 scoring a sequence from its last real token (Hugging Face's ``score``): as
    :class:`~workbench.models.llama.LlamaForSequenceClassification`."""


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in, as the small releases (Qwen2.5-0.5B): grouped-query attention and a tied
    unembedding, no sliding windows."""
    return {"num_key_value_heads": max(1, size.n_heads // 2), "tie_word_embeddings": True}


ARCHITECTURE = Architecture(
    "Qwen2", Qwen2Config, Qwen2Model, causal_lm=Qwen2ForCausalLM, default_task="causal_lm",
    sequence_classification=Qwen2ForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^qwen1\.5-", r"^qwen2(\.5)?-"), tiny_config=tiny_config,
)
