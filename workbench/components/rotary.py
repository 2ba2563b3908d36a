"""Rotary position embeddings (Su et al. 2021, "RoFormer"), with the scaling variants Hugging Face configs name.

A query or key vector is rotated pairwise by angles proportional to its position: pair k of a head turns by
``position * f_k``, with frequencies ``f_k = 1 / base^(2k / rotary_dim)``, so that ``q_i . k_j`` depends on
``i - j`` only. The model computes the angles once per forward (:class:`RotaryEmbedding`, from position ids) and
hands them to every attention layer (:class:`RotaryAngles`), which rotates its queries and keys between
``hook_q``/``hook_k`` and the scores.

Two layouts pair the dimensions of a head differently:

- half-split (Llama's ``rotate_half``, GPT-NeoX, Gemma, Qwen...): dimension ``k`` pairs with ``k + rotary_dim/2``;
- interleaved (GPT-J, RoFormer): dimension ``2k`` pairs with ``2k + 1``.

Only the first ``rotary_dim`` dimensions of a head are rotated (GPT-NeoX's ``rotary_pct``, Hugging Face's
``partial_rotary_factor``); the others pass unchanged.

Scaling (``rope_type`` and its parameters, under the keys Hugging Face uses in ``rope_parameters`` /
``rope_scaling``):

- ``default``: the frequencies above.
- ``linear`` (``factor``): positions divided by ``factor`` (Chen et al. 2023, position interpolation).
- ``dynamic`` (``factor``): NTK-aware scaling of the base once the input is longer than ``max_positions``.
- ``llama3`` (``factor``, ``low_freq_factor``, ``high_freq_factor``, ``original_max_position_embeddings``):
  long wavelengths divided by ``factor``, short ones kept, a smooth blend between (Llama 3.1).
- ``yarn`` (``factor``, ``original_max_position_embeddings``, optional ``beta_fast``, ``beta_slow``,
  ``attention_factor``, ``mscale``, ``mscale_all_dim``, ``truncate``): Peng et al. 2023; cos and sin are
  multiplied by an attention factor (``0.1 ln(factor) + 1`` unless given).
- ``longrope`` (``short_factor``, ``long_factor``, ``original_max_position_embeddings``, optional ``factor``,
  ``attention_factor``): per-frequency divisors, the long ones once the input is longer than the original
  context (Phi-3); cos and sin times ``sqrt(1 + ln(factor) / ln(original))`` unless given.

The frequencies are computed as Hugging Face's ``modeling_rope_utils`` computes them (same operations, in
float32 on the CPU), so that cos and sin equal theirs; ``dynamic`` and ``longrope`` depend on the length of
the input (the largest position id + 1), which is read from the positions of each call: no state is kept
between calls (Hugging Face keeps the largest length seen so far for ``dynamic``; the two agree whenever
lengths only grow, as in generation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import torch
from torch import nn

# Inverse frequencies per rope_type -------------------------------------------------------------------------
#
# Each function: (rotary_dim, base, params, max_positions, seq_len) -> (inv_freq [rotary_dim // 2] float32 on
# the CPU, attention_factor). ``params`` holds the rope_type's keys (Hugging Face's names); ``seq_len`` is the
# input's length (a 0-dim int64 tensor) for the types that depend on it, else None.

RopeFunction = Callable[
    [int, float, Mapping[str, Any], int, "torch.Tensor | None"], tuple[torch.Tensor, float]
]


def _exponents(dim: int) -> torch.Tensor:
    """[dim // 2] float32: 2k / dim, the exponent of the base for pair k."""
    return torch.arange(0, dim, 2, dtype=torch.int64).float() / dim


def default_frequencies(dim: int, base: float, params, max_positions, seq_len) -> tuple[torch.Tensor, float]:
    """f_k = 1 / base^(2k / dim) (Su et al. 2021)."""
    return 1.0 / (base ** _exponents(dim)), 1.0


def linear_frequencies(dim: int, base: float, params, max_positions, seq_len) -> tuple[torch.Tensor, float]:
    """The default frequencies divided by ``factor``: position p is read as p / factor."""
    inv_freq, _ = default_frequencies(dim, base, params, max_positions, seq_len)
    return inv_freq / params["factor"], 1.0


def dynamic_frequencies(dim: int, base: float, params, max_positions, seq_len) -> tuple[torch.Tensor, float]:
    """NTK-aware scaling: for an input of ``seq_len`` > ``max_positions`` the base becomes
    ``base * (factor * seq_len / max_positions - (factor - 1))^(dim / (dim - 2))``; shorter inputs keep the
    default frequencies."""
    factor = params["factor"]
    if seq_len is None or seq_len <= max_positions:
        # Hugging Face computes these once at initialisation, with Python floats.
        length: float | torch.Tensor = max_positions
    else:
        # ... and these in the forward, with the length a tensor (so in float32): keep the same arithmetic.
        length = torch.maximum(seq_len, torch.tensor(max_positions, dtype=seq_len.dtype))
    scaled_base = base * ((factor * length / max_positions) - (factor - 1)) ** (dim / (dim - 2))
    return 1.0 / (scaled_base ** _exponents(dim)), 1.0


def llama3_frequencies(dim: int, base: float, params, max_positions, seq_len) -> tuple[torch.Tensor, float]:
    """Llama 3.1: wavelengths longer than ``original / low_freq_factor`` are divided by ``factor``, those
    shorter than ``original / high_freq_factor`` are kept, and those between blend the two smoothly."""
    inv_freq, _ = default_frequencies(dim, base, params, max_positions, seq_len)
    factor, low, high = params["factor"], params["low_freq_factor"], params["high_freq_factor"]
    original = params["original_max_position_embeddings"]
    wavelength = 2 * math.pi / inv_freq
    scaled = torch.where(wavelength > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelength - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    is_medium = ~(wavelength < original / high) * ~(wavelength > original / low)
    return torch.where(is_medium, smoothed, scaled), 1.0


def yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    """YaRN's attention temperature (Peng et al. 2023, eq. 21): ``0.1 * mscale * ln(scale) + 1``, 1 for
    scale <= 1."""
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def yarn_frequencies(dim: int, base: float, params, max_positions, seq_len) -> tuple[torch.Tensor, float]:
    """YaRN (Peng et al. 2023): frequencies that turn fewer than ``beta_slow`` times over the original context
    are interpolated (divided by ``factor``), those that turn more than ``beta_fast`` times are kept, with a
    linear ramp between; cos and sin are multiplied by the attention factor."""
    original = params["original_max_position_embeddings"]
    factor = params.get("factor") or max_positions / original
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        mscale, mscale_all_dim = params.get("mscale"), params.get("mscale_all_dim")
        if mscale and mscale_all_dim:
            attention_factor = float(yarn_mscale(factor, mscale) / yarn_mscale(factor, mscale_all_dim))
        else:
            attention_factor = yarn_mscale(factor)
    beta_fast, beta_slow = params.get("beta_fast") or 32, params.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        """The dimension whose frequency turns ``rotations`` times over the original context."""
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if params.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # Hugging Face's guard against a zero-width ramp
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low), 0, 1)

    pos_freqs = base ** (torch.arange(0, dim, 2).float() / dim)
    extrapolation = 1 - ramp  # 1: keep the frequency, 0: interpolate it
    inv_freq = (1.0 / (factor * pos_freqs)) * (1 - extrapolation) + (1.0 / pos_freqs) * extrapolation
    return inv_freq, attention_factor


