"""Token attribution: which input tokens drove an output, by several methods side by side.

Gradient and perturbation methods come from captum and run on the token embeddings (the output of the
``hook_embed`` hook point, which a hook replaces by captum's inputs), so they work the same on every
architecture. Scores are per token (summed over embedding dims, sign kept; saliency is the gradient's L2
norm), 0 at padding.

Targets:
- an ``int``: a class index of a classifier (its logit), or a token id for a language model;
- a ``str``: a token for a language model (the log-probability of that token at the prediction position:
  the last real token of a decoder, the first mask token of a masked LM);
- a callable ``fn(output) -> [batch]`` (e.g. a probe or a neuron read from ``output``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pandas as pd
import torch

from ..model import HookedTransformer, ModelInput

GRADIENT_METHODS = ("integrated_gradients", "saliency", "input_x_gradient", "gradient_shap", "deeplift")
PERTURBATION_METHODS = ("occlusion", "lime", "kernel_shap")
ATTENTION_METHOD_NAMES = ("attention", "attention_rollout", "attention_flow", "grad_attention")


def methods() -> list[str]:
    """The method names :func:`attribute` accepts."""
    return [*GRADIENT_METHODS, *PERTURBATION_METHODS, *ATTENTION_METHOD_NAMES]


@dataclass
class Attribution:
    """Per-token attributions of one or several methods.

    Attributes:
        tokens: the token strings (a list per sequence).
        scores: method -> [batch, pos] tensor (0 at padding).
        convergence_delta: method -> [batch] (integrated gradients: sum of scores − (f(x) − f(baseline))).
        target_values: [batch], the target's value on the inputs.
        input_ids, attention_mask: [batch, pos].
    """

    tokens: list[list[str]]
    scores: dict[str, torch.Tensor]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    target_values: torch.Tensor
    convergence_delta: dict[str, torch.Tensor] = field(default_factory=dict)

    def __getitem__(self, method: str) -> torch.Tensor:
        return self.scores[method]

    @property
    def methods(self) -> list[str]:
        return list(self.scores)

    def to_frame(self, index: int = 0) -> pd.DataFrame:
        """One row per real token of sequence ``index``, one column per method."""
        real = self.attention_mask[index].bool()
        frame = pd.DataFrame({m: s[index][real].detach().cpu().numpy() for m, s in self.scores.items()})
        frame.insert(0, "token", [t for t, keep in zip(self.tokens[index], real.tolist()) if keep])
        frame.index.name = "pos"
        return frame


# Targets -----------------------------------------------------------------------------------------------


def make_target(model: HookedTransformer, target) -> Callable[..., torch.Tensor]:
    """The function ``fn(output, input_ids, attention_mask) -> [batch]`` that attribution explains.

    ``target``: a class index (classifiers), a token id or string (language models: its log-probability
    at :func:`prediction_positions`), or a callable ``fn(output)`` / ``fn(output, input_ids, attention_mask)``.
    """
    if callable(target) and hasattr(target, "hook_name"):
        model.resolve_hook_names(target.hook_name)
        return target
    if callable(target):
        import inspect

        takes_inputs = len(inspect.signature(target).parameters) >= 3
        return target if takes_inputs else (lambda output, input_ids, attention_mask: target(output))
    kind = _output_kind(model)
    if kind == "classes":
        if not isinstance(target, int):
            raise ValueError(f"{type(model).__name__} is a classifier: target must be a class index, got {target!r}")
        if not 0 <= target < model.config.num_labels:
            raise ValueError(f"target class {target} is out of range: the model has {model.config.num_labels} labels")
        return lambda output, input_ids, attention_mask: output.logits[:, target]
    if kind != "tokens":
        raise ValueError(
            f"{type(model).__name__} has no classification or language-modelling head; pass target as a "
            f"function of the output (e.g. lambda out: out.last_hidden_state[:, 0] @ direction)"
        )
    token_id = _token_id(model, target)

    def log_probability(output, input_ids, attention_mask) -> torch.Tensor:
        positions = prediction_positions(model, {"input_ids": input_ids, "attention_mask": attention_mask})
        rows = torch.arange(output.logits.shape[0], device=output.logits.device)
        return output.logits[rows, positions].float().log_softmax(-1)[:, token_id]

    return log_probability


def _output_kind(model: HookedTransformer) -> str:
    if hasattr(model, "decode_residual"):
        return "tokens"
    if hasattr(model, "classifier") and hasattr(model.config, "num_labels"):
        return "classes"
    return "other"


def _token_id(model: HookedTransformer, token) -> int:
    vocab = model.config.vocab_size
    if isinstance(token, int):
        if not 0 <= token < vocab:
            raise ValueError(f"target token id {token} is outside the vocabulary (0..{vocab - 1})")
        return token
    if not isinstance(token, str) or model.tokenizer is None:
        raise ValueError(f"target must be a token id, a token string (with a tokenizer) or a function, got {token!r}")
    return model.tokenizer.single_token_id(token)


def prediction_positions(model: HookedTransformer, kwargs: dict) -> torch.Tensor:
    """[batch]: where a language model's target is read: the first mask token (masked LM), else the last
    real token."""
    ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
    mask_id = model.tokenizer.mask_token_id if model.tokenizer is not None else None
    if mask_id is not None and not hasattr(model, "generate"):
        is_mask = ids == mask_id
        if not is_mask.any(1).all():
            raise ValueError(f"every input needs a {model.tokenizer.mask_token} token to predict")
        return is_mask.float().argmax(1)
    positions = torch.arange(ids.shape[1], device=ids.device)
    return (positions * mask.bool()).argmax(1)


# Baselines ---------------------------------------------------------------------------------------------


def baseline_ids(model: HookedTransformer, input_ids: torch.Tensor, kind: str = "pad") -> torch.Tensor:
    """The inputs with every non-special token replaced by the pad (or mask) token; special tokens kept."""
    tokenizer = model.tokenizer
    if kind not in ("pad", "mask"):
        raise ValueError(f"baseline must be 'pad', 'mask' or token ids [batch, pos], got {kind!r}")
    token = None
    if tokenizer is not None:
        token = tokenizer.pad_token_id if kind == "pad" else tokenizer.mask_token_id
        if token is None and kind == "pad":
            token = tokenizer.eos_token_id
    if token is None:
        token = getattr(model.config, "pad_token_id", None) or 0
    special = torch.zeros_like(input_ids, dtype=torch.bool)
    if tokenizer is not None:
        for special_id in tokenizer.all_special_ids:
            special |= input_ids == special_id
    return torch.where(special, input_ids, torch.full_like(input_ids, token))


# The forward captum differentiates -----------------------------------------------------------------------


def activation_target(hook: str, reduce: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    """A target read from any activation: ``reduce(activation) -> [batch]``, e.g. a neuron
    (``lambda a: a[:, -1, 42]`` at ``"blocks.3.mlp.hook_post"``), a direction in the residual stream
    (``lambda a: a[:, 0] @ v``) or a probe's output."""

    def target(activation, input_ids, attention_mask):
        return reduce(activation)

    target.hook_name = hook
    return target


