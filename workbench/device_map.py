"""One model over several devices: its blocks split across GPUs (and the CPU), run as one model.

``from_pretrained(name, device_map="auto")`` splits the blocks over the visible GPUs; an explicit map names a
device for each part, as Hugging Face's ``device_map`` does::

    {"embed": "cuda:0", "blocks.0-15": "cuda:0", "blocks.16-31": "cuda:1", "ln_final": "cuda:1",
     "unembed": "cuda:1"}

The parts (*units*) are the model's top-level modules that hold parameters or buffers, with ``blocks`` split
into ``blocks.0``, ``blocks.1``, ...: the embedding, each block, the final norm, the unembedding, a task head.
A key of a map is a unit, ``"blocks"`` (every block) or a range of blocks ``"blocks.a-b"`` (a to b, both
included); every unit that holds parameters is named by exactly one key. Units that hold only buffers, and
the model's own parameters (XLNet's ``mask_embed``), go where the input goes: the device of the unit that
holds the first parameter (the embedding's), which is also ``model.device``.

How a forward crosses devices: each unit's weights live on its device, and a forward pre-hook on the unit
(:class:`AlignDevice`, as accelerate's ``AlignDevicesHook``) moves the tensors it is called with there. So no
architecture needs its own code for it: masks, rotary angles and the residual stream follow the blocks, each
layer's keys and values are made and cached on its block's device, hook functions see activations on their
block's device, and the output is on the device of the last unit (the unembedding's). A model loaded
without a ``device_map`` gets no such hooks.
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

Device = Union[torch.device, str, int]

# "blocks.3-7": blocks 3 to 7, both included.
_BLOCK_RANGE = re.compile(r"^blocks\.(\d+)-(\d+)$")
# The layer number in a checkpoint name of Hugging Face ("model.layers.3.mlp...", "transformer.h.0.attn...").
_LAYER_NUMBER = re.compile(r"\.(\d+)\.")


# The units of a model --------------------------------------------------------------------------------------


def placement_units(model: nn.Module) -> dict[str, nn.Module]:
    """Unit name -> module, in the model's order (see the module docstring): its top-level modules holding
    parameters or buffers, with ``blocks`` split into ``blocks.{i}``."""
    units: dict[str, nn.Module] = {}
    for name, child in model.named_children():
        parts = child.named_children() if name == "blocks" else [("", child)]
        for index, module in parts:
            if _holds_tensors(module):
                units[f"{name}.{index}" if index else name] = module
    return units


def _holds_tensors(module: nn.Module) -> bool:
    return any(True for _ in module.parameters()) or any(True for _ in module.buffers())


def unit_of(tensor_name: str) -> str:
    """The unit a parameter or buffer name of the model belongs to: ``"blocks.3.attn.q.weight"`` ->
    ``"blocks.3"``, ``"ln_final.weight"`` -> ``"ln_final"`` (a name of the model's own tensor: itself)."""
    parts = tensor_name.split(".")
    return ".".join(parts[:2]) if parts[0] == "blocks" and len(parts) > 2 else parts[0]


def tied_units(model: nn.Module) -> dict[str, str]:
    """Unit -> the earlier unit it shares a parameter with (a tied unembedding -> ``"embed"``). A shared
    parameter exists once, so the two units must be on one device."""
    owner: dict[int, str] = {}
    tied: dict[str, str] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        unit = unit_of(name)
        first = owner.setdefault(id(param), unit)
        if first != unit:
            tied.setdefault(unit, first)
    return tied


def unit_sizes(model: nn.Module, dtype: torch.dtype | None = None) -> dict[str, int]:
    """Unit -> bytes of the parameters it holds (a shared parameter counted with its first unit), floating-point
    ones counted in ``dtype`` when given (the loading dtype); the model's own parameters under their names."""
    sizes: dict[str, int] = {unit: 0 for unit in placement_units(model)}
    for name, param in model.named_parameters():
        unit = unit_of(name)
        sizes[unit] = sizes.get(unit, 0) + _bytes(param, dtype)
    return sizes


def _bytes(param: torch.Tensor, dtype: torch.dtype | None) -> int:
    """``param``'s bytes, a floating-point one in ``dtype`` when given (integer tensors load as stored)."""
    itemsize = dtype.itemsize if dtype is not None and param.is_floating_point() else param.element_size()
    return param.numel() * itemsize


# Planning a balanced split ---------------------------------------------------------------------------------


def balanced_split(sizes: Sequence[int], capacities: Sequence[int | None]) -> list[int]:
    """Split units of the given sizes, in order, into contiguous runs over devices: the device index of each.

    The split minimizes the largest load of a device, within each device's capacity (None: no limit); a device
    may get nothing when there are fewer units than devices. A binary search on the largest load, filling the
    devices in order at each trial.

    Raises:
        ValueError: the units do not fit in the capacities (naming the total needed and the capacities).

    >>> balanced_split([4, 2, 2, 2, 2, 4], [None, None])
    [0, 0, 0, 1, 1, 1]
    """
    if not capacities:
        raise ValueError("no devices to place the model on")
    low, high = max(sizes, default=0), max(sum(sizes), 1)
    if _fill(sizes, capacities, high) is None:
        held = ", ".join("no limit" if c is None else _gib(c) for c in capacities)
        raise ValueError(
            f"the model needs {_gib(sum(sizes))} (its largest part {_gib(max(sizes, default=0))}) but the "
            f"devices hold {held}: it does not fit; use a smaller dtype (dtype=torch.bfloat16), more devices, "
            "or add 'cpu' to them"
        )
    while low < high:
        middle = (low + high) // 2
        if _fill(sizes, capacities, middle) is None:
            low = middle + 1
        else:
            high = middle
    return _fill(sizes, capacities, low)


def _fill(sizes: Sequence[int], capacities: Sequence[int | None], largest: int) -> list[int] | None:
    """Each unit's device when every device takes units in order up to ``largest`` bytes (and its capacity);
    None when the units do not fit."""
    devices, device, load = [], 0, 0
    for size in sizes:
        while device < len(capacities) and load + size > _limit(capacities[device], largest):
            device, load = device + 1, 0
        if device == len(capacities):
            return None
        devices.append(device)
        load += size
    return devices


def _limit(capacity: int | None, largest: int) -> int:
    return largest if capacity is None else min(capacity, largest)


def visible_gpus() -> list[torch.device]:
    """The CUDA devices torch sees, in order."""
    return [torch.device("cuda", index) for index in range(torch.cuda.device_count())]


def plan_device_map(
    model: nn.Module,
    devices: Sequence[Device] | None = None,
    *,
    max_memory: Mapping[Device, int] | None = None,
    dtype: torch.dtype | None = None,
) -> dict[str, str]:
    """The balanced map of ``model`` over ``devices`` (what ``device_map="auto"`` loads with): the units in
    order split into contiguous runs of about equal parameter bytes, so the embedding is on the first device
    and the final norm and unembedding on the last one used. A unit that shares a parameter with an earlier one (a
    tied unembedding) goes with it. Edit the map and pass it as ``device_map=`` to change it.

    Args:
        model: a model, or one built without weights (``Class.without_weights(config)``: no memory).
        devices: where to place it (default: every visible GPU; with none, the CPU, with a warning).
        max_memory: device -> bytes it may hold (default: no limit).
        dtype: count floating-point parameters in this dtype (the loading dtype); default: as they are.

    Returns:
        unit name -> device name, every unit of the model (see :func:`placement_units`).

    Raises:
        ValueError: the model does not fit in ``max_memory``.
    """
    if devices is None:
        devices = visible_gpus()
        if not devices:
            warnings.warn(
                "device_map='auto': no CUDA GPU is visible, so the whole model goes on the CPU", stacklevel=2
            )
            devices = ["cpu"]
    devices = [normalize_device(d) for d in devices]
    limits = {normalize_device(d): n for d, n in (max_memory or {}).items()}
    sizes, tied = unit_sizes(model, dtype), tied_units(model)
    free = [unit for unit in placement_units(model) if unit not in tied]  # units that choose their device
    for unit, owner in tied.items():  # a tied unit's own tensors (a bias) travel with its owner's
        sizes[owner] += sizes[unit]
    split = balanced_split([sizes[unit] for unit in free], [limits.get(d) for d in devices])
    placed = {unit: devices[index] for unit, index in zip(free, split)}
    return {unit: str(placed[tied.get(unit, unit)]) for unit in placement_units(model)}


# Reading a map ---------------------------------------------------------------------------------------------


def normalize_device(device: Device) -> torch.device:
    """A torch device with its index (``"cuda"`` -> ``cuda:0``; an int is a CUDA index, as in accelerate)."""
    device = torch.device("cuda", device) if isinstance(device, int) else torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", 0)
    return device


def resolve_device_map(model: nn.Module, device_map: Mapping[str, Device]) -> dict[str, torch.device]:
    """An explicit map (keys: units, ``"blocks"``, ``"blocks.a-b"``) -> unit -> device, checked.

    Raises:
        ValueError: a key that names no unit (listing the valid ones), a unit named by two keys, a unit with
            parameters named by none, tied units on two devices, or a GPU that is not there.
    """
    units = placement_units(model)
    placement: dict[str, torch.device] = {}
    named_by: dict[str, str] = {}
    for key, device in device_map.items():
        device = _checked_device(key, device)
        for unit in _units_of_key(key, units, model):
            if unit in placement:
                raise ValueError(
                    f"device_map: {unit!r} is named by two entries, {named_by[unit]!r} and {key!r}"
                )
            placement[unit], named_by[unit] = device, key
    uncovered = [u for u in units if u not in placement and any(True for _ in units[u].parameters())]
    if uncovered:
        raise ValueError(
            f"device_map places no device for {', '.join(map(repr, uncovered))}: every part with parameters "
            f"needs one entry; the parts are {_valid_keys(units)}"
        )
    first = input_unit(model, units)
    for unit in units:  # buffer-only units go where the input goes
        placement.setdefault(unit, placement[first])
    for unit, owner in tied_units(model).items():
        if placement[unit] != placement[owner]:
            raise ValueError(
                f"device_map puts {unit!r} on {placement[unit]} and {owner!r} on {placement[owner]}, but they "
                f"share a parameter (tied weights exist once): put them on one device"
            )
    return {unit: placement[unit] for unit in units}


def _checked_device(key: str, device: Device) -> torch.device:
    try:
        device = normalize_device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device_map[{key!r}] = {device!r} is not a device: {err}") from None
    if device.type == "cuda" and device.index >= torch.cuda.device_count():
        raise ValueError(
            f"device_map[{key!r}] = {str(device)!r}, but torch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    return device


def _units_of_key(key: str, units: Mapping[str, nn.Module], model: nn.Module) -> list[str]:
    n_blocks = len(getattr(model, "blocks", ()))
    blocks = [f"blocks.{i}" for i in range(n_blocks)]
    if key == "blocks" and n_blocks:
        return [b for b in blocks if b in units]
    match = _BLOCK_RANGE.match(key)
    if match:
        first, last = int(match.group(1)), int(match.group(2))
        if first <= last < n_blocks:
            return [f"blocks.{i}" for i in range(first, last + 1) if f"blocks.{i}" in units]
    elif key in units:
        return [key]
    raise ValueError(
        f"device_map has the key {key!r}, which names no part of {type(model).__name__}; the parts are "
        f"{_valid_keys(units)}"
    )


def _valid_keys(units: Mapping[str, nn.Module]) -> str:
    """The units for messages, the blocks shortened: ``'embed', 'blocks.0' .. 'blocks.11' ('blocks', ...)``."""
    blocks = [u for u in units if u.startswith("blocks.")]
    shown, said_blocks = [], False
    for unit in units:
        if not unit.startswith("blocks."):
            shown.append(repr(unit))
        elif not said_blocks:
            said_blocks = True
            ranged = f"'blocks.0-{len(blocks) // 2}'"
            shown.append(f"'blocks.0' .. {blocks[-1]!r} (or 'blocks', or a range such as {ranged})")
    return ", ".join(shown)


def input_unit(model: nn.Module, units: Mapping[str, nn.Module] | None = None) -> str:
    """The unit that holds the model's first parameter (the token embedding): where inputs go."""
    units = placement_units(model) if units is None else units
    for name, _ in model.named_parameters():
        if unit_of(name) in units:
            return unit_of(name)
    return next(iter(units))


def bytes_per_device(
    model: nn.Module, placement: Mapping[str, torch.device], dtype: torch.dtype | None = None
) -> dict[torch.device, tuple[int, int]]:
    """Device -> (parameters, bytes in ``dtype``) that ``placement`` puts there, for the memory check."""
    first = placement[input_unit(model, placement)]
    totals: dict[torch.device, tuple[int, int]] = {}
    for name, param in model.named_parameters():
        device = placement.get(unit_of(name), first)
        count, n_bytes = totals.get(device, (0, 0))
        totals[device] = (count + param.numel(), n_bytes + _bytes(param, dtype))
    return totals


def checkpoint_devices(
    model: nn.Module, placement: Mapping[str, torch.device], key_map: Any, prefixes: Sequence[str] = ()
) -> Callable[[str], torch.device]:
    """Checkpoint (Hugging Face) tensor name -> the device its parameter goes to, so that loading reads each
    tensor straight there. ``key_map`` is the model's :class:`~workbench.loading.KeyMap` (``prefixes`` as
    :func:`~workbench.loading.convert_state_dict` takes them). A name it does not map (a fused tensor split
    after reading, GPT-2's ``c_attn``) goes to its layer number's block, else where the input goes; what
    lands elsewhere is moved by :func:`dispatch`."""
    first = placement[input_unit(model, placement)]

    def device_of(hf_name: str) -> torch.device:
        for key in (hf_name, *(hf_name[len(p):] for p in prefixes if hf_name.startswith(p))):
            matched = key_map.match_ours(key)
            if matched is not None:
                return placement.get(unit_of(matched[0]), first)
        layer = _LAYER_NUMBER.search(hf_name)
        return placement.get(f"blocks.{layer.group(1)}", first) if layer else first

    return device_of


# Running across devices ------------------------------------------------------------------------------------


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it on ``device``: tensors, and those inside tuples (named ones too),
    lists, dicts and dataclasses (XLNet's ``Streams``: a copy, made only when a tensor moves); anything else
    (a key/value cache object, None, numbers) as it is."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        given = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        moved = {name: move_to(item, device) for name, item in given.items()}
        changed = any(moved[name] is not item for name, item in given.items())
        return dataclasses.replace(value, **moved) if changed else value
    if isinstance(value, tuple):
        moved = [move_to(item, device) for item in value]
        return type(value)(*moved) if hasattr(value, "_fields") else tuple(moved)
    if isinstance(value, list):
        return [move_to(item, device) for item in value]
    if isinstance(value, dict):
        return {key: move_to(item, device) for key, item in value.items()}
    return value


class AlignDevice:
    """A forward pre-hook that moves a unit's tensor inputs to the device its weights are on (read at every
    call, so a model moved later with ``.to()`` still runs). It changes no value: ``changes_outputs`` tells
    :func:`workbench.provenance.editing_hooks` to leave it out."""

    changes_outputs = False

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def __call__(self, module: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        device = _current_device(self.module)
        return move_to(args, device), move_to(kwargs, device)


def _current_device(module: nn.Module) -> torch.device:
    for tensor in module.parameters():
        return tensor.device
    for tensor in module.buffers():
        return tensor.device
    raise RuntimeError(f"{type(module).__name__} holds no tensor to tell its device")  # units always do


def dispatch(model: nn.Module, placement: Mapping[str, Device]) -> nn.Module:
    """Put each unit of ``model`` on its device and hook it to receive its inputs there; records the map as
    ``model.device_map`` (unit -> device name). The model's own parameters and buffers go where the input goes.
    ``placement`` is an explicit map (checked as :func:`resolve_device_map` checks it)."""
    placement = resolve_device_map(model, placement)
    units = placement_units(model)
    _remove_alignment(model)  # dispatched again: one hook per unit
    first = placement[input_unit(model, units)]
    for param in model.parameters(recurse=False):
        param.data = param.data.to(first)
    for name, buffer in model.named_buffers(recurse=False):
        setattr(model, name, buffer.to(first))
    for unit, module in units.items():
        module.to(placement[unit])
        module.register_forward_pre_hook(AlignDevice(module), with_kwargs=True)
    model.device_map = {unit: str(device) for unit, device in placement.items()}
    return model


def _remove_alignment(model: nn.Module) -> None:
    for module in model.modules():
        for handle_id, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, AlignDevice):
                del module._forward_pre_hooks[handle_id]
                module._forward_pre_hooks_with_kwargs.pop(handle_id, None)


def _gib(n_bytes: int) -> str:
    return f"{n_bytes / 2**30:.3g} GiB"
