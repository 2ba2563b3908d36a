"""The sparsifying activation functions and the loss terms, as published, on plain tensors.

Shapes: ``pre`` are pre-activations ``[n, d_sae]`` (any leading dims for the activations themselves);
``acts`` feature activations of the same shape; ``W_dec`` ``[d_sae, d_out]``.

- ReLU + L1 (Anthropic, "Circuits Updates - April 2024"): ``f = ReLU(W_enc x + b_enc)``, loss
  ``||x - x_hat||^2 + lambda * sum_i f_i ||W_dec_i||``: the L1 penalty is weighted by the decoder norms, so
  the decoder is left unconstrained (shrinking it cannot buy sparsity).
- TopK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders"): ``f = ReLU(TopK(W_enc (x - b_pre)))``,
  loss ``||x - x_hat||^2 + alpha * ||e - e_hat||^2`` where ``e = x - x_hat`` and ``e_hat`` is the error's
  reconstruction from the ``k_aux`` largest pre-activations of the dead features (AuxK, alpha = 1/32).
- BatchTopK (Bussmann et al. 2024): the ``k * n`` largest ReLU'd pre-activations of a whole batch of ``n``
  tokens are kept; at inference a threshold estimated in training replaces the batch selection.
- JumpReLU (Rajamanoharan et al. 2024, "Jumping Ahead"): ``f = z * H(z - theta)``, loss
  ``||x - x_hat||^2 + lambda * ||f||_0``. ``H`` has no useful gradient, so the threshold gets the paper's
  straight-through pseudo-derivatives with the rectangle kernel ``K(u) = 1{|u| < 1/2}`` of width epsilon:
  ``d JumpReLU / d theta = -(theta / eps) K((z - theta) / eps)`` and ``d H(z - theta) / d theta = -(1 / eps)
  K((z - theta) / eps)``; the input gets the ordinary gradient ``H(z - theta)`` of ``z H(z - theta)``.
"""

from __future__ import annotations

import torch


def topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest pre-activations of each row (then ReLU), zero the rest. [..., d_sae] -> same."""
    values, indices = torch.topk(pre, k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, values.relu())


def batch_topk(pre: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k * n`` largest ReLU'd pre-activations of the batch ``pre`` [n, d_sae], zero the rest."""
    acts = pre.relu()
    flat = acts.flatten()
    values, indices = torch.topk(flat, min(k * pre.shape[0], flat.numel()))
    return torch.zeros_like(flat).scatter(0, indices, values).reshape(pre.shape)


def rectangle(u: torch.Tensor) -> torch.Tensor:
    """The rectangle kernel K(u) = 1 where -1/2 < u < 1/2, else 0."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class JumpReLU(torch.autograd.Function):
    """``z * H(z - theta)``; gradient to z: ``H(z - theta)``; to theta: ``-(theta/eps) K((z - theta)/eps)``
    (summed over the leading dims, theta is [d_sae])."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return pre * (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_pre = (pre > threshold).to(grad_output.dtype) * grad_output
        grad_threshold = -(threshold / eps) * rectangle((pre - threshold) / eps) * grad_output
        return grad_pre, _sum_to(grad_threshold, threshold), None


class Step(torch.autograd.Function):
    """``H(z - theta)``; no gradient to z; to theta: ``-(1/eps) K((z - theta)/eps)``."""

    @staticmethod
    def forward(ctx, pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
        ctx.save_for_backward(pre, threshold)
        ctx.bandwidth = bandwidth
        return (pre > threshold).to(pre.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        pre, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        grad_threshold = -(1.0 / eps) * rectangle((pre - threshold) / eps) * grad_output
        return None, _sum_to(grad_threshold, threshold), None


def _sum_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a gradient over the leading dims it was broadcast along, back to ``like``'s shape."""
    return grad.reshape(-1, *like.shape).sum(0) if like.dim() else grad.sum()


def jumprelu(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return JumpReLU.apply(pre, threshold, bandwidth)


def step(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    return Step.apply(pre, threshold, bandwidth)


# Loss terms: each a scalar, the mean over tokens of a per-token sum ------------------------------------
def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_tokens ||target - reconstruction||^2`` (squared error summed over the features of a token)."""
    return (reconstruction - target).pow(2).sum(-1).mean()


def weighted_l1(acts: torch.Tensor, W_dec: torch.Tensor) -> torch.Tensor:
    """``mean_tokens sum_i f_i ||W_dec_i||``: the April 2024 update's L1 term (acts are >= 0)."""
    return (acts * W_dec.norm(dim=-1)).sum(-1).mean()


def l0_penalty(pre: torch.Tensor, threshold: torch.Tensor, bandwidth: float) -> torch.Tensor:
    """``mean_tokens ||f||_0`` through :class:`Step`, so the threshold learns from it."""
    return step(pre, threshold, bandwidth).sum(-1).mean()


def topk_aux_loss(
    pre: torch.Tensor, error: torch.Tensor, W_dec: torch.Tensor, dead: torch.Tensor, k_aux: int
) -> torch.Tensor:
    """Gao et al.'s AuxK term ``||e - e_hat||^2``: ``e_hat = W_dec^T TopK_aux(pre over dead features)``.

    Args:
        pre: pre-activations [n, d_sae]; error: ``target - reconstruction`` [n, d_out] (detached: the term
            trains the dead features to explain what the live ones miss, not the live ones);
        dead: bool [d_sae]; k_aux: how many dead features may be used per token.
    Returns 0 when no feature is dead.
    """
    n_dead = int(dead.sum())
    if n_dead == 0:
        return pre.new_zeros(())
    dead_pre = pre[:, dead]
    aux_acts = topk(dead_pre, min(k_aux, n_dead))
    error_hat = aux_acts @ W_dec[dead]
    return reconstruction_loss(error_hat, error.detach())
