"""Transformer blocks (attention and an MLP, with residual adds and norms: post-norm, pre-norm, sandwich and
parallel), each with its hook points."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..hook_points import HookPoint
from .norms import LayerNorm

if TYPE_CHECKING:
    from .kv_cache import LayerKV
    from .rotary import RotaryAngles

# The attention sublayer of one forward call, on what it reads: x [batch, pos, d_model] -> (out, pattern or None).
Attend = Callable[[torch.Tensor], "tuple[torch.Tensor, torch.Tensor | None]"]


class ResidualBlock(nn.Module, ABC):
    """Attention and an MLP, each added to the residual stream, with norms around them: what every block
    shares. A subclass lists its parts in forward order in ``layout`` (they are registered in that order, which
    ``hook_names`` follows): ``attn``, ``mlp``, its norms (names starting with ``ln``) and its residual hook
    points (``hook_*``), and writes :meth:`sublayers`, the body between ``hook_resid_pre`` and
    ``hook_resid_post``.

    ``norm`` makes each norm; default ``LayerNorm(d_model, eps)``, e.g. ``norm=lambda: RMSNorm(d_model, eps)``
    for an RMSNorm block.

    The forward takes, after the residual stream: the additive mask, Hugging Face's head_mask, whether to
    return the pattern, this layer's key/value cache, and the rotary angles of the positions (passed to the
    attention only when given, so an attention without rotary positions need not know the argument).
    """

    layout: tuple[str, ...]  # attn, mlp, the ln* norms and the hook_* residual hook points, in forward order

    def __init__(
        self,
        attn: nn.Module,
        mlp: nn.Module,
        d_model: int,
        eps: float,
        dropout: float,
        norm: Callable[[], nn.Module] | None = None,
    ) -> None:
        super().__init__()
        make_norm = norm if norm is not None else lambda: LayerNorm(d_model, eps)
        for name in self.layout:
            if name in ("attn", "mlp"):
                setattr(self, name, attn if name == "attn" else mlp)
            elif name.startswith("ln"):
                setattr(self, name, make_norm())
            else:
                setattr(self, name, HookPoint())  # hooks: [batch, pos, d_model]
        for name in ("ln1", "ln2"):  # a block without a norm before a sublayer (OLMo 2, GPT-J) has it None
            if name not in self.layout:
                setattr(self, name, None)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        resid_pre: torch.Tensor,
        mask: torch.Tensor | None,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
        past: LayerKV | None = None,
        rotary: RotaryAngles | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """resid_pre: [batch, pos, d_model] -> (resid_post [batch, pos, d_model], pattern or None)."""

        def attend(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            """The attention sublayer on what it reads, x [batch, pos, d_model] -> (out, pattern or None)."""
            if rotary is None:
                return self.attn(x, mask, head_mask, need_pattern, past)
            return self.attn(x, mask, head_mask, need_pattern, past, rotary=rotary)

        resid_post, pattern = self.sublayers(self.hook_resid_pre(resid_pre), attend)
        return self.hook_resid_post(resid_post), pattern

    @abstractmethod
    def sublayers(self, resid_pre: torch.Tensor, attend: Attend) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The block's body: resid_pre [batch, pos, d_model] (after ``hook_resid_pre``) -> (the stream it hands
        on, before ``hook_resid_post``; the pattern or None). ``attend(x)`` runs the attention sublayer on what
        it reads with this call's mask, head mask, cache and rotary angles."""


