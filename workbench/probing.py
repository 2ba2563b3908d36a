"""Probes trained for every layer at once, and the layer numbering they are trained on.

This is the probing library of both the ``probes`` package (``probes.models`` re-exports it) and the
benchmarks' probe mode (``wb.bench``), so it lives in workbench, which never imports ``probes``.

Every probe here holds one set of parameters per layer, stacked along a leading ``layer`` dimension, and trains
all layers in one batched computation (``torch.baddbmm`` / ``einsum`` over ``[layer, ...]`` tensors); there is no
Python loop over layers. The loss that is back-propagated is the *sum* of the per-layer losses and the optimizer is
Adam (element-wise), so each layer's probe follows exactly the trajectory it would follow if trained alone, given
the same seed and the same minibatch order (the minibatch order is shared by all layers).

Classification probes (:class:`LinearProbe`, :class:`MLPProbe`, :class:`MDLProbe`)
    ``features``: a float tensor ``[layer, n, d]``; ``labels``: an integer tensor ``[n]`` with values in
    ``[0, n_classes)``.

Structural probes (:class:`DistanceProbe`, :class:`DepthProbe`, Hewitt & Manning 2019)
    ``features``: a list with one float tensor ``[layer, n_i, d]`` per sentence; ``labels``: a list with one gold
    tree-distance matrix ``[n_i, n_i]`` (distance probe) or one gold depth vector ``[n_i]`` (depth probe) per
    sentence. :func:`tree_distances` and :func:`tree_depths` build them from head indices. An optional ``mask``
    (a list of bool ``[n_i]``, ``False`` for punctuation) restricts the *evaluation* to the unmasked words, as in
    the paper; training uses every word. :class:`ArcProbe` (head selection, a bilinear pair scorer) takes the same
    features and one head-index vector ``[n_i]`` per sentence.

Training: the classification probes default to minibatch Adam (:class:`MLPProbe`) or full-batch L-BFGS
(:class:`LinearProbe`, whose objective is convex: the optimizer scikit-learn's ``LogisticRegression`` uses, run for
all layers at once with one history, one line search and one stopping test per layer, see :func:`_train_lbfgs`);
the structural probes use Adam. Every probe has an explicit L2 penalty ``weight_decay / 2 * ||W||^2`` on the
weight matrices (not the biases) added to the mean loss, a fixed seed (``torch.Generator``) for initialization and
shuffling, and, when a dev set is given, early stopping on the dev loss: after every epoch (Adam: one pass in
minibatches; L-BFGS: one full-batch iteration) each layer whose dev loss improved snapshots its parameters,
training stops once no layer has improved for ``patience`` epochs, and each layer keeps the parameters of its own
best epoch (``best_epoch_``, 1-based). Without a dev set the probe trains until ``max_epochs`` (L-BFGS: or until
every layer's gradient is below ``tol``) and keeps the last parameters.

``score`` returns a ``dict[str, Tensor[layer]]``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "EMBEDDING_HOOK",
    "hook_name",
    "resolve_layers",
    "LinearProbe",
    "MLPProbe",
    "DistanceProbe",
    "DepthProbe",
    "MDLProbe",
    "ArcProbe",
    "tree_distances",
    "tree_depths",
    "minimum_spanning_tree",
    "uuas",
    "spearman",
]

EMBEDDING_HOOK = "blocks.0.hook_resid_pre"


def hook_name(layer: int, hook: str = "hook_resid_post") -> str:
    """The hook whose activations are layer ``layer``: 0 is the embedding output, i is block i-1's ``hook``."""
    return EMBEDDING_HOOK if layer == 0 else f"blocks.{layer - 1}.{hook}"


def resolve_layers(layers: str | Sequence[int], n_layers: int) -> list[int]:
    """``"all"`` -> [0, ..., n_layers]; a list of ints is checked (0 = embeddings, 1..n_layers = blocks)."""
    if isinstance(layers, str):
        if layers != "all":
            raise ValueError(f"layers must be 'all' or a list of ints, got {layers!r}")
        return list(range(n_layers + 1))
    if isinstance(layers, (int, np.integer)):
        layers = [layers]
    chosen = list(layers)
    if not chosen:
        raise ValueError("layers is empty; pass 'all' or at least one layer")
    for layer in chosen:
        if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)):
            raise ValueError(f"layers must be ints, got {layer!r} ({type(layer).__name__})")
        if not 0 <= layer <= n_layers:
            raise ValueError(
                f"layer {layer} is out of range: the model has {n_layers} blocks, so layers are 0 (the embedding "
                f"output) to {n_layers} (the last block's output)"
            )
    return sorted({int(layer) for layer in chosen})


DEFAULT_MDL_FRACTIONS = (0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.25, 12.5, 25.0, 50.0, 100.0)


# --------------------------------------------------------------------------------------------------------------
# Validation helpers


