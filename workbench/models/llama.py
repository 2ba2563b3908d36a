"""Llama (Touvron et al. 2023, "LLaMA: Open and Efficient Foundation Language Models"; Llama 2 and 3), and the
models that share its layout: TinyLlama, SmolLM/SmolLM2, Vicuna-style fine-tunes.

What is distinctive about it:
- token embeddings only: positions enter by rotating queries and keys (rotary positions, Su et al. 2021),
  with the ``rope_scaling`` variants of long-context releases (linear, dynamic, llama3, yarn, longrope);
- pre-norm blocks with RMSNorm (Zhang & Sennrich 2019) instead of LayerNorm:
  ``x = x + Attention(RMSNorm1(x))``, ``x = x + SwiGLU(RMSNorm2(x))``, and a final RMSNorm;
- a gated MLP, SwiGLU (Shazeer 2020): ``down(silu(gate(x)) * up(x))``;
- grouped-query attention (Ainslie et al. 2023; Llama 2 70B, Llama 3): ``num_key_value_heads`` key/value
  heads, each read by ``num_attention_heads / num_key_value_heads`` query heads; ``head_dim`` may be set apart
  from ``hidden_size / num_attention_heads``;
- no biases by default (``attention_bias`` and ``mlp_bias`` turn them on); the unembedding is untied from the
  token embedding unless ``tie_word_embeddings`` (Llama 3.2 1B/3B, SmolLM).

Batching: position ids come from the attention mask (real tokens are counted, padding is skipped), as Hugging
Face's ``generate`` makes them, so a left- or right-padded batch gives every real token the activations it has
alone. Rotary positions have no table: an input longer than ``max_position_embeddings`` runs (as in Hugging
Face), with the ``dynamic`` scaling stretching past it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..architecture import Architecture
from ..components import (
    Attention,
    GatedMLP,
    KVCache,
    PreNormBlock,
    RMSNorm,
    RotaryEmbedding,
    activation,
    decoder_mask,
    positions_from_mask,
)
from ..components.heads import CausalLMHead, SequenceClassificationHead, body_forward
from ..config import ConfigError, ModelConfig
from ..hook_points import HookPoint
from ..loading import KeyMap
from ..model import GenerationMixin, HookedTransformer
from ..outputs import DecoderOutput

# Configuration ---------------------------------------------------------------------------------------


@dataclass
class LlamaConfig(ModelConfig):
    """Llama's hyper-parameters, with Hugging Face's names."""

    model_type = "llama"

    # Checked by ModelConfig.check_fields before anything is built.
    SIZE_FIELDS = (
        "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
        "num_key_value_heads", "head_dim", "max_position_embeddings",
    )
    NON_NEGATIVE_FIELDS = ("rms_norm_eps", "initializer_range", "bos_token_id", "pad_token_id")
    PROBABILITY_FIELDS = ("attention_dropout",)

    # Canonical names (readable and writable; see workbench.config).
    ATTRIBUTE_MAP = {
        "d_model": "hidden_size", "n_layers": "num_hidden_layers", "d_mlp": "intermediate_size",
        "n_heads": "num_attention_heads", "n_kv_heads": "num_key_value_heads", "d_head": "head_dim",
        "max_positions": "max_position_embeddings",
    }

    vocab_size: int = 32000  #: tokens in the vocabulary.
    hidden_size: int = 4096  #: d_model.
    intermediate_size: int = 11008  #: d_mlp, the width of the gated MLP.
    num_hidden_layers: int = 32  #: blocks.
    num_attention_heads: int = 32  #: query heads per block.
    num_key_value_heads: int | None = None  #: key/value heads per block (None: as many as query heads).
    head_dim: int | None = None  #: d_head (None: hidden_size / num_attention_heads).
    hidden_act: str = "silu"  #: the gate's activation (``"silu"``: SwiGLU).
    max_position_embeddings: int = 2048  #: the context it was trained for (rotary scaling reads it).
    rms_norm_eps: float = 1e-6  #: RMSNorm epsilon.
    #: The rotary settings as transformers 5 writes them: ``rope_theta`` (the base), ``rope_type`` and that
    #: type's parameters (see :mod:`workbench.components.rotary`). Older ``config.json`` files keep the base
    #: and the scaling apart (``rope_theta``, ``rope_scaling`` with ``rope_type`` or ``type``): they are read
    #: into this one dict and written back as it, as transformers 5 does (:meth:`fold_rope_settings`).
    rope_parameters: dict[str, Any] | None = None
    attention_bias: bool = False  #: biases on the q, k, v and o projections.
    mlp_bias: bool = False  #: biases on the gate, up and down projections.
    attention_dropout: float = 0.0  #: dropout on the attention pattern while training.
    initializer_range: float = 0.02  #: std of the normal initialization.
    bos_token_id: int | None = 1  #: the beginning-of-text token.
    eos_token_id: int | list[int] | None = 2  #: the end-of-text token (Llama 3 lists several).
    pad_token_id: int | None = None  #: the padding token (Llama's tokenizers have none).
    tie_word_embeddings: bool = False  #: the unembedding is the token embedding (Llama 3.2 1B/3B, SmolLM).

    def __post_init__(self) -> None:
        super().__post_init__()
        # Hugging Face fills these in the same way, and writes them to config.json.
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.num_attention_heads
        if self.head_dim is None:
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.fold_rope_settings()

    def fold_rope_settings(self) -> None:
        """One ``rope_parameters`` dict with ``rope_type`` and ``rope_theta`` (default: no scaling, base
        10000), from it or from an older config's ``rope_scaling`` and ``rope_theta`` (in ``extra`` until
        here)."""
        scaling, theta = self.extra.pop("rope_scaling", None), self.extra.pop("rope_theta", None)
        if scaling is not None and not isinstance(scaling, dict):
            raise ConfigError(f"rope_scaling={scaling!r} must be a JSON object or null", field="rope_scaling")
        rope = dict(self.rope_parameters if self.rope_parameters is not None else scaling or {})
        if "type" in rope:  # the oldest configs' name for rope_type
            rope.setdefault("rope_type", rope.pop("type"))
        rope.setdefault("rope_type", "default")
        rope.setdefault("rope_theta", 10000.0 if theta is None else theta)
        self.rope_parameters = rope

    def validate(self) -> None:
        super().validate()
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads={self.num_attention_heads} is not a multiple of num_key_value_heads="
                f"{self.num_key_value_heads}: each key/value head serves a group of query heads of equal "
                "size",
                field="num_key_value_heads",
            )
        activation(self.hidden_act)
        self.rotary_embedding()  # an unknown rope_type, or one missing a parameter, is refused here

    #: The d_model-wide norms of a block (two here; Gemma 2's sandwich blocks have four).
    BLOCK_NORMS = 2

    def estimated_parameters(self) -> int:
        """The parameters of the model with an LM head, exactly (the memory check reads it): the token
        embedding (and an untied unembedding), per block :meth:`attention_parameters`,
        :meth:`mlp_parameters` and ``BLOCK_NORMS`` norms, then the final norm."""
        embeddings = self.vocab_size * self.d_model * (1 if self.tie_word_embeddings else 2)
        block = self.attention_parameters() + self.mlp_parameters() + self.BLOCK_NORMS * self.d_model
        return embeddings + self.n_layers * block + self.d_model

    def attention_parameters(self) -> int:
        """One block's attention: q and o for every query head, k and v for every key/value head, and with
        ``attention_bias`` the biases of all four (families that differ add or remove theirs)."""
        q_width, kv_width = self.n_heads * self.d_head, self.n_kv_heads * self.d_head
        biases = q_width + 2 * kv_width + self.d_model if self.attention_bias else 0
        return 2 * self.d_model * (q_width + kv_width) + biases

    def mlp_parameters(self) -> int:
        """One block's gated MLP: gate, up and down projections, with ``mlp_bias`` their biases."""
        biases = 2 * self.d_mlp + self.d_model if self.mlp_bias else 0
        return 3 * self.d_model * self.d_mlp + biases

    def rotary_embedding(self) -> RotaryEmbedding:
        """The rotary positions that ``rope_parameters`` describe."""
        return RotaryEmbedding.from_rope_parameters(
            self.rope_parameters, self.head_dim, self.max_position_embeddings
        )


