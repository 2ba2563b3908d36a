"""Weight layouts for fast decoding: linear layers stored input-major, and projections that read the same
input (q, k, v; a gated MLP's gate and linear branch) side by side in one matrix, so one product computes
them all.

A decoding step multiplies every weight matrix by a few vectors, so its speed is how fast the weights stream
from memory. ``nn.Linear`` keeps its weight [out, in] and ``F.linear`` multiplies by its transpose; for a
batch of a few rows the BLAS then repacks the whole matrix on every call. Stored input-major ([in, out] in
memory, as Hugging Face's GPT-2 ``Conv1D`` keeps it), the same product streams the matrix once: measured on
one CPU thread, batch 8, a 768 x 3072 product takes half the time (batch 1: the same or a little less).

:func:`lay_out_for_decoding` changes the layout in place and nothing else: each parameter keeps its name,
shape [out, in], values, ``requires_grad`` and ``state_dict`` entry; its ``.data`` becomes a transposed
view (``weight.t()`` is contiguous). Projections laid side by side are column blocks of one [in, total]
matrix, so they take no memory beyond their own. :func:`joint_weight` recognises such a group from the
parameters themselves on every call; a parameter replaced since (a loaded or processed weight assigned with
``.data =`` or as a new ``nn.Parameter``) simply breaks the group, and the layers compute their projections
one by one again, with the new weights. In-place edits (``copy_``, ``load_state_dict``, interventions) keep
the group and are seen by the joint product, which reads the same memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..loading import page_aligned_empty


def joint_weight(linears: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight [total, in], bias [total] or None) of ``linears`` when they are laid side by side in one
    matrix (:func:`lay_side_by_side`), in order, all with biases or all without; else None. ``F.linear(x,
    weight, bias)`` is then ``torch.cat([linear(x) for linear in linears], -1)`` in one product.

    Read from the parameters' addresses and strides on every call (a few microseconds): each weight must be
    a [out_i, in] view with strides (1, total) starting where the previous one's columns end, so together
    they are one input-major [in, total] matrix. Use the views without autograd (:func:`joint_product_allowed`):
    a gradient would reach the first parameter only."""
    weights = [linear.weight for linear in linears]
    first = weights[0]
    if first.is_meta:
        return None
    total = sum(w.shape[0] for w in weights)
    stride, size, pointer = (1, total), first.element_size(), first.data_ptr()
    for w in weights:
        if w.data_ptr() != pointer or w.stride() != stride or w.dtype != first.dtype:
            return None
        pointer += w.shape[0] * size
    # With one input column the strides say nothing: the next weight could be another allocation that
    # happens to start there, so the storage must be the same too.
    if first.shape[1] == 1 and len({w.untyped_storage().data_ptr() for w in weights}) > 1:
        return None
    weight = first.as_strided((total, first.shape[1]), stride)
    biases = [linear.bias for linear in linears]
    if biases[0] is None:
        return (weight, None) if all(b is None for b in biases) else None
    pointer = biases[0].data_ptr()
    for b in biases:
        if b is None or b.data_ptr() != pointer or b.stride() != (1,) or b.dtype != first.dtype:
            return None
        pointer += b.shape[0] * size
    return weight, biases[0].as_strided((total,), (1,))


def joint_product_allowed(linears: Sequence[nn.Linear]) -> bool:
    """Whether a joint product may stand in for the separate ones: no gradient is being recorded for the
    weights (a view spanning several parameters would send all their gradients to the first)."""
    if not torch.is_grad_enabled():
        return True
    return not any(p.requires_grad for linear in linears for p in linear.parameters())


def joint_linear(x: torch.Tensor, linears: Sequence[nn.Linear]) -> tuple[torch.Tensor, ...] | None:
    """x [..., in] -> ``[linear(x) for linear in linears]`` ([..., out_i] each, views of one [..., total]
    product) when the linears are laid side by side, are plain ``nn.Linear`` layers and no gradient is
    recorded; else None (compute them one by one)."""
    if not joint_product_allowed(linears) or not all(plain_linear(linear) for linear in linears):
        return None
    if torch.jit.is_tracing():
        return None  # traced weights are stand-ins without addresses; the graph gets the separate products
    if torch.compiler.is_compiling():
        joint = traced_joint_weight(linears)
    else:
        joint = joint_weight(linears)
    if joint is None:
        return None
    out = F.linear(x, *joint)  # [..., total]
    return out.split([linear.out_features for linear in linears], dim=-1)


