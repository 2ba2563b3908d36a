"""Weight processing as TransformerLens does it: rewrite a pre-norm decoder's weights so that its outputs stay
the same while its residual stream becomes easier to read, one opt-in function per step.

- :func:`fold_norms`: every norm's learned scale (and a LayerNorm's bias) moves into the linear layers that
  read the norm's output (``ln1`` -> ``attn.q/k/v``; ``ln2`` -> ``mlp.fc_gate/fc_in``; ``ln_final`` ->
  ``unembed``), leaving norms that only centre and scale (LayerNorm) or only scale (RMSNorm). Afterwards the
  logits are a linear map of the final residual stream divided by ``ln_final.hook_scale``: each component's
  direct logit contribution is ``unembed(component / scale)`` (centred first under a LayerNorm).
- :func:`center_writing_weights`: every matrix that writes to the residual stream (``embed``, ``pos_embed``,
  ``attn.o``, ``mlp.fc_out``, weights and biases) loses its mean over d_model. Only where every reader of the
  stream is a LayerNorm, which removes that mean anyway; refused on RMSNorm models, where it would change
  the outputs.
- :func:`center_unembed`: the unembedding (and its bias) loses its mean over the vocabulary. Each position's
  logits move by one constant, so the softmax (probabilities, log-probabilities, loss) is unchanged; the raw
  logits are not.
- :func:`fold_value_biases`: the value bias moves into the output bias (``attn.o.bias += o.weight @ v.bias``):
  a pattern row sums to 1, so every head adds its value bias through ``o`` whatever it attends to.
- :func:`process_weights`: all of them, in that order (centring the writing weights only where it is valid).

Every function changes the model in place and returns it (as ``model.eval()`` does); copy first
(``copy.deepcopy(model)``) to keep the original. Each records its step in ``model.weight_processing`` (a
tuple of step names) and in the config (``config.extra["workbench_weight_processing"]``, so a saved and
reloaded model still says it, and :func:`workbench.provenance.model_fingerprint` differs even when no weight
moved).

Supported: the pre-norm decoders built from :mod:`workbench.components` (GPT-2, Llama and the families built
like them: pre-norm, sandwich and parallel blocks, :class:`~workbench.components.Attention`, plain and gated
MLPs, LayerNorm and RMSNorm, Gemma's ``(1 + w)`` RMSNorm). Post-norm models (BERT, GPT, DistilBERT, XLM) are
refused: their norm's output *is* the residual stream the next block adds to, so its weight cannot move
into the next layer (:func:`center_unembed`, which needs only an unembedding, works on any language model). Where the unembedding is the token embedding (``tie_word_embeddings``), folding or
centring either one unties them first (a ``UserWarning`` says so, ``config.tie_word_embeddings`` becomes
False and ``"untie_embeddings"`` is recorded).

What changes besides the weights: hooks inside or after a folded norm see other values (``ln*.hook_normalized``
is the norm's output before a scale it no longer has; after centring, ``hook_resid_*`` lose their mean over
d_model), and so does the body's ``last_hidden_state`` (``ln_final``'s output). Parameters may appear that
the checkpoint had not (a bias on ``unembed`` after folding a LayerNorm's bias into it). In bfloat16 the
products are computed in float32 and rounded once, so outputs agree only up to bfloat16 rounding.

>>> import workbench as wb
>>> lm = wb.load("gpt2")  # doctest: +SKIP
>>> wb.weight_processing.process_weights(lm).weight_processing  # doctest: +SKIP
('untie_embeddings', 'fold_norms', 'center_writing_weights', 'center_unembed', 'fold_value_biases')
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import torch
from torch import nn

from .components import MLP, Attention, GatedMLP, LayerNorm, RMSNorm
from .components.blocks import ParallelBlock, PreNormBlock, ResidualBlock, SandwichBlock
from .components.heads import SequenceScoring
from .model import HookedTransformer

__all__ = [
    "fold_norms",
    "center_writing_weights",
    "center_unembed",
    "fold_value_biases",
    "process_weights",
    "processing_steps",
]

# Where the steps are recorded in the config (and so in config.json and the config's hash).
CONFIG_KEY = "workbench_weight_processing"

# The blocks whose norms ln1 / ln2 read the residual stream before a sublayer (pre-norm, sandwich, parallel).
SUPPORTED_BLOCKS = (PreNormBlock, SandwichBlock, ParallelBlock)


# The steps ----------------------------------------------------------------------------------------------


def fold_norms(model: HookedTransformer) -> HookedTransformer:
    """Fold every pre-sublayer norm and the final norm into the linear layers that read them, in place.

    A LayerNorm ``x_hat * w + b`` read by ``W x + c`` becomes ``x_hat`` read by ``(W diag(w)) x + (W b + c)``;
    an RMSNorm ``x_hat * (offset + w)`` (offset 1 for Gemma's norm, else 0) is read by ``W diag(offset + w)``.
    The norm is left computing ``x_hat`` alone: LayerNorm weight 1 and bias 0, RMSNorm weight ``1 - offset``.
    ``ln_final`` is folded into ``unembed`` (or a sequence classifier's ``classifier``); a model without a
    head keeps its final norm, whose output is the model's output. Norms inside a sublayer (q/k norms) or
    after one (sandwich blocks' ``ln*_post``; OLMo 2 has only those and ``ln_final``) are not followed by a
    linear layer and stay as they are.

    Returns:
        the model, with its outputs (logits) unchanged.
    """
    check_pre_norm(model, "fold_norms")
    head = final_reader(model)
    if head is not None and head is model_unembed(model):
        untie_embeddings(model)
    for block in model.blocks:
        for norm, readers in block_norm_readers(block):
            fold_norm(norm, readers)
    if head is not None:
        fold_norm(model.ln_final, [head])
    return record(model, "fold_norms")


def center_writing_weights(model: HookedTransformer) -> HookedTransformer:
    """Subtract from every weight and bias that writes to the residual stream its mean over d_model, in place:
    the token and position embeddings, ``attn.o`` and ``mlp.fc_out`` of every block.

    Valid because every reader of the stream is a LayerNorm, which subtracts the mean of its input over
    d_model first (whether or not it has been folded): the stream's mean is never read. An RMSNorm does not
    centre, so this is refused on a model with one (and on sandwich blocks, whose writes pass a norm first).

    Returns:
        the model, with its outputs unchanged (its ``hook_resid_*`` values centred).
    """
    check_pre_norm(model, "center_writing_weights")
    check_centring_readers(model)
    if model_unembed(model) is not None:
        untie_embeddings(model)  # centring a tied embedding would move the unembedding with it
    with torch.no_grad():
        for embedding in residual_embeddings(model):
            center(embedding.weight, dim=-1)
        for block in model.blocks:
            for linear in (block.attn.o, block.mlp.fc_out):
                center(linear.weight, dim=0)  # [d_model, d_in]: the mean of each column
                if linear.bias is not None:
                    center(linear.bias, dim=0)
    return record(model, "center_writing_weights")


def center_unembed(model: HookedTransformer) -> HookedTransformer:
    """Subtract from the unembedding weight [vocab, d_model] (and its bias [vocab]) their mean over the
    vocabulary, in place. Every logit of a position moves by the same amount, so the softmax is unchanged;
    refused where the logits are soft-capped (Gemma 2's ``final_logit_softcapping``), since ``tanh`` is not.

    Returns:
        the model, with its log-probabilities unchanged (its raw logits moved by a constant per position).
    """
    unembed = model_unembed(model)
    if unembed is None:
        raise ValueError(
            f"center_unembed: {type(model).__name__} has no unembedding (``unembed``): load a language-model "
            "head (AutoModelForCausalLM)"
        )
    if getattr(model.config, "final_logit_softcapping", None) is not None:
        raise ValueError(
            f"center_unembed: {type(model).__name__} soft-caps its logits (final_logit_softcapping="
            f"{model.config.final_logit_softcapping}): tanh is not shift-invariant, so moving every logit by "
            "a constant would change the probabilities"
        )
    untie_embeddings(model)
    with torch.no_grad():
        center(unembed.weight, dim=0)
        if unembed.bias is not None:
            center(unembed.bias, dim=0)
    return record(model, "center_unembed")


def fold_value_biases(model: HookedTransformer) -> HookedTransformer:
    """Move every attention's value bias into its output bias, in place: head h's output is
    ``pattern @ (x W_v + b_v)`` and each pattern row sums to 1, so ``b_v`` reaches the stream as
    ``W_o b_v`` whatever the head attends to. Under grouped-query attention each key/value head's bias
    counts once for every query head that reads it. ``v.bias`` becomes 0; ``o`` gets a bias if it had none.

    Hugging Face's ``head_mask`` (which scales a head's output, bias included) no longer removes a head's
    value bias afterwards; hook-based ablation of ``hook_z`` likewise leaves it in ``o.bias``.

    Returns:
        the model, with its outputs unchanged (``attn.hook_v`` and ``attn.hook_z`` without the bias).
    """
    check_pre_norm(model, "fold_value_biases")
    with torch.no_grad():
        for block in model.blocks:
            attn = block.attn
            if attn.v.bias is None:
                continue
            groups = attn.n_heads // attn.n_kv_heads
            value_bias = attn.v.bias.view(attn.n_kv_heads, attn.d_head).repeat_interleave(groups, dim=0)
            o_bias = ensure_bias(attn.o)
            o_bias.copy_(
                (o_bias.float() + attn.o.weight.float() @ value_bias.flatten().float()).to(o_bias.dtype)
            )
            attn.v.bias.zero_()
    return record(model, "fold_value_biases")


# The steps in the order process_weights applies them (TransformerLens's order).
STEPS = {
    "fold_norms": fold_norms,
    "center_writing_weights": center_writing_weights,
    "center_unembed": center_unembed,
    "fold_value_biases": fold_value_biases,
}


def process_weights(
    model: HookedTransformer,
    *,
    fold_norms: bool = True,
    center_writing_weights: bool | None = None,
    center_unembed: bool = True,
    fold_value_biases: bool = True,
) -> HookedTransformer:
    """The steps TransformerLens applies on loading, in its order (:data:`STEPS`), in place.

    Args:
        center_writing_weights: None (default): where it is valid, i.e. every norm reading the residual
            stream is a LayerNorm (GPT-2; skipped on RMSNorm models); True: always (refused where invalid).
        center_unembed: skipped, when True, on a model without an unembedding or with soft-capped logits.

    Returns:
        the model.
    """
    check_pre_norm(model, "process_weights")
    if center_writing_weights is None:
        center_writing_weights = centring_blocker(model) is None
    if model_unembed(model) is None or getattr(model.config, "final_logit_softcapping", None) is not None:
        center_unembed = False
    chosen = {
        "fold_norms": fold_norms,
        "center_writing_weights": center_writing_weights,
        "center_unembed": center_unembed,
        "fold_value_biases": fold_value_biases,
    }
    for name, step in STEPS.items():
        if chosen[name]:
            step(model)
    return model


def processing_steps(model: nn.Module) -> tuple[str, ...]:
    """The steps applied to ``model``'s weights, in order (also after a save and reload); () if none."""
    config = getattr(model, "config", None)
    extra = getattr(config, "extra", None) or {}
    return tuple(extra.get(CONFIG_KEY, ()))


# What reads and writes the residual stream ------------------------------------------------------------


def check_pre_norm(model: nn.Module, step: str) -> None:
    """Raise a ValueError saying why, unless ``model`` is a decoder of supported pre-norm blocks (pre-norm,
    sandwich or parallel) with :class:`Attention` and a plain or gated MLP."""
    name = type(model).__name__
    blocks = getattr(model, "blocks", None)
    if not isinstance(model, HookedTransformer) or blocks is None or not len(blocks):
        raise ValueError(f"{step}: {name} is not a workbench transformer with ``blocks``")
    for layer, block in enumerate(blocks):
        if isinstance(block, ResidualBlock) and not isinstance(block, SUPPORTED_BLOCKS):
            raise ValueError(
                f"{step}: {name} is a post-norm model ({type(block).__name__} in layer {layer}): its norms "
                "read the sum of the stream and a sublayer's output, and their output is the residual "
                "stream the next block adds to, so their weights cannot move into the next layer without "
                "changing the outputs. Weight processing supports pre-norm decoders (GPT-2, Llama, ...)"
            )
        if not isinstance(block, SUPPORTED_BLOCKS):
            raise ValueError(
                f"{step}: {name}'s blocks ({type(block).__name__}) are not the pre-norm blocks of "
                "workbench.components; weight processing supports pre-norm decoders (GPT-2, Llama, ...)"
            )
        if not isinstance(block.attn, Attention) or not isinstance(block.mlp, (MLP, GatedMLP)):
            raise ValueError(
                f"{step}: layer {layer} of {name} has {type(block.attn).__name__} and "
                f"{type(block.mlp).__name__}; weight processing knows Attention, MLP and GatedMLP"
            )
    for norm_name, norm in all_norms(model):
        if not isinstance(norm, (LayerNorm, RMSNorm)):
            raise ValueError(f"{step}: {norm_name} is a {type(norm).__name__}, neither LayerNorm nor RMSNorm")


def all_norms(model: HookedTransformer) -> Iterator[tuple[str, nn.Module]]:
    """(name, norm) of every norm reading the residual stream: each block's ``ln1``/``ln2`` that exists, then
    ``ln_final`` when the model has one."""
    for layer, block in enumerate(model.blocks):
        for name in ("ln1", "ln2"):
            if getattr(block, name) is not None:
                yield f"blocks.{layer}.{name}", getattr(block, name)
    if getattr(model, "ln_final", None) is not None:
        yield "ln_final", model.ln_final


def mlp_readers(mlp: nn.Module) -> list[nn.Linear]:
    """The linear layers of an MLP that read its input: ``fc_in`` (and a gated MLP's ``fc_gate``)."""
    return [mlp.fc_gate, mlp.fc_in] if isinstance(mlp, GatedMLP) else [mlp.fc_in]


def block_norm_readers(block: ResidualBlock) -> list[tuple[nn.Module, list[nn.Linear]]]:
    """(norm, the linear layers reading its output) for the norms before a block's sublayers: ``ln1`` read
    by q, k and v, ``ln2`` by the MLP; a parallel block without ``ln2`` feeds ``ln1`` to both."""
    attn_readers = [block.attn.q, block.attn.k, block.attn.v]
    if block.ln2 is None and isinstance(block, ParallelBlock):
        return [(block.ln1, attn_readers + mlp_readers(block.mlp))]
    pairs = [(block.ln1, attn_readers), (block.ln2, mlp_readers(block.mlp))]
    return [(norm, readers) for norm, readers in pairs if norm is not None]


def model_unembed(model: nn.Module) -> nn.Linear | None:
    """The language-model head's unembedding (d_model -> vocab), or None."""
    unembed = getattr(model, "unembed", None)
    return unembed if isinstance(unembed, nn.Linear) else None


def final_reader(model: HookedTransformer) -> nn.Linear | None:
    """The linear layer reading ``ln_final``'s output: the unembedding, else the ``classifier`` of a sequence
    classifier that scores the body's output as it is (dropout before it is off in eval); None for a model
    without such a head or without a final norm."""
    if getattr(model, "ln_final", None) is None:
        return None
    unembed = model_unembed(model)
    if unembed is not None:  # a masked LM's transform (``mlm_head``) reads ln_final first
        return None if "mlm_head" in model._modules else unembed
    reads_body_output = isinstance(model, SequenceScoring) and all(
        getattr(type(model), name) is getattr(SequenceScoring, name)
        for name in ("sequence_state", "sequence_scores")
    )
    classifier = model._modules.get("classifier")
    return classifier if reads_body_output and isinstance(classifier, nn.Linear) else None


def residual_embeddings(model: HookedTransformer) -> list[nn.Embedding]:
    """The embeddings added to the residual stream: ``embed`` and, where it exists, ``pos_embed``."""
    return [
        getattr(model, name)
        for name in ("embed", "pos_embed")
        if isinstance(getattr(model, name, None), nn.Embedding)
    ]


def centring_blocker(model: HookedTransformer) -> str | None:
    """Why centring the writing weights would change ``model``'s outputs, or None where it is safe."""
    for block in model.blocks:
        if isinstance(block, SandwichBlock):
            return (
                f"its blocks ({type(block).__name__}) pass each sublayer's output through a norm before "
                "adding it, so attn.o and mlp.fc_out do not write to the stream"
            )
    if getattr(model, "ln_final", None) is None:
        return "it has no final norm, so the stream's mean reaches the output"
    for name, norm in all_norms(model):
        if not isinstance(norm, LayerNorm):
            return (
                f"{name} is an RMSNorm, which does not subtract the mean over d_model: the mean the writing "
                "weights would lose changes its scale and what every later layer reads"
            )
    return None


def check_centring_readers(model: HookedTransformer) -> None:
    """Raise a ValueError saying why when :func:`centring_blocker` finds a reason."""
    reason = centring_blocker(model)
    if reason is not None:
        raise ValueError(
            f"center_writing_weights: refused on {type(model).__name__}: {reason}. Centring the writing "
            "weights leaves the outputs unchanged only when every reader of the residual stream is a "
            "LayerNorm (GPT-2); fold_norms, center_unembed and fold_value_biases work here"
        )


# The arithmetic -----------------------------------------------------------------------------------------


def fold_norm(norm: nn.Module, readers: list[nn.Linear]) -> None:
    """Move ``norm``'s scale (and LayerNorm bias) into each reader [d_out, d_model] and leave it neutral."""
    offset = scale_offset(norm)
    with torch.no_grad():
        scale = offset + norm.weight.float()  # [d_model]
        shift = norm.bias.float() if isinstance(norm, LayerNorm) else None  # [d_model]
        for linear in readers:
            weight = linear.weight.float()  # [d_out, d_model]
            if shift is not None:
                bias = ensure_bias(linear)
                bias.copy_((bias.float() + weight @ shift).to(bias.dtype))
            linear.weight.copy_((weight * scale).to(linear.weight.dtype))
        norm.weight.fill_(1.0 - offset)
        if isinstance(norm, LayerNorm):
            norm.bias.zero_()


def scale_offset(norm: nn.Module) -> float:
    """What ``norm`` adds to its weight before scaling: 1 for Gemma's ``(1 + w)`` RMSNorm, else 0. RMSNorm
    applies its ``weight_offset`` in the Gemma order only (``cast_after_weight``), so that is read too."""
    if isinstance(norm, RMSNorm) and norm.cast_after_weight:
        return norm.weight_offset
    return 0.0


def ensure_bias(linear: nn.Linear) -> nn.Parameter:
    """``linear``'s bias [d_out], a new zero one if it has none (same dtype and device as its weight)."""
    if linear.bias is None:
        weight = linear.weight
        linear.bias = nn.Parameter(torch.zeros(weight.shape[0], dtype=weight.dtype, device=weight.device))
    return linear.bias


def center(param: torch.Tensor, dim: int) -> None:
    """Subtract from ``param`` its mean along ``dim``, in place (the mean taken in float32)."""
    param.sub_(param.float().mean(dim, keepdim=True).to(param.dtype))


def untie_embeddings(model: HookedTransformer) -> None:
    """Give ``unembed`` its own copy of the weight it shares with ``embed`` (when it does), with a warning."""
    unembed, embed = model_unembed(model), getattr(model, "embed", None)
    if unembed is None or embed is None or unembed.weight is not embed.weight:
        return
    warnings.warn(
        f"{type(model).__name__} ties its unembedding to its token embedding: weight processing unties them "
        "(unembed gets its own copy; config.tie_word_embeddings = False) so that each can change alone",
        UserWarning,
        stacklevel=3,
    )
    unembed.weight = nn.Parameter(embed.weight.detach().clone())
    model.config.tie_word_embeddings = False
    record(model, "untie_embeddings")


def record(model: HookedTransformer, step: str) -> HookedTransformer:
    """Append ``step`` to the model's record (``model.weight_processing`` and the config); return the model."""
    steps = (*processing_steps(model), step)
    model.config.extra[CONFIG_KEY] = list(steps)
    model.weight_processing = steps
    return model
