"""Interventions: ablation, activation patching, attribution patching, causal tracing and steering.

Everything here works through hook names, so it runs on every architecture (encoders with masked-LM or
classification heads, decoders) without architecture-specific code.

A *metric* maps a model output to one value per sequence, a tensor [batch]: e.g.
``logit_difference(" Paris", " Rome")`` (the default kind of metric of the patching literature). Patching
results are normalized so that 1 means "as in the clean run" and 0 "as in the corrupted run".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

import pandas as pd
import torch
from tqdm.auto import tqdm

from .ablation import ablate_heads, head_ablation_hooks, normalize_heads  # noqa: F401  (re-exported)
from .cache import ActivationCache
from .model import HookedTransformer, ModelInput

Metric = Callable[[object], torch.Tensor]


# Metrics -----------------------------------------------------------------------------------------------


def logit_difference(
    model: HookedTransformer, correct: str | int, incorrect: str | int, position: int = -1
) -> Metric:
    """Metric: logit of ``correct`` minus logit of ``incorrect``, per sequence.

    For outputs with logits [batch, pos, vocab] (language models) it reads position ``position``; for
    [batch, num_labels] (classifiers) ``correct``/``incorrect`` are label indices.
    """
    correct_id, incorrect_id = _token_id(model, correct), _token_id(model, incorrect)

    def metric(output) -> torch.Tensor:
        logits = output.logits
        if logits.dim() == 3:
            logits = logits[:, position]
        return logits[:, correct_id] - logits[:, incorrect_id]

    return metric


def _token_id(model: HookedTransformer, token: str | int) -> int:
    if isinstance(token, int):
        return token
    if model.tokenizer is None:
        raise ValueError(f"{token!r} is text, but the model has no tokenizer; pass a token id")
    return model.tokenizer.single_token_id(token)


# Results -----------------------------------------------------------------------------------------------


@dataclass
class PatchingResult:
    """A sweep's values, normalized so that 1 = clean and 0 = corrupted.

    Attributes:
        frame: tidy DataFrame: ``layer, pos, value`` (per position) or ``layer, head, value`` (per head).
        clean_metric, corrupted_metric: the metric of the two unpatched runs (mean over the batch).
        tokens: the clean input's tokens (for labels).
    """

    frame: pd.DataFrame
    clean_metric: float
    corrupted_metric: float
    tokens: list[str] | None = None
    kind: str = "pos"
    extra: dict = field(default_factory=dict)

    def matrix(self) -> pd.DataFrame:
        """The values as a [layer, pos] (or [layer, head]) table."""
        return self.frame.pivot(index="layer", columns=self.kind, values="value")

    def figure(self, title: str | None = None):
        """A plotly heatmap of :meth:`matrix` (diverging colours around 0)."""
        import plotly.express as px

        matrix = self.matrix()
        x = list(matrix.columns)
        if self.kind == "pos" and self.tokens is not None:
            x = [f"{p}:{self.tokens[p]}" for p in matrix.columns]
        return px.imshow(
            matrix.to_numpy(), x=x, y=[str(i) for i in matrix.index], color_continuous_scale="RdBu",
            color_continuous_midpoint=0.0, labels={"x": self.kind, "y": "layer", "color": "value"},
            title=title or "patching: 1 = clean, 0 = corrupted", aspect="auto",
        )


# Shared plumbing ---------------------------------------------------------------------------------------


def _positions_input(model: HookedTransformer) -> str:
    """The input whose tokens the patched positions are: ``input_ids``, or an encoder-decoder's
    ``decoder_input_ids`` (its decoder is the stack analysed, ``model.stack_prefix``)."""
    return getattr(model, "stack_input", "input_ids")


def _prepared(model: HookedTransformer, clean: ModelInput, corrupted: ModelInput):
    clean_kwargs, tokens = model.prepare_inputs(clean)
    corrupted_kwargs, _ = model.prepare_inputs(corrupted)
    positions = _positions_input(model)
    if positions not in clean_kwargs or positions not in corrupted_kwargs:
        raise ValueError(f"{type(model).__name__} patches the positions of {positions}: pass model inputs with it")
    if positions != "input_ids":
        tokens = None  # the token strings are the encoder input's, not the patched positions'
    clean_shape = tuple(clean_kwargs[positions].shape)
    corrupted_shape = tuple(corrupted_kwargs[positions].shape)
    if clean_shape != corrupted_shape:
        raise ValueError(
            f"clean and corrupted inputs must have the same token shape [batch, pos] to patch position by "
            f"position; got {clean_shape} and {corrupted_shape}. Reword one so both tokenize to the same "
            f"length, or pass token ids aligned by hand"
        )
    if tokens and isinstance(tokens[0], list):
        tokens = tokens[0]
    # Patched variants run as one batch: give them an explicit mask (heads reading the last real token need it).
    for kwargs in (clean_kwargs, corrupted_kwargs):
        kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    return clean_kwargs, corrupted_kwargs, tokens


def _repeat(kwargs: dict, times: int) -> dict:
    """Every tensor input repeated ``times`` along the batch (variant-major)."""
    return {k: v.repeat(times, *[1] * (v.dim() - 1)) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}


def _metric_per_sequence(metric: Metric, output, batch: int) -> torch.Tensor:
    values = metric(output)
    if values.dim() == 0 or values.shape[0] != batch:
        raise ValueError(
            f"the metric must return one value per sequence, a tensor [batch={batch}]; got shape "
            f"{tuple(values.shape)}"
        )
    # At least float32 (half-precision metrics would round the small differences patching measures), but
    # never fewer bits than the model computes in: a float64 model keeps float64 metrics.
    return values.to(torch.promote_types(values.dtype, torch.float32))


def _hook_names(model: HookedTransformer, hook: str) -> list[str]:
    prefix = getattr(model, "stack_prefix", "")  # an encoder-decoder's "decoder."
    names = [f"{prefix}blocks.{i}.{hook}" for i in range(model.n_layers)]
    model.resolve_hook_names(names)  # a clear KeyError for unknown names
    return names


def _normalize(values: torch.Tensor, clean: float, corrupted: float) -> torch.Tensor:
    span = clean - corrupted
    if abs(span) < 1e-12:
        raise ValueError("the metric is the same on the clean and corrupted inputs; there is nothing to restore")
    return (values - corrupted) / span


class _CleanRun(NamedTuple):
    """What both patching methods start from: the hook patched (per layer), the inputs, the clean run."""

    hook: str
    names: list[str]  # the hook's name in each layer
    clean_kwargs: dict
    corrupted_kwargs: dict
    tokens: list | None
    batch: int
    clean_cache: ActivationCache  # the clean activations of ``names``
    clean_metric: float  # the metric's batch mean on the clean inputs


def _clean_run(
    model: HookedTransformer, clean: ModelInput, corrupted: ModelInput, metric: Metric, hook: str, by: str
) -> _CleanRun:
    """Check ``by`` and ``hook`` (by head, the default hook is ``attn.hook_z``), prepare both inputs and run
    the clean one, caching ``hook`` in every layer."""
    if by not in ("pos", "head"):
        raise ValueError(f"by must be 'pos' or 'head', got {by!r}")
    if by == "head" and hook == "hook_resid_pre":
        hook = "attn.hook_z"
    if by == "head" and not hook.endswith("hook_z"):
        raise ValueError(f"patching by head needs a per-head hook (attn.hook_z), not {hook!r}")
    clean_kwargs, corrupted_kwargs, tokens = _prepared(model, clean, corrupted)
    names = _hook_names(model, hook)
    batch = clean_kwargs[_positions_input(model)].shape[0]
    with torch.no_grad():
        clean_out, clean_cache = model.run_with_cache(clean_kwargs, names_filter=names)
        clean_metric = _metric_per_sequence(metric, clean_out, batch).mean().item()
    return _CleanRun(hook, names, clean_kwargs, corrupted_kwargs, tokens, batch, clean_cache, clean_metric)


# Activation patching -----------------------------------------------------------------------------------


def activation_patching(
    model: HookedTransformer,
    clean: ModelInput,
    corrupted: ModelInput,
    metric: Metric,
    hook: str = "hook_resid_pre",
    by: str = "pos",
    variants_per_batch: int = 16,
    corruption_hooks: Iterable = (),
    progress: bool = True,
) -> PatchingResult:
    """Patch clean activations into the corrupted run, one (layer, position) or (layer, head) at a time.

    Args:
        clean, corrupted: inputs of the same token shape (text, token ids or model inputs).
        metric: output -> [batch] values (e.g. :func:`logit_difference`).
        hook: the per-layer hook to patch: ``"hook_resid_pre"``, ``"hook_resid_post"``, ``"hook_attn_out"``,
            ``"hook_mlp_out"``...; with ``by="head"``, ``"attn.hook_z"`` (the default then).
        by: ``"pos"`` (every layer × position) or ``"head"`` (every layer × head, all positions).
        variants_per_batch: how many patched variants run in one forward (memory vs speed).
        corruption_hooks: hooks that make the corrupted run (causal tracing's noise); applied to every
            corrupted forward.

    Returns:
        :class:`PatchingResult`; ``frame`` has columns layer, pos (or head), value.
    """
    hook, names, clean_kwargs, corrupted_kwargs, tokens, batch, clean_cache, clean_metric = _clean_run(
        model, clean, corrupted, metric, hook, by
    )
    corruption_hooks = list(corruption_hooks)
    with torch.no_grad(), model.hooks(corruption_hooks):
        corrupted_out = model(**corrupted_kwargs)
        corrupted_metric = _metric_per_sequence(metric, corrupted_out, batch).mean().item()

    n_slots = clean_kwargs[_positions_input(model)].shape[1] if by == "pos" else model.config.n_heads
    slots = list(range(n_slots))
    rows = []
    sweep = [(layer, slots[i : i + variants_per_batch]) for layer in range(model.n_layers)
             for i in range(0, n_slots, variants_per_batch)]
    for layer, chunk in tqdm(sweep, desc=f"patching {hook} by {by}", disable=not progress, leave=False):
        clean_act = clean_cache[names[layer]]

        def patch(act, hook_point, chunk=chunk, clean_act=clean_act):
            act = act.clone()
            for variant, slot in enumerate(chunk):
                rows_of_variant = slice(variant * batch, (variant + 1) * batch)
                if by == "pos":
                    act[rows_of_variant, slot] = clean_act[:, slot]
                else:
                    act[rows_of_variant, :, slot] = clean_act[:, :, slot]
            return act

        with torch.no_grad(), model.hooks([*corruption_hooks, (names[layer], patch)]):
            out = model(**_repeat(corrupted_kwargs, len(chunk)))
        values = _metric_per_sequence(metric, out, batch * len(chunk)).view(len(chunk), batch).mean(1)
        values = _normalize(values, clean_metric, corrupted_metric)
        rows += [{"layer": layer, by: slot, "value": float(v)} for slot, v in zip(chunk, values)]
    return PatchingResult(pd.DataFrame(rows), clean_metric, corrupted_metric, tokens, kind=by)


# Attribution patching ----------------------------------------------------------------------------------


def attribution_patching(
    model: HookedTransformer,
    clean: ModelInput,
    corrupted: ModelInput,
    metric: Metric,
    hook: str = "hook_resid_pre",
    by: str = "pos",
    corruption_hooks: Iterable = (),
) -> PatchingResult:
    """The gradient (first-order) estimate of :func:`activation_patching`: two forwards and one backward.

    The effect of patching (layer, slot) is estimated as ``(clean_act - corrupted_act) . d metric / d act``
    at the corrupted activations, summed over d_model (and over positions for heads), then normalized like
    exact patching. Exact where the metric is linear in the activation; an approximation elsewhere, whose
    error vanishes as the corruption gets small (``tests/test_trust_interventions.py`` checks both, and the
    rank agreement with exact patching over MiniLM's heads).

    Args:
        corruption_hooks: hooks that make the corrupted run, as in :func:`activation_patching`.
    """
    _, names, clean_kwargs, corrupted_kwargs, tokens, batch, clean_cache, clean_metric = _clean_run(
        model, clean, corrupted, metric, hook, by
    )
    corruption_hooks = list(corruption_hooks)

    corrupted_acts: dict[str, torch.Tensor] = {}

    def keep(act, hook_point):
        corrupted_acts[hook_point.name] = act

    with torch.enable_grad(), model.hooks([*corruption_hooks, (names, keep)]):
        corrupted_out = model(**corrupted_kwargs)
        values = _metric_per_sequence(metric, corrupted_out, batch)
        grads = torch.autograd.grad(values.mean(), [corrupted_acts[n] for n in names], allow_unused=True)
    corrupted_metric = values.mean().item()
    rows = []
    for layer, (name, grad) in enumerate(zip(names, grads)):
        if grad is None:
            grad = torch.zeros_like(corrupted_acts[name])
        delta = clean_cache[name] - corrupted_acts[name].detach()
        # grad is that of the batch-mean metric, so summing over the batch estimates the change of the mean.
        effect = (delta * grad).sum(0)  # [pos, d_model] or [pos, head, d_head]
        per_slot = effect.sum(-1) if by == "pos" else effect.sum((0, 2))
        estimate = _normalize(per_slot + corrupted_metric, clean_metric, corrupted_metric)
        rows += [{"layer": layer, by: slot, "value": float(v)} for slot, v in enumerate(estimate)]
    return PatchingResult(pd.DataFrame(rows), clean_metric, corrupted_metric, tokens, kind=by)


# Causal tracing ----------------------------------------------------------------------------------------


def causal_tracing(
    model: HookedTransformer,
    inputs: ModelInput,
    metric: Metric,
    noised_positions: Iterable[int],
    hook: str = "hook_resid_post",
    noise_scale: float = 3.0,
    samples: int = 3,
    seed: int = 0,
    progress: bool = True,
) -> PatchingResult:
    """Causal tracing (Meng et al. 2022): noise the embeddings of chosen tokens, then restore single states.

    The corrupted run adds Gaussian noise with std ``noise_scale`` × (std of the token embeddings) to
    ``hook_embed`` at ``noised_positions`` (e.g. the subject's tokens); each (layer, position) state of
    ``hook`` is then restored from the clean run. Values are averaged over ``samples`` noise draws and
    normalized (1 = clean, 0 = corrupted).
    """
    kwargs, tokens = model.prepare_inputs(inputs)
    if kwargs["input_ids"].shape[0] != 1:
        raise ValueError("causal tracing runs on one input at a time (a batch of 1)")
    length = kwargs["input_ids"].shape[1]
    positions = sorted(set(noised_positions))
    if not positions or not all(-length <= p < length for p in positions):
        raise ValueError(f"noised_positions must be positions of the input (0..{length - 1}), got {positions}")
    positions = [p % length for p in positions]
    embed_std, width = _token_embedding_stats(model)
    std = embed_std * noise_scale
    generator = torch.Generator(device="cpu").manual_seed(seed)
    frames, clean_metrics, corrupted_metrics = [], [], []
    for _ in range(samples):
        noise = torch.randn((len(positions), width), generator=generator).to(
            device=model.device, dtype=model.dtype) * std

        def add_noise(embed, hook_point, noise=noise):
            embed = embed.clone()
            embed[:, positions] += noise
            return embed

        result = activation_patching(
            model, kwargs, kwargs, metric, hook=hook, corruption_hooks=[("hook_embed", add_noise)], progress=progress
        )
        frames.append(result.frame)
        clean_metrics.append(result.clean_metric)
        corrupted_metrics.append(result.corrupted_metric)
    frame = pd.concat(frames).groupby(["layer", "pos"], as_index=False)["value"].mean()
    return PatchingResult(frame, sum(clean_metrics) / samples, sum(corrupted_metrics) / samples,
                          tokens if not (tokens and isinstance(tokens[0], list)) else tokens[0],
                          extra={"noised_positions": positions, "noise_std": std})


def _token_embedding_stats(model: HookedTransformer, chunk: int = 4096) -> tuple[float, int]:
    """(std over every element of the token embeddings, their width), as ``hook_embed`` sees them.

    An embedding matrix gives both directly; adaptive embeddings (Transformer-XL: clusters of other widths,
    projected and scaled) have no single matrix, so every token of the vocabulary is embedded, in chunks.
    """
    weight = getattr(model.embed, "weight", None)
    if isinstance(weight, torch.Tensor):
        return weight.detach().float().std().item(), weight.shape[1]
    count, total, total_sq, width = 0, 0.0, 0.0, 0
    with torch.no_grad():
        for start in range(0, model.config.vocab_size, chunk):
            ids = torch.arange(start, min(start + chunk, model.config.vocab_size), device=model.device)[None]
            embedded = model.embed(ids).double()
            count, width = count + embedded.numel(), embedded.shape[-1]
            total += embedded.sum().item()
            total_sq += embedded.square().sum().item()
    mean = total / count
    return max(total_sq / count - mean * mean, 0.0) ** 0.5 * (count / max(count - 1, 1)) ** 0.5, width


# Ablation ----------------------------------------------------------------------------------------------


def ablation_hooks(
    model: HookedTransformer,
    hook: str,
    mode: str = "zero",
    reference: ModelInput | None = None,
    neurons: Iterable[int] | None = None,
    positions: Iterable[int] | None = None,
    seed: int = 0,
) -> list[tuple[str, Callable]]:
    """Hooks that ablate one hook point (all of it, or chosen ``neurons`` along its last dim / ``positions``).

    Args:
        mode: ``"zero"``; ``"mean"`` (the reference inputs' mean over their real tokens); ``"resample"``
            (the activation of a randomly drawn reference sequence, at the same positions).
    """
    if mode not in ("zero", "mean", "resample"):
        raise ValueError(f"mode must be 'zero', 'mean' or 'resample', got {mode!r}")
    model.resolve_hook_names(hook)
    if mode != "zero" and reference is None:
        raise ValueError(f"mode={mode!r} needs reference inputs")
    neuron_index = None if neurons is None else torch.tensor(list(neurons))
    position_index = None if positions is None else list(positions)
    replacement = None
    if mode != "zero":
        kwargs, _ = model.prepare_inputs(reference)
        with torch.no_grad():
            _, cache = model.run_with_cache(kwargs, names_filter=hook)
        activation = cache[hook]
        if mode == "mean":
            mask = kwargs.get("attention_mask")
            weights = torch.ones(activation.shape[:2], device=activation.device) if mask is None else mask.float()
            shape = (*weights.shape, *[1] * (activation.dim() - 2))
            replacement = (activation * weights.view(shape)).sum((0, 1)) / weights.sum()
        else:
            generator = torch.Generator().manual_seed(seed)
            replacement = activation[torch.randint(0, activation.shape[0], (1,), generator=generator).item()]

    def ablate(act, hook_point):
        act = act.clone()
        value = 0.0 if replacement is None else replacement
        if isinstance(value, torch.Tensor) and mode == "resample":
            if value.shape[0] < act.shape[1]:
                raise ValueError(f"resample ablation: the reference has {value.shape[0]} positions, the input {act.shape[1]}")
            value = value[: act.shape[1]]
        index = (slice(None), slice(None) if position_index is None else position_index)
        if neuron_index is not None:
            index = (*index, *[slice(None)] * (act.dim() - 3), neuron_index)
            if isinstance(value, torch.Tensor):
                value = value[..., neuron_index]
        if isinstance(value, torch.Tensor) and mode == "resample" and position_index is not None:
            value = value[position_index]
        act[index] = value.to(act.dtype) if isinstance(value, torch.Tensor) else value
        return act

    return [(hook, ablate)]


def head_ablation_sweep(
    model: HookedTransformer,
    inputs: ModelInput,
    metric: Metric,
    mode: str = "zero",
    reference: ModelInput | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Ablate every head of every layer, one at a time: the change of the metric, a [layer, head] DataFrame.

    Values are ``metric(ablated) - metric(clean)`` (mean over the batch); negative = the head helped.
    """
    kwargs, _ = model.prepare_inputs(inputs)
    batch = kwargs["input_ids"].shape[0]
    with torch.no_grad():
        base = _metric_per_sequence(metric, model(**kwargs), batch).mean().item()
    table = pd.DataFrame(0.0, index=pd.RangeIndex(model.n_layers, name="layer"),
                         columns=pd.RangeIndex(model.config.n_heads, name="head"))
    pairs = [(layer, head) for layer in range(model.n_layers) for head in range(model.config.n_heads)]
    for layer, head in tqdm(pairs, desc="ablating heads", disable=not progress, leave=False):
        with torch.no_grad(), ablate_heads(model, {layer: [head]}, mode=mode, reference=reference):
            value = _metric_per_sequence(metric, model(**kwargs), batch).mean().item()
        table.loc[layer, head] = value - base
    return table


# Steering ----------------------------------------------------------------------------------------------


def difference_of_means(
    model: HookedTransformer, positive: ModelInput, negative: ModelInput, hook: str
) -> torch.Tensor:
    """mean(activation on ``positive``) − mean(activation on ``negative``) at ``hook``, over real tokens:
    a steering vector [d] (the last dim of the hook)."""

    def mean_activation(inputs) -> torch.Tensor:
        kwargs, _ = model.prepare_inputs(inputs)
        with torch.no_grad():
            _, cache = model.run_with_cache(kwargs, names_filter=hook)
        act = cache[hook]
        mask = kwargs.get("attention_mask")
        weights = torch.ones(act.shape[:2], device=act.device) if mask is None else mask.float()
        return (act * weights[..., None]).sum((0, 1)) / weights.sum()

    return mean_activation(positive) - mean_activation(negative)


def steering_hooks(
    hook: str, vector: torch.Tensor, scale: float = 1.0, positions: Iterable[int] | None = None
) -> list[tuple[str, Callable]]:
    """Hooks adding ``scale * vector`` to ``hook`` (at every position, or at ``positions``); pass them to
    ``run_with_hooks``, ``model.hooks`` or ``generate(fwd_hooks=...)``."""
    chosen = None if positions is None else list(positions)

    def add(act, hook_point):
        steer = (scale * vector).to(device=act.device, dtype=act.dtype)
        if chosen is None:
            return act + steer
        act = act.clone()
        act[:, chosen] += steer
        return act

    return [(hook, add)]


@contextmanager
def steer(
    model: HookedTransformer, hook: str, vector: torch.Tensor, scale: float = 1.0,
    positions: Iterable[int] | None = None,
) -> Iterator[HookedTransformer]:
    """Context manager: every forward (and every generation step) inside adds ``scale * vector`` at ``hook``."""
    model.resolve_hook_names(hook)
    with model.hooks(steering_hooks(hook, vector, scale, positions)):
        yield model