def embedding_hook(model: HookedTransformer) -> str:
    """The hook point of the token embeddings attribution replaces: ``hook_embed``, or an encoder-decoder's
    ``encoder.hook_embed`` (the model says so with ``embed_hook``)."""
    return getattr(model, "embed_hook", "hook_embed")


def forward_arguments(kwargs: dict) -> tuple[tuple[torch.Tensor, ...], tuple[str, ...]]:
    """``((input_ids, attention_mask, *others), names of the others)``: what :class:`EmbeddingForward` is called
    with besides the embeddings. The other tensor inputs (an encoder-decoder's ``decoder_input_ids``) travel as
    captum's additional arguments, which it expands with the inputs."""
    names = tuple(k for k, v in kwargs.items()
                  if k not in ("input_ids", "attention_mask") and isinstance(v, torch.Tensor))
    return (kwargs["input_ids"], kwargs["attention_mask"], *(kwargs[k] for k in names)), names


class EmbeddingForward(torch.nn.Module):
    """``forward(embeds, input_ids, attention_mask, *others) -> [batch]``: the model with its token embeddings
    (``hook_embed``) replaced by ``embeds``, reduced to the target. A module, as captum's DeepLift needs.
    ``other_inputs`` names the further tensor arguments (see :func:`forward_arguments`)."""

    def __init__(self, model: HookedTransformer, target: Callable, other_inputs: Sequence[str] = ()) -> None:
        super().__init__()
        self.model = model
        self.target = target
        self.other_inputs = tuple(other_inputs)

    def forward(self, embeds, input_ids, attention_mask, *others):
        hooks = [(embedding_hook(self.model), lambda act, hook: embeds)]
        read_from = getattr(self.target, "hook_name", None)
        captured = {}

        def capture(act, hook):
            captured["activation"] = act

        if read_from is not None:
            hooks.append((read_from, capture))
        with self.model.hooks(hooks):
            output = self.model(input_ids=input_ids, attention_mask=attention_mask,
                                **dict(zip(self.other_inputs, others)))
        source = captured["activation"] if read_from is not None else output
        return self.target(source, input_ids, attention_mask)


