"""``SAEConfig``: what a sparse dictionary is (sizes, kind, sparsity settings) and where it reads and writes.

Dimension names used in this package: ``d_in`` is the width of the activation the dictionary reads (the
model's ``d_model`` for a residual stream), ``d_sae`` the number of features (latents), ``d_out`` the width
of what it reconstructs (``d_in`` for a sparse autoencoder, the output hook's width for a transcoder). In
the papers: Gao et al.'s ``n`` is our ``d_sae``; Rajamanoharan et al.'s ``M`` is ``d_sae`` and ``n`` is
``d_in``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

KINDS = ("relu", "topk", "batchtopk", "jumprelu")

# The sparsity coefficient each kind starts from when none is given (activations normalised so that
# E||x||^2 = d_in): Anthropic's April 2024 update uses lambda = 5 for its L1 term; the JumpReLU L0 term
# counts features, so its coefficient is smaller. Both are starting points to sweep, not tuned values.
DEFAULT_SPARSITY = {"relu": 5.0, "jumprelu": 0.1}

DTYPES = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


@dataclass
class SAEConfig:
    """The settings of one sparse autoencoder or transcoder.

    Attributes:
        d_in: width of the input activation.
        d_sae: number of features.
        kind: ``"relu"`` (ReLU + L1, Anthropic's April 2024 update), ``"topk"`` (Gao et al. 2024),
            ``"batchtopk"`` (Bussmann et al. 2024) or ``"jumprelu"`` (Rajamanoharan et al. 2024).
        k: active features per token (topk) or on average per token over a batch (batchtopk).
        l1_coefficient: the sparsity coefficient: of the decoder-norm-weighted L1 term (relu) or of the L0
            term (jumprelu); None takes ``DEFAULT_SPARSITY``. Unused by topk and batchtopk.
        jumprelu_threshold_init: the initial threshold of every feature (jumprelu).
        jumprelu_bandwidth: the width epsilon of the rectangle kernel of the straight-through estimator.
        aux_k: how many dead features the top-k auxiliary loss reconstructs the error with; None: d_in // 2.
        aux_coefficient: the weight alpha of that auxiliary loss (Gao et al.: 1/32).
        apply_b_dec_to_input: subtract the decoder bias from the input before encoding (Gao et al.'s
            b_pre); None: True for topk and batchtopk, False for relu and jumprelu (their papers encode x
            directly). Always False for a transcoder.
        decoder_unit_norm: keep the decoder rows at unit norm during training (topk, batchtopk, jumprelu);
            None takes that per-kind default. relu leaves them free: its L1 term weights by their norms.
        hook_name: the hook point the dictionary reads.
        hook_name_out: a transcoder's output hook point (None for a sparse autoencoder).
        d_out: the width of what is reconstructed; None: d_in (required for a transcoder).
        model_name: the model the dictionary was trained on (metadata).
        dtype: parameter dtype name (``"float32"``, ``"bfloat16"``, ...).
        normalize_activations: ``"none"`` or ``"expected_average_only_in"`` (training rescaled inputs so that
            E||x||^2 = d_in; the scale is kept in the module as ``activation_scale`` and folded into the
            weights when saved, so a saved file always says ``"none"``).
        sae_lens_metadata: the entries of a loaded SAELens file's ``metadata`` that the workbench does not
            use itself (``context_size``, ``prepend_bos``, ``hook_head_index``, ``neuronpedia_id``,
            ``training_architecture``, ...), kept so that saving the dictionary again writes them back.
    """

    d_in: int
    d_sae: int
    kind: str = "relu"
    k: int | None = None
    l1_coefficient: float | None = None
    jumprelu_threshold_init: float = 0.001
    jumprelu_bandwidth: float = 0.001
    aux_k: int | None = None
    aux_coefficient: float = 1.0 / 32
    apply_b_dec_to_input: bool | None = None
    decoder_unit_norm: bool | None = None
    hook_name: str | None = None
    hook_name_out: str | None = None
    d_out: int | None = None
    model_name: str | None = None
    dtype: str = "float32"
    normalize_activations: str = "none"
    sae_lens_metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"SAEConfig.kind is {self.kind!r}; choose one of {KINDS}")
        for name in ("d_in", "d_sae"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"SAEConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.kind in ("topk", "batchtopk"):
            if not isinstance(self.k, int) or not 1 <= self.k <= self.d_sae:
                raise ValueError(
                    f"kind={self.kind!r} needs an int k in [1, d_sae={self.d_sae}], got k={self.k!r}"
                )
        if self.dtype not in DTYPES:
            raise ValueError(f"SAEConfig.dtype is {self.dtype!r}; choose one of {sorted(DTYPES)}")
        if self.normalize_activations not in ("none", "expected_average_only_in"):
            raise ValueError(
                f"SAEConfig.normalize_activations is {self.normalize_activations!r}; "
                f"choose 'none' or 'expected_average_only_in'"
            )
        if self.d_out is None:
            self.d_out = self.d_in
        if self.hook_name_out is None and self.d_out != self.d_in:
            raise ValueError(f"d_out={self.d_out} differs from d_in={self.d_in} but hook_name_out is not set")
        if self.l1_coefficient is None:
            self.l1_coefficient = DEFAULT_SPARSITY.get(self.kind, 0.0)
        if self.apply_b_dec_to_input is None:
            self.apply_b_dec_to_input = self.kind in ("topk", "batchtopk") and not self.is_transcoder
        if self.apply_b_dec_to_input and self.is_transcoder:
            raise ValueError(
                "apply_b_dec_to_input cannot be True for a transcoder (b_dec has the output's width)"
            )
        if self.decoder_unit_norm is None:
            self.decoder_unit_norm = self.kind != "relu"
        if self.aux_k is None:
            self.aux_k = max(1, min(self.d_in // 2, self.d_sae))

    @property
    def is_transcoder(self) -> bool:
        return self.hook_name_out is not None

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SAEConfig:
        """Build from a dict, refusing keys that are not fields (a typo would otherwise be dropped
        silently)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown SAEConfig fields {unknown}; known fields: {sorted(known)}")
        return cls(**values)
