"""``SparseAutoencoder``: a sparse dictionary (autoencoder or transcoder) with hook points of its own.

``encode`` maps an activation ``[..., d_in]`` to feature activations ``[..., d_sae]``, ``decode`` maps those
to a reconstruction ``[..., d_out]``; parameters are SAELens's: ``W_enc`` [d_in, d_sae], ``b_enc`` [d_sae],
``W_dec`` [d_sae, d_out], ``b_dec`` [d_out], and for jumprelu a per-feature threshold (kept as
``log_threshold``, the parameter the JumpReLU paper trains). The loss of every kind is in
:mod:`workbench.sae.functions`.

Methods attached by sibling modules (they import this one, so this one cannot import them): ``save``
(:mod:`.io`), ``spliced`` (:mod:`.splice`), ``metrics`` and ``top_examples`` (:mod:`.evaluation`).
``workbench/sae/__init__.py`` imports all of them, so the methods are always there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from ..hook_points import HookedModule, HookPoint
from . import functions as F
from .config import SAEConfig


class SAEOutput(NamedTuple):
    """``reconstruction`` [..., d_out], ``feature_acts`` [..., d_sae], ``pre_activations`` [..., d_sae]."""

    reconstruction: torch.Tensor
    feature_acts: torch.Tensor
    pre_activations: torch.Tensor


@dataclass
class LossParts:
    """One training step's loss and its terms (scalars), with the tensors the trainer logs from."""

    loss: torch.Tensor
    mse: torch.Tensor
    sparsity: torch.Tensor
    aux: torch.Tensor
    feature_acts: torch.Tensor  # [n, d_sae]
    reconstruction: torch.Tensor  # [n, d_out], normalised units
    target: torch.Tensor  # [n, d_out], normalised units


