"""Transformer blocks (attention then MLP, with residual adds and norms), each with its hook points."""

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


class ResidualBlock(nn.Module, ABC):
    """Attention then MLP, each added to the residual stream, with a norm around each sublayer: what pre- and
    post-norm blocks share. A subclass says where the norms sit (:meth:`norm_in`, :meth:`norm_out`) and lists
    its parts in forward order in ``layout`` (they are registered in that order, which ``hook_names``
    follows).

    ``norm`` makes each of the two norms (``ln1``, ``ln2``); default ``LayerNorm(d_model, eps)``, e.g.
    ``norm=lambda: RMSNorm(d_model, eps)`` for an RMSNorm block.

    Hooks: hook_resid_pre; attn.*; hook_attn_out; hook_resid_mid; mlp.*; hook_mlp_out; hook_resid_post (all
    residual hooks [batch, pos, d_model]), with ln1.*, ln2.* where ``layout`` puts them.
    """

    layout: tuple[str, ...]  # attn, mlp, ln1, ln2 and the hook_* residual hook points, in forward order

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
        parts = {"attn": attn, "mlp": mlp, "ln1": make_norm(), "ln2": make_norm()}
        for name in self.layout:
            setattr(self, name, parts[name] if name in parts else HookPoint())  # hooks: [batch, pos, d_model]
        self.dropout = nn.Dropout(dropout)

    @abstractmethod
    def norm_in(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """What a sublayer reads of the stream ``x``."""

    @abstractmethod
    def norm_out(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The stream after a sublayer's output is added to ``x``."""

    def forward(
        self,
        resid_pre: torch.Tensor,
        mask: torch.Tensor | None,
        head_mask: torch.Tensor | None = None,
        need_pattern: bool = False,
        past: LayerKV | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """resid_pre: [batch, pos, d_model] -> (resid_post [batch, pos, d_model], pattern or None)."""
        resid_pre = self.hook_resid_pre(resid_pre)
        attn_out, pattern = self.attn(self.norm_in(self.ln1, resid_pre), mask, head_mask, need_pattern, past)
        attn_out = self.hook_attn_out(self.dropout(attn_out))
        resid_mid = self.hook_resid_mid(self.norm_out(self.ln1, resid_pre + attn_out))
        mlp_out = self.hook_mlp_out(self.dropout(self.mlp(self.norm_in(self.ln2, resid_mid))))
        resid_post = self.hook_resid_post(self.norm_out(self.ln2, resid_mid + mlp_out))
        return resid_post, pattern


class PostNormBlock(ResidualBlock):
    """A post-norm block (BERT, GPT): ``x = LN1(x + Attention(x))``, then ``x = LN2(x + MLP(x))``.

    The stream a post-norm block hands on is its LayerNorms' output: ``hook_resid_mid`` is ``ln1``'s output
    and ``hook_resid_post`` is ``ln2``'s.

    Hooks (in forward order): hook_resid_pre; attn.*; hook_attn_out; ln1.*; hook_resid_mid; mlp.*;
    hook_mlp_out; ln2.*; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple(
        "hook_resid_pre attn hook_attn_out ln1 hook_resid_mid mlp hook_mlp_out ln2 hook_resid_post".split()
    )

    def norm_in(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x

    def norm_out(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return norm(x)


class PreNormBlock(ResidualBlock):
    """A pre-norm block (GPT-2): ``x = x + Attention(LN1(x))``, then ``x = x + MLP(LN2(x))``.

    Hooks (in forward order): hook_resid_pre; ln1.*; attn.*; hook_attn_out; hook_resid_mid; ln2.*; mlp.*;
    hook_mlp_out; hook_resid_post. All residual hooks are [batch, pos, d_model].
    """

    layout = tuple(
        "hook_resid_pre ln1 attn hook_attn_out hook_resid_mid ln2 mlp hook_mlp_out hook_resid_post".split()
    )

    def norm_in(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return norm(x)

    def norm_out(self, norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return x
