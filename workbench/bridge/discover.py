"""The layout of a Hugging Face model no adapter describes, found from its module tree.

The blocks are the longest ``ModuleList`` of modules of one class (on the main path: the first such list
when two are as long); in each block the attention is the child whose name says so (``attn``,
``attention``, ``self_attn``...) and the MLP likewise (``mlp``, ``feed_forward``, ``ffn``...). From them come
the residual hooks (``blocks.{i}.hook_resid_pre`` / ``hook_resid_post``), ``hook_attn_out``,
``hook_mlp_out`` and, where the attention goes through transformers' attention registry, q, k, v, the pattern
and z. Where the sublayers meet the residual stream is not known, so ``hook_resid_mid`` is not made; nor are
norm hooks. Every module stays reachable as ``hf.<path>``.
"""

from __future__ import annotations

import sys

from torch import nn

from .adapters import Adapter, Stack

ATTENTION_NAMES = ("self_attn", "self_attention", "attention", "attn", "mixer")
MLP_NAMES = ("mlp", "feed_forward", "ffn", "ff", "block_sparse_moe", "moe")


def find_blocks(root: nn.Module) -> tuple[str, nn.ModuleList] | None:
    """(path from ``root``, the list) of the longest ``ModuleList`` whose modules share one class."""
    best: tuple[str, nn.ModuleList] | None = None
    for path, module in root.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) == 0:
            continue
        if len({type(child) for child in module}) != 1:
            continue
        if best is None or len(module) > len(best[1]):
            best = (path, module)
    return best


def _child_named(block: nn.Module, names: tuple[str, ...]) -> str | None:
    children = dict(block.named_children())
    return next((name for name in names if name in children), None)


def uses_attention_registry(module: nn.Module) -> bool:
    """Whether ``module``'s modeling file has the ``eager_attention_forward`` that the registry falls back to."""
    return hasattr(sys.modules.get(type(module).__module__), "eager_attention_forward")


def discover_adapter(hf_model: nn.Module) -> tuple[Adapter, str]:
    """(an adapter for ``hf_model``, a sentence saying what was found and what could not be mapped).

    Raises:
        ValueError: no ``ModuleList`` of identical blocks anywhere in the model.
    """
    base = getattr(hf_model, "base_model", hf_model)
    found = find_blocks(base)
    if found is None:
        raise ValueError(
            f"{type(hf_model).__name__} has no list of identical blocks (an nn.ModuleList): the bridge cannot put "
            f"block hooks on it; pass adapter=workbench.bridge.Adapter(...) describing its layout"
        )
    path, blocks = found
    block = blocks[0]
    attn = _child_named(block, ATTENTION_NAMES)
    mlp = _child_named(block, MLP_NAMES)
    attention = "interface" if attn and uses_attention_registry(getattr(block, attn)) else "none"
    unmapped = ["hook_resid_mid", "norm hooks"]
    if attn is None:
        unmapped.append("attention hooks (no child named " + "/".join(ATTENTION_NAMES) + ")")
    elif attention == "none":
        unmapped.append(f"q/k/v/pattern/z ({type(getattr(block, attn)).__name__} does not use the attention registry)")
    if mlp is None:
        unmapped.append("MLP hooks (no child named " + "/".join(MLP_NAMES) + ")")
    stack = Stack(blocks=path, attn=attn, mlp=mlp, kind="parallel", attention=attention)
    notes = (
        f"{len(blocks)} blocks of {type(block).__name__} at {path!r}; attention: {attn or 'none'}, MLP: "
        f"{mlp or 'none'}; not mapped: {', '.join(unmapped)}"
    )
    return Adapter(model_types=(getattr(hf_model.config, "model_type", ""),), stacks=(stack,)), notes
