"""The logit lens (nostalgebraist 2020): read every layer's residual stream through the model's own head.

``lens = model.logit_lens("The Eiffel Tower is in")`` decodes ``blocks.0.hook_resid_pre`` (the
embeddings) and each ``blocks.{i}.hook_resid_post`` with what the model applies to its last layer: the
final LayerNorm and the unembedding for GPT-2, the MLM transform and the unembedding for BERT. For a
decoder with a final norm, the last row equals the model's own logits.
"""

from __future__ import annotations

import numbers
import operator

import pandas as pd
import torch

from .cache import ActivationCache
from .model import HookedTransformer


class LogitLens:
    """Every layer's residual stream decoded to the vocabulary.

    Attributes:
        states: [layer + 1, batch, pos, d_model], the embeddings then each block's output.
        layer_names: ``["embed", "0", "1", ...]``, one per row of ``states``.
        tokens: the input's token strings (one list per sequence).
    """

    def __init__(self, model, cache: ActivationCache) -> None:
        if not hasattr(model, "decode_residual"):
            raise TypeError(
                f"{type(model).__name__} has no unembedding to decode with; load the model with its language-"
                f"modelling head (AutoModelForCausalLM, AutoModelForMaskedLM, or wb.load(..., task=...))"
            )
        names = residual_names(model)
        missing = [name for name in names if name not in cache]
        if missing:
            raise KeyError(f"the logit lens needs {missing[:3]}{'...' if len(missing) > 3 else ''} in the cache")
        self.model = model
        self.states = torch.stack([cache[name] for name in names])
        self.layer_names = ["embed"] + [str(i) for i in range(model.n_layers)]
        tokens = cache.tokens
        self.tokens = [tokens] if tokens and isinstance(tokens[0], str) else tokens

    def logits(self, batch: int = 0) -> torch.Tensor:
        """[layer + 1, pos, vocab] for sequence ``batch``."""
        batch = _index(batch, self.states.shape[1], "batch", "sequences")
        with torch.no_grad():
            return self.model.decode_residual(self.states[:, batch]).float()

    def probabilities(self, batch: int = 0) -> torch.Tensor:
        """[layer + 1, pos, vocab], softmax of :meth:`logits`."""
        return self.logits(batch).softmax(-1)

    def top_k(self, k: int = 5, batch: int = 0, pos: int | None = None) -> pd.DataFrame:
        """The k most likely tokens of every layer (at every position, or at ``pos``), tidy.

        Columns: layer, pos, input_token, rank, token, token_id, probability.
        """
        probs = self.probabilities(batch)
        if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= probs.shape[-1]:
            raise ValueError(f"k must be an int from 1 to the vocabulary size {probs.shape[-1]}, got {k!r}")
        k = int(k)
        n_positions = probs.shape[1]
        positions = range(n_positions) if pos is None else [_index(pos, n_positions, "pos", "positions")]
        top = torch.topk(probs, k, dim=-1)
        rows = []
        for layer, layer_name in enumerate(self.layer_names):
            for p in positions:
                for rank in range(k):
                    token_id = int(top.indices[layer, p, rank])
                    rows.append({
                        "layer": layer_name,
                        "pos": p,
                        "input_token": self._input_token(batch, p),
                        "rank": rank + 1,
                        "token": self._token_text(token_id),
                        "token_id": token_id,
                        "probability": float(top.values[layer, p, rank]),
                    })
        return pd.DataFrame(rows)

    def target(self, token: str | int, batch: int = 0, pos: int = -1) -> pd.DataFrame:
        """Rank (1 = most likely), probability and logit of one token at one position, per layer.

        Args:
            token: a token id, a vocabulary entry, or a text that tokenizes to exactly one token.
        """
        token_id = self._token_id(token)
        logits = self.logits(batch)
        logits = logits[:, _index(pos, logits.shape[1], "pos", "positions")]  # [layer + 1, vocab]
        probs = logits.softmax(-1)
        ranks = (logits > logits[:, token_id : token_id + 1]).sum(-1) + 1
        return pd.DataFrame({
            "layer": self.layer_names,
            "token": self._token_text(token_id),
            "rank": ranks.tolist(),
            "probability": probs[:, token_id].tolist(),
            "logit": logits[:, token_id].tolist(),
        })

    def figure(self, batch: int = 0):
        """A plotly heatmap: layers × positions, coloured by the top token's probability, labelled with it."""
        import plotly.graph_objects as go

        probs = self.probabilities(batch)
        best = probs.max(-1)
        labels = [[self._token_text(int(i)) for i in row] for row in best.indices]
        x = [f"{p}:{self._input_token(batch, p)}" for p in range(probs.shape[1])]
        figure = go.Figure(go.Heatmap(
            z=best.values.cpu().numpy(), x=x, y=self.layer_names, text=labels, texttemplate="%{text}",
            colorscale="Blues", colorbar={"title": "p(top)"},
            hovertemplate="layer %{y}<br>input %{x}<br>top %{text}: %{z:.3f}<extra></extra>",
        ))
        figure.update_layout(title="logit lens: most likely next token per layer", xaxis_title="input position",
                             yaxis_title="layer")
        return figure

    # Helpers -----------------------------------------------------------------------------------------
    def _input_token(self, batch: int, pos: int) -> str | None:
        return self.tokens[batch][pos] if self.tokens else None

    def _token_text(self, token_id: int) -> str:
        tokenizer = self.model.tokenizer
        return tokenizer.decode([token_id]) if tokenizer is not None else str(token_id)

    def _token_id(self, token: str | int) -> int:
        vocab_size = self.model.config.vocab_size
        if isinstance(token, torch.Tensor) and token.numel() == 1 and not token.is_floating_point():
            token = int(token)
        if isinstance(token, bool) or not isinstance(token, (int, str)):
            raise TypeError(
                f"token must be a token id (int) or a token's text (str), got {type(token).__name__}"
            )
        if isinstance(token, int):
            if not 0 <= token < vocab_size:
                raise ValueError(f"token id {token} is outside the vocabulary (0..{vocab_size - 1})")
            return token
        tokenizer = self.model.tokenizer
        if tokenizer is None:
            raise ValueError("a token given as text needs the model's tokenizer; pass its id instead")
        return tokenizer.single_token_id(token)