def _check_features(features, name: str = "features") -> Tensor:
    if not isinstance(features, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor shaped [layer, n, d], got {type(features).__name__}")
    if features.ndim != 3:
        raise ValueError(f"{name} must be shaped [layer, n, d], got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {features.dtype}")
    if features.shape[0] == 0 or features.shape[1] == 0 or features.shape[2] == 0:
        raise ValueError(f"{name} has an empty dimension: shape {tuple(features.shape)}")
    return features.float()


def _check_labels(labels, n: int, n_classes: int, name: str = "labels") -> Tensor:
    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be a 1-D tensor [n], got shape {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.dtype == torch.bool or labels.is_complex():
        raise TypeError(f"{name} must be integers, got {labels.dtype}")
    if labels.shape[0] != n:
        raise ValueError(f"{name} has {labels.shape[0]} entries but the features have n={n} examples")
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(
            f"{name} must lie in [0, n_classes={n_classes}), got values in "
            f"[{int(labels.min())}, {int(labels.max())}]; raise n_classes or remap the labels"
        )
    return labels.long()


def _check_pair(
    train_features: Tensor, dev_features, dev_labels, name: str = "dev_features"
) -> tuple[Tensor | None, object]:
    if (dev_features is None) != (dev_labels is None):
        raise ValueError("pass both dev_features and dev_labels, or neither")
    if dev_features is None:
        return None, None
    dev_features = _check_features(dev_features, name)
    if dev_features.shape[0] != train_features.shape[0] or dev_features.shape[2] != train_features.shape[2]:
        raise ValueError(
            f"{name} shape {tuple(dev_features.shape)} does not match the training features "
            f"[layer={train_features.shape[0]}, n, d={train_features.shape[2]}]"
        )
    return dev_features, dev_labels


def _check_positive(**values) -> None:
    for key, value in values.items():
        if value is None or value <= 0:
            raise ValueError(f"{key} must be positive, got {value}")


def _set_training_settings(
    probe,
    weight_decay: float,
    max_epochs: int,
    lr: float,
    batch_size: int,
    patience: int,
    seed: int,
    more_positive: dict,
) -> None:
    """Check the training settings every probe takes and keep them as its attributes of the same names.

    ``weight_decay`` must be >= 0; ``max_epochs``, ``lr``, ``batch_size``, ``patience`` and the values of
    ``more_positive`` (the probe's own, checked, not kept) must be positive.
    """
    _check_positive(max_epochs=max_epochs, lr=lr, batch_size=batch_size, patience=patience, **more_positive)
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    probe.weight_decay, probe.max_epochs, probe.lr = weight_decay, max_epochs, lr
    probe.batch_size, probe.patience, probe.seed = batch_size, patience, seed


# --------------------------------------------------------------------------------------------------------------
# The shared batched training loop


def _train(
    params: list[Tensor],
    batch_loss: Callable[[Tensor], Tensor],
    n_train: int,
    dev_loss: Callable[[], Tensor] | None,
    *,
    max_epochs: int,
    lr: float,
    batch_size: int,
    patience: int,
    generator: torch.Generator,
) -> tuple[list[Tensor], Tensor, dict[str, Tensor]]:
    """Adam over minibatches; ``batch_loss(ids)`` and ``dev_loss()`` return per-layer losses ``[layer]``.

    Returns the per-layer best parameters, ``best_epoch`` ``[layer]`` (1-based) and the loss history.
    """
    n_layers = params[0].shape[0]
    optimizer = torch.optim.Adam(params, lr=lr)
    best = [p.detach().clone() for p in params]
    best_loss = torch.full((n_layers,), math.inf)
    best_epoch = torch.zeros(n_layers, dtype=torch.long)
    since_best = torch.zeros(n_layers, dtype=torch.long)
    train_history, dev_history = [], []
    for epoch in range(1, max_epochs + 1):
        order = torch.randperm(n_train, generator=generator)
        total = torch.zeros(n_layers)
        for start in range(0, n_train, batch_size):
            ids = order[start : start + batch_size]
            loss = batch_loss(ids)
            optimizer.zero_grad(set_to_none=True)
            loss.sum().backward()
            optimizer.step()
            total += loss.detach().cpu() * len(ids)
        train_history.append(total / n_train)
        if dev_loss is None:
            continue
        with torch.no_grad():
            current = dev_loss().detach().cpu()
        dev_history.append(current)
        improved = current < best_loss - 1e-7 * best_loss.abs().clamp(max=1e30)
        improved |= torch.isinf(best_loss) & torch.isfinite(current)
        if improved.any():
            keep = improved.to(params[0].device)
            with torch.no_grad():
                for b, p in zip(best, params):
                    b[keep] = p.detach()[keep]
            best_loss = torch.where(improved, current, best_loss)
            best_epoch = torch.where(improved, torch.tensor(epoch), best_epoch)
        since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
        if bool((since_best >= patience).all()):
            break
    history = {"train_loss": torch.stack(train_history)}
    if dev_loss is None:
        best = [p.detach().clone() for p in params]
        best_epoch = torch.full((n_layers,), len(train_history), dtype=torch.long)
    else:
        history["dev_loss"] = torch.stack(dev_history)
    return best, best_epoch, history


class _LayerRows:
    """``features[layers]`` for a changing set of layers, copied only when the set changes (all layers: no copy).

    L-BFGS drops layers as they converge, so it asks for the same subset many times in a row."""

    def __init__(self, features: Tensor | None):
        self.features = features
        self._key: tuple[int, ...] | None = None
        self._rows: Tensor | None = None

    def __getitem__(self, layers: Tensor) -> Tensor:
        if layers.numel() == self.features.shape[0]:
            return self.features
        key = tuple(layers.tolist())
        if key != self._key:
            self._key, self._rows = key, self.features[layers]
        return self._rows


def _two_loop(grad: Tensor, steps: Tensor, changes: Tensor, rho: Tensor, gamma: Tensor) -> Tensor:
    """L-BFGS two-loop recursion per layer: ``-H grad`` from the stored pairs.

    ``grad`` [L, P]; ``steps``/``changes`` [m, L, P] (oldest first; a pair with ``rho == 0`` is a no-op, which is
    how a layer skips a pair that would break positive definiteness); ``rho`` [m, L]; ``gamma`` [L], the initial
    inverse-Hessian scale.
    """
    q = grad.clone()
    alphas = []
    for i in range(steps.shape[0] - 1, -1, -1):
        alpha = rho[i] * (steps[i] * q).sum(1)
        q -= alpha[:, None] * changes[i]
        alphas.append(alpha)
    r = gamma[:, None] * q
    for i, alpha in zip(range(steps.shape[0]), reversed(alphas)):
        beta = rho[i] * (changes[i] * r).sum(1)
        r += steps[i] * (alpha - beta)[:, None]
    return -r


def _train_lbfgs(
    theta: Tensor,
    loss_and_grad: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]],
    dev_loss: Callable[[Tensor, Tensor], Tensor] | None,
    *,
    max_epochs: int,
    tol: float,
    patience: int,
    history_size: int = 10,
    max_backtracks: int = 30,
) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """Full-batch L-BFGS for ``L`` independent problems at once (one per layer), with early stopping on dev.

    ``theta`` [L, P] holds each layer's flattened parameters; ``loss_and_grad(rows, layers)`` returns, for the
    parameters ``rows`` [k, P] of the layers ``layers`` [k] (indices), their objectives [k] and gradients [k, P];
    ``dev_loss(rows, layers)`` their dev losses [k]. Every layer has its own curvature history, its own
    backtracking (Armijo) step and its own stopping test, so a layer's result does not depend on the others; the
    layers still training are evaluated together in one batched computation per step, and a layer that has
    stopped costs nothing more.
    A layer stops when its largest gradient entry falls below ``tol`` (scikit-learn's ``gtol``), when its
    objective stops changing, when its line search fails, or (with a dev set) after ``patience`` iterations
    without a better dev loss. Returns the kept parameters [L, P], ``best_epoch`` [L] (1-based) and the history.
    """
    n_layers, n_params = theta.shape
    theta = theta.clone()
    every_layer = torch.arange(n_layers, device=theta.device)
    loss, grad = loss_and_grad(theta, every_layer)
    steps = theta.new_zeros(history_size, n_layers, n_params)
    changes = torch.zeros_like(steps)
    rho = theta.new_zeros(history_size, n_layers)
    gamma = 1.0 / grad.abs().sum(1).clamp(min=1.0)  # torch's first step: at most a unit step in L1
    active = grad.abs().amax(1) > tol
    best, best_epoch = theta.clone(), torch.zeros(n_layers, dtype=torch.long)
    best_loss = torch.full((n_layers,), math.inf)
    since_best = torch.zeros(n_layers, dtype=torch.long)
    train_history, dev_history = [], []
    for epoch in range(1, max_epochs + 1):
        if not bool(active.any()):
            break
        direction = _two_loop(grad, steps, changes, rho, gamma)
        slope = (direction * grad).sum(1)
        not_descent = slope >= 0  # numerical trouble: restart that layer from steepest descent
        if bool(not_descent.any()):
            direction[not_descent] = -grad[not_descent] * gamma[not_descent, None]
            rho[:, not_descent] = 0
            slope = (direction * grad).sum(1)
        direction[~active] = 0
        step = active.to(theta.dtype)
        pending = active.clone()
        new_theta, new_loss, new_grad = theta.clone(), loss.clone(), grad.clone()
        for _ in range(max_backtracks):
            layers = pending.nonzero().squeeze(1)
            candidate = theta[layers] + step[layers, None] * direction[layers]
            cand_loss, cand_grad = loss_and_grad(candidate, layers)
            ok = cand_loss <= loss[layers] + 1e-4 * step[layers] * slope[layers]
            accepted = layers[ok]
            new_theta[accepted], new_loss[accepted], new_grad[accepted] = (
                candidate[ok],
                cand_loss[ok],
                cand_grad[ok],
            )
            pending[accepted] = False
            if not bool(pending.any()):
                break
            step = torch.where(pending, step * 0.5, step)
        active &= ~pending  # a line search that found no decrease: that layer is at its numerical optimum
        s, y = new_theta - theta, new_grad - grad
        curvature = (s * y).sum(1)
        usable = active & (curvature > 1e-10 * (y * y).sum(1).clamp(min=1e-30))
        steps, changes, rho = steps.roll(-1, 0), changes.roll(-1, 0), rho.roll(-1, 0)
        steps[-1], changes[-1] = s, y
        rho[-1] = torch.where(usable, 1.0 / curvature.clamp(min=1e-30), torch.zeros_like(curvature))
        gamma = torch.where(usable, curvature / (y * y).sum(1).clamp(min=1e-30), gamma)
        still_moving = (loss - new_loss).abs() > 1e-12 * loss.abs().clamp(min=1.0)
        theta, loss, grad = new_theta, new_loss, new_grad
        active &= (grad.abs().amax(1) > tol) & still_moving
        train_history.append(loss.detach().cpu())
        if dev_loss is None:
            continue
        layers = active.nonzero().squeeze(1)
        current = dev_history[-1].clone() if dev_history else torch.full((n_layers,), math.inf)
        current[layers.cpu()] = dev_loss(theta[layers], layers).detach().cpu()  # stopped layers keep theirs
        dev_history.append(current)
        improved = current < best_loss - 1e-7 * best_loss.abs().clamp(max=1e30)
        improved |= torch.isinf(best_loss) & torch.isfinite(current)
        keep = improved.to(theta.device)
        best = torch.where(keep[:, None], theta, best)
        best_loss = torch.where(improved, current, best_loss)
        best_epoch = torch.where(improved, torch.tensor(epoch), best_epoch)
        since_best = torch.where(improved, torch.zeros_like(since_best), since_best + 1)
        active &= (since_best < patience).to(active.device)
    if not train_history:  # already optimal at the start (e.g. max_epochs reached nothing to do)
        train_history.append(loss.detach().cpu())
        if dev_loss is not None:
            dev_history.append(dev_loss(theta, every_layer).detach().cpu())
            best, best_epoch = theta.clone(), torch.ones(n_layers, dtype=torch.long)
    history = {"train_loss": torch.stack(train_history)}
    if dev_loss is None:
        best, best_epoch = theta, torch.full((n_layers,), len(train_history), dtype=torch.long)
    else:
        history["dev_loss"] = torch.stack(dev_history)
    return best, best_epoch, history