def longrope_frequencies(dim: int, base: float, params, max_positions, seq_len) -> tuple[torch.Tensor, float]:
    """LongRoPE (Ding et al. 2024; Phi-3): the default frequencies divided per pair by ``short_factor``, or by
    ``long_factor`` once the input is longer than the original context; cos and sin are multiplied by the
    attention factor, ``sqrt(1 + ln(factor) / ln(original))`` unless given (``factor`` defaults to
    ``max_positions / original``)."""
    original = params["original_max_position_embeddings"]
    factor = params.get("factor") or max_positions / original
    attention_factor = params.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(original))
    long = seq_len is not None and bool(seq_len > original)
    divisors = torch.tensor(params["long_factor" if long else "short_factor"], dtype=torch.float32)
    return 1.0 / (divisors * base ** _exponents(dim)), attention_factor


ROPE_FUNCTIONS: dict[str, RopeFunction] = {
    "default": default_frequencies,
    "linear": linear_frequencies,
    "dynamic": dynamic_frequencies,
    "llama3": llama3_frequencies,
    "yarn": yarn_frequencies,
    "longrope": longrope_frequencies,
}

# The keys each rope_type cannot do without (the others have defaults).
REQUIRED_KEYS: dict[str, tuple[str, ...]] = {
    "default": (),
    "linear": ("factor",),
    "dynamic": ("factor",),
    "llama3": ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"),
    "yarn": ("original_max_position_embeddings",),  # factor: max_positions / original when not given
    "longrope": ("short_factor", "long_factor", "original_max_position_embeddings"),
}

# The types whose frequencies depend on the input's length.
LENGTH_DEPENDENT = frozenset({"dynamic", "longrope"})