class SerialBlock(ResidualBlock):
    """Attention, then the MLP on the stream attention wrote to: what pre-norm, post-norm and sandwich blocks
    share. A subclass says where its norms sit: what a sublayer reads (:meth:`norm_in`), what it writes
    (:meth:`write_attn`, :meth:`write_mlp`; default its output) and the stream after the add
    (:meth:`norm_out`).

    Hooks: hook_resid_pre; attn.*; hook_attn_out (what attention adds to the stream); hook_resid_mid; mlp.*;
    hook_mlp_out; hook_resid_post (all residual hooks [batch, pos, d_model]), with the norms' hooks where
    ``layout`` puts them.
    """

    @abstractmethod
    def norm_in(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        """What a sublayer reads of the stream ``x``."""

    @abstractmethod
    def norm_out(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        """The stream after a sublayer's output is added to ``x``."""

    def write_attn(self, attn_out: torch.Tensor) -> torch.Tensor:
        """What the attention sublayer adds to the stream, given its output."""
        return attn_out

    def write_mlp(self, mlp_out: torch.Tensor) -> torch.Tensor:
        """What the MLP sublayer adds to the stream, given its output."""
        return mlp_out

    def sublayers(self, resid_pre: torch.Tensor, attend: Attend) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_out, pattern = attend(self.norm_in(self.ln1, resid_pre))
        attn_out = self.hook_attn_out(self.dropout(self.write_attn(attn_out)))
        resid_mid = self.hook_resid_mid(self.norm_out(self.ln1, resid_pre + attn_out))
        mlp_out = self.hook_mlp_out(self.dropout(self.write_mlp(self.mlp(self.norm_in(self.ln2, resid_mid)))))
        return self.norm_out(self.ln2, resid_mid + mlp_out), pattern


class PostNormBlock(SerialBlock):
    """A post-norm block (BERT, GPT): ``x = LN1(x + Attention(x))``, then ``x = LN2(x + MLP(x))``.

    The stream a post-norm block hands on is its LayerNorms' output: ``hook_resid_mid`` is ``ln1``'s output
    and ``hook_resid_post`` is ``ln2``'s.

    Hooks (in forward order): hook_resid_pre; attn.*; hook_attn_out; ln1.*; hook_resid_mid; mlp.*;
    hook_mlp_out; ln2.*; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple(
        "hook_resid_pre attn hook_attn_out ln1 hook_resid_mid mlp hook_mlp_out ln2 hook_resid_post".split()
    )

    def norm_in(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x

    def norm_out(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return norm(x)


class PreNormBlock(SerialBlock):
    """A pre-norm block (GPT-2, Llama): ``x = x + Attention(LN1(x))``, then ``x = x + MLP(LN2(x))``.

    Hooks (in forward order): hook_resid_pre; ln1.*; attn.*; hook_attn_out; hook_resid_mid; ln2.*; mlp.*;
    hook_mlp_out; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple(
        "hook_resid_pre ln1 attn hook_attn_out hook_resid_mid ln2 mlp hook_mlp_out hook_resid_post".split()
    )

    def norm_in(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return norm(x)

    def norm_out(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x


class SandwichBlock(SerialBlock):
    """A norm after each sublayer as well, before its output is added: ``x = x + LN1_post(Attention(LN1(x)))``,
    then ``x = x + LN2_post(MLP(LN2(x)))`` (Gemma 2).

    Hooks (in forward order): hook_resid_pre; ln1.*; attn.*; ln1_post.*; hook_attn_out (``ln1_post``'s
    output); hook_resid_mid; ln2.*; mlp.*; ln2_post.*; hook_mlp_out; hook_resid_post. All residual hooks are
    [batch, pos, d_model].
    """

    layout = tuple(
        "hook_resid_pre ln1 attn ln1_post hook_attn_out hook_resid_mid ln2 mlp ln2_post hook_mlp_out "
        "hook_resid_post".split()
    )

    def norm_in(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x if norm is None else norm(x)

    def norm_out(self, norm: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
        return x

    def write_attn(self, attn_out: torch.Tensor) -> torch.Tensor:
        return self.ln1_post(attn_out)

    def write_mlp(self, mlp_out: torch.Tensor) -> torch.Tensor:
        return self.ln2_post(mlp_out)


class PostSublayerNormBlock(SandwichBlock):
    """A sandwich block with only the norms after the sublayers (OLMo 2): ``x = x + LN1_post(Attention(x))``,
    then ``x = x + LN2_post(MLP(x))``; ``ln1`` and ``ln2`` are None.

    Hooks (in forward order): hook_resid_pre; attn.*; ln1_post.*; hook_attn_out; hook_resid_mid; mlp.*;
    ln2_post.*; hook_mlp_out; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple(
        "hook_resid_pre attn ln1_post hook_attn_out hook_resid_mid mlp ln2_post hook_mlp_out hook_resid_post".split()
    )


class ParallelBlock(ResidualBlock):
    """Attention and the MLP both read the block's input, and both outputs are added to it at once
    (GPT-NeoX's ``use_parallel_residual``): ``x = x + Attention(LN1(x)) + MLP(LN2(x))``. There is no stream
    between the sublayers, so no ``hook_resid_mid``.

    Hooks (in forward order): hook_resid_pre; ln1.*; attn.*; hook_attn_out; ln2.*; mlp.*; hook_mlp_out;
    hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple("hook_resid_pre ln1 attn hook_attn_out ln2 mlp hook_mlp_out hook_resid_post".split())

    def sublayers(self, resid_pre: torch.Tensor, attend: Attend) -> tuple[torch.Tensor, torch.Tensor | None]:
        attn_in = self.ln1(resid_pre)
        attn_out, pattern = attend(attn_in)
        attn_out = self.hook_attn_out(self.dropout(attn_out))
        mlp_in = attn_in if self.ln2 is None else self.ln2(resid_pre)
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(mlp_in)))
        # GPT-NeoX's order of the sum (floating-point addition is not associative)
        return mlp_out + attn_out + resid_pre, pattern


class SharedNormParallelBlock(ParallelBlock):
    """A parallel block with one norm that both sublayers read (GPT-J, Phi-1/2): ``x = x + Attention(LN1(x)) +
    MLP(LN1(x))``; ``ln2`` is None.

    Hooks (in forward order): hook_resid_pre; ln1.*; attn.*; hook_attn_out; mlp.*; hook_mlp_out;
    hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple("hook_resid_pre ln1 attn hook_attn_out mlp hook_mlp_out hook_resid_post".split())