def traced_joint_weight(linears: Sequence[nn.Linear]) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """:func:`joint_weight` inside a ``torch.compile`` trace, where the weights are stand-ins without
    addresses: the group's layout is read from the mark :func:`mark_joint_groups` left on its first layer
    before the call (dynamo guards on the mark, so a layout broken since recompiles with separate products)."""
    if not getattr(linears[0], JOINT_MARK, False):
        return None
    first, bias = linears[0].weight, linears[0].bias
    total = sum(linear.out_features for linear in linears)
    weight = first.as_strided((total, first.shape[1]), (1, total))
    return weight, None if bias is None else bias.as_strided((total,), (1,))


JOINT_MARK = "_laid_out_with_the_next"  # on a group's first nn.Linear: the group is one matrix now


def mark_joint_group(group: Sequence[nn.Linear]) -> None:
    """Before a compiled call (``prepare_compiled_call`` of the layers that compute a joint product), mark on
    the group's first layer whether the group is laid side by side now (:func:`joint_weight`, from the
    addresses: a few microseconds), for :func:`traced_joint_weight`."""
    laid_out = joint_weight(group) is not None
    if getattr(group[0], JOINT_MARK, False) != laid_out:
        group[0].__dict__[JOINT_MARK] = laid_out


def plain_linear(linear: nn.Module) -> bool:
    """Whether calling ``linear`` is just ``F.linear``: an ``nn.Linear`` as it is (not a subclass or a wrapper
    that computes something else) with no torch hook that expects to see the call."""
    return (
        type(linear) is nn.Linear
        and not (linear._forward_hooks or linear._forward_pre_hooks)
        and not (nn.modules.module._global_forward_hooks or nn.modules.module._global_forward_pre_hooks)
    )


def lay_side_by_side(linears: Sequence[nn.Linear]) -> bool:
    """Store the weights of ``linears`` (same input width, dtype and device) as column blocks of one
    input-major [in, total] matrix, and their biases as pieces of one [total] vector, in place: parameters
    keep their objects, shapes and values. Returns whether the layout changed (False: already laid out, or
    not possible: parameters on the meta device, of different dtypes or devices, or only some with biases).
    """
    weights = [linear.weight for linear in linears]
    first = weights[0]
    if joint_weight(linears) is not None:
        return False
    if (
        first.device.type == "meta"
        or not first.is_floating_point()
        or any(
            w.dtype != first.dtype or w.device != first.device or w.shape[1] != first.shape[1]
            for w in weights
        )
    ):
        return False
    biases = [linear.bias for linear in linears]
    if any(b is None for b in biases) and not all(b is None for b in biases):
        return False
    total = sum(w.shape[0] for w in weights)
    with torch.no_grad():
        matrix = _empty((first.shape[1], total), first)
        vector = None if biases[0] is None else _empty((total,), biases[0])
        start = 0
        for w, b in zip(weights, biases):
            end = start + w.shape[0]
            matrix[:, start:end].copy_(w.t())
            w.data = matrix[:, start:end].t()
            if vector is not None:
                vector[start:end].copy_(b)
                b.data = vector[start:end]
            start = end
    return True