# Hugging Face parameter names <-> ours.
LLAMA_KEY_MAP = KeyMap(
    [
        ("embed_tokens.weight", "embed.weight"),
        ("layers.{i}.input_layernorm.weight", "blocks.{i}.ln1.weight"),
        ("layers.{i}.self_attn.q_proj.{p}", "blocks.{i}.attn.q.{p}"),
        ("layers.{i}.self_attn.k_proj.{p}", "blocks.{i}.attn.k.{p}"),
        ("layers.{i}.self_attn.v_proj.{p}", "blocks.{i}.attn.v.{p}"),
        ("layers.{i}.self_attn.o_proj.{p}", "blocks.{i}.attn.o.{p}"),
        ("layers.{i}.post_attention_layernorm.weight", "blocks.{i}.ln2.weight"),
        ("layers.{i}.mlp.gate_proj.{p}", "blocks.{i}.mlp.fc_gate.{p}"),
        ("layers.{i}.mlp.up_proj.{p}", "blocks.{i}.mlp.fc_in.{p}"),
        ("layers.{i}.mlp.down_proj.{p}", "blocks.{i}.mlp.fc_out.{p}"),
        ("norm.weight", "ln_final.weight"),
    ],
    # The rotary frequencies that older checkpoints stored per layer (recomputed here, never loaded).
    ignored=[r"(^|\.)rotary_emb\.inv_freq$"],
)
LM_HEAD_KEY_MAP = KeyMap([("lm_head.weight", "unembed.weight")])
SCORE_KEY_MAP = KeyMap([("score.weight", "classifier.weight")])