# --------------------------------------------------------------------------------------------------------------
# Classification probes


def _macro_f1(predictions: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Macro F1 per layer over the classes present in the gold labels or the predictions (as scikit-learn)."""
    n_layers = predictions.shape[0]
    one_pred = F.one_hot(predictions, n_classes).float()  # [L, n, C]
    one_gold = F.one_hot(labels, n_classes).float().expand(n_layers, -1, -1)
    tp = (one_pred * one_gold).sum(1)
    pred_count = one_pred.sum(1)
    gold_count = one_gold.sum(1)
    denom = pred_count + gold_count
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return f1.sum(1) / present.sum(1).clamp(min=1)


class _ClassifierProbe:
    """Shared fit / score for the batched classification probes (subclasses define parameters and logits).

    ``optimizer``: ``"lbfgs"`` (full batch; ``max_epochs`` counts iterations, ``tol`` is the gradient tolerance,
    ``lr`` and ``batch_size`` are unused) or ``"adam"`` (minibatches of ``batch_size`` at learning rate ``lr``;
    ``max_epochs`` counts passes over the data). ``None`` takes the subclass's default.
    """

    default_optimizer = "adam"
    OPTIMIZERS = ("adam", "lbfgs")
    DEFAULT_MAX_EPOCHS = {"adam": 100, "lbfgs": 1000}
    DEFAULT_PATIENCE = {"adam": 10, "lbfgs": 20}

    def __init__(
        self,
        n_classes: int,
        *,
        weight_decay: float = 1e-4,
        optimizer: str | None = None,
        max_epochs: int | None = None,
        lr: float = 1e-2,
        batch_size: int = 256,
        patience: int | None = None,
        tol: float = 1e-4,
        standardize: bool = True,
        seed: int = 0,
    ):
        if not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be an integer >= 2, got {n_classes!r}")
        optimizer = optimizer or self.default_optimizer
        if optimizer not in self.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {self.OPTIMIZERS}, got {optimizer!r}")
        max_epochs = self.DEFAULT_MAX_EPOCHS[optimizer] if max_epochs is None else max_epochs
        patience = self.DEFAULT_PATIENCE[optimizer] if patience is None else patience
        _set_training_settings(
            self, weight_decay, max_epochs, lr, batch_size, patience, seed, more_positive={"tol": tol}
        )
        self.n_classes = n_classes
        self.optimizer = optimizer
        self.tol = tol
        self.standardize = standardize
        self.params_: list[Tensor] | None = None

    # Subclass hooks -------------------------------------------------------------------------------------------
    def _init_params(self, n_layers: int, dim: int, generator: torch.Generator) -> list[Tensor]:
        raise NotImplementedError

    def _logits(self, params: list[Tensor], x: Tensor) -> Tensor:  # x: [L, B, d] -> [L, B, C]
        raise NotImplementedError

    def _penalty(self, params: list[Tensor]) -> Tensor:  # [L]
        raise NotImplementedError

    # Public API -----------------------------------------------------------------------------------------------
    def fit(self, train_features, train_labels, dev_features=None, dev_labels=None):
        """Train one probe per layer; early-stop on the dev loss when a dev set is given. Returns ``self``."""
        return self._fit(train_features, train_labels, dev_features, dev_labels, allow_single_class=False)

    def _fit(self, train_features, train_labels, dev_features, dev_labels, *, allow_single_class: bool):
        x = _check_features(train_features, "train_features")
        y = _check_labels(train_labels, x.shape[1], self.n_classes, "train_labels")
        if not allow_single_class and int(y.unique().numel()) < 2:
            raise ValueError(f"train_labels contain a single class ({int(y[0])}); a probe needs at least two")
        x_dev, y_dev = _check_pair(x, dev_features, dev_labels)
        if x_dev is not None:
            y_dev = _check_labels(y_dev, x_dev.shape[1], self.n_classes, "dev_labels")
        device = x.device
        y = y.to(device)
        n_layers, n, dim = x.shape
        if self.standardize:
            self.mean_ = x.mean(1, keepdim=True)
            std = x.std(1, keepdim=True, unbiased=False)
            self.std_ = torch.where(std > 1e-6, std, torch.ones_like(std))
        else:
            self.mean_ = torch.zeros(n_layers, 1, dim, device=device)
            self.std_ = torch.ones(n_layers, 1, dim, device=device)
        x = (x - self.mean_) / self.std_
        generator = torch.Generator().manual_seed(self.seed)
        params = [p.to(device) for p in self._init_params(n_layers, dim, generator)]
        x_dev_std = None if x_dev is None else (x_dev.to(device) - self.mean_) / self.std_
        y_dev = None if y_dev is None else y_dev.to(device)
        if self.optimizer == "lbfgs":
            self.params_, self.best_epoch_, self.history_ = self._fit_lbfgs(params, x, y, x_dev_std, y_dev)
        else:
            self.params_, self.best_epoch_, self.history_ = self._fit_adam(
                params, x, y, x_dev_std, y_dev, generator
            )
        self.n_layers_, self.dim_ = n_layers, dim
        return self

    def _fit_adam(self, params, x, y, x_dev, y_dev, generator):
        params = [p.requires_grad_() for p in params]

        def batch_loss(ids: Tensor) -> Tensor:
            ids = ids.to(x.device)
            logits = self._logits(params, x[:, ids])
            return self._ce(logits, y[ids]) + 0.5 * self.weight_decay * self._penalty(params)

        def dev_loss() -> Tensor:
            return self._ce(self._logits(params, x_dev), y_dev)

        return _train(
            params,
            batch_loss,
            x.shape[1],
            None if x_dev is None else dev_loss,
            max_epochs=self.max_epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            patience=self.patience,
            generator=generator,
        )

    def _fit_lbfgs(self, params, x, y, x_dev, y_dev):
        shapes = [p.shape[1:] for p in params]
        sizes = [math.prod(shape) for shape in shapes]
        n_layers = x.shape[0]
        train_rows, dev_rows = _LayerRows(x), _LayerRows(x_dev)

        def unflatten(theta: Tensor) -> list[Tensor]:
            chunks = theta.split(sizes, dim=1)
            return [chunk.reshape(theta.shape[0], *shape) for chunk, shape in zip(chunks, shapes)]

        def loss_and_grad(theta: Tensor, layers: Tensor) -> tuple[Tensor, Tensor]:
            with torch.enable_grad():
                theta = theta.detach().requires_grad_()
                current = unflatten(theta)
                data_loss = self._ce(self._logits(current, train_rows[layers]), y)
                loss = data_loss + 0.5 * self.weight_decay * self._penalty(current)
                (grad,) = torch.autograd.grad(loss.sum(), theta)
            return loss.detach(), grad

        def dev_loss(theta: Tensor, layers: Tensor) -> Tensor:
            with torch.no_grad():
                return self._ce(self._logits(unflatten(theta), dev_rows[layers]), y_dev)

        theta = torch.cat([p.reshape(n_layers, -1) for p in params], dim=1)
        best, best_epoch, history = _train_lbfgs(
            theta,
            loss_and_grad,
            None if x_dev is None else dev_loss,
            max_epochs=self.max_epochs,
            tol=self.tol,
            patience=self.patience,
        )
        return unflatten(best), best_epoch, history

    @staticmethod
    def _ce(logits: Tensor, labels: Tensor) -> Tensor:
        n_layers, n, n_classes = logits.shape
        loss = F.cross_entropy(logits.reshape(-1, n_classes), labels.repeat(n_layers), reduction="none")
        return loss.view(n_layers, n).mean(1)

    def _check_fitted(self, features) -> Tensor:
        if self.params_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        x = _check_features(features)
        if x.shape[0] != self.n_layers_ or x.shape[2] != self.dim_:
            raise ValueError(
                f"features shape {tuple(x.shape)} does not match the fitted probe "
                f"[layer={self.n_layers_}, n, d={self.dim_}]"
            )
        return x

    @torch.no_grad()
    def predict_logits(self, features) -> Tensor:
        """Logits ``[layer, n, n_classes]`` of each layer's best probe."""
        x = self._check_fitted(features)
        x = (x.to(self.mean_.device) - self.mean_) / self.std_
        return self._logits(self.params_, x)

    def predict(self, features) -> Tensor:
        """Predicted classes ``[layer, n]``."""
        return self.predict_logits(features).argmax(-1)

    @torch.no_grad()
    def score(self, features, labels) -> dict[str, Tensor]:
        """``accuracy``, ``macro_f1`` and ``loss`` (mean cross-entropy, nats), each ``[layer]``."""
        logits = self.predict_logits(features)
        y = _check_labels(labels, logits.shape[1], self.n_classes).to(logits.device)
        predictions = logits.argmax(-1)
        return {
            "accuracy": (predictions == y).float().mean(1).cpu(),
            "macro_f1": _macro_f1(predictions, y, self.n_classes).cpu(),
            "loss": self._ce(logits, y).cpu(),
        }


class LinearProbe(_ClassifierProbe):
    """Multinomial logistic regression per layer: one weight ``[layer, d, n_classes]`` and bias.

    Features are standardized per layer and dimension with the training statistics (``standardize=True``), which
    conditions the problem the same way for every layer. The objective per layer is ``mean cross-entropy +
    weight_decay / 2 * ||W||^2``, i.e. scikit-learn's ``LogisticRegression(C=1 / (n * weight_decay))`` on the
    standardized features, minimized by default the way scikit-learn does it (L-BFGS to a gradient tolerance of
    ``tol``), for all layers in one batched computation; ``optimizer="adam"`` trains in minibatches instead.
    """

    default_optimizer = "lbfgs"

    def _init_params(self, n_layers, dim, generator):
        return [torch.zeros(n_layers, dim, self.n_classes), torch.zeros(n_layers, 1, self.n_classes)]

    def _logits(self, params, x):
        weight, bias = params
        return torch.baddbmm(bias, x, weight)

    def _penalty(self, params):
        return params[0].pow(2).sum((1, 2))


class MLPProbe(_ClassifierProbe):
    """One hidden layer (ReLU, optional dropout) per layer: weights ``[layer, d, hidden]`` and
    ``[layer, hidden, n_classes]``; weight decay applies to both weight matrices."""

    def __init__(self, n_classes: int, hidden: int = 64, *, dropout: float = 0.0, **kwargs):
        super().__init__(n_classes, **kwargs)
        if not isinstance(hidden, int) or hidden < 1:
            raise ValueError(f"hidden must be a positive integer, got {hidden!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.hidden = hidden
        self.dropout = dropout

    def _init_params(self, n_layers, dim, generator):
        # PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
        def uniform(*shape, fan_in):
            bound = 1.0 / math.sqrt(fan_in)
            return (torch.rand(*shape, generator=generator) * 2 - 1) * bound

        return [
            uniform(n_layers, dim, self.hidden, fan_in=dim),
            uniform(n_layers, 1, self.hidden, fan_in=dim),
            uniform(n_layers, self.hidden, self.n_classes, fan_in=self.hidden),
            uniform(n_layers, 1, self.n_classes, fan_in=self.hidden),
        ]

    def _logits(self, params, x):
        w1, b1, w2, b2 = params
        hidden = torch.relu(torch.baddbmm(b1, x, w1))
        if self.dropout and torch.is_grad_enabled() and w1.requires_grad:
            hidden = F.dropout(hidden, self.dropout, training=True)
        return torch.baddbmm(b2, hidden, w2)

    def _penalty(self, params):
        return params[0].pow(2).sum((1, 2)) + params[2].pow(2).sum((1, 2))


# --------------------------------------------------------------------------------------------------------------
# MDL (online code)


class MDLProbe:
    """Online codelength of the labels given the features (Voita & Titov 2020), per layer, with a linear probe.

    The examples are put in a seeded random order and cut at ``fractions`` (percent of the data; the default is
    the paper's 0.1, 0.2, 0.4, ..., 50, 100). The first block is sent with the uniform code
    (``t_1 * log2(n_classes)`` bits); each following block ``[t_i, t_{i+1})`` costs its cross-entropy in bits
    under a :class:`LinearProbe` trained on the first ``t_i`` examples. ``compression`` is
    ``n * log2(n_classes) / codelength``.

    ``fit(train_features, train_labels, dev_features, dev_labels)`` computes the code of the training data (the
    optional dev set early-stops every block's probe) and stores it in ``result_`` and ``block_bits_``
    ``[blocks, layer]``; ``score(features, labels)`` computes the code of other data the same way, using the dev
    set given to ``fit`` (if any). ``probe_kwargs`` go to every :class:`LinearProbe`.
    """

    def __init__(
        self,
        n_classes: int,
        *,
        fractions: Sequence[float] = DEFAULT_MDL_FRACTIONS,
        seed: int = 0,
        **probe_kwargs,
    ):
        LinearProbe(n_classes, seed=seed, **probe_kwargs)  # validates the arguments
        fractions = [float(f) for f in fractions]
        if not fractions or any(not 0 < f <= 100 for f in fractions) or fractions != sorted(fractions):
            raise ValueError(f"fractions must be increasing percentages in (0, 100], got {fractions}")
        if fractions[-1] != 100.0:
            raise ValueError("the last fraction must be 100 (the whole data set is transmitted)")
        self.n_classes = n_classes
        self.fractions = tuple(fractions)
        self.seed = seed
        self.probe_kwargs = probe_kwargs
        self._dev: tuple[Tensor, Tensor] | None = None

    def fit(self, train_features, train_labels, dev_features=None, dev_labels=None):
        x = _check_features(train_features, "train_features")
        _check_labels(train_labels, x.shape[1], self.n_classes, "train_labels")
        x_dev, y_dev = _check_pair(x, dev_features, dev_labels)
        if x_dev is not None:
            y_dev = _check_labels(y_dev, x_dev.shape[1], self.n_classes, "dev_labels")
            self._dev = (x_dev, y_dev)
        else:
            self._dev = None
        self.result_ = self.score(x, train_labels)
        return self

    def block_ends(self, n: int) -> list[int]:
        """The cut points ``t_1 < t_2 < ... < t_k = n`` used for ``n`` examples."""
        ends = sorted({max(1, int(n * f / 100)) for f in self.fractions})
        ends[-1] = n
        return ends

    @torch.no_grad()
    def _block_bits(self, probe: LinearProbe, x: Tensor, y: Tensor) -> Tensor:
        logits = probe.predict_logits(x)
        log_probs = torch.log_softmax(logits, -1).gather(
            -1, y.to(logits.device).expand(x.shape[0], -1)[..., None]
        )
        return -log_probs.squeeze(-1).sum(1).cpu() / math.log(2)

    def score(self, features, labels) -> dict[str, Tensor]:
        """``codelength_bits``, ``uniform_bits`` and ``compression``, each ``[layer]``."""
        x = _check_features(features)
        y = _check_labels(labels, x.shape[1], self.n_classes)
        if self._dev is not None and self._dev[0].shape[2] != x.shape[2]:
            raise ValueError("features do not match the dev set given to fit()")
        n_layers, n, _ = x.shape
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed)).to(x.device)
        x, y = x[:, order], y.to(x.device)[order]
        ends = self.block_ends(n)
        uniform_per_example = math.log2(self.n_classes)
        blocks = [torch.full((n_layers,), ends[0] * uniform_per_example)]
        dev_x, dev_y = self._dev if self._dev is not None else (None, None)
        for start, stop in zip(ends[:-1], ends[1:]):
            probe = LinearProbe(self.n_classes, seed=self.seed, **self.probe_kwargs)
            probe._fit(x[:, :start], y[:start], dev_x, dev_y, allow_single_class=True)
            blocks.append(self._block_bits(probe, x[:, start:stop], y[start:stop]))
        self.block_bits_ = torch.stack(blocks)
        codelength = self.block_bits_.sum(0)
        uniform = torch.full((n_layers,), n * uniform_per_example)
        return {"codelength_bits": codelength, "uniform_bits": uniform, "compression": uniform / codelength}


