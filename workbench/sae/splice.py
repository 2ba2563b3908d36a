"""Running a model with a dictionary's reconstruction in place of an activation.

Inside ``with dictionary.spliced(model):`` the hook point ``cfg.hook_name`` (a transcoder:
``cfg.hook_name_out``, computed from what ``cfg.hook_name`` saw earlier in the same forward) is replaced by
the reconstruction, plus the reconstruction error when ``error_term=True`` (then the model's outputs are
unchanged, and the error is a node of its own: ``hook_sae_error`` can be read or patched, and gradients
reach the input only through the features, as in SAELens). The error is computed from the reconstruction
of the unedited features, so a hook that edits features changes the output by exactly that edit
(``steered`` / ``ablated`` in :mod:`.interventions` build on this).

The dictionary's hook points are reachable through the model by name: the splice attaches a small module
named ``sae`` under the hook point, holding the dictionary's hook points (not its parameters, so the
model's ``state_dict`` and ``parameters()`` are unchanged), and refreshes the model's hook-point table. So
``model.run_with_cache(text)`` caches ``"<hook>.sae.hook_feature_acts"``, ``"<hook>.sae.hook_sae_error"``,
``"<hook>.sae.hook_reconstruction"``, and ``model.hooks`` / ``run_with_hooks`` can edit features (ablate,
steer) by those names. Attaching the module is model-wide (all threads see the names); the replacing hook
itself belongs to the thread that entered the block.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..hook_points import HookPoint
from .dictionary import SparseAutoencoder

HOOK_NAMES = (
    "hook_sae_input",
    "hook_feature_pre",
    "hook_feature_acts",
    "hook_reconstruction",
    "hook_sae_error",
    "hook_sae_output",
)


class SAEHooks(nn.Module):
    """The dictionary's hook points, as children (the same HookPoint objects), and nothing else."""

    def __init__(self, dictionary: SparseAutoencoder) -> None:
        super().__init__()
        for name in HOOK_NAMES:
            self.add_module(name, getattr(dictionary, name))


def splice_output(
    dictionary: SparseAutoencoder, x_in: torch.Tensor, actual: torch.Tensor, error_term: bool
) -> torch.Tensor:
    """What replaces the activation ``actual`` [..., d_out], from the dictionary's input ``x_in``
    [..., d_in]."""
    device = dictionary.W_enc.device
    out = dictionary(x_in.to(device)).reconstruction
    if error_term:
        with torch.no_grad():  # from the unedited reconstruction, so feature edits are not cancelled
            edited = any(getattr(dictionary, name).may_edit for name in HOOK_NAMES[:4])
            clean = dictionary.reconstruct_unhooked(x_in.to(device)) if edited else out
            error = actual.to(device, out.dtype) - clean
        out = out + dictionary.hook_sae_error(error)
    return dictionary.hook_sae_output(out).to(actual.device, actual.dtype)


@contextmanager
def spliced(dictionary: SparseAutoencoder, model, error_term: bool = False) -> Iterator[SparseAutoencoder]:
    """Run ``model`` with the dictionary spliced in at its hook point for the ``with`` block.

    Args:
        model: a workbench model (any architecture) that has ``cfg.hook_name`` (and ``cfg.hook_name_out``).
        error_term: add the reconstruction error back (outputs unchanged; the error is ``hook_sae_error``).

    Raises:
        KeyError: the hook point is not one of the model's (with the closest names).
        ValueError: the activation there is not ``d_in`` (``d_out``) wide; the hook point is already spliced.
    """
    cfg = dictionary.cfg
    if cfg.hook_name is None:
        raise ValueError("this dictionary has no cfg.hook_name: set it to the hook point it was trained on")
    names = [cfg.hook_name] + ([cfg.hook_name_out] if cfg.is_transcoder else [])
    model.resolve_hook_names(names)  # KeyError naming the closest hook points
    target_name = names[-1]
    target: HookPoint = model.hook_points()[target_name]
    if hasattr(target, "sae"):
        raise ValueError(f"{target_name!r} already has a dictionary spliced in; leave that with block first")
    width, field = (cfg.d_out, "d_out") if cfg.is_transcoder else (cfg.d_in, "d_in")
    seen: dict[str, torch.Tensor] = {}

    def remember_input(x: torch.Tensor, hook) -> None:
        _check_width(x, cfg.d_in, cfg.hook_name, "d_in")
        seen["x"] = x

    def replace(x: torch.Tensor, hook) -> torch.Tensor:
        _check_width(x, width, target_name, field)
        if cfg.is_transcoder and "x" not in seen:
            raise ValueError(
                f"the transcoder's output hook {target_name!r} ran before its input hook "
                f"{cfg.hook_name!r} in this forward; hook_name must come first"
            )
        x_in = seen.pop("x") if cfg.is_transcoder else x
        return splice_output(dictionary, x_in, x, error_term)

    target.add_module("sae", SAEHooks(dictionary))
    try:
        points = model.refresh_hook_points()
        if f"{target_name}.sae.hook_feature_acts" not in points:
            raise ValueError(
                f"{target_name!r} is not a module of {type(model).__name__}'s module tree, so the "
                f"dictionary's hook points cannot be named under it; splice at a canonical hook point"
            )
        hooks = ([(cfg.hook_name, remember_input)] if cfg.is_transcoder else []) + [(target_name, replace)]
        with model.hooks(hooks):
            yield dictionary
    finally:
        delattr(target, "sae")
        model.refresh_hook_points()


def _check_width(x: torch.Tensor, width: int, name: str, field: str) -> None:
    if x.shape[-1] != width:
        raise ValueError(
            f"the activation at {name!r} has shape {list(x.shape)}, but the dictionary's {field} is {width}: "
            f"it was trained on another hook point or model"
        )


SparseAutoencoder.spliced = spliced