def _embeddings(model: HookedTransformer, input_ids: torch.Tensor, others: dict | None = None) -> torch.Tensor:
    name = embedding_hook(model)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), **(others or {})}
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=name)
    return cache[name]


# The methods -------------------------------------------------------------------------------------------


def _per_token(attributions: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return attributions.sum(-1) * mask


def _accepted(method_call, options: dict) -> dict:
    """The options that a captum ``attribute`` method takes (one options dict serves several methods)."""
    import inspect

    parameters = inspect.signature(method_call).parameters
    return {k: v for k, v in options.items() if k in parameters}


def _run_gradient_method(method, forward, embeds, base, args, n_steps, internal_batch_size, options):
    """``args``: (input_ids, attention_mask, *others), from :func:`forward_arguments`."""
    import captum.attr as ca

    mask = args[1]
    if method == "integrated_gradients":
        explainer = ca.IntegratedGradients(forward)
        attributions, delta = explainer.attribute(
            embeds, baselines=base, additional_forward_args=args, n_steps=n_steps,
            internal_batch_size=internal_batch_size, return_convergence_delta=True,
            **_accepted(explainer.attribute, options))
        return _per_token(attributions, mask), delta
    if method == "saliency":
        gradients = ca.Saliency(forward).attribute(embeds, additional_forward_args=args, abs=False)
        return gradients.norm(dim=-1) * mask, None
    if method == "input_x_gradient":
        return _per_token(ca.InputXGradient(forward).attribute(embeds, additional_forward_args=args), mask), None
    if method == "gradient_shap":
        explainer = ca.GradientShap(forward)
        options = _accepted(explainer.attribute, {"n_samples": 20, "stdevs": 0.0, **options})
        attributions = explainer.attribute(embeds, baselines=base, additional_forward_args=args, **options)
        return _per_token(attributions, mask), None
    if method == "deeplift":
        explainer = ca.DeepLift(forward)
        attributions = explainer.attribute(embeds, baselines=base, additional_forward_args=args,
                                           **_accepted(explainer.attribute, options))
        return _per_token(attributions, mask), None
    raise AssertionError(method)


def _run_perturbation_method(method, forward, embeds, base, args, options):
    import captum.attr as ca

    mask = args[1]
    if method == "occlusion":
        explainer = ca.Occlusion(forward)
        attributions = explainer.attribute(
            embeds, sliding_window_shapes=(1, embeds.shape[-1]), baselines=base, additional_forward_args=args,
            **_accepted(explainer.attribute, options))
        return _per_token(attributions, mask) / embeds.shape[-1]  # each token's effect, spread over its dims
    rows = []
    # LIME and KernelSHAP explain one sequence at a time; each token (all its dims) is one feature.
    for row in range(embeds.shape[0]):
        feature_mask = torch.arange(embeds.shape[1], device=embeds.device)[None, :, None].expand_as(embeds[row:row + 1])
        if method == "lime":
            # A light ridge rather than captum's default Lasso (alpha 0.01), which zeroes small effects.
            from captum._utils.models.linear_model import SkLearnRidge

            explainer = ca.Lime(forward, interpretable_model=SkLearnRidge(alpha=1e-3))
        else:
            explainer = ca.KernelShap(forward)
        attributions = explainer.attribute(
            embeds[row : row + 1], baselines=base[row : row + 1],
            additional_forward_args=tuple(arg[row : row + 1] for arg in args), feature_mask=feature_mask,
            **_accepted(explainer.attribute, {"n_samples": 200, **options}))
        rows.append(attributions[0, :, 0])  # every dim of a token carries the token's weight
    return torch.stack(rows) * mask


def attribute(
    model: HookedTransformer,
    inputs: ModelInput,
    target,
    method: str | Sequence[str] = "integrated_gradients",
    baseline: str | torch.Tensor = "pad",
    n_steps: int = 50,
    internal_batch_size: int | None = None,
    layer: int = -1,
    head: int | None = None,
    **options,
) -> Attribution:
    """Attribute ``target`` to the input tokens with one or several methods.

    Args:
        model: any workbench model (text inputs need its tokenizer).
        inputs: text, texts (padded), token ids or model inputs.
        target: a class index, a token (id or string) for language models, or ``fn(output) -> [batch]``.
        method: a name from :func:`methods`, or a list of them.
        baseline: ``"pad"`` or ``"mask"`` (non-special tokens replaced, special tokens kept) or token ids.
        n_steps, internal_batch_size: integrated gradients' steps and how many run per forward.
        layer, head: for the attention methods (the last layer, averaged over heads, by default).
        **options: passed to the captum method (e.g. ``n_samples`` for LIME/KernelSHAP/GradientSHAP).
    """
    names = [method] if isinstance(method, str) else list(method)
    unknown = [name for name in names if name not in methods()]
    if unknown:
        raise ValueError(f"unknown attribution method(s) {unknown}; choose from {methods()}")
    if isinstance(inputs, str) and not inputs.strip():
        raise ValueError("the input text is empty")
    kwargs, tokens = model.prepare_inputs(inputs)
    kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
    tokens = [tokens] if tokens and isinstance(tokens[0], str) else tokens
    if tokens is None:
        tokens = [[str(i) for i in row.tolist()] for row in ids]
    target_fn = make_target(model, target)
    base_ids = baseline if isinstance(baseline, torch.Tensor) else baseline_ids(model, ids, baseline)
    if base_ids.shape != ids.shape:
        raise ValueError(f"baseline ids have shape {tuple(base_ids.shape)}, the inputs {tuple(ids.shape)}")
    args, other_names = forward_arguments(kwargs)
    others = dict(zip(other_names, args[2:]))
    forward = EmbeddingForward(model, target_fn, other_names)
    embeds, base = _embeddings(model, ids, others), _embeddings(model, base_ids.to(ids.device), others)
    embeds.requires_grad_()
    with torch.no_grad():
        target_values = forward(embeds, *args)

    scores, deltas = {}, {}
    for name in names:
        if name in GRADIENT_METHODS:
            with torch.enable_grad():
                scores[name], delta = _run_gradient_method(
                    name, forward, embeds, base, args, n_steps, internal_batch_size, options)
            if delta is not None:
                deltas[name] = delta.detach()
        elif name in PERTURBATION_METHODS:
            with torch.no_grad():
                scores[name] = _run_perturbation_method(name, forward, embeds, base, args, options)
        else:
            scores[name] = _attention_method(model, name, kwargs, target_fn, layer, head)
        scores[name] = scores[name].detach().float()
    return Attribution(tokens, scores, ids, mask, target_values.detach(), deltas)


def _attention_method(model, name, kwargs, target_fn, layer, head) -> torch.Tensor:
    from . import attention

    names = [f"blocks.{i}.attn.hook_pattern" for i in range(model.n_layers)]
    queries = prediction_positions(model, kwargs) if _output_kind(model) == "tokens" else _reading_positions(model, kwargs)
    mask = kwargs["attention_mask"]
    if name == "grad_attention":
        patterns = {}

        def keep(pattern, hook):
            pattern.retain_grad()
            patterns[hook.name] = pattern

        with torch.enable_grad(), model.hooks([(names, keep)]):
            target_fn(model(**kwargs), kwargs["input_ids"], kwargs["attention_mask"]).sum().backward()
        stacked = _input_keys(torch.stack([patterns[n].detach() for n in names]))
        gradients = _input_keys(torch.stack([patterns[n].grad for n in names]))
        model.zero_grad(set_to_none=True)
        return attention.grad_attention(stacked, gradients, queries) * mask
    with torch.no_grad():
        _, cache = model.run_with_cache(kwargs, names_filter=names)
    stacked = _input_keys(cache.stack("attn.hook_pattern"))
    if name == "attention":
        return attention.raw_attention(stacked, queries, layer=layer, head=head) * mask
    if name == "attention_rollout":
        return attention.attention_rollout(stacked, queries, attention_mask=mask) * mask
    return attention.attention_flow(stacked, queries, attention_mask=mask) * mask


def _input_keys(patterns: torch.Tensor) -> torch.Tensor:
    """[layer, batch, head, q, k] -> [..., q, q]: drop the keys before the input (a recurrent memory, as in
    Transformer-XL and XLNet), which no input token can be credited with."""
    return patterns[..., -patterns.shape[-2] :]


def _reading_positions(model: HookedTransformer, kwargs: dict) -> torch.Tensor:
    """Where a classifier reads: the first token for encoders, the last real token for decoders."""
    ids, mask = kwargs["input_ids"], kwargs["attention_mask"]
    if model.classifier_position == "last":
        positions = torch.arange(ids.shape[1], device=ids.device)
        return (positions * mask.bool()).argmax(1)
    return torch.zeros(ids.shape[0], dtype=torch.long, device=ids.device)


# Layers and components ---------------------------------------------------------------------------------


def layer_attribute(
    model: HookedTransformer,
    inputs: ModelInput,
    target,
    hook: str,
    baseline: str | torch.Tensor = "pad",
    n_steps: int = 50,
    internal_batch_size: int | None = None,
) -> torch.Tensor:
    """Layer Integrated Gradients at any hook point (captum's layer methods accept a hook point: it is a module).

    Returns the attribution summed over the hook's last dim: [batch, pos] for residual/MLP hooks, and
    [batch, pos, head] for per-head hooks (``attn.hook_z``); sum over positions for per-head totals.
    Completeness holds at the layer: the scores add up to f(x) − f(baseline).
    """
    import captum.attr as ca

    point = model.hook_points().get(hook)
    if point is None:
        model.resolve_hook_names(hook)  # raises the usual message
    kwargs, _ = model.prepare_inputs(inputs)
    kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    ids = kwargs["input_ids"]
    base_ids = baseline if isinstance(baseline, torch.Tensor) else baseline_ids(model, ids, baseline)
    args, other_names = forward_arguments(kwargs)
    others = dict(zip(other_names, args[2:]))
    forward = EmbeddingForward(model, make_target(model, target), other_names)
    embeds, base = _embeddings(model, ids, others), _embeddings(model, base_ids.to(ids.device), others)
    # Captum hooks the hook point as a torch module; a workbench hook that keeps the activation marks the point
    # active, so that models which run only active hook points (the bridge attaches its taps for those) run it.
    with torch.enable_grad(), model.hooks([(hook, lambda activation, hook_point: None)]):
        attributions = ca.LayerIntegratedGradients(forward, point).attribute(
            embeds.requires_grad_(), baselines=base, additional_forward_args=args, n_steps=n_steps,
            internal_batch_size=internal_batch_size)
    return attributions.sum(-1).detach()


def direct_logit_attribution(model: HookedTransformer, inputs: ModelInput, token) -> pd.DataFrame:
    """How much each component writes the logit of ``token`` directly, for pre-norm language models.

    The final residual stream of a pre-norm decoder (GPT-2, Llama, Pythia, Gemma, ...) is a sum of component
    outputs: the token (and, where there are any, position) embeddings, each head's output (its slice of
    ``hook_z`` through the output projection; with grouped-query attention, one row per query head), each
    attention output bias and each MLP output. Where a norm follows the attention inside the block (Gemma 2's
    sandwich, OLMo 2), heads do not add up linearly and the layer's attention output is one row (``attn``).
    Every component is divided by the final norm's scale (frozen at its value on this input; a LayerNorm also
    centres it), then read through the final norm's weight and the unembedding row of ``token``; a LayerNorm's
    bias is the remaining row. The rows add up to the model's logit (before a final soft-cap, Gemma 2's:
    ``hook_logits_uncapped``).

    Returns:
        DataFrame: component, layer, head, value (for the first sequence, at its prediction position).
    """
    final = getattr(model, "ln_final", None)
    if not hasattr(model, "decode_residual") or final is None or not hasattr(final, "hook_scale"):
        raise ValueError(
            f"direct logit attribution needs a pre-norm language model with a final norm (GPT-2, Llama), not "
            f"{type(model).__name__}: post-norm residual streams are not sums of component outputs"
        )
    kwargs, _ = model.prepare_inputs(inputs)
    kwargs.setdefault("attention_mask", torch.ones_like(kwargs["input_ids"]))
    embeddings = [name for name in ("hook_embed", "hook_pos_embed") if hasattr(model, name)]
    names = [*embeddings, "ln_final.hook_scale"]
    kinds = ("attn.hook_z", "hook_attn_out", "hook_mlp_out")
    names += [f"blocks.{i}.{kind}" for i in range(model.n_layers) for kind in kinds]
    with torch.no_grad():
        _, cache = model.run_with_cache(kwargs, names_filter=names)
    position = int(prediction_positions(model, kwargs)[0])
    token_id = _token_id(model, token)
    weight = final.weight + getattr(final, "weight_offset", 0.0)  # RMSNorm's (1 + w) form included
    direction = (weight * model.unembed.weight[token_id]).detach()  # [d_model]
    scale = cache["ln_final.hook_scale"][0, position]  # [1]
    centred = getattr(final, "bias", None) is not None or type(final).__name__ == "LayerNorm"

    def read(vector: torch.Tensor) -> float:
        vector = vector - vector.mean() if centred else vector
        return float((vector / scale) @ direction)

    def row(component, value, layer=None, head=None):
        return {"component": component, "layer": layer, "head": head, "value": value}

    rows = [row(name.removeprefix("hook_"), read(cache[name][0, position])) for name in embeddings]
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        if hasattr(block, "ln1_post"):  # a norm between the heads and the stream
            rows.append(row("attn", read(cache[f"blocks.{layer}.hook_attn_out"][0, position]), layer))
        else:
            z = cache[f"blocks.{layer}.attn.hook_z"][0, position]  # [head, d_head]
            o = attn.o.weight.detach().view(attn.o.weight.shape[0], z.shape[0], -1)  # [d_model, head, d_head]
            rows += [row("head", read(o[:, head] @ z[head]), layer, head) for head in range(z.shape[0])]
            if attn.o.bias is not None:
                rows.append(row("attn_bias", read(attn.o.bias.detach()), layer))
        rows.append(row("mlp", read(cache[f"blocks.{layer}.hook_mlp_out"][0, position]), layer))
    if getattr(final, "bias", None) is not None:
        rows.append(row("ln_final_bias", float(final.bias.detach() @ model.unembed.weight[token_id].detach())))
    if getattr(model.unembed, "bias", None) is not None:
        rows.append(row("unembed_bias", float(model.unembed.bias[token_id].detach())))
    return pd.DataFrame(rows)