def _empty(shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
    """An uninitialised tensor of ``shape`` with ``like``'s dtype and device; page-aligned on the CPU, as the
    loader reads weights (see :func:`~workbench.loading.page_aligned_empty`)."""
    if like.device.type == "cpu":
        return page_aligned_empty(shape, like.dtype)
    return like.new_empty(shape)


def lay_out_for_decoding(model: nn.Module) -> int:
    """Lay out every attention's q/k/v and every gated MLP's gate and linear branch side by side, and every
    other linear layer of the blocks input-major (see the module's docstring); returns how many groups
    changed (0 when all were laid out already, so calling it again costs only the checks).

    Layers that define ``joint_projections()`` (lists of ``nn.Linear`` reading the same input, the first
    group computed jointly) are the ones touched: :class:`~.attention.Attention`, :class:`~.mlp.MLP` and
    :class:`~.mlp.GatedMLP`. Embeddings and the unembedding keep their layout (a tied unembedding is the
    token embedding, whose rows a lookup reads)."""
    changed = 0
    for module in model.modules():
        groups = getattr(module, "joint_projections", None)
        if groups is None:
            continue
        for group in groups():
            changed += lay_side_by_side(group)
    return changed


def chunked_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a wide output-major ``weight`` [out, in] (an unembedding), computed
    over blocks of its rows: x [rows, in] -> [rows, out].

    Why: for a few rows the BLAS packs the whole matrix before multiplying, so the weight crosses memory
    three times; a block of about 1 MiB is packed within the cache. One batched product runs all the blocks.
    Measured on one CPU thread (loaded machine), GPT-2's 50257 x 768 unembedding of 8 rows: 56 ms in blocks,
    114 ms in one product; Llama-shaped 32000 x 1024: 48 vs 87 ms. Fewer than 4 rows take the one product
    (for one row a matrix-vector product, which streams the matrix once already)."""
    rows, width = x.shape
    if rows < 4 or weight.stride() != (width, 1):
        return F.linear(x, weight, bias)
    block = max(64, (1 << 20) // (width * weight.element_size()))
    blocks, vocab = weight.shape[0] // block, weight.shape[0]
    if torch.compiler.is_compiling():  # out= does not trace: the pieces are joined instead (one more copy)
        return _joined_blocks(x, weight, bias, block, blocks)
    out = x.new_empty((rows, vocab))
    if blocks:
        split = blocks * block  # [blocks, rows, block] = x against each block of rows of the weight
        joint = torch.bmm(
            x.expand(blocks, rows, width), weight[:split].view(blocks, block, width).transpose(1, 2)
        )
        out[:, :split].view(rows, blocks, block).copy_(joint.transpose(0, 1))
    if blocks * block < vocab:
        torch.mm(x, weight[blocks * block :].t(), out=out[:, blocks * block :])
    return out if bias is None else out.add_(bias)


def _joined_blocks(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, block: int, blocks: int
) -> torch.Tensor:
    """:func:`chunked_linear`'s product for a ``torch.compile`` trace: no ``out=``, the blocks' results joined."""
    (rows, width), split = x.shape, blocks * block
    pieces = []
    if blocks:
        joint = torch.bmm(x.expand(blocks, rows, width), weight[:split].view(blocks, block, width).transpose(1, 2))
        pieces.append(joint.transpose(0, 1).reshape(rows, split))
    if split < weight.shape[0]:
        pieces.append(F.linear(x, weight[split:]))
    out = torch.cat(pieces, -1) if len(pieces) > 1 else pieces[0]
    return out if bias is None else out + bias


# Up to this many rows (decoding steps: the batch) the unembedding runs in blocks; at 8 rows of GPT-2's
# 50257 x 768: 23 vs 46 ms, at 32 rows even (41 vs 42 ms), one thread.
FEW_ROWS = 16


def unembed_rows(linear: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """``linear(hidden)`` for an unembedding, hidden [..., d_model] -> [..., vocab]: for a few rows (at most
    :data:`FEW_ROWS`: a decoding step) of a plain ``nn.Linear`` with no gradient recorded, in blocks of its
    rows (:func:`chunked_linear`), else as it is."""
    rows = hidden.numel() // hidden.shape[-1] if hidden.shape[-1] else 0
    if (
        not 4 <= rows <= FEW_ROWS
        or not plain_linear(linear)
        or not joint_product_allowed([linear])
        or torch.jit.is_tracing()
    ):
        return linear(hidden)
    out = chunked_linear(hidden.reshape(rows, hidden.shape[-1]), linear.weight, linear.bias)
    return out.view(*hidden.shape[:-1], out.shape[-1])