# --------------------------------------------------------------------------------------------------------------
# Trees and structural-probe metrics


def _ancestors(heads: Sequence[int]) -> list[list[int]]:
    n = len(heads)
    roots = [i for i, h in enumerate(heads) if h < 0]
    if len(roots) != 1:
        raise ValueError(f"heads must contain exactly one root (head -1), got {len(roots)}")
    paths = []
    for i in range(n):
        path, node = [], i
        while node >= 0:
            if node in path or node >= n:
                raise ValueError(f"heads do not form a tree (cycle or bad index at word {i}): {list(heads)}")
            path.append(node)
            node = int(heads[node])
        paths.append(path)  # i, parent, ..., root
    return paths


def tree_depths(heads: Sequence[int]) -> Tensor:
    """Depth of each word (root = 0) from 0-based head indices (the root's head is -1)."""
    heads = [int(h) for h in heads]
    return torch.tensor([len(p) - 1 for p in _ancestors(heads)], dtype=torch.float32)


def tree_distances(heads: Sequence[int]) -> Tensor:
    """Path lengths ``[n, n]`` between words of the tree given by 0-based head indices (the root's head is -1)."""
    heads = [int(h) for h in heads]
    paths = _ancestors(heads)
    n = len(heads)
    dist = torch.zeros(n, n)
    sets = [set(p) for p in paths]
    for i in range(n):
        for j in range(i + 1, n):
            dist[i, j] = dist[j, i] = len(sets[i] ^ sets[j])  # symmetric difference of the root paths
    return dist


