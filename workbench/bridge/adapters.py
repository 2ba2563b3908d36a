"""Where the parts of a Hugging Face model live: one small declarative record per family.

An :class:`Adapter` names, relative to the model's ``base_model`` (``OPTForCausalLM.model`` is the ``OPTModel``;
a bare ``OPTModel`` is its own), the list of blocks and, relative to one block, its attention, norms and MLP.
:class:`~workbench.bridge.model.HookedHF` turns those paths into the canonical hook points with module hooks
(see ``docs/bridge.md``). A path that is ``None`` means the family has no such part: its hook points are not
made (``hook_names`` lists what a bridged model has).

Paths are dotted attribute paths (``"decoder.layers"``, ``"self_attn"``, ``"mlp.down_proj"``). The token
embedding and the unembedding are not declared: ``get_input_embeddings()`` and ``get_output_embeddings()``
find them in every Hugging Face model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: How a block adds its sublayers to the residual stream, which decides where ``hook_resid_mid`` is.
#: ``pre_norm``: ``x + attn(ln1(x))`` then ``+ mlp(ln2(x))`` (resid_mid is resid_pre + attn_out);
#: ``post_norm``: ``ln1(x + attn(x))`` then ``ln2(x + mlp(x))`` (resid_mid is the output of ``resid_mid``'s
#: module, the attention's LayerNorm); ``parallel``: ``x + attn(ln1(x)) + mlp(ln2(x))`` (no resid_mid).
BLOCK_KINDS = ("pre_norm", "post_norm", "parallel")

#: How the queries, keys, values and the pattern are reached. ``interface``: the family's attention calls
#: transformers' attention-function registry (``ALL_ATTENTION_FUNCTIONS``), so a hooked run swaps in the
#: workbench's function, which hands q, k, v (after rotary positions), the pattern and z to the hook points and
#: takes edits of every one. ``projections``: the family computes attention itself (BLOOM, GPT-Neo, DeBERTa-v2):
#: q, k, v are the outputs of the projections the Stack names (``q``/``k``/``v``, or one fused ``qkv``), z the
#: input of the output projection (``z``), all editable; the pattern is the attention module's returned
#: probabilities (``pattern_index``), read only. ``none``: no attention (state-space models).
ATTENTION_KINDS = ("interface", "projections", "none")


@dataclass(frozen=True)
class Stack:
    """One list of blocks and the parts of each block.

    Attributes:
        prefix: the hook-name prefix of this stack's blocks: ``""`` (``blocks.{i}``) for a decoder- or
            encoder-only model, ``"encoder."`` / ``"decoder."`` for an encoder-decoder.
        blocks: path of the ``ModuleList`` of blocks, from the base model.
        attn: path of the self-attention module, from a block (its output's first element is
            ``hook_attn_out`` unless ``attn_out`` says otherwise).
        attn_out: path of the module whose output is ``hook_attn_out`` when that is not ``attn`` (post-norm
            encoders: the output projection before the residual add and LayerNorm).
        cross_attn: path of the cross-attention module (encoder-decoder decoders): ``cross_attn.*`` hooks.
        ln1, ln2: the norms before attention and MLP (pre-norm) or after them (post-norm):
            ``ln1.hook_normalized``, ``ln2.hook_normalized``.
        mlp: path of the module whose output is ``hook_mlp_out`` (the MLP, or its last linear layer).
        mlp_in: the module whose output is ``mlp.hook_pre`` (the first linear layer, or the gate).
        mlp_in_linear: a gated MLP's other input projection (``up_proj``): ``mlp.hook_pre_linear``.
        mlp_out: the module whose input is ``mlp.hook_post`` (the last linear layer).
        resid_mid: for post-norm blocks, the module whose output is the residual stream between attention
            and MLP.
        embed: path from the base model of this stack's own token embedding, when it runs one instead of the
            model's input embedding (T5's and BART's ``encoder.embed_tokens``): ``<prefix>hook_embed``.
        final_norm: path of the norm after the last block (``ln_final.hook_normalized``), from the base model.
        kind: one of :data:`BLOCK_KINDS`.
        attention: one of :data:`ATTENTION_KINDS`.
        q, k, v: (``attention="projections"``) paths from the block of the query, key and value projections.
        qkv: (``"projections"``) the path of one fused projection instead, laid out as ``qkv_layout`` says (see
            :data:`workbench.bridge.taps.FUSED_LAYOUTS`).
        z: (``"projections"``) the path of the output projection, whose input is ``hook_z``.
        pattern_index: (``"projections"``) where the attention module's output tuple holds the probabilities
            (None: the pattern is not reachable).
        calls_per_layer: hook name (in the block) -> how often its module runs per layer, when more than once;
            only the first call is the hook point's (DeBERTa-v3 runs its query and key projections again on the
            relative-position table).
        mlp_in_fused: ``mlp_in`` is a gated MLP's fused input projection, [activated half | linear half]
            (ModernBERT's ``Wi``, Phi-3's ``gate_up_proj``): ``mlp.hook_pre`` and ``mlp.hook_pre_linear``.
        copy_outputs: hook names (in the block) whose module's output the family later edits in place (Falcon
            adds the attention output into its MLP output): Hugging Face gets a copy, the hook keeps the value.
        read_only: hook names (in the block) that can be read but not replaced: the family has used the value
            by the time the hook sees it (Mixtral's router logits).
        experts: path from the block of a sparse mixture's fused experts module (Mixtral's ``mlp.experts``):
            ``mlp.experts.{e}.hook_out`` per expert (see :mod:`workbench.bridge.experts`); the config field
            ``experts_from_config`` says how many there are.
        layers_from_config: when the blocks are shared (ALBERT runs one layer module for every layer), the
            config field with the number of layers: layer i runs block ``i * len(blocks) // layers``.
        extra: more hook points: canonical name inside the block -> (path from the block, ``"in"``/``"out"``).
    """

    blocks: str
    prefix: str = ""
    embed: str | None = None
    attn: str | None = "self_attn"
    attn_out: str | None = None
    cross_attn: str | None = None
    ln1: str | None = None
    ln2: str | None = None
    mlp: str | None = "mlp"
    mlp_in: str | None = None
    mlp_in_linear: str | None = None
    mlp_out: str | None = None
    resid_mid: str | None = None
    final_norm: str | None = None
    kind: str = "pre_norm"
    attention: str = "interface"
    q: str | None = None
    k: str | None = None
    v: str | None = None
    qkv: str | None = None
    qkv_layout: str = "concat"
    z: str | None = None
    pattern_index: int | None = 1
    calls_per_layer: dict[str, int] = field(default_factory=dict)
    mlp_in_fused: bool = False
    copy_outputs: tuple[str, ...] = ()
    read_only: tuple[str, ...] = ()
    experts: str | None = None
    experts_from_config: str = "num_local_experts"
    layers_from_config: str | None = None
    extra: dict[str, tuple[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in BLOCK_KINDS:
            raise ValueError(f"Stack.kind={self.kind!r}; expected one of {BLOCK_KINDS}")
        if self.attention not in ATTENTION_KINDS:
            raise ValueError(f"Stack.attention={self.attention!r}; expected one of {ATTENTION_KINDS}")


@dataclass(frozen=True)
class Adapter:
    """The layout of one family of Hugging Face models.

    Attributes:
        model_types: the ``config.model_type`` values it describes.
        stacks: the block lists, in forward order (the encoder's before the decoder's).
        embeds: more embedding hook points: canonical name -> path from the base model of the module whose
            output it is (``{"hook_pos_embed": "decoder.embed_positions"}``); ``hook_embed`` is always the
            input embedding's output.
        decode: paths from the base model (or, failing that, from the model with its head) of the modules the last residual stream passes through before the
            unembedding (the final norm, OPT's ``project_out``); those a model lacks are skipped. Default: the
            last stack's ``final_norm``. The logit lens decodes every layer's residual stream this way.
        decode_scale: a function of the Hugging Face config giving a factor the residual stream is multiplied by
            before the unembedding (T5 with tied embeddings: d_model ** -0.5), or None.
        logits_bias: path on the model with its head of a bias added to the unembedding's output (BART's
            ``final_logits_bias``); skipped where the model has none.
        mask_with_cache: whether a cached step passes the whole attention mask (False for Mamba, whose mixer
            multiplies its input by the mask: Hugging Face's generate drops it after the first step).
        notes: what differs from the canonical meaning, shown in ``docs/bridge.md`` and ``model.bridge_notes``.
        for_config: a function (adapter, Hugging Face config) -> adapter, for families whose layout a config
            field changes (OPT-350m's post-norm blocks).
    """

    model_types: tuple[str, ...]
    stacks: tuple[Stack, ...]
    embeds: dict[str, str] = field(default_factory=dict)
    decode: tuple[str, ...] | None = None
    decode_scale: Callable[[Any], float | None] | None = None
    logits_bias: str | None = None
    mask_with_cache: bool = True
    notes: str = ""
    for_config: Callable[[Adapter, Any], Adapter] | None = None

    def resolved(self, hf_config: Any) -> Adapter:
        """This adapter as it applies to a model with ``hf_config``."""
        return self.for_config(self, hf_config) if self.for_config is not None else self

    @property
    def decode_paths(self) -> tuple[str, ...]:
        if self.decode is not None:
            return self.decode
        final_norm = self.stacks[-1].final_norm
        return (final_norm,) if final_norm else ()