class SparseAutoencoder(HookedModule):
    """A sparse autoencoder (``cfg.hook_name_out`` None) or transcoder.

    Hook points (reachable by name inside ``model.run_with_cache`` while spliced, as
    ``"<hook>.sae.<name>"``): ``hook_sae_input`` [..., d_in], ``hook_feature_pre`` and ``hook_feature_acts``
    [..., d_sae], ``hook_reconstruction`` [..., d_out], ``hook_sae_error`` [..., d_out] (only with the error
    term), ``hook_sae_output`` [..., d_out] (what replaces the activation).

    Inputs are multiplied by the buffer ``scale_in`` before encoding and reconstructions divided by
    ``scale_out`` after decoding (1 unless training normalised the activations; saving folds them into the
    weights).
    """

    def __init__(self, cfg: SAEConfig, seed: int | None = 0) -> None:
        super().__init__()
        self.cfg = cfg
        d_in, d_sae, d_out = cfg.d_in, cfg.d_sae, cfg.d_out
        dtype = cfg.torch_dtype
        self.W_enc = nn.Parameter(torch.empty(d_in, d_sae, dtype=dtype))
        self.b_enc = nn.Parameter(torch.zeros(d_sae, dtype=dtype))
        self.W_dec = nn.Parameter(torch.empty(d_sae, d_out, dtype=dtype))
        self.b_dec = nn.Parameter(torch.zeros(d_out, dtype=dtype))
        if cfg.kind == "jumprelu":
            self.log_threshold = nn.Parameter(
                torch.full((d_sae,), math.log(cfg.jumprelu_threshold_init), dtype=dtype)
            )
        if cfg.kind == "batchtopk":
            # The inference threshold; float64 as the running estimate adds many small updates.
            self.register_buffer("threshold", torch.zeros(d_sae, dtype=torch.float64))
        self.register_buffer("scale_in", torch.ones((), dtype=torch.float32))
        self.register_buffer("scale_out", torch.ones((), dtype=torch.float32))
        self.hook_sae_input = HookPoint()  # [..., d_in]
        self.hook_feature_pre = HookPoint()  # [..., d_sae]
        self.hook_feature_acts = HookPoint()  # [..., d_sae]
        self.hook_reconstruction = HookPoint()  # [..., d_out]
        self.hook_sae_error = HookPoint()  # [..., d_out]
        self.hook_sae_output = HookPoint()  # [..., d_out]
        # Set by training: the statistics logged every 10 steps, and tokens since each feature last fired.
        self.training_log: list[dict[str, float]] = []
        self.tokens_since_fired: torch.Tensor | None = None
        self.reset_parameters(seed)

    @torch.no_grad()
    def reset_parameters(self, seed: int | None = 0) -> None:
        """Decoder rows: random directions (norm 0.1 for relu, as the April update's 0.05-1 range; 1 for the
        unit-norm kinds); encoder: the decoder's transpose (Gao et al.) when d_in == d_out; biases 0."""
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        W_dec = torch.randn(self.cfg.d_sae, self.cfg.d_out, generator=generator, dtype=torch.float32)
        W_dec /= W_dec.norm(dim=-1, keepdim=True)
        W_dec *= 0.1 if self.cfg.kind == "relu" else 1.0
        self.W_dec.copy_(W_dec)
        if self.cfg.d_in == self.cfg.d_out:
            self.W_enc.copy_(W_dec.T)
        else:
            W_enc = torch.randn(self.cfg.d_in, self.cfg.d_sae, generator=generator, dtype=torch.float32)
            self.W_enc.copy_(W_enc / math.sqrt(self.cfg.d_in))
        self.b_enc.zero_()
        self.b_dec.zero_()

    # Encoding and decoding ---------------------------------------------------------------------------
    @property
    def threshold_values(self) -> torch.Tensor | None:
        """The per-feature threshold [d_sae] (jumprelu, batchtopk), else None."""
        if self.cfg.kind == "jumprelu":
            return self.log_threshold.exp()
        if self.cfg.kind == "batchtopk":
            return self.threshold.to(self.W_enc.dtype)
        return None

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] (the model's units) -> pre-activations [..., d_sae]."""
        return self.hook_feature_pre(self._pre_activations(self.hook_sae_input(x.to(self.W_enc.dtype))))

    def _pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        x = x * self.scale_in.to(x.dtype)
        if self.cfg.apply_b_dec_to_input:
            x = x - self.b_dec
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: torch.Tensor) -> torch.Tensor:
        """pre-activations -> feature activations (inference: batchtopk uses its threshold, not the batch)."""
        return self.hook_feature_acts(self._activate(pre))

    def reconstruct_unhooked(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> reconstruction [..., d_out] (model's units) without running any hook point.

        The splice's error term is ``x - reconstruct_unhooked(x)``, as SAELens computes it with its hooks
        disabled: a hook that edits the features (steering, ablation, patching) then changes the output by
        exactly the edit, instead of being cancelled by an error term computed from the edited features.
        """
        x = x.to(self.W_enc.dtype)
        return self.decode_normalized(self._activate(self._pre_activations(x))) / self.scale_out.to(x.dtype)

    def _activate(self, pre: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.kind
        if kind == "relu":
            acts = pre.relu()
        elif kind == "topk":
            acts = F.topk(pre, self.cfg.k)
        elif kind == "jumprelu":
            acts = F.jumprelu(pre, self.log_threshold.exp(), self.cfg.jumprelu_bandwidth)
        else:  # batchtopk at inference is a JumpReLU with the estimated threshold
            acts = pre.relu() * (pre > self.threshold.to(pre.dtype)).to(pre.dtype)
        return acts

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [..., d_in] -> feature activations [..., d_sae]."""
        return self.activate(self.pre_activations(x))

    def decode_normalized(self, acts: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] -> reconstruction [..., d_out] in the training's units."""
        return acts @ self.W_dec + self.b_dec

    def decode(self, acts: torch.Tensor) -> torch.Tensor:
        """Feature activations [..., d_sae] -> reconstruction [..., d_out] in the model's units."""
        out = self.decode_normalized(acts) / self.scale_out.to(acts.dtype)
        return self.hook_reconstruction(out)

    def forward(self, x: torch.Tensor) -> SAEOutput:
        """x [..., d_in] -> :class:`SAEOutput` (reconstruction, feature_acts, pre_activations)."""
        pre = self.pre_activations(x)
        acts = self.activate(pre)
        return SAEOutput(self.decode(acts), acts, pre)

    # Training ----------------------------------------------------------------------------------------
    def training_loss(
        self,
        x: torch.Tensor,
        target: torch.Tensor | None = None,
        dead: torch.Tensor | None = None,
        sparsity_scale: float = 1.0,
    ) -> LossParts:
        """The kind's published loss on a batch, in normalised units (inputs times ``scale_in``).

        Args:
            x: inputs [n, d_in]; target: what to reconstruct [n, d_out] (None: x, an autoencoder);
            dead: bool [d_sae], the features the AuxK term may use (topk, batchtopk); None: none;
            sparsity_scale: the warm-up factor in [0, 1] of the sparsity coefficient (relu, jumprelu).
        """
        target = x if target is None else target
        target_n = target.to(self.W_enc.dtype) * self.scale_out.to(self.W_enc.dtype)
        pre = self.pre_activations(x)
        kind = self.cfg.kind
        acts = F.batch_topk(pre, self.cfg.k) if kind == "batchtopk" else self.activate(pre)
        recon = self.decode_normalized(acts)
        mse = F.reconstruction_loss(recon, target_n)
        zero = pre.new_zeros(())
        sparsity, aux = zero, zero
        coefficient = self.cfg.l1_coefficient * sparsity_scale
        if kind == "relu":
            sparsity = coefficient * F.weighted_l1(acts, self.W_dec)
        elif kind == "jumprelu":
            sparsity = coefficient * F.l0_penalty(pre, self.log_threshold.exp(), self.cfg.jumprelu_bandwidth)
        elif dead is not None:
            aux = self.cfg.aux_coefficient * F.topk_aux_loss(
                pre, target_n - recon, self.W_dec, dead, self.cfg.aux_k
            )
        return LossParts(mse + sparsity + aux, mse, sparsity, aux, acts, recon, target_n)

    @torch.no_grad()
    def update_batchtopk_threshold(self, acts: torch.Tensor, rate: float = 0.01) -> None:
        """Move the batchtopk inference threshold towards this batch's smallest kept activation.

        Bussmann et al. set the threshold to E[min{z > 0 kept}] over batches; this keeps an exponential
        moving average of it (as SAELens does) so it follows the features as they train.
        """
        kept = acts[acts > 0]
        if kept.numel():
            self.threshold.mul_(1 - rate).add_(rate * kept.min().to(torch.float64))

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder row to unit norm (after each optimiser step, for the unit-norm kinds)."""
        self.W_dec.div_(self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12))

    @torch.no_grad()
    def remove_parallel_gradient_(self) -> None:
        """Project out the part of W_dec's gradient along its rows (Gao et al.): with unit rows, that part
        would only change their norm, which the renormalisation undoes anyway."""
        if self.W_dec.grad is None:
            return
        rows = self.W_dec / self.W_dec.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        self.W_dec.grad -= (self.W_dec.grad * rows).sum(-1, keepdim=True) * rows

    # Folding the normalisation -----------------------------------------------------------------------
    @torch.no_grad()
    def fold_scales_(self) -> None:
        """Move ``scale_in``/``scale_out`` into the weights so both become 1 and outputs are unchanged:
        ``W_enc *= s_in``, ``b_dec /= s_out`` (and its input use stays consistent when apply_b_dec_to_input,
        where s_in == s_out), ``W_dec /= s_out``. Decoder rows then have norm 1 / s_out."""
        s_in, s_out = float(self.scale_in), float(self.scale_out)
        self.W_enc.mul_(s_in)
        self.W_dec.div_(s_out)
        self.b_dec.div_(s_out)
        self.scale_in.fill_(1.0)
        self.scale_out.fill_(1.0)

    def extra_repr(self) -> str:
        cfg = self.cfg
        what = (
            f"transcoder {cfg.hook_name} -> {cfg.hook_name_out}"
            if cfg.is_transcoder
            else f"hook={cfg.hook_name!r}"
        )
        k = f", k={cfg.k}" if cfg.k else ""
        return f"kind={cfg.kind!r}{k}, d_in={cfg.d_in}, d_sae={cfg.d_sae}, d_out={cfg.d_out}, {what}"