# The model, top to bottom ----------------------------------------------------------------------------


class LlamaModel(HookedTransformer):
    """The Llama decoder: token embeddings, pre-norm RMSNorm blocks with rotary grouped-query attention and a
    SwiGLU MLP, final RMSNorm.

    Hooks: hook_embed [batch, pos, d_model]; per block ``blocks.{i}.``: hook_resid_pre; ln1.hook_scale
    [batch, pos, 1], ln1.hook_normalized; attn.hook_q [batch, pos, head, d_head], attn.hook_k and attn.hook_v
    [batch, pos, kv_head, d_head] (query head h reads kv head ``h // (head / kv_head)``), attn.hook_rot_q and
    attn.hook_rot_k (after the rotation, same shapes), attn.hook_scores and attn.hook_pattern [batch, head,
    query_pos, key_pos] (one per query head), attn.hook_z [batch, pos, head, d_head]; hook_attn_out;
    hook_resid_mid; ln2.*; mlp.hook_pre (the gate, before silu), mlp.hook_pre_linear (the up projection),
    mlp.hook_post [batch, pos, d_mlp]; hook_mlp_out; hook_resid_post; then ln_final.hook_scale,
    ln_final.hook_normalized.

    Families built on it change the parts by overriding :meth:`make_attention` (or only its
    :meth:`attention_options`), :meth:`make_mlp`, :meth:`make_block` or :meth:`make_norm`.
    """

    config_class = LlamaConfig
    body_key_map = LLAMA_KEY_MAP
    base_model_prefix = "model"
    classifier_position = "last"

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.d_model)
        self.hook_embed = HookPoint()  # [batch, pos, d_model]
        self.rotary = config.rotary_embedding()  # no parameters: cos and sin of the positions, per forward
        self.blocks = nn.ModuleList(self.make_block(config, layer) for layer in range(config.n_layers))
        self.ln_final = self.make_norm(config)

    def make_norm(self, config: LlamaConfig) -> nn.Module:
        return RMSNorm(config.d_model, config.rms_norm_eps)

    def make_attention(self, config: LlamaConfig, layer: int) -> nn.Module:
        return Attention(
            config.d_model, config.n_heads, config.attention_dropout, **self.attention_options(config, layer)
        )

    def attention_options(self, config: LlamaConfig, layer: int) -> dict[str, Any]:
        """The keyword arguments of layer ``layer``'s :class:`Attention`; families built on Llama add theirs
        (Mistral a sliding window, Qwen2 q/k/v biases, Qwen3 q/k norms)."""
        return dict(
            n_kv_heads=config.n_kv_heads, d_head=config.d_head, bias=config.attention_bias, rotary=True
        )

    def make_mlp(self, config: LlamaConfig, layer: int) -> nn.Module:
        return GatedMLP(config.d_model, config.d_mlp, config.hidden_act, bias=config.mlp_bias)

    def make_block(self, config: LlamaConfig, layer: int) -> nn.Module:
        attn, mlp = self.make_attention(config, layer), self.make_mlp(config, layer)
        # No dropout on the residual stream (Llama has none); the norms are RMSNorms.
        return PreNormBlock(
            attn, mlp, config.d_model, config.rms_norm_eps, 0.0, norm=lambda: self.make_norm(config)
        )

    def decode(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        past_key_values: KVCache | None = None,
        inputs_embeds: torch.Tensor | None = None,
        use_cache: bool = False,
        output_hidden_states: bool = False,
        output_attentions: bool = False,
        head_mask: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Run the embedding, the blocks and the final norm, the inputs in the order of Hugging Face's
        ``LlamaModel.forward``. Shapes as in :class:`DecoderOutput`.

        Args:
            attention_mask: [batch, past + pos], 1 for real tokens, 0 for padding (left or right).
            position_ids: [batch, pos]; default: counted over the real tokens of ``attention_mask``.
            past_key_values: a :class:`KVCache` from an earlier call (``use_cache=True`` returns one); it
                holds the keys after their rotation, [batch, past, kv_head, d_head] per layer.
            output_hidden_states: n_layers + 1 states as Hugging Face gives them: the input of every block,
                then the final output after ``ln_final``.
        """
        resid = self.hook_embed(self.token_embeddings(input_ids, inputs_embeds))
        batch, new = resid.shape[:2]
        cache = past_key_values if past_key_values is not None else (KVCache() if use_cache else None)
        past = cache.past_length(new, attention_mask) if cache is not None else 0
        self.check_attention_mask(attention_mask, batch, past + new)
        if position_ids is None:
            if attention_mask is not None:
                position_ids = positions_from_mask(attention_mask, new)
            else:
                position_ids = torch.arange(past, past + new, device=resid.device).expand(batch, new)
        rotary = self.rotary(position_ids.to(resid.device))
        mask = decoder_mask(attention_mask, new, past + new, resid.dtype, resid.device)

        states, patterns = [], []
        for layer, (block, layer_head_mask) in enumerate(zip(self.blocks, self.layer_head_mask(head_mask))):
            states.append(resid)
            layer_cache = cache.layer(layer) if cache is not None else None
            resid, pattern = block(
                resid, mask, layer_head_mask, output_attentions, layer_cache, rotary=rotary
            )
            patterns.append(pattern)
        resid = self.ln_final(resid)
        return DecoderOutput(
            last_hidden_state=resid,
            past_key_values=cache if use_cache else None,
            hidden_states=(*states, resid) if output_hidden_states else None,
            attentions=tuple(patterns) if output_attentions else None,
        )

    forward = body_forward(decode)


class LlamaForCausalLM(CausalLMHead, LlamaModel, GenerationMixin):
    """Llama predicting the next token: ``unembed`` (Hugging Face's ``lm_head``, bias-free; the token
    embedding itself when ``tie_word_embeddings``) gives ``hook_logits`` [batch, pos, vocab]. ``labels``
    [batch, pos] give the loss of :meth:`LanguageModelHead.forward` (position t against token t + 1, -100
    ignored); ``use_cache=True`` returns the key/value cache that ``model.generate(...)`` decodes with.
    """

    head_key_map = LM_HEAD_KEY_MAP

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.add_unembed(config.d_model, config.vocab_size, bias=False)

    def decode_residual(self, resid: torch.Tensor) -> torch.Tensor:
        """[..., d_model] -> [..., vocab] for any state of the residual stream (the logit lens): ``ln_final``
        first, as the last block's output gets it."""
        return self.lm_logits(self.ln_final(resid))


class LlamaForSequenceClassification(SequenceClassificationHead, LlamaModel):
    """Llama scoring a whole sequence from its last real token (found from the attention mask, else from
    ``pad_token_id``, as Hugging Face finds it; either padding side) through ``score``, a bias-free linear
    layer: ``hook_logits`` [batch, num_labels]. Labels and loss: :meth:`SequenceClassificationHead.forward`.
    """

    head_key_map = SCORE_KEY_MAP

    def __init__(self, config: LlamaConfig) -> None:
        super().__init__(config)
        self.add_sequence_classifier(config.d_model, config.num_labels, bias=False)


def tiny_config(size, vocabulary) -> dict:
    """The tiny stand-in: grouped-query attention (two query heads per key/value head), a tied unembedding."""
    return {"num_key_value_heads": max(1, size.n_heads // 2), "tie_word_embeddings": True}


ARCHITECTURE = Architecture(
    "Llama", LlamaConfig, LlamaModel, causal_lm=LlamaForCausalLM, default_task="causal_lm",
    sequence_classification=LlamaForSequenceClassification, tokenizer_family="byte_level_bpe",
    name_patterns=(r"^llama", r"^tinyllama", r"^smollm", r"^vicuna"), tiny_config=tiny_config,
)
