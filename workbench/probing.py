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

Features larger than memory (:class:`StreamedRows`, :class:`StreamedSentences`)
    A streamed source reads the features in chunks of rows (e.g. from an activation store) wherever a tensor or
    a list of tensors goes. The full-batch L-BFGS probes train on it (:class:`LinearProbe`, :class:`MLPProbe`
    with ``optimizer="lbfgs"``, the structural probes with ``optimizer="lbfgs"``): the standardization
    statistics in one pass (float64 sums), then every loss and gradient evaluation is a pass over the chunks
    whose per-chunk sums are added up and divided by n, so the objective, and the optimum, are the in-memory
    ones to float rounding, while memory is set by the chunk size. ``score`` and ``predict`` stream too. Under
    ``torchrun`` each rank reads its share of the chunks and the sums are all-reduced (then broadcast from rank
    0), so every rank takes the same steps and ends with the same parameters as a single process. Minibatch
    Adam stays in memory.
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
    "StreamedRows",
    "StreamedSentences",
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
# Streamed sources: probes larger than memory

DEFAULT_CHUNK_BYTES = 64 * 2**20  # a chunk of every layer as float32, when chunk_rows is not given


def _rows_index(rows) -> np.ndarray:
    """``rows`` (an int n, a range, a slice with a stop, or an integer array-like) as int64 indices [n]."""
    if isinstance(rows, (int, np.integer)) and not isinstance(rows, bool):
        return np.arange(int(rows), dtype=np.int64)
    if isinstance(rows, slice):
        if rows.stop is None:
            raise ValueError("rows as a slice needs a stop (the number of rows is not known to the reader)")
        return np.arange(*rows.indices(rows.stop), dtype=np.int64)
    if isinstance(rows, range):
        return np.arange(rows.start, rows.stop, rows.step, dtype=np.int64)
    index = np.asarray(rows)
    if index.ndim != 1 or index.dtype.kind not in "iu":
        raise ValueError(
            f"rows must be a 1-D integer array [n], got dtype {index.dtype}, shape {index.shape}"
        )
    return index.astype(np.int64, copy=False)


def _as_read_index(index: np.ndarray):
    """A slice when the indices are consecutive (a read a memmap or a zarr array serves as one copy), else them."""
    if len(index) and int(index[-1]) - int(index[0]) == len(index) - 1 and bool(np.all(np.diff(index) == 1)):
        return slice(int(index[0]), int(index[-1]) + 1)
    return index