def minimum_spanning_tree(distances: Tensor, mask: Tensor | None = None) -> Tensor:
    """Prim's minimum spanning tree over the words where ``mask`` is true; returns a symmetric bool adjacency.

    ``distances``: ``[..., n, n]`` (any batch dimensions, computed at once); ``mask``: bool ``[..., n]``
    broadcastable to the batch (default: all words). Ties go to the lowest index.
    """
    if distances.ndim < 2 or distances.shape[-1] != distances.shape[-2]:
        raise ValueError(f"distances must be shaped [..., n, n], got {tuple(distances.shape)}")
    *batch, n = distances.shape[:-1]
    dist = distances.reshape(-1, n, n).float()
    m = dist.shape[0]
    if mask is None:
        valid = torch.ones(m, n, dtype=torch.bool, device=dist.device)
    else:
        valid = torch.as_tensor(mask, dtype=torch.bool, device=dist.device).expand(*batch, n).reshape(m, n)
    rows = torch.arange(m, device=dist.device)
    adjacency = torch.zeros(m, n, n, dtype=torch.bool, device=dist.device)
    in_tree = torch.zeros(m, n, dtype=torch.bool, device=dist.device)
    has_start = valid.any(1)
    start = valid.float().argmax(1)  # first valid word
    in_tree[rows, start] = has_start
    inf = torch.tensor(math.inf, device=dist.device)
    key = torch.where(valid & has_start[:, None], dist[rows, start], inf)
    parent = start[:, None].expand(m, n).clone()
    for _ in range(n - 1):
        candidate = torch.where(valid & ~in_tree, key, inf)
        best_key, node = candidate.min(1)
        # a word with an infinite (or nan) distance is still attached if it is the only one left
        remaining = (valid & ~in_tree).any(1)
        if not bool(remaining.any()):
            break
        fallback = (valid & ~in_tree).float().argmax(1)
        node = torch.where(torch.isfinite(best_key), node, fallback)
        par = parent[rows, node]
        adjacency[rows[remaining], node[remaining], par[remaining]] = True
        adjacency[rows[remaining], par[remaining], node[remaining]] = True
        in_tree[rows[remaining], node[remaining]] = True
        new_key = dist[rows, node]
        closer = remaining[:, None] & (new_key < key)
        key = torch.where(closer, new_key, key)
        parent = torch.where(closer, node[:, None], parent)
    return adjacency.view(*batch, n, n)