def _index(index: int, size: int, name: str, what: str) -> int:
    """``index`` into ``size`` items (negative counts from the end, as in Python), or an error naming it."""
    try:
        value = operator.index(index)  # ints, numpy ints, 0-d integer tensors
    except TypeError:
        raise TypeError(f"{name} must be an int, got {type(index).__name__}") from None
    if isinstance(index, bool) or not -size <= value < size:
        raise IndexError(
            f"{name}={index!r} is out of range: there are {size} {what} ({name} 0..{size - 1} or -{size}..-1)"
        )
    return value % size


def residual_names(model) -> list[str]:
    """The residual stream's hook points the lens decodes: the embeddings, then each block's output (of the
    stack the model's head reads: an encoder-decoder's ``decoder.``, ``model.stack_prefix``)."""
    prefix = getattr(model, "stack_prefix", "")
    return [f"{prefix}blocks.0.hook_resid_pre"] + [f"{prefix}blocks.{i}.hook_resid_post" for i in range(model.n_layers)]


def logit_lens(model, inputs) -> LogitLens:
    """The :class:`LogitLens` of ``inputs`` (text, token ids, model inputs) or of an existing cache."""
    if isinstance(inputs, ActivationCache):
        return LogitLens(model, inputs)
    names = residual_names(model)
    with torch.no_grad():
        _, cache = model.run_with_cache(inputs, names_filter=names)
    return LogitLens(model, cache)


def _logit_lens_method(self, inputs) -> LogitLens:
    """Every layer's residual stream decoded by this model's head: a :class:`~workbench.lens.LogitLens`.

    Needs a model with an unembedding (a causal or masked LM head); ``inputs`` may be text, token ids,
    model inputs or a cache that holds ``blocks.0.hook_resid_pre`` and every ``hook_resid_post``.
    """
    return logit_lens(self, inputs)


# ``model.logit_lens(...)``: the model layers never import this module; see the note above GenerationMixin in
# workbench/model.py.
_logit_lens_method.__name__, _logit_lens_method.__qualname__ = "logit_lens", "HookedTransformer.logit_lens"
HookedTransformer.logit_lens = _logit_lens_method