class _Streamed:
    """What the two streamed sources share: the read function, the chunking, this rank's share of the chunks and
    the reduction of per-chunk sums over the ranks."""

    def _setup(self, read, chunk_rows: int | None, layers, distributed: bool, device, first) -> None:
        """Keep the settings and read the row ``first`` to learn the layers and d (and ``chunk_rows``'s
        default: about :data:`DEFAULT_CHUNK_BYTES` of float32 per chunk)."""
        if not callable(read):
            raise TypeError(
                f"read must be a function rows -> [layer, k, d] tensor, got {type(read).__name__}"
            )
        if chunk_rows is not None and (not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1):
            raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}")
        self._read = read
        self.layer_keys = None if layers is None else list(layers)
        self.distributed, self.device = distributed, torch.device(device)
        self._learn_shape(first)
        if chunk_rows is None:
            chunk_rows = max(1, DEFAULT_CHUNK_BYTES // (4 * self.n_layers * self.dim))
        self.chunk_rows = int(chunk_rows)

    def _fetch(self, index, layers: Tensor | None) -> Tensor:
        """float32 [len(layers) or every layer, k, d] on ``self.device`` for one read index."""
        if self.layer_keys is not None:
            chosen = self.layer_keys if layers is None else [self.layer_keys[i] for i in layers.tolist()]
            x = self._read(index, chosen)
        else:
            x = self._read(index)
            if layers is not None and layers.numel() != x.shape[0]:
                x = x[layers.to(x.device)]
        if not isinstance(x, Tensor) or x.ndim != 3 or not x.is_floating_point():
            raise TypeError(
                f"read must return a float tensor [layer, k, d], got "
                f"{tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__}"
            )
        return x.to(self.device, torch.float32)

    def _learn_shape(self, first) -> None:
        x = self._fetch(first, None)
        self.n_layers, self.dim = int(x.shape[0]), int(x.shape[2])
        if self.layer_keys is not None and self.n_layers != len(self.layer_keys):
            raise ValueError(
                f"read returned {self.n_layers} layers for the {len(self.layer_keys)} layers asked"
            )

    @property
    def n_chunks(self) -> int:
        return len(self._bounds)

    def local_chunks(self) -> list[int]:
        """The chunks this rank reads: every chunk alone or with ``distributed=False``, else a strided share
        (rank r reads chunks r, r + W, ...: disjoint, together all of them)."""
        if not self.distributed:
            return list(range(self.n_chunks))
        from workbench.distributed import share_indices

        return share_indices(self.n_chunks)

    def reduce(self, *tensors: Tensor) -> None:
        """Sum each tensor over the ranks in place (nothing alone or with ``distributed=False``).

        One collective for all of them; the sum is then broadcast from rank 0, so every rank holds the same
        bits whatever the backend's reduction order, and every decision taken from it (the L-BFGS line
        search, which layers are still training, early stopping) is the same on every rank. A collective:
        every rank calls it, also one with no chunks of its own.
        """
        if not self.distributed:
            return
        from workbench import distributed

        if not distributed.context().distributed:
            return
        flat = torch.cat([t.reshape(-1).to(torch.float64) for t in tensors])
        distributed.all_reduce(flat)
        torch.distributed.broadcast(flat, src=0)
        for t, part in zip(tensors, flat.split([t.numel() for t in tensors])):
            t.copy_(part.view_as(t))


class StreamedRows(_Streamed):
    """The rows ``rows`` of a matrix ``[layer, N, d]`` that is read ``chunk_rows`` rows at a time and never held
    whole: what :class:`LinearProbe` and :class:`MLPProbe` (``optimizer="lbfgs"``) train and score on when the
    features do not fit in memory. Pass it where a ``[layer, n, d]`` tensor goes; the labels stay a tensor [n].

    Each chunk is ``chunk_rows`` consecutive entries of ``rows``, so ascending rows make every read sequential
    (a consecutive run is read as a slice). Under ``torchrun`` (``distributed=True``, the default) every rank
    is given the same ``rows`` and reads only its share of the chunks; the probes sum their per-chunk losses,
    gradients and statistics over the ranks (:meth:`reduce`), so every rank takes the same steps and the fit
    is the one-process fit.

    Args:
        read: ``read(index)`` -> float tensor [layer, k, d] of the rows ``index`` (a slice or an int64 numpy
            array), e.g. ``lambda index: store.stack(rows=index)``. With ``layers`` given it is called as
            ``read(index, chosen)`` with a sublist of ``layers`` and returns those layers only, so a layer the
            L-BFGS has finished with is no longer read (``store.stack`` takes ``(layers, rows)`` that way).
        rows: the row indices [n] (an integer array, a range, or a number n for rows 0 .. n-1).
        chunk_rows: rows per read (default: about 64 MiB of float32 for all layers, 6,241 rows at 7 layers
            of d 384, 124 at 33 layers of d 4096). Peak memory is about ``chunk_rows x layer x d`` float32
            values times a small factor (the chunk, its standardized copy, what the backward pass keeps).
        layers: the keys ``read`` takes as its second argument (e.g. a store's layer numbers), or None.
        distributed: share the chunks among the ranks of a ``torchrun`` job (False: every rank reads all).
        device: where the chunks are moved for the probe's computation.

    >>> x = torch.randn(2, 10, 3)
    >>> source = StreamedRows(lambda index: x[:, index], 10, chunk_rows=4)
    >>> (source.n, source.n_layers, source.dim, source.n_chunks)
    (10, 2, 3, 3)
    """

    def __init__(
        self,
        read: Callable,
        rows,
        *,
        chunk_rows: int | None = None,
        layers: Sequence | None = None,
        distributed: bool = True,
        device: str | torch.device = "cpu",
    ):
        self.rows = _rows_index(rows)
        self.n = len(self.rows)
        if self.n == 0:
            raise ValueError("rows is empty: a streamed source needs at least one row")
        self._setup(read, chunk_rows, layers, distributed, device, _as_read_index(self.rows[:1]))
        self._bounds = [(s, min(s + self.chunk_rows, self.n)) for s in range(0, self.n, self.chunk_rows)]

    @classmethod
    def from_tensor(cls, features: Tensor, chunk_rows: int | None = None, **kwargs) -> StreamedRows:
        """A tensor [layer, n, d] served in chunks (tests, and the dev set of a streamed fit); not shared
        among ranks unless ``distributed=True`` is passed."""
        features = _check_features(features)
        kwargs.setdefault("distributed", False)
        return cls(lambda index: features[:, index], features.shape[1], chunk_rows=chunk_rows, **kwargs)

    def chunks(
        self, layers: Tensor | None = None, *, every: bool = False
    ) -> Iterator[tuple[int, int, Tensor]]:
        """``(start, stop, x [layer, stop - start, d])`` for this rank's chunks in order (``every``: all chunks);
        ``layers`` (indices into the layers) reads only those."""
        for chunk in range(self.n_chunks) if every else self.local_chunks():
            start, stop = self._bounds[chunk]
            x = self._fetch(_as_read_index(self.rows[start:stop]), layers)
            if x.shape[1] != stop - start or x.shape[2] != self.dim:
                raise ValueError(
                    f"read returned shape {tuple(x.shape)} for {stop - start} rows; expected [layer, "
                    f"{stop - start}, d={self.dim}]"
                )
            yield start, stop, x

    def __repr__(self) -> str:
        return (
            f"StreamedRows(n={self.n}, layers={self.n_layers}, d={self.dim}, chunk_rows={self.chunk_rows}, "
            f"chunks={self.n_chunks}, distributed={self.distributed})"
        )


class StreamedSentences(_Streamed):
    """Sentences whose word vectors are read in chunks of whole consecutive sentences (at most ``chunk_rows``
    words, at least one sentence): what the structural probes (``optimizer="lbfgs"``) train and score on when
    the features do not fit in memory. Pass it where the list of ``[layer, n_i, d]`` tensors goes; the labels
    (and mask) stay lists, one entry per sentence. Sharing among ranks and :meth:`reduce` are as for
    :class:`StreamedRows`.

    Args:
        read: ``read(index)`` -> float tensor [layer, k, d] for a slice of rows (the words of consecutive
            sentences), or ``read(index, chosen)`` with ``layers`` given, as for :class:`StreamedRows`.
        offsets: int [n_sentences + 1]: sentence i's words are rows ``offsets[i]`` .. ``offsets[i + 1]`` (a
            store's ``offsets``, or its first ``n_sentences + 1`` entries).
        chunk_rows, layers, distributed, device: as for :class:`StreamedRows`.
    """

    def __init__(
        self,
        read: Callable,
        offsets,
        *,
        chunk_rows: int | None = None,
        layers: Sequence | None = None,
        distributed: bool = True,
        device: str | torch.device = "cpu",
    ):
        offsets = np.asarray(offsets, dtype=np.int64)
        if offsets.ndim != 1 or len(offsets) < 2 or bool(np.any(np.diff(offsets) < 1)):
            raise ValueError(
                "offsets must be increasing row offsets [n_sentences + 1] with at least one word per sentence"
            )
        self._setup(
            read, chunk_rows, layers, distributed, device, slice(int(offsets[0]), int(offsets[0]) + 1)
        )
        self.offsets = offsets
        self.n = len(offsets) - 1
        self.lengths = np.diff(offsets)
        self.max_length = int(self.lengths.max())
        bounds, first = [], 0
        for i in range(1, self.n + 1):  # close a chunk before the sentence that would overflow it
            if i == self.n or offsets[i + 1] - offsets[first] > self.chunk_rows:
                bounds.append((first, i))
                first = i
        self._bounds = bounds

    def chunks(
        self, layers: Tensor | None = None, *, every: bool = False
    ) -> Iterator[tuple[int, int, list[Tensor]]]:
        """``(first, stop, [x_i [layer, n_i, d] for sentences first .. stop - 1])`` for this rank's chunks
        (``every``: all chunks); ``layers`` reads only those layers."""
        for chunk in range(self.n_chunks) if every else self.local_chunks():
            first, stop = self._bounds[chunk]
            begin, end = int(self.offsets[first]), int(self.offsets[stop])
            x = self._fetch(slice(begin, end), layers)
            if x.shape[1] != end - begin or x.shape[2] != self.dim:
                raise ValueError(
                    f"read returned shape {tuple(x.shape)} for rows {begin}:{end}; expected [layer, "
                    f"{end - begin}, d={self.dim}]"
                )
            cuts = (self.offsets[first : stop + 1] - begin).tolist()
            yield first, stop, [x[:, a:b] for a, b in zip(cuts[:-1], cuts[1:])]

    def __repr__(self) -> str:
        return (
            f"StreamedSentences(n={self.n}, layers={self.n_layers}, d={self.dim}, chunk_rows={self.chunk_rows}, "
            f"chunks={self.n_chunks}, distributed={self.distributed})"
        )


def _streamed_moments(source: StreamedRows) -> tuple[Tensor, Tensor]:
    """The per-layer, per-dimension mean and standard deviation ``[layer, 1, d]`` of all of ``source``'s rows,
    in one pass (float64 sums of x and x^2, reduced over the ranks)."""
    sums = torch.zeros(2, source.n_layers, source.dim, dtype=torch.float64, device=source.device)
    count = torch.zeros(1, dtype=torch.float64, device=source.device)
    for start, stop, x in source.chunks():
        for layer in range(source.n_layers):  # one layer at a time: the float64 copy stays small
            values = x[layer].double()
            sums[0, layer] += values.sum(0)
            sums[1, layer] += values.square().sum(0)
        count += stop - start
    source.reduce(sums, count)
    if int(count.item()) != source.n:
        raise RuntimeError(
            f"the ranks read {int(count.item())} rows of {source.n}: every rank must be given the same rows"
        )
    mean = sums[0] / source.n
    var = (sums[1] / source.n - mean.square()).clamp(min=0)
    return mean.float()[:, None], var.sqrt().float()[:, None]


# --------------------------------------------------------------------------------------------------------------
# Classification probes


def _f1_counts(predictions: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Per layer and class: true positives, predicted and gold counts ``[3, L, C]`` (sums over rows, so the
    counts of chunks add up)."""
    n_layers = predictions.shape[0]
    one_pred = F.one_hot(predictions, n_classes).float()  # [L, n, C]
    one_gold = F.one_hot(labels, n_classes).float().expand(n_layers, -1, -1)
    return torch.stack([(one_pred * one_gold).sum(1), one_pred.sum(1), one_gold.sum(1)])


def _macro_f1(predictions: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Macro F1 per layer over the classes present in the gold labels or the predictions (as scikit-learn)."""
    return _macro_f1_of_counts(_f1_counts(predictions, labels, n_classes))


def _macro_f1_of_counts(counts: Tensor) -> Tensor:
    """Macro F1 ``[L]`` from :func:`_f1_counts`' ``[3, L, C]``."""
    tp, pred_count, gold_count = counts
    denom = pred_count + gold_count
    present = denom > 0
    f1 = torch.where(present, 2 * tp / denom.clamp(min=1), torch.zeros_like(tp))
    return f1.sum(1) / present.sum(1).clamp(min=1)


class _ClassifierProbe:
    """Shared fit / score for the batched classification probes (subclasses define parameters and logits).

    ``optimizer``: ``"lbfgs"`` (full batch; ``max_epochs`` counts iterations, ``tol`` is the gradient tolerance,
    ``lr`` and ``batch_size`` are unused) or ``"adam"`` (minibatches of ``batch_size`` at learning rate ``lr``;
    ``max_epochs`` counts passes over the data). ``None`` takes the subclass's default.

    ``fit``, ``score``, ``predict`` and ``predict_logits`` take a :class:`StreamedRows` wherever they take
    features ``[layer, n, d]`` (training on one needs ``optimizer="lbfgs"``; a dev set may be either).
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
        if isinstance(train_features, StreamedRows):
            return self._fit_streamed(train_features, train_labels, dev_features, dev_labels)
        if isinstance(dev_features, StreamedRows):
            raise TypeError(
                "dev_features is a StreamedRows but train_features is a tensor: stream both or neither"
            )
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

    # Streamed training (features larger than memory) ---------------------------------------------------------
    def _fit_streamed(self, source: StreamedRows, train_labels, dev_features, dev_labels):
        """Full-batch L-BFGS on a :class:`StreamedRows`: the statistics in one pass, then every loss and
        gradient evaluation a pass over the chunks (summed, reduced over the ranks, divided by n)."""
        if self.optimizer != "lbfgs":
            raise ValueError(
                f'{type(self).__name__} with optimizer="{self.optimizer}" trains in minibatches from memory; a '
                f'StreamedRows trains with optimizer="lbfgs" (full batch, the same objective)'
            )
        if getattr(self, "dropout", 0.0):
            raise ValueError(
                "dropout makes the full-batch objective random: streamed training needs dropout=0"
            )
        y = _check_labels(train_labels, source.n, self.n_classes, "train_labels").to(source.device)
        if int(y.unique().numel()) < 2:
            raise ValueError(f"train_labels contain a single class ({int(y[0])}); a probe needs at least two")
        if (dev_features is None) != (dev_labels is None):
            raise ValueError("pass both dev_features and dev_labels, or neither")
        dev, y_dev = None, None
        if dev_features is not None:
            dev = dev_features
            if not isinstance(dev, StreamedRows):  # a dev matrix in memory: every rank evaluates all of it
                dev = StreamedRows.from_tensor(_check_features(dev, "dev_features"), device=source.device)
            if (dev.n_layers, dev.dim) != (source.n_layers, source.dim):
                raise ValueError(
                    f"dev_features [layer={dev.n_layers}, n, d={dev.dim}] does not match the training features "
                    f"[layer={source.n_layers}, n, d={source.dim}]"
                )
            y_dev = _check_labels(dev_labels, dev.n, self.n_classes, "dev_labels").to(source.device)
        n_layers, dim, device = source.n_layers, source.dim, source.device
        if self.standardize:
            self.mean_, std = _streamed_moments(source)
            self.std_ = torch.where(std > 1e-6, std, torch.ones_like(std))
        else:
            self.mean_ = torch.zeros(n_layers, 1, dim, device=device)
            self.std_ = torch.ones(n_layers, 1, dim, device=device)
        generator = torch.Generator().manual_seed(self.seed)
        params = [p.to(device) for p in self._init_params(n_layers, dim, generator)]
        shapes = [p.shape[1:] for p in params]
        sizes = [math.prod(shape) for shape in shapes]

        def unflatten(theta: Tensor) -> list[Tensor]:
            chunks = theta.split(sizes, dim=1)
            return [chunk.reshape(theta.shape[0], *shape) for chunk, shape in zip(chunks, shapes)]

        def loss_and_grad(theta: Tensor, layers: Tensor) -> tuple[Tensor, Tensor]:
            with torch.enable_grad():
                theta = theta.detach().requires_grad_()
                current = unflatten(theta)
                total = torch.zeros(len(layers), dtype=torch.float64, device=device)
                total_grad = torch.zeros(theta.shape, dtype=torch.float64, device=device)
                for start, stop, x in source.chunks(layers):
                    x = (x - self.mean_[layers]) / self.std_[layers]
                    summed = self._ce_sum(self._logits(current, x), y[start:stop])  # [k]
                    (grad,) = torch.autograd.grad(summed.sum(), theta)
                    total += summed.detach().double()
                    total_grad += grad.double()
                source.reduce(total, total_grad)
                penalty = 0.5 * self.weight_decay * self._penalty(current)
                (penalty_grad,) = torch.autograd.grad(penalty.sum(), theta)
            loss = (total / source.n).float() + penalty.detach()
            return loss, (total_grad / source.n).float() + penalty_grad

        def dev_loss(theta: Tensor, layers: Tensor) -> Tensor:
            if layers.numel() == 0:  # the same on every rank: all or none skip the collective
                return theta.new_zeros(0)
            return self._streamed_ce(unflatten(theta), dev, y_dev, layers)

        theta = torch.cat([p.reshape(n_layers, -1) for p in params], dim=1)
        best, self.best_epoch_, self.history_ = _train_lbfgs(
            theta,
            loss_and_grad,
            None if dev is None else dev_loss,
            max_epochs=self.max_epochs,
            tol=self.tol,
            patience=self.patience,
        )
        self.params_ = unflatten(best)
        self.n_layers_, self.dim_ = n_layers, dim
        return self

    @torch.no_grad()
    def _streamed_ce(self, params: list[Tensor], source: StreamedRows, y: Tensor, layers: Tensor) -> Tensor:
        """Mean cross-entropy [len(layers)] over a streamed source (reduced over the ranks)."""
        total = torch.zeros(len(layers), dtype=torch.float64, device=source.device)
        for start, stop, x in source.chunks(layers):
            x = (x - self.mean_[layers]) / self.std_[layers]
            total += self._ce_sum(self._logits(params, x), y[start:stop]).double()
        source.reduce(total)
        return (total / source.n).float()

    @staticmethod
    def _ce_sum(logits: Tensor, labels: Tensor) -> Tensor:
        """Summed cross-entropy per layer ``[L]``."""
        n_layers, n, n_classes = logits.shape
        loss = F.cross_entropy(logits.reshape(-1, n_classes), labels.repeat(n_layers), reduction="none")
        return loss.view(n_layers, n).sum(1)

    @staticmethod
    def _ce(logits: Tensor, labels: Tensor) -> Tensor:
        n_layers, n, n_classes = logits.shape
        loss = F.cross_entropy(logits.reshape(-1, n_classes), labels.repeat(n_layers), reduction="none")
        return loss.view(n_layers, n).mean(1)

    def _check_fitted(self, features) -> Tensor | StreamedRows:
        if self.params_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        if isinstance(features, StreamedRows):
            if (features.n_layers, features.dim) != (self.n_layers_, self.dim_):
                raise ValueError(
                    f"features {features!r} do not match the fitted probe [layer={self.n_layers_}, n, d={self.dim_}]"
                )
            return features
        x = _check_features(features)
        if x.shape[0] != self.n_layers_ or x.shape[2] != self.dim_:
            raise ValueError(
                f"features shape {tuple(x.shape)} does not match the fitted probe "
                f"[layer={self.n_layers_}, n, d={self.dim_}]"
            )
        return x

    @torch.no_grad()
    def predict_logits(self, features) -> Tensor:
        """Logits ``[layer, n, n_classes]`` of each layer's best probe (a :class:`StreamedRows`: computed chunk
        by chunk, every rank gets them all)."""
        x = self._check_fitted(features)
        if isinstance(x, StreamedRows):
            return self._streamed_map(x, lambda logits: logits, (self.n_classes,), torch.float32)
        x = (x.to(self.mean_.device) - self.mean_) / self.std_
        return self._logits(self.params_, x)

    @torch.no_grad()
    def predict(self, features) -> Tensor:
        """Predicted classes ``[layer, n]``."""
        x = self._check_fitted(features)
        if isinstance(x, StreamedRows):
            return self._streamed_map(x, lambda logits: logits.argmax(-1), (), torch.long)
        return self.predict_logits(x).argmax(-1)

    def _streamed_map(self, source: StreamedRows, fn, tail: tuple, dtype) -> Tensor:
        """``fn(logits [layer, k, C])`` -> [layer, k, *tail] for every chunk, put together [layer, n, *tail]:
        each rank fills its chunks and the ranks sum the (otherwise zero) result."""
        out = torch.zeros(self.n_layers_, source.n, *tail, dtype=dtype, device=source.device)
        for start, stop, x in source.chunks():
            out[:, start:stop] = fn(self._logits(self.params_, (x - self.mean_) / self.std_))
        if source.distributed:
            summed = out.double()
            source.reduce(summed)
            out = summed.to(dtype)
        return out

    @torch.no_grad()
    def _streamed_score(self, source: StreamedRows, labels) -> dict[str, Tensor]:
        y = _check_labels(labels, source.n, self.n_classes).to(source.device)
        loss = torch.zeros(self.n_layers_, dtype=torch.float64, device=source.device)
        correct = torch.zeros_like(loss)
        counts = torch.zeros(3, self.n_layers_, self.n_classes, dtype=torch.float64, device=source.device)
        for start, stop, x in source.chunks():
            logits = self._logits(self.params_, (x - self.mean_) / self.std_)
            target = y[start:stop]
            predictions = logits.argmax(-1)
            loss += self._ce_sum(logits, target).double()
            correct += (predictions == target).sum(1).double()
            counts += _f1_counts(predictions, target, self.n_classes).double()
        source.reduce(loss, correct, counts)
        return {
            "accuracy": (correct / source.n).float().cpu(),
            "macro_f1": _macro_f1_of_counts(counts).float().cpu(),
            "loss": (loss / source.n).float().cpu(),
        }

    @torch.no_grad()
    def score(self, features, labels) -> dict[str, Tensor]:
        """``accuracy``, ``macro_f1`` and ``loss`` (mean cross-entropy, nats), each ``[layer]``."""
        if isinstance(features, StreamedRows):
            return self._streamed_score(self._check_fitted(features), labels)
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


def _length_sums(values: Tensor, lengths: Tensor, max_length: int) -> Tensor:
    """``values`` ``[L, k]`` (nan = missing) of items from sentences of ``lengths`` ``[k]``: their sums and
    counts per sentence length ``[2, L, max_length + 1]`` (float64, on the CPU), which add up over batches,
    chunks and ranks; :func:`_length_average` turns them into the score."""
    values, lengths = values.double().cpu(), lengths.long().cpu()
    ok = ~torch.isnan(values)
    index = lengths[None].expand_as(values)
    out = torch.zeros(2, values.shape[0], max_length + 1, dtype=torch.float64)
    out[0].scatter_add_(1, index, torch.where(ok, values, torch.zeros_like(values)))
    out[1].scatter_add_(1, index, ok.double())
    return out


def _length_average(sums: Tensor, length_range: tuple[int, int] | None) -> Tensor:
    """From :func:`_length_sums`: the average within each sentence length, then over the lengths in
    ``length_range`` (inclusive) that have values (nan without any); a plain average when the range is None."""
    total, count = sums
    if length_range is None:
        return (total.sum(1) / count.sum(1).clamp(min=1)).float()
    lo, hi = length_range
    total, count = total[:, lo : hi + 1], count[:, lo : hi + 1]
    per_length = torch.where(count > 0, total / count.clamp(min=1), math.nan)
    if per_length.shape[1] == 0:
        return torch.full((sums.shape[1],), math.nan)
    return torch.nanmean(per_length, 1).float()


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

    def batch(
        self, ids: Tensor, layers: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """x ``[L, B, W, d]`` (``layers``: only those), gold ``[B, W, W]`` or ``[B, W]``, word ``[B, W]``,
        keep ``[B, W]``, lengths ``[B]``."""
        lengths = self.lengths[ids]
        width = int(lengths.max())
        pos = torch.arange(width)
        word = pos[None, :] < lengths[:, None]  # [B, W]
        index = torch.where(word, self.offsets[ids][:, None] + pos[None, :], 0).to(self.device)
        word = word.to(self.device)
        if layers is None or layers.numel() == self.n_layers:
            x = self.x[:, index]
        else:
            x = self.x[layers.to(self.device)[:, None, None], index[None]]
        x = x * word[None, :, :, None]
        keep = self.keep[index] & word
        if self.kind == "distance":
            pair = word[:, :, None] & word[:, None, :]
            flat = self.label_offsets[ids][:, None, None] + pos[None, :, None] * lengths[:, None, None] + pos
            gold = torch.where(pair, self.gold[torch.where(pair.cpu(), flat, 0).to(self.device)], 0.0)
        else:
            gold = torch.where(word, self.gold[index], 0.0)
        return x, gold, word, keep, lengths.to(self.device)


class _StructuralProbe:
    """Shared fit / score of the structural probes (subclasses define the prediction, the loss and the score).

    ``optimizer``: ``"adam"`` (the default: minibatches of ``batch_size`` sentences at learning rate ``lr``,
    ``max_epochs`` passes, features in memory) or ``"lbfgs"`` (full batch, the objective's exact gradient over
    all sentences each iteration; ``max_epochs`` counts iterations, ``tol`` is the gradient tolerance). Only
    ``"lbfgs"`` trains on a :class:`StreamedSentences` (features larger than memory; data-parallel under
    ``torchrun``); ``score`` and ``predict`` take either. The objective (an L1 loss, or the arc probe's
    cross-entropy, of a projection that enters quadratically) is not convex, so the two optimizers reach
    different minima; a streamed L-BFGS fit equals an in-memory L-BFGS fit to float tolerance.
    """

    kind = ""
    OPTIMIZERS = ("adam", "lbfgs")
    DEFAULT_MAX_EPOCHS = {"adam": 40, "lbfgs": 500}
    DEFAULT_PATIENCE = {"adam": 4, "lbfgs": 20}

    def __init__(
        self,
        rank: int,
        *,
        weight_decay: float = 0.0,
        optimizer: str = "adam",
        max_epochs: int | None = None,
        lr: float = 1e-3,
        batch_size: int = 20,
        patience: int | None = None,
        tol: float = 1e-5,
        seed: int = 0,
        spearman_lengths: tuple[int, int] | None = (5, 50),
        eval_batch_size: int = 16,
    ):
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if optimizer not in self.OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {self.OPTIMIZERS}, got {optimizer!r}")
        max_epochs = self.DEFAULT_MAX_EPOCHS[optimizer] if max_epochs is None else max_epochs
        patience = self.DEFAULT_PATIENCE[optimizer] if patience is None else patience
        _set_training_settings(
            self,
            weight_decay,
            max_epochs,
            lr,
            batch_size,
            patience,
            seed,
            more_positive={"eval_batch_size": eval_batch_size, "tol": tol},
        )
        self.rank = rank
        self.optimizer, self.tol = optimizer, tol
        self.spearman_lengths = spearman_lengths
        self.eval_batch_size = eval_batch_size
        self.projection_: Tensor | None = None

    def _width(self) -> int:
        """Columns of the projection ``[layer, d, width]``."""
        return self.rank

    def _predict(self, projection: Tensor, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _loss_of(self, predicted: Tensor, gold: Tensor, word: Tensor, lengths: Tensor) -> Tensor:
        """The batch's mean loss per layer ``[L]`` from its predictions."""
        if self.kind == "head":
            return _head_loss(predicted, gold, word)
        if self.kind == "distance":
            err = ((predicted - gold).abs() * (word[:, :, None] & word[:, None, :])).sum((-1, -2))
            per_sentence = err / lengths.float().pow(2)
        else:
            per_sentence = ((predicted - gold).abs() * word).sum(-1) / lengths.float()
        return per_sentence.mean(-1)  # [L]

    def _loss(
        self, projection: Tensor, data: _SentenceData, ids: Tensor, layers: Tensor | None = None
    ) -> Tensor:
        x, gold, word, _, lengths = data.batch(ids, layers)
        return self._loss_of(self._predict(projection, x), gold, word, lengths)

    def fit(self, train_features, train_labels, dev_features=None, dev_labels=None, *, train_mask=None):
        """Fit the projection ``B`` ``[layer, d, rank]`` with the L1 loss of Hewitt & Manning; returns self.

        ``train_features`` (and ``dev_features``): a list of ``[layer, n_i, d]`` tensors or, with
        ``optimizer="lbfgs"``, a :class:`StreamedSentences`."""
        if (dev_features is None) != (dev_labels is None):
            raise ValueError("pass both dev_features and dev_labels, or neither")
        if self.optimizer == "lbfgs":
            return self._fit_lbfgs(train_features, train_labels, train_mask, dev_features, dev_labels)
        if isinstance(train_features, StreamedSentences) or isinstance(dev_features, StreamedSentences):
            raise ValueError(
                f'{type(self).__name__} with optimizer="adam" trains in minibatches from memory; a '
                f'StreamedSentences trains with optimizer="lbfgs"'
            )
        data = _SentenceData(train_features, train_labels, train_mask, kind=self.kind)
        dev = None
        if dev_features is not None:
            dev = _SentenceData(
                dev_features, dev_labels, None, kind=self.kind, n_layers=data.n_layers, dim=data.dim
            )
        generator = torch.Generator().manual_seed(self.seed)
        projection = self._initial_projection(data.n_layers, data.dim, generator).to(data.device)
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

    def _initial_projection(self, n_layers: int, dim: int, generator: torch.Generator) -> Tensor:
        return (torch.rand(n_layers, dim, self._width(), generator=generator) * 2 - 1) * 0.05

    def _sentences(self, features, labels, mask, *, n_layers=None, dim=None, name="features"):
        """``features`` as a source: a :class:`StreamedSentences` (checked against ``labels``/``mask``) or an
        in-memory :class:`_SentenceData` of the list."""
        if isinstance(features, StreamedSentences):
            if not isinstance(labels, (list, tuple)) or len(labels) != features.n:
                raise ValueError(f"{name} has {features.n} sentences: pass one label per sentence")
            if mask is not None and (not isinstance(mask, (list, tuple)) or len(mask) != features.n):
                raise ValueError(f"{name} has {features.n} sentences: pass one mask per sentence")
            if n_layers is not None and (features.n_layers, features.dim) != (n_layers, dim):
                raise ValueError(f"{name} {features!r} does not match [layer={n_layers}, n_i, d={dim}]")
            return features
        return _SentenceData(features, labels, mask, kind=self.kind, n_layers=n_layers, dim=dim)

    def _parts(self, source, labels, mask, layers: Tensor | None = None, *, every: bool = False):
        """``(data, layers to select in it)`` for every piece of ``source`` this rank handles: the in-memory
        data once (all its layers, select ``layers``), or each streamed chunk (read with ``layers`` only)."""
        if isinstance(source, _SentenceData):
            yield source, layers
            return
        for first, stop, feats in source.chunks(layers, every=every):
            chunk_mask = None if mask is None else mask[first:stop]
            yield (
                _SentenceData(
                    feats,
                    labels[first:stop],
                    chunk_mask,
                    kind=self.kind,
                    n_layers=feats[0].shape[0],
                    dim=source.dim,
                ),
                None,
            )

    @staticmethod
    def _reduce(source, *tensors: Tensor) -> None:
        if isinstance(source, StreamedSentences):
            source.reduce(*tensors)

    def _summed_loss(self, projection: Tensor, source, labels, mask, layers: Tensor, grad_of: Tensor | None):
        """The loss summed over sentences ``[k]`` (float64; with ``grad_of``, also its gradient) for the layers
        ``layers``, over this rank's pieces, reduced over the ranks."""
        total = torch.zeros(len(layers), dtype=torch.float64, device=projection.device)
        total_grad = (
            None
            if grad_of is None
            else torch.zeros(grad_of.shape, dtype=torch.float64, device=projection.device)
        )
        for data, select in self._parts(source, labels, mask, layers):
            for ids in self._eval_batches(data.n):
                summed = self._loss(projection, data, ids, select) * len(ids)
                if grad_of is not None:
                    (grad,) = torch.autograd.grad(summed.sum(), grad_of)
                    total_grad += grad.double()
                total += summed.detach().double()
        self._reduce(source, *([total] if total_grad is None else [total, total_grad]))
        return total, total_grad

    def _fit_lbfgs(self, train_features, train_labels, train_mask, dev_features, dev_labels):
        """Full-batch L-BFGS (:func:`_train_lbfgs`) of the mean sentence loss + the L2 penalty, from memory
        or streamed (each evaluation a pass over the chunks, summed over the ranks)."""
        train = self._sentences(train_features, train_labels, train_mask, name="train_features")
        n_layers, dim = train.n_layers, train.dim
        device = train.device
        dev = None
        if dev_features is not None:
            dev = self._sentences(
                dev_features, dev_labels, None, n_layers=n_layers, dim=dim, name="dev_features"
            )
        generator = torch.Generator().manual_seed(self.seed)
        theta = self._initial_projection(n_layers, dim, generator).to(device).reshape(n_layers, -1)
        width = self._width()

        def loss_and_grad(theta: Tensor, layers: Tensor) -> tuple[Tensor, Tensor]:
            with torch.enable_grad():
                theta = theta.detach().requires_grad_()
                projection = theta.view(len(layers), dim, width)
                total, total_grad = self._summed_loss(
                    projection, train, train_labels, train_mask, layers, theta
                )
                penalty = 0.5 * self.weight_decay * projection.pow(2).sum((1, 2))
                (penalty_grad,) = torch.autograd.grad(penalty.sum(), theta)
            loss = (total / train.n).float() + penalty.detach()
            return loss, (total_grad / train.n).float() + penalty_grad

        def dev_loss(theta: Tensor, layers: Tensor) -> Tensor:
            if layers.numel() == 0:  # the same on every rank: all or none skip the collective
                return theta.new_zeros(0)
            with torch.no_grad():
                projection = theta.view(len(layers), dim, width)
                total, _ = self._summed_loss(projection, dev, dev_labels, None, layers, None)
            return (total / dev.n).float()

        best, self.best_epoch_, self.history_ = _train_lbfgs(
            theta,
            loss_and_grad,
            None if dev is None else dev_loss,
            max_epochs=self.max_epochs,
            tol=self.tol,
            patience=self.patience,
        )
        self.projection_ = best.view(n_layers, dim, width)
        return self

    def _eval_batches(self, n: int) -> Iterator[Tensor]:
        """The sentence indices [b] of each evaluation batch (``eval_batch_size`` sentences) of ``n``, in order."""
        for start in range(0, n, self.eval_batch_size):
            yield torch.arange(start, min(start + self.eval_batch_size, n))

    def _check_fitted(self, features, labels, mask):
        if self.projection_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")
        n_layers, dim, _ = self.projection_.shape
        return self._sentences(features, labels, mask, n_layers=n_layers, dim=dim)

    @torch.no_grad()
    def score(self, features, labels, mask=None) -> dict[str, Tensor]:
        """The probe's metrics ``{name: [layer]}`` (see the class), in memory or streamed (each rank scores its
        chunks; the counts are summed over the ranks)."""
        source = self._check_fitted(features, labels, mask)
        max_length = source.max_length if isinstance(source, StreamedSentences) else int(source.lengths.max())
        sums = self._new_sums(self.projection_.shape[0], max_length)
        for data, _ in self._parts(source, labels, mask):
            for ids in self._eval_batches(data.n):
                x, gold, word, keep, lengths = data.batch(ids)
                predicted = self._predict(self.projection_, x)
                sums["loss"] += self._loss_of(predicted, gold, word, lengths).double().cpu() * len(ids)
                self._add_scores(sums, predicted, gold, word, keep, lengths)
        self._reduce(source, *sums.values())
        return self._finish_scores(sums, source.n)

    def _new_sums(self, n_layers: int, max_length: int) -> dict[str, Tensor]:
        raise NotImplementedError

    def _add_scores(self, sums, predicted, gold, word, keep, lengths) -> None:
        raise NotImplementedError

    def _finish_scores(self, sums: dict[str, Tensor], n: int) -> dict[str, Tensor]:
        raise NotImplementedError

    @torch.no_grad()
    def predict(self, features) -> list[Tensor]:
        """Per sentence: predicted squared distances ``[layer, n_i, n_i]``, depths ``[layer, n_i]`` or head scores
        ``[layer, n_i, n_i]`` (row i: a score for each candidate head j). A :class:`StreamedSentences` is read
        whole on every rank (the predictions of all sentences are the result)."""
        if isinstance(features, StreamedSentences):
            dummy = [
                torch.zeros((int(n_i),) * (2 if self.kind == "distance" else 1)) for n_i in features.lengths
            ]
        else:
            dummy = [torch.zeros((f.shape[1],) * (2 if self.kind == "distance" else 1)) for f in features]
        source = self._check_fitted(features, dummy, None)
        out = []
        for data, _ in self._parts(source, dummy, None, every=True):
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

    def _new_sums(self, n_layers, max_length):
        zeros = torch.zeros(n_layers, dtype=torch.float64)
        spearman_sums = torch.zeros(2, n_layers, max_length + 1, dtype=torch.float64)
        return {
            "loss": zeros,
            "correct": zeros.clone(),
            "total": torch.zeros(1, dtype=torch.float64),
            "spearman": spearman_sums,
        }

    def _add_scores(self, sums, predicted, gold, word, keep, lengths):
        gold_edges = minimum_spanning_tree(gold, keep)
        predicted_edges = minimum_spanning_tree(predicted, keep)
        sums["correct"] += (predicted_edges & gold_edges).flatten(1).sum(1).double().cpu() / 2
        sums["total"] += gold_edges.sum().double().cpu() / 2
        row_valid = keep[:, :, None] & keep[:, None, :]
        rho = torch.where(keep, spearman(predicted, gold, row_valid), math.nan)  # [L, B, W]
        word_lengths = lengths[:, None].expand_as(keep).reshape(-1)
        sums["spearman"] += _length_sums(rho.flatten(1), word_lengths, sums["spearman"].shape[2] - 1)

    def _finish_scores(self, sums, n):
        return {
            "uuas": (sums["correct"] / sums["total"].clamp(min=1)).float(),
            "spearman": _length_average(sums["spearman"], self.spearman_lengths),
            "loss": (sums["loss"] / n).float(),
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

    def _new_sums(self, n_layers, max_length):
        zeros = torch.zeros(n_layers, dtype=torch.float64)
        spearman_sums = torch.zeros(2, n_layers, max_length + 1, dtype=torch.float64)
        return {"loss": zeros, "hits": zeros.clone(), "spearman": spearman_sums}

    def _add_scores(self, sums, predicted, gold, word, keep, lengths):
        guess = torch.where(keep, predicted, math.inf).argmin(-1)  # [L, B]
        gold_root = torch.where(word & (gold == 0), 0, 1).argmin(-1)  # [B]
        sums["hits"] += ((guess == gold_root) & keep.any(-1)).double().sum(1).cpu()
        sums["spearman"] += _length_sums(
            spearman(predicted, gold, keep), lengths, sums["spearman"].shape[2] - 1
        )

    def _finish_scores(self, sums, n):
        return {
            "root_accuracy": (sums["hits"] / n).float(),
            "spearman": _length_average(sums["spearman"], self.spearman_lengths),
            "loss": (sums["loss"] / n).float(),
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
        query, key = torch.einsum("lbwd,ldr->lbwr", x, projection).split(projection.shape[-1] // 2, dim=-1)
        return query @ key.transpose(-1, -2)  # [L, B, W, W]

    def _new_sums(self, n_layers, max_length):
        zeros = torch.zeros(n_layers, dtype=torch.float64)
        return {"loss": zeros, "correct": zeros.clone(), "total": torch.zeros(1, dtype=torch.float64)}

    def _add_scores(self, sums, predicted, gold, word, keep, lengths):
        scores = predicted.masked_fill(~word[None, :, None, :], -math.inf)
        counted = keep & (gold >= 0)
        sums["correct"] += ((scores.argmax(-1) == gold.long()) & counted).flatten(1).sum(1).double().cpu()
        sums["total"] += counted.sum().double().cpu()

    def _finish_scores(self, sums, n):
        return {
            "accuracy": (sums["correct"] / sums["total"].clamp(min=1)).float(),
            "loss": (sums["loss"] / n).float(),
        }