# Applying the rotation -------------------------------------------------------------------------------------


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """[..., d] -> [..., d]: ``[-x2, x1]`` for the halves x1, x2 (Llama's), the half-split partner of each
    dimension with the sign of a quarter turn."""
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rotate_every_two(x: torch.Tensor) -> torch.Tensor:
    """[..., d] -> [..., d]: ``(-x1, x0, -x3, x2, ...)`` (GPT-J's), the interleaved partner of each dimension."""
    return torch.stack((-x[..., 1::2], x[..., 0::2]), dim=-1).flatten(-2)


def apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, interleaved: bool = False
) -> torch.Tensor:
    """Rotate the first ``rotary_dim`` dimensions of every head: ``x * cos + partner(x) * sin``.

    Args:
        x: [batch, pos, head, d_head] queries or keys.
        cos, sin: [batch or 1, pos, rotary_dim], in the layout of ``interleaved`` (see :class:`RotaryAngles`).
        interleaved: pair dimensions 2k and 2k + 1 (GPT-J) instead of k and k + rotary_dim / 2 (Llama).

    Returns:
        [batch, pos, head, d_head], in the dtype of ``x``; dimensions past ``rotary_dim`` unchanged.
    """
    cos, sin = cos.unsqueeze(2).to(x.dtype), sin.unsqueeze(2).to(x.dtype)
    partner = rotate_every_two if interleaved else rotate_half
    rotary_dim = cos.shape[-1]
    if rotary_dim == x.shape[-1]:
        return x * cos + partner(x) * sin
    rotated, passed = x[..., :rotary_dim], x[..., rotary_dim:]
    return torch.cat((rotated * cos + partner(rotated) * sin, passed), dim=-1)