def uuas(predicted: Tensor, gold: Tensor, mask: Tensor | None = None) -> Tensor:
    """Undirected unlabeled attachment score of ``minimum_spanning_tree(predicted)`` against the gold tree.

    ``predicted``: ``[..., S, n, n]`` predicted distances; ``gold``: ``[S, n, n]`` gold tree distances;
    ``mask``: bool ``[S, n]`` (words to keep; padding and punctuation false). The gold edges are the minimum
    spanning tree of the gold distances over the kept words (the tree edges when nothing is masked), as in
    Hewitt & Manning's code. Returns the corpus-level fraction of gold edges recovered, shaped ``[...]``.
    """
    gold_edges = minimum_spanning_tree(gold, mask)
    predicted_edges = minimum_spanning_tree(predicted, mask)
    correct = (predicted_edges & gold_edges).flatten(-3).sum(-1) / 2
    total = gold_edges.flatten(-3).sum(-1) / 2
    return correct.float() / total.clamp(min=1).float()


def _ranks(values: Tensor, valid: Tensor) -> Tensor:
    """Average ranks (ties share their mean rank) along the last dim, counting only ``valid`` entries."""
    v_i = values.unsqueeze(-1)
    v_j = values.unsqueeze(-2)
    valid_j = valid.unsqueeze(-2)
    less = ((v_j < v_i) & valid_j).sum(-1).float()
    equal = ((v_j == v_i) & valid_j).sum(-1).float()
    return less + (equal + 1) / 2


def spearman(x: Tensor, y: Tensor, valid: Tensor | None = None) -> Tensor:
    """Spearman correlation along the last dimension (tie-aware), restricted to ``valid`` entries.

    Broadcasts ``x``, ``y`` and ``valid``; returns nan where fewer than two entries are valid or one side is
    constant.
    """
    x, y = torch.broadcast_tensors(x.float(), y.float())
    valid = torch.ones_like(x, dtype=torch.bool) if valid is None else valid.expand_as(x)
    rx, ry = _ranks(x, valid), _ranks(y, valid)
    count = valid.sum(-1).float()
    w = valid.float()
    rx = (rx - (rx * w).sum(-1, keepdim=True) / count.clamp(min=1)[..., None]) * w
    ry = (ry - (ry * w).sum(-1, keepdim=True) / count.clamp(min=1)[..., None]) * w
    denom = (rx.pow(2).sum(-1) * ry.pow(2).sum(-1)).sqrt()
    rho = (rx * ry).sum(-1) / denom
    return torch.where((count >= 2) & (denom > 0), rho, torch.full_like(rho, math.nan))


def _length_average(values: Tensor, lengths: Tensor, length_range: tuple[int, int] | None) -> Tensor:
    """``values``: ``[L, k]`` (nan = missing) for items with sentence ``lengths`` ``[k]``: average within each
    length, then over the lengths in ``length_range`` (inclusive); a plain average when the range is None."""
    ok = ~torch.isnan(values)
    filled = torch.where(ok, values, torch.zeros_like(values))
    if length_range is None:
        return filled.sum(1) / ok.sum(1).clamp(min=1)
    lo, hi = length_range
    per_length = []
    for length in sorted(set(lengths.tolist())):
        if lo <= length <= hi:
            sel = lengths == length
            count = ok[:, sel].sum(1)
            per_length.append(torch.where(count > 0, filled[:, sel].sum(1) / count.clamp(min=1), math.nan))
    if not per_length:
        return torch.full((values.shape[0],), math.nan)
    stacked = torch.stack(per_length, 1)
    return torch.nanmean(stacked, 1)


# --------------------------------------------------------------------------------------------------------------
# Structural probes


