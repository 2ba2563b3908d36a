"""``train``: fit a sparse dictionary to a model's activations at a hook point (or to given activations).

The recipe, per kind (see :mod:`workbench.sae.functions` for the losses):

- inputs are rescaled so that E||x||^2 = d_in (estimated on the first buffer; kept as ``scale_in`` /
  ``scale_out`` and folded into the weights on save), and ``b_dec`` starts at the mean of the first buffer
  (Gao et al. use the geometric median; the mean is close for these activations and costs nothing);
- Adam with a linear learning-rate warm-up, constant rate, then a linear decay to 0 over the last
  ``lr_decay_fraction`` of the steps (the April 2024 update decays over the last 20%); gradients clipped to
  norm 1;
- relu and jumprelu: the sparsity coefficient rises linearly from 0 over ``sparsity_warmup_steps`` (the
  April update: the first 5% of training);
- topk, batchtopk, jumprelu: decoder rows kept at unit norm (the gradient along them removed before the
  step, the rows renormalised after it); relu: the L1 term weights by the decoder norms instead;
- dead features (no activation for ``dead_after_tokens`` tokens) are tracked for every kind; topk and
  batchtopk train them with the AuxK loss.

Checkpoints (``checkpoint_dir``) hold the dictionary, the optimiser, the step, the data stream (position,
buffer, shuffling generator), torch's random state and the dead-feature counters, written atomically; a
call with the same arguments resumes from the latest one and ends with the same weights as an uninterrupted
run. A checkpoint made with other arguments is refused (the message says which).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..provenance import model_fingerprint
from ..zoo import labelled, stand_in_notice
from .config import SAEConfig
from .dictionary import SparseAutoencoder
from .stream import ActivationStream, iterable_chunks, text_chunks

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"


def train(
    model,
    hook: str,
    data: Sequence[str] | Iterable[Any],
    d_sae: int,
    kind: str = "topk",
    k: int | None = None,
    *,
    hook_out: str | None = None,
    l1_coefficient: float | None = None,
    steps: int | None = None,
    tokens: int | None = None,
    batch_size: int = 4096,
    lr: float = 3e-4,
    lr_warmup_steps: int | None = None,
    lr_decay_fraction: float = 0.2,
    sparsity_warmup_steps: int | None = None,
    betas: tuple[float, float] = (0.9, 0.999),
    buffer_size: int | None = None,
    text_batch_size: int = 8,
    dead_after_tokens: int | None = None,
    normalize: bool = True,
    seed: int = 0,
    device: torch.device | str | None = "auto",
    autocast: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    progress: bool = True,
    **config: Any,
) -> SparseAutoencoder:
    """Train a sparse autoencoder (or, with ``hook_out``, a transcoder) on activations at ``hook``.

    Args:
        model: the model the activations come from (any architecture); may be None when ``data`` are
            activations already (then ``hook`` is only recorded).
        hook: the hook point read, e.g. ``"blocks.3.hook_resid_post"``.
        data: texts (a list of str: activations are taken with ``model.run_with_cache``, padding dropped,
            and streamed through a shuffled buffer), or an iterable of activation batches [n, d_in] (tensors
            or arrays; ``(x_in, x_out)`` pairs for a transcoder), e.g. ``probes``'
            ``ActivationStore.batches(layer)``.
        d_sae: the number of features. kind, k: see :class:`SAEConfig`.
        hook_out: a transcoder's output hook point (it learns to predict that activation from ``hook``'s).
        l1_coefficient: the sparsity coefficient (relu, jumprelu); None: the kind's default.
        steps: optimiser steps; or ``tokens``: steps = tokens // batch_size (one of the two).
        batch_size: activation rows (tokens) per step.
        lr, lr_warmup_steps (None: 1% of steps), lr_decay_fraction, betas: the optimiser's schedule.
        sparsity_warmup_steps: steps over which the sparsity coefficient rises from 0 (None: 5% of steps).
        buffer_size: rows the shuffling buffer holds (None: 8 * batch_size).
        text_batch_size: texts per forward pass of the model.
        dead_after_tokens: a feature that has not fired for this many tokens is dead (None: 10M, as Gao et
            al., but at most a quarter of the run's tokens, so short runs track them too).
        normalize: rescale the activations to E||x||^2 = d_in while training.
        seed: seeds the initialisation and the shuffling.
        device: where to train ("auto": CUDA when available).
        autocast: run the dictionary's forward under bfloat16 autocast (parameters stay float32).
        checkpoint_dir: where checkpoints go; a run with the same arguments resumes from the latest.
        checkpoint_every: steps between checkpoints (None: every 10% of the run).
        progress: show a progress bar with the loss, L0, explained variance and dead fraction.
        **config: further :class:`SAEConfig` fields (jumprelu_bandwidth, aux_k, dtype, ...).

    Returns:
        the trained :class:`SparseAutoencoder` (its ``training_log`` lists the logged statistics and
        ``tokens_since_fired`` the dead-feature counters).
    """
    device = _device(device)
    total = _total_steps(steps, tokens, batch_size)
    stream = _stream(model, hook, hook_out, data, batch_size, buffer_size, text_batch_size, seed, device)
    checkpoints = _Checkpoints(checkpoint_dir, checkpoint_every or max(1, total // 10))
    saved = checkpoints.read()
    # A resumed run takes the data's widths from its checkpoint: peeking would consume a one-shot source.
    widths = [int(w) for w in saved["stream"]["widths"]] if saved else _widths(stream)
    cfg = _config(widths, model, hook, hook_out, d_sae, kind, k, l1_coefficient, normalize, config)
    dictionary = SparseAutoencoder(cfg, seed=seed).to(device)
    schedule = _Schedule(total, lr, lr_warmup_steps, lr_decay_fraction, sparsity_warmup_steps)
    dead_after = dead_after_tokens or min(10_000_000, max(batch_size, total * batch_size // 4))
    optimizer = torch.optim.Adam(dictionary.parameters(), lr=lr, betas=betas)
    state = _TrainState(cfg.d_sae, device)
    checkpoints.fingerprint = _fingerprint(
        cfg,
        data,
        model,
        steps=total,
        batch_size=batch_size,
        lr=lr,
        schedule=schedule.describe(),
        betas=list(betas),
        buffer_size=stream.buffer_size,
        text_batch_size=text_batch_size,
        dead_after=dead_after,
        normalize=normalize,
        seed=seed,
        autocast=autocast,
    )
    if saved:
        start = checkpoints.restore(saved, dictionary, optimizer, stream, state)
    else:
        start = 0
        _initialise(dictionary, stream.peek(), normalize)
    bar = tqdm(total=total, initial=start, desc=f"training {kind} dictionary at {hook}", disable=not progress)
    for step in range(start, total):
        try:
            batch = stream.next_batch()
        except StopIteration as end:
            logger.warning("training stopped at step %d of %d: %s", step, total, end)
            break
        stats = _step(dictionary, optimizer, batch, schedule, step, state, dead_after, autocast)
        if step % 10 == 0 or step == total - 1:
            state.log.append({"step": step, **stats})
            bar.set_postfix(
                loss=f"{stats['loss']:.4g}",
                L0=f"{stats['l0']:.1f}",
                EV=f"{stats['explained_variance']:.3f}",
                dead=f"{stats['dead_fraction']:.2f}",
            )
        bar.update(1)
        checkpoints.maybe_save(step + 1, total, dictionary, optimizer, stream, state)
    bar.close()
    dictionary.eval()
    dictionary.training_log = state.log
    dictionary.tokens_since_fired = state.tokens_since_fired.cpu()
    return dictionary


def _device(device: torch.device | str | None) -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _total_steps(steps: int | None, tokens: int | None, batch_size: int) -> int:
    if (steps is None) == (tokens is None):
        raise ValueError(f"give exactly one of steps= and tokens= (got steps={steps}, tokens={tokens})")
    total = steps if steps is not None else tokens // batch_size
    if total < 1:
        raise ValueError(f"the run has {total} steps; tokens={tokens} is fewer than batch_size={batch_size}")
    return total


def _stream(
    model, hook, hook_out, data, batch_size, buffer_size, text_batch_size, seed, device
) -> ActivationStream:
    if isinstance(data, str):
        raise TypeError("data is one str; pass a list of texts (or an iterable of activation batches)")
    if _is_texts(data):
        if model is None:
            raise ValueError("data are texts, so a model is needed to take activations from; model is None")
        hooks = [hook] + ([hook_out] if hook_out else [])
        chunks, restartable = text_chunks(model, data, hooks, text_batch_size), True
    else:
        if model is not None:  # the names are recorded for splicing later: check them now
            model.resolve_hook_names([hook] + ([hook_out] if hook_out else []))
        chunks, restartable = iterable_chunks(data), iter(data) is not data
    return ActivationStream(chunks, restartable, batch_size, buffer_size or 8 * batch_size, seed, device)


def _widths(stream: ActivationStream) -> list[int]:
    """The widths of the tensors in each item of the data (filling the stream's buffer to see them)."""
    try:
        stream.peek()
    except StopIteration as end:
        raise ValueError(f"cannot start training: {end}") from None
    return stream.widths


def _config(widths, model, hook, hook_out, d_sae, kind, k, l1_coefficient, normalize, config) -> SAEConfig:
    if len(widths) != (2 if hook_out else 1):
        raise ValueError(
            f"the activation data give {len(widths)} tensor(s) per item; "
            + ("a transcoder needs (x_in, x_out) pairs" if hook_out else "a sparse autoencoder needs one")
        )
    return SAEConfig(
        d_in=widths[0],
        d_sae=d_sae,
        kind=kind,
        k=k,
        l1_coefficient=l1_coefficient,
        hook_name=hook,
        hook_name_out=hook_out,
        d_out=widths[-1],
        model_name=_model_name(model),
        normalize_activations="expected_average_only_in" if normalize else "none",
        **config,
    )


@torch.no_grad()
def _initialise(dictionary: SparseAutoencoder, rows: torch.Tensor, normalize: bool) -> None:
    """A fresh run: the scales that make E||x||^2 = d (for input and target), and b_dec at the target's
    mean, from the first buffer ``rows`` [n, d_in (+ d_out)]."""
    cfg = dictionary.cfg
    x_in, x_out = _inputs_and_targets(cfg, rows)
    if normalize:
        dictionary.scale_in.fill_(math.sqrt(cfg.d_in / x_in.pow(2).sum(-1).mean().clamp_min(1e-12).item()))
        dictionary.scale_out.fill_(math.sqrt(cfg.d_out / x_out.pow(2).sum(-1).mean().clamp_min(1e-12).item()))
    dictionary.b_dec.copy_(x_out.mean(0) * dictionary.scale_out)


def _model_name(model) -> str | None:
    if model is None:
        return None
    config = getattr(model, "config", None)
    name = getattr(config, "name_or_path", None) or getattr(config, "model_type", None) or type(model).__name__
    return labelled(name, stand_in_notice(model) is not None)  # "gpt2 (random stand-in)" for a stand-in


class _Schedule:
    """Learning-rate and sparsity-coefficient factors per step."""

    def __init__(
        self, total: int, lr: float, warmup: int | None, decay_fraction: float, sparsity_warmup: int | None
    ):
        if not 0 <= decay_fraction <= 1:
            raise ValueError(f"lr_decay_fraction must be in [0, 1], got {decay_fraction}")
        self.total, self.lr = total, lr
        self.warmup = max(1, total // 100) if warmup is None else warmup
        self.decay_start = total - int(total * decay_fraction)
        self.sparsity_warmup = max(1, total // 20) if sparsity_warmup is None else sparsity_warmup

    def lr_at(self, step: int) -> float:
        factor = min(1.0, (step + 1) / self.warmup) if self.warmup else 1.0
        if step >= self.decay_start:
            factor *= (self.total - step) / (self.total - self.decay_start)
        return self.lr * factor

    def sparsity_at(self, step: int) -> float:
        return min(1.0, (step + 1) / self.sparsity_warmup) if self.sparsity_warmup else 1.0

    def describe(self) -> list:
        return [self.warmup, self.decay_start, self.sparsity_warmup]


class _TrainState:
    """What besides the dictionary and the optimiser a run carries from step to step."""

    def __init__(self, d_sae: int, device: torch.device) -> None:
        self.tokens_since_fired = torch.zeros(d_sae, dtype=torch.long, device=device)
        self.log: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"tokens_since_fired": self.tokens_since_fired.cpu(), "log": json.dumps(self.log)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tokens_since_fired.copy_(state["tokens_since_fired"])
        self.log = json.loads(state["log"])


def _inputs_and_targets(cfg: SAEConfig, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows [n, d_in (+ d_out)] -> (inputs [n, d_in], targets [n, d_out]); for an autoencoder both are the
    rows."""
    return rows[:, : cfg.d_in], rows[:, rows.shape[1] - cfg.d_out :]


def _step(dictionary, optimizer, batch, schedule, step, state, dead_after, autocast) -> dict[str, float]:
    cfg = dictionary.cfg
    x_in, x_out = _inputs_and_targets(cfg, batch)
    dead = state.tokens_since_fired >= dead_after
    for group in optimizer.param_groups:
        group["lr"] = schedule.lr_at(step)
    with torch.autocast(batch.device.type, dtype=torch.bfloat16, enabled=autocast):
        parts = dictionary.training_loss(x_in, x_out, dead=dead, sparsity_scale=schedule.sparsity_at(step))
    optimizer.zero_grad(set_to_none=True)
    parts.loss.backward()
    if cfg.decoder_unit_norm:
        dictionary.remove_parallel_gradient_()
    torch.nn.utils.clip_grad_norm_(dictionary.parameters(), 1.0)
    optimizer.step()
    if cfg.decoder_unit_norm:
        dictionary.normalize_decoder_()
    with torch.no_grad():
        acts = parts.feature_acts.float()
        if cfg.kind == "batchtopk":
            dictionary.update_batchtopk_threshold(acts)
        fired = (acts > 0).any(0)
        state.tokens_since_fired += len(batch)
        state.tokens_since_fired[fired] = 0
        target = parts.target.float()
        residual = (target - parts.reconstruction.float()).pow(2).sum()
        variance = (target - target.mean(0)).pow(2).sum().clamp_min(1e-12)
        return {
            "loss": parts.loss.item(),
            "mse": parts.mse.item(),
            "l0": (acts > 0).sum(-1).float().mean().item(),
            "explained_variance": 1.0 - (residual / variance).item(),
            "dead_fraction": dead.float().mean().item(),
        }


def _fingerprint(cfg: SAEConfig, data, model, **settings: Any) -> str:
    """A hash of everything that changes a run's result: config, settings, data, and (for texts) the model's
    weights, config and editing hooks (:func:`workbench.provenance.model_fingerprint`)."""
    if _is_texts(data):
        digest = hashlib.sha256()
        for text in data:
            digest.update(text.encode() + b"\0")
        data_id = "texts:" + digest.hexdigest()
        model_id = model_fingerprint(model)
    else:  # activations given: the model is not run, and an iterable's contents cannot be hashed cheaply
        data_id, model_id = f"iterable:{type(data).__name__}", None
    values = {"cfg": cfg.to_dict(), "data": data_id, "model": model_id, **settings}
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()


def _is_texts(data) -> bool:
    return isinstance(data, (list, tuple)) and bool(data) and all(isinstance(t, str) for t in data)


class _Checkpoints:
    """Writes and reads ``checkpoint_dir/checkpoint.pt``, tied to the run's fingerprint."""

    def __init__(self, folder: str | os.PathLike | None, every: int) -> None:
        self.folder = None if folder is None else Path(folder)
        self.every = every
        self.fingerprint: str | None = None  # set once the run's settings are known

    @property
    def path(self) -> Path | None:
        return None if self.folder is None else self.folder / CHECKPOINT_FILE

    def read(self) -> dict[str, Any] | None:
        """The latest checkpoint, or None when there is none."""
        if self.path is None or not self.path.is_file():
            return None
        return torch.load(self.path, map_location="cpu", weights_only=True)

    def restore(self, saved: dict[str, Any], dictionary, optimizer, stream, state) -> int:
        """Load ``saved`` into the run's objects; return the step to continue from."""
        if saved.get("fingerprint") != self.fingerprint:
            raise ValueError(
                f"{self.path} was written by a run with other settings, data or model (its fingerprint "
                f"differs); use another checkpoint_dir, or delete it to start over"
            )
        dictionary.load_state_dict(saved["dictionary"])
        optimizer.load_state_dict(saved["optimizer"])
        stream.load_state_dict(saved["stream"])
        state.load_state_dict(saved["state"])
        torch.set_rng_state(saved["rng_cpu"])
        if torch.cuda.is_available() and saved.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all(saved["rng_cuda"])
        logger.info("resuming from %s at step %d", self.path, saved["step"])
        return int(saved["step"])

    def maybe_save(self, step: int, total: int, dictionary, optimizer, stream, state) -> None:
        if self.path is None or (step % self.every and step != total):
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {
            "fingerprint": self.fingerprint,
            "step": step,
            "dictionary": dictionary.state_dict(),
            "optimizer": optimizer.state_dict(),
            "stream": stream.state_dict(),
            "state": state.state_dict(),
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        partial = self.path.with_suffix(".pt.partial")
        torch.save(payload, partial)
        os.replace(partial, self.path)  # atomic: a crash mid-write leaves the previous checkpoint