class RotaryAngles(NamedTuple):
    """The cos and sin of the rotation angles of one forward, handed to each attention layer.

    Attributes:
        cos, sin: [batch or 1, pos, rotary_dim] float32: angle ``position * f_k`` repeated for both dimensions of
            pair k (half-split: ``[angles, angles]``; interleaved: ``[a0, a0, a1, a1, ...]``), times the
            attention factor of the scaling.
        interleaved: the layout of the pairs (see :func:`apply_rotary`).
    """

    cos: torch.Tensor
    sin: torch.Tensor
    interleaved: bool = False

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x: [batch, pos, head, d_head] -> the same, rotated (see :func:`apply_rotary`)."""
        return apply_rotary(x, self.cos, self.sin, self.interleaved)


# The module ------------------------------------------------------------------------------------------------


class RotaryEmbedding(nn.Module):
    """Position ids -> :class:`RotaryAngles` for every attention layer of a model. No parameters and no
    buffers: the frequencies are computed (and kept per device) from the numbers given here, so the module
    builds on the meta device and stays float32 whatever dtype the model is cast to.

    Args:
        rotary_dim: how many dimensions of each head are rotated (even; GPT-NeoX's ``rotary_ndims``,
            ``int(d_head * partial_rotary_factor)``). Hugging Face sizes the frequencies by this number, rounded
            up to pairs (``arange(0, rotary_dim, 2)``): an odd 3 rotates 4 dimensions.
        base: the base of the frequencies (``rope_theta``).
        scaling: ``rope_type`` (default ``"default"``; ``type`` is read too, as in old configs) and that
            type's parameters, under Hugging Face's key names (see the module docstring).
        max_positions: the model's context (``max_position_embeddings``): ``dynamic`` scales beyond it, and
            it is the default for ``original_max_position_embeddings``.
        interleaved: GPT-J's pairing of dimensions 2k, 2k + 1 instead of Llama's k, k + rotary_dim / 2.

    Raises:
        ValueError: an unknown ``rope_type``, a missing parameter of the type, or a bad ``rotary_dim``.
    """

    def __init__(
        self,
        rotary_dim: int,
        base: float = 10000.0,
        scaling: Mapping[str, Any] | None = None,
        max_positions: int | None = None,
        interleaved: bool = False,
    ) -> None:
        super().__init__()
        if rotary_dim < 2:
            raise ValueError(f"rotary_dim={rotary_dim}: at least one pair of dimensions must rotate")
        params = dict(scaling or {})
        rope_type = params.pop("rope_type", params.pop("type", "default"))
        if rope_type not in ROPE_FUNCTIONS:
            raise ValueError(f"unknown rope_type {rope_type!r}; supported: {', '.join(ROPE_FUNCTIONS)}")
        if max_positions is not None:
            params.setdefault("original_max_position_embeddings", max_positions)
        missing = [key for key in REQUIRED_KEYS[rope_type] if params.get(key) is None]
        # dynamic scales beyond max_positions; yarn and longrope default their factor to max_positions / original
        needs_max = rope_type == "dynamic" or (
            rope_type in ("yarn", "longrope") and params.get("factor") is None
        )
        if needs_max and max_positions is None:
            missing.append("max_positions")
        if missing:
            raise ValueError(f"rope_type {rope_type!r} needs {', '.join(missing)}")
        self.rotary_dim, self.base, self.rope_type = rotary_dim, float(base), rope_type
        self.params, self.max_positions, self.interleaved = params, max_positions, interleaved
        self._frequencies: dict[tuple, tuple[torch.Tensor, float]] = {}

    @classmethod
    def from_rope_parameters(
        cls,
        rope_parameters: Mapping[str, Any] | None,
        d_head: int,
        max_positions: int | None = None,
        rope_theta: float = 10000.0,
        partial_rotary_factor: float = 1.0,
        original_max_positions: int | None = None,
        interleaved: bool = False,
    ) -> RotaryEmbedding:
        """From a Hugging Face config's ``rope_parameters`` (5.x) or ``rope_scaling`` (older) dict: its
        ``rope_theta`` and ``partial_rotary_factor`` (else the arguments: old configs keep them beside the
        dict), its ``rope_type`` and that type's parameters; ``rotary_dim = int(d_head * partial_rotary_factor)``.
        ``original_max_positions``, when given, overrides the dict's ``original_max_position_embeddings`` (Phi-3
        keeps it beside the dict, and Hugging Face prefers that one)."""
        params = dict(rope_parameters or {})
        base = params.pop("rope_theta", None) or rope_theta
        fraction = params.pop("partial_rotary_factor", None) or partial_rotary_factor
        if original_max_positions is not None:
            params["original_max_position_embeddings"] = original_max_positions
        return cls(int(d_head * fraction), base, params, max_positions, interleaved)

    def extra_repr(self) -> str:
        return f"rotary_dim={self.rotary_dim}, base={self.base:g}, rope_type={self.rope_type!r}"

    def inverse_frequencies(self, seq_len: torch.Tensor | None = None) -> tuple[torch.Tensor, float]:
        """(inv_freq [rotary_dim // 2] float32 on the CPU, attention factor) for an input of ``seq_len``
        positions (the largest position id + 1; used by ``dynamic`` and ``longrope`` only)."""
        function = ROPE_FUNCTIONS[self.rope_type]
        if torch.compiler.is_compiling():  # a device context is a graph break; a traced model is built already
            return function(self.rotary_dim, self.base, self.params, self.max_positions, seq_len)
        with torch.device("cpu"):  # also when the model is being built on the meta device
            return function(self.rotary_dim, self.base, self.params, self.max_positions, seq_len)

    def frequencies_for(self, positions: torch.Tensor) -> tuple[torch.Tensor, float]:
        """(inv_freq on the device of ``positions``, attention factor) for these positions; kept per device
        and, for the length-dependent types, per regime (short/long, or the dynamic length)."""
        seq_len = positions.max() + 1 if self.rope_type in LENGTH_DEPENDENT else None
        key: tuple = (positions.device,)
        if self.rope_type == "longrope":
            key += (bool(seq_len > self.params["original_max_position_embeddings"]),)
        elif self.rope_type == "dynamic":
            key += (max(int(seq_len), self.max_positions),)
            if key not in self._frequencies and len(self._frequencies) > 64:
                self._frequencies.clear()  # one entry per length in a long generation: keep it bounded
        if key not in self._frequencies:
            inv_freq, factor = self.inverse_frequencies(None if seq_len is None else seq_len.cpu())
            self._frequencies[key] = (inv_freq.to(positions.device), factor)
        return self._frequencies[key]

    def forward(self, positions: torch.Tensor) -> RotaryAngles:
        """positions: [batch, pos] or [pos] int64 position ids -> :class:`RotaryAngles` with cos and sin
        [batch or 1, pos, 2 * len(inv_freq)] float32 (``rotary_dim`` rounded up to pairs)."""
        if positions.dim() == 1:
            positions = positions[None]
        inv_freq, attention_factor = self.frequencies_for(positions)
        angles = positions[..., None].float() * inv_freq  # [batch, pos, rotary_dim // 2]
        if self.interleaved:
            angles = angles.repeat_interleave(2, dim=-1)
        else:
            angles = torch.cat((angles, angles), dim=-1)
        return RotaryAngles(
            angles.cos() * attention_factor, angles.sin() * attention_factor, self.interleaved
        )