class _SentenceData:
    """Sentences stored flat ([layer, total words, d]) and padded per minibatch by index gathering."""

    def __init__(
        self, features, labels, mask, *, kind: str, n_layers: int | None = None, dim: int | None = None
    ):
        if not isinstance(features, (list, tuple)) or not features:
            raise TypeError("features must be a non-empty list of [layer, n_i, d] tensors, one per sentence")
        if not isinstance(labels, (list, tuple)) or len(labels) != len(features):
            raise ValueError(
                f"labels must be a list with one entry per sentence ({len(features)}), "
                f"got {type(labels).__name__} of length {len(labels) if hasattr(labels, '__len__') else '?'}"
            )
        if mask is not None and (not isinstance(mask, (list, tuple)) or len(mask) != len(features)):
            raise ValueError("mask must be a list with one bool [n_i] tensor per sentence")
        feats = [_check_features(f, f"features[{i}]") for i, f in enumerate(features)]
        n_layers = feats[0].shape[0] if n_layers is None else n_layers
        dim = feats[0].shape[2] if dim is None else dim
        lengths = []
        for i, f in enumerate(feats):
            if f.shape[0] != n_layers or f.shape[2] != dim:
                raise ValueError(
                    f"features[{i}] has shape {tuple(f.shape)}; expected [layer={n_layers}, n_i, d={dim}]"
                )
            lengths.append(f.shape[1])
        gold, keep = [], []
        for i, (label, n_i) in enumerate(zip(labels, lengths)):
            label = torch.as_tensor(label, dtype=torch.float32)
            expected = (n_i, n_i) if kind == "distance" else (n_i,)
            if tuple(label.shape) != expected:
                raise ValueError(f"labels[{i}] has shape {tuple(label.shape)}; expected {expected}")
            gold.append(label.reshape(-1))
            if mask is None:
                keep.append(torch.ones(n_i, dtype=torch.bool))
            else:
                m = torch.as_tensor(mask[i], dtype=torch.bool)
                if tuple(m.shape) != (n_i,):
                    raise ValueError(f"mask[{i}] has shape {tuple(m.shape)}; expected ({n_i},)")
                keep.append(m)
        self.kind = kind
        self.n_layers, self.dim = n_layers, dim
        self.device = feats[0].device
        self.x = torch.cat(feats, 1)  # [L, total, d]
        self.lengths = torch.tensor(lengths)
        self.offsets = torch.cumsum(self.lengths, 0) - self.lengths
        sizes = self.lengths**2 if kind == "distance" else self.lengths
        self.label_offsets = torch.cumsum(sizes, 0) - sizes
        self.gold = torch.cat(gold).to(self.device)
        self.keep = torch.cat(keep).to(self.device)
        self.n = len(feats)

    def batch(self, ids: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x ``[L, B, W, d]``, gold ``[B, W, W]`` or ``[B, W]``, word ``[B, W]``, keep ``[B, W]``, lengths ``[B]``."""
        lengths = self.lengths[ids]
        width = int(lengths.max())
        pos = torch.arange(width)
        word = pos[None, :] < lengths[:, None]  # [B, W]
        index = torch.where(word, self.offsets[ids][:, None] + pos[None, :], 0).to(self.device)
        word = word.to(self.device)
        x = self.x[:, index] * word[None, :, :, None]
        keep = self.keep[index] & word
        if self.kind == "distance":
            pair = word[:, :, None] & word[:, None, :]
            flat = self.label_offsets[ids][:, None, None] + pos[None, :, None] * lengths[:, None, None] + pos
            gold = torch.where(pair, self.gold[torch.where(pair.cpu(), flat, 0).to(self.device)], 0.0)
        else:
            gold = torch.where(word, self.gold[index], 0.0)
        return x, gold, word, keep, lengths.to(self.device)


class _StructuralProbe:
    kind = ""

    def __init__(
        self,
        rank: int,
        *,
        weight_decay: float = 0.0,
        max_epochs: int = 40,
        lr: float = 1e-3,
        batch_size: int = 20,
        patience: int = 4,
        seed: int = 0,
        spearman_lengths: tuple[int, int] | None = (5, 50),
        eval_batch_size: int = 16,
    ):
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        _set_training_settings(
            self,
            weight_decay,
            max_epochs,
            lr,
            batch_size,
            patience,
            seed,
            more_positive={"eval_batch_size": eval_batch_size},
        )
        self.rank = rank
        self.spearman_lengths = spearman_lengths
        self.eval_batch_size = eval_batch_size
        self.projection_: Tensor | None = None

    def _width(self) -> int:
        """Columns of the projection ``[layer, d, width]``."""
        return self.rank

    def _predict(self, projection: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _loss(self, projection: Tensor, data: _SentenceData, ids: Tensor) -> Tensor:
        x, gold, word, _, lengths = data.batch(ids)
        predicted = self._predict(projection, x)
        if self.kind == "head":
            return _head_loss(predicted, gold, word)
        if self.kind == "distance":
            err = ((predicted - gold).abs() * (word[:, :, None] & word[:, None, :])).sum((-1, -2))
            per_sentence = err / lengths.float().pow(2)
        else:
            per_sentence = ((predicted - gold).abs() * word).sum(-1) / lengths.float()
        return per_sentence.mean(-1)  # [L]

    def fit(self, train_features, train_labels, dev_features=None, dev_labels=None, *, train_mask=None):
        """Fit the projection ``B`` ``[layer, d, rank]`` with the L1 loss of Hewitt & Manning; returns self."""
        data = _SentenceData(train_features, train_labels, train_mask, kind=self.kind)
        if (dev_features is None) != (dev_labels is None):
            raise ValueError("pass both dev_features and dev_labels, or neither")
        dev = None
        if dev_features is not None:
            dev = _SentenceData(
                dev_features, dev_labels, None, kind=self.kind, n_layers=data.n_layers, dim=data.dim
            )
        generator = torch.Generator().manual_seed(self.seed)
        projection = (
            (torch.rand(data.n_layers, data.dim, self._width(), generator=generator) * 2 - 1) * 0.05
        ).to(data.device)
        projection.requires_grad_()

        def batch_loss(ids: Tensor) -> Tensor:
            loss = self._loss(projection, data, ids)
            if self.weight_decay:
                loss = loss + 0.5 * self.weight_decay * projection.pow(2).sum((1, 2))
            return loss

        dev_loss = None
        if dev is not None:

            def dev_loss() -> Tensor:
                total = torch.zeros(data.n_layers, device=data.device)
                for ids in self._eval_batches(dev.n):
                    total += self._loss(projection, dev, ids) * len(ids)
                return total / dev.n

        (self.projection_,), self.best_epoch_, self.history_ = _train(
            [projection],
            batch_loss,
            data.n,
            dev_loss,
            max_epochs=self.max_epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            patience=self.patience,
            generator=generator,
        )
        return self

    def _eval_batches(self, n: int) -> Iterator[Tensor]:
        """The sentence indices [b] of each evaluation batch (``eval_batch_size`` sentences) of ``n``, in order."""
        for start in range(0, n, self.eval_batch_size):
            yield torch.arange(start, min(start + self.eval_batch_size, n))

    def _evaluate_batch(self, data: _SentenceData, ids: Tensor) -> tuple[tuple, Tensor, Tensor]:
        """``(data.batch(ids), the predictions, the batch's loss summed over its sentences [layer] on the CPU)``
        with the fitted projection."""
        batch = data.batch(ids)
        predicted = self._predict(self.projection_, batch[0])
        return batch, predicted, self._loss(self.projection_, data, ids).cpu() * len(ids)

    def _data(self, features, labels, mask) -> _SentenceData:
        if self.projection_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        n_layers, dim, _ = self.projection_.shape
        return _SentenceData(features, labels, mask, kind=self.kind, n_layers=n_layers, dim=dim)

    @torch.no_grad()
    def predict(self, features) -> list[Tensor]:
        """Per sentence: predicted squared distances ``[layer, n_i, n_i]``, depths ``[layer, n_i]`` or head scores
        ``[layer, n_i, n_i]`` (row i: a score for each candidate head j)."""
        dummy = [torch.zeros((f.shape[1],) * (2 if self.kind == "distance" else 1)) for f in features]
        data = self._data(features, dummy, None)
        out = []
        for ids in self._eval_batches(data.n):
            x, _, _, _, lengths = data.batch(ids)
            predicted = self._predict(self.projection_, x)
            for k, n_i in enumerate(lengths.tolist()):
                out.append(predicted[:, k, :n_i, :n_i] if predicted.dim() == 4 else predicted[:, k, :n_i])
        return out


class DistanceProbe(_StructuralProbe):
    """Hewitt & Manning's structural distance probe: ``d_B(h_i, h_j) = ||B (h_i - h_j)||^2`` fit to gold tree
    distances (L1 loss, each sentence normalized by its squared length), one ``B`` ``[d, rank]`` per layer.

    ``score(features, labels, mask=None)``: ``uuas`` (corpus-level, minimum spanning tree of the predicted
    distances over the unmasked words vs. the gold tree) and ``spearman``: for each unmasked word, the Spearman
    correlation between its predicted and gold distances to every unmasked word (itself included, as in the
    paper's code), averaged within each
    sentence length and then over the lengths in ``spearman_lengths`` (default 5–50, as in the paper; ``None``:
    a plain average over words). With no sentence in that length range ``spearman`` is nan. Also ``loss``.
    """

    kind = "distance"

    def _predict(self, projection, x):
        p = torch.einsum("lbwd,ldr->lbwr", x, projection)
        sq = p.pow(2).sum(-1)
        return (sq[..., :, None] + sq[..., None, :] - 2 * p @ p.transpose(-1, -2)).clamp(min=0)

    @torch.no_grad()
    def score(self, features, labels, mask=None) -> dict[str, Tensor]:
        data = self._data(features, labels, mask)
        n_layers = data.n_layers
        correct = torch.zeros(n_layers)
        total = torch.zeros(())
        rho_values, rho_lengths, loss = [], [], torch.zeros(n_layers)
        for ids in self._eval_batches(data.n):
            (_, gold, _, keep, lengths), predicted, batch_loss = self._evaluate_batch(data, ids)
            loss += batch_loss
            gold_edges = minimum_spanning_tree(gold, keep)
            predicted_edges = minimum_spanning_tree(predicted, keep)
            correct += (predicted_edges & gold_edges).flatten(1).sum(1).cpu() / 2
            total += gold_edges.sum().cpu() / 2
            row_valid = keep[:, :, None] & keep[:, None, :]
            rho = spearman(predicted, gold, row_valid)  # [L, B, W]
            rho = torch.where(keep, rho, math.nan)
            rho_values.append(rho.flatten(1).cpu())
            rho_lengths.append(lengths[:, None].expand_as(keep).reshape(-1).cpu())
        rho_all = torch.cat(rho_values, 1)
        return {
            "uuas": correct / total.clamp(min=1),
            "spearman": _length_average(rho_all, torch.cat(rho_lengths), self.spearman_lengths),
            "loss": loss / data.n,
        }


class DepthProbe(_StructuralProbe):
    """Hewitt & Manning's structural depth probe: ``||B h_i||^2`` fit to the gold tree depth (L1 loss, each
    sentence normalized by its length), one ``B`` ``[d, rank]`` per layer.

    ``score(features, labels, mask=None)``: ``root_accuracy`` (the unmasked word with the smallest predicted
    depth is the gold root, depth 0) and ``spearman`` (per sentence over the unmasked words, averaged within each
    sentence length, then over the lengths in ``spearman_lengths``; ``None``: a plain average). Also ``loss``.
    """

    kind = "depth"

    def _predict(self, projection, x):
        return torch.einsum("lbwd,ldr->lbwr", x, projection).pow(2).sum(-1)

    @torch.no_grad()
    def score(self, features, labels, mask=None) -> dict[str, Tensor]:
        data = self._data(features, labels, mask)
        n_layers = data.n_layers
        hits = torch.zeros(n_layers)
        rho_values, rho_lengths, loss = [], [], torch.zeros(n_layers)
        for ids in self._eval_batches(data.n):
            (_, gold, word, keep, lengths), predicted, batch_loss = self._evaluate_batch(data, ids)
            loss += batch_loss
            guess = torch.where(keep, predicted, math.inf).argmin(-1)  # [L, B]
            gold_root = torch.where(word & (gold == 0), 0, 1).argmin(-1)  # [B]
            hits += ((guess == gold_root) & keep.any(-1)).float().sum(1).cpu()
            rho_values.append(spearman(predicted, gold, keep).cpu())
            rho_lengths.append(lengths.cpu())
        return {
            "root_accuracy": hits / data.n,
            "spearman": _length_average(
                torch.cat(rho_values, 1), torch.cat(rho_lengths), self.spearman_lengths
            ),
            "loss": loss / data.n,
        }


def _head_loss(scores: Tensor, gold: Tensor, word: Tensor) -> Tensor:
    """Mean cross-entropy of the gold head over each sentence's words, per layer ``[L]``.

    ``scores`` [L, B, W, W] (row i scores every candidate head j), ``gold`` [B, W] (head index, -1 for the
    root: no loss), ``word`` [B, W] (False on padding).
    """
    scores = scores.masked_fill(~word[None, :, None, :], -1e9)
    has_head = word & (gold >= 0)
    log_probs = torch.log_softmax(scores, -1)
    picked = log_probs.gather(
        -1, gold.clamp(min=0).long()[None, :, :, None].expand(scores.shape[0], -1, -1, 1)
    )
    per_word = -picked.squeeze(-1) * has_head
    per_sentence = per_word.sum(-1) / has_head.sum(-1).clamp(min=1)
    return per_sentence.mean(-1)


class ArcProbe(_StructuralProbe):
    """Arc prediction as head selection: which word j is the head of word i, for every word at once.

    A pair (i, j) is scored bilinearly with a low-rank map, ``score(i, j) = (B_q h_i) . (B_k h_j)`` (``B_q``,
    ``B_k`` ``[d, rank]`` per layer, stored side by side as the projection ``[layer, d, 2 rank]``), and each word's
    scores over the words of its sentence go through a softmax, trained with cross-entropy on the gold head
    (Dozat & Manning's biaffine arc scorer without the MLPs, i.e. a probe). ``labels``: one integer vector
    ``[n_i]`` per sentence with each word's head index (0-based; -1 for the root, which is skipped).

    ``score(features, labels, mask=None)``: ``accuracy`` (the share of unmasked, non-root words whose
    highest-scoring candidate is the gold head: unlabeled attachment without the tree constraint) and ``loss``.
    """

    kind = "head"

    def _width(self) -> int:
        return 2 * self.rank

    def _predict(self, projection, x):
        query, key = torch.einsum("lbwd,ldr->lbwr", x, projection).split(self.rank, dim=-1)
        return query @ key.transpose(-1, -2)  # [L, B, W, W]

    @torch.no_grad()
    def score(self, features, labels, mask=None) -> dict[str, Tensor]:
        data = self._data(features, labels, mask)
        correct, total, loss = torch.zeros(data.n_layers), torch.zeros(()), torch.zeros(data.n_layers)
        for ids in self._eval_batches(data.n):
            x, gold, word, keep, _ = data.batch(ids)
            scores = self._predict(self.projection_, x).masked_fill(~word[None, :, None, :], -math.inf)
            loss += _head_loss(scores, gold, word).cpu() * len(ids)
            counted = keep & (gold >= 0)
            correct += ((scores.argmax(-1) == gold.long()) & counted).flatten(1).sum(1).float().cpu()
            total += counted.sum().cpu()
        return {"accuracy": correct / total.clamp(min=1), "loss": loss / data.n}
