"""Compare architectures on the same text: attention side by side with synchronized selectors, tokens of
different tokenizers aligned on words, and a layer-by-layer similarity map of hidden states (linear CKA).

Words are the whitespace-separated words of the text; each token belongs to the word its last character
falls in (from the tokenizer's character offsets), which works the same for WordPiece, byte-level BPE and
SentencePiece. Word-level attention follows Clark et al. (2019): attention *to* a word is the sum over its
tokens, attention *from* a word the mean over its tokens; attention to special tokens ([CLS], <s>...) is left
out, so a row sums to at most 1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..tokenizers.words import token_words, words_of  # noqa: F401  (re-exported: the alignment lives there)
from ._base import View, as_array, check_choice, figure_widget, replace_figure
from .attention import matrix_figure, visible_cells


def linear_cka(x, y) -> float:
    """Linear CKA (Kornblith et al. 2019) between two representations of the same n examples.

    ``CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred ``Xc`` [n, d1], ``Yc`` [n, d2];
    1 for representations equal up to rotation and isotropic scaling.

    >>> round(linear_cka([[1.0, 0], [0, 1], [1, 1]], [[2.0, 0], [0, 2], [2, 2]]), 6)
    1.0
    """
    x, y = as_array(x, "x", 2), as_array(y, "y", 2)
    if x.shape[0] != y.shape[0]:
        raise ValueError(
            f"x has {x.shape[0]} rows (examples) but y has {y.shape[0]}; CKA compares the same examples"
        )
    if x.shape[0] < 2:
        raise ValueError("CKA needs at least 2 examples (rows)")
    x, y = x - x.mean(0), y - y.mean(0)
    cross = np.linalg.norm(y.T @ x) ** 2
    denominator = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    if denominator == 0:
        raise ValueError("a representation is constant over the examples: CKA is undefined")
    return float(cross / denominator)


def cka_matrix(hidden_a, hidden_b) -> np.ndarray:
    """[layer_a, layer_b] linear CKA between every pair of layers; hidden states [layer, n, d] (n examples)."""
    a, b = as_array(hidden_a, "hidden_a", 3), as_array(hidden_b, "hidden_b", 3)
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"hidden_a has {a.shape[1]} examples (words or tokens) but hidden_b has {b.shape[1]}; "
            f"align them first (e.g. pool tokens to words)"
        )
    return np.array([[linear_cka(la, lb) for lb in b] for la in a])


def cka_figure(matrix: np.ndarray, names: Sequence[str] = ("a", "b")):
    import plotly.graph_objects as go

    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=[f"{names[1]} {i}" for i in range(matrix.shape[1])],
            y=[f"{names[0]} {i}" for i in range(matrix.shape[0])],
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            colorbar={"title": "CKA"},
            hovertemplate="%{y} · %{x}<br>CKA %{z:.3f}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"linear CKA between the layers of {names[0]} and {names[1]}",
        xaxis_title=names[1],
        yaxis_title=names[0],
        height=420,
        width=520,
    )
    return figure


def cka(hidden_a, hidden_b, names: Sequence[str] = ("a", "b")) -> View:
    """A heatmap of linear CKA between every layer of two models' hidden states [layer, n, d] (same n)."""
    import ipywidgets as widgets

    matrix = cka_matrix(hidden_a, hidden_b)
    live = figure_widget(cka_figure(matrix, names))
    view = View("cka", widgets.VBox([live]), lambda: [cka_figure(matrix, names)], {}, [live])
    view.matrix = matrix
    return view


# Word alignment ---------------------------------------------------------------------------------------


def pool_to_words(patterns: np.ndarray, hidden: np.ndarray, words: Sequence[int | None], n_words: int):
    """Token-level -> word-level: patterns [layer, head, q, k] -> [layer, head, word, word] (sum over a word's
    keys, mean over its queries); hidden [layer, pos, d] -> [layer, word, d] (mean over its tokens)."""
    assign = np.zeros((len(words), n_words))
    for token, word in enumerate(words):
        if word is not None:
            assign[token, word] = 1.0
    counts = assign.sum(0)
    missing = [i for i in range(n_words) if counts[i] == 0]
    if missing:
        raise ValueError(f"words {missing} have no token (were they truncated?)")
    mean = assign / counts
    word_patterns = np.einsum("qw,lhqk,kv->lhwv", mean, patterns, assign)
    word_hidden = np.einsum("pw,lpd->lwd", mean, hidden)
    return word_patterns, word_hidden


def _run(model, text: str, by: str):
    """(tokens, patterns [layer, head, q, k], hidden [layer + 1, pos, d]) for one text, word-pooled with by='word'."""
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(model.n_layers)]
    patterns_wanted = [f"blocks.{i}.attn.hook_pattern" for i in range(model.n_layers)]
    encoding = model.tokenize(text)
    _, cache = model.run_with_cache(encoding, names_filter=names + patterns_wanted)
    patterns = cache.stack("attn.hook_pattern")[:, 0].float().cpu().numpy()
    hidden = np.stack([cache[name][0].float().cpu().numpy() for name in names])
    tokens = cache.tokens if cache.tokens and isinstance(cache.tokens[0], str) else encoding.tokens(0)
    if by == "token":
        return list(tokens), patterns, hidden
    words = token_words(encoding.offsets[0], text)
    spans = words_of(text)
    word_patterns, word_hidden = pool_to_words(patterns, hidden, words, len(spans))
    return [w for _, _, w in spans], word_patterns, word_hidden


# A report page is about 1100 pixels wide: two panels per row, and never wider than this.
PANELS_PER_ROW = 2
MAX_WIDTH = 1000


def compare(models, text: str, by: str = "word", layer: int = 0, head: int | str = "mean") -> View:
    """Two or more models on the same text, side by side (two per row), one layer and head selector for all.

    Args:
        models: ``{"name": model}`` or a list of models (named by where they were loaded from); a random
            stand-in's name gets ``" (random stand-in)"`` (``wb.zoo.display_name``) in every title and axis.
        text: the text every model reads.
        by: ``"word"`` aligns every model on the text's words (so the matrices line up across tokenizers);
            ``"token"`` shows each model's own tokens.
        layer: the layer of the deepest model; a shallower model shows the layer at the same relative depth.
        head: a head index (taken modulo each model's head count) or ``"mean"``.

    The view's second figure is linear CKA between the first two models' word-level hidden states, layer by
    layer (``by="word"`` only; 0 = embeddings).
    """
    import ipywidgets as widgets
    from plotly.subplots import make_subplots

    from ..zoo import display_name

    named = (
        {display_name(m, name): m for name, m in models.items()}
        if isinstance(models, Mapping)
        else {display_name(m, f"{display_name(m)} {i}"): m for i, m in enumerate(models)}
    )
    if len(named) < 2:
        raise ValueError(f"compare needs at least two models, got {len(named)}")
    check_choice(by, ["word", "token"], "by")
    if not isinstance(text, str) or not text.strip():
        raise ValueError("text must be a non-empty string")
    runs = {name: _run(model, text, by) for name, model in named.items()}
    depth = max(p.shape[0] for _, p, _ in runs.values())
    max_heads = max(p.shape[1] for _, p, _ in runs.values())
    check_choice(layer, range(depth), "layer")
    check_choice(head, [*range(max_heads), "mean"], "head")
    controls = {
        "layer": widgets.IntSlider(value=layer, min=0, max=depth - 1, description="layer"),
        "head": widgets.Dropdown(
            options=[("mean of heads", "mean")] + [(f"head {h}", h) for h in range(max_heads)],
            value=head,
            description="head",
        ),
    }

    def build():
        chosen_layer, chosen_head = controls["layer"].value, controls["head"].value
        names = list(runs)
        cols = min(len(names), PANELS_PER_ROW)  # more models wrap onto more rows: the figure fits the page
        rows = -(-len(names) // cols)
        figure = make_subplots(
            rows=rows,
            cols=cols,
            horizontal_spacing=0.08,
            vertical_spacing=0.12 if rows > 1 else 0.0,
            subplot_titles=[
                _panel_title(name, runs[name][1], chosen_layer, depth, chosen_head) for name in names
            ],
        )
        for index, name in enumerate(names):
            row, col = divmod(index, cols)
            row, col = row + 1, col + 1
            tokens, patterns, _ = runs[name]
            model_layer = _relative_layer(chosen_layer, depth, patterns.shape[0])
            pattern = (
                patterns[model_layer].mean(0)
                if chosen_head == "mean"
                else patterns[model_layer, chosen_head % patterns.shape[1]]
            )
            panel = matrix_figure(tokens, tokens, pattern, visible_cells(patterns))
            trace = panel.data[0]
            trace.update(showscale=index == len(names) - 1, zmax=1.0)
            figure.add_trace(trace, row=row, col=col)
            figure.update_yaxes(autorange="reversed", row=row, col=col)
        n = max(len(r[0]) for r in runs.values())
        figure.update_layout(
            height=(24 * n + 120) * rows + 100,
            width=min(MAX_WIDTH, (24 * n + 200) * cols),
            title=f"attention on the same text, by {by}: {_short(text)}",
            plot_bgcolor="#d9d9d9",
        )
        return figure

    parts_cka = []
    if by == "word":
        first, second = list(runs)[:2]
        matrix = cka_matrix(runs[first][2], runs[second][2])
        parts_cka = [cka_figure(matrix, (first, second))]
    live = figure_widget(build())
    cka_live = [figure_widget(f) for f in parts_cka]
    for control in controls.values():
        control.observe(lambda _: replace_figure(live, build()), names="value")
    widget = widgets.VBox([widgets.HBox(list(controls.values())), live, *cka_live])
    view = View("compare", widget, lambda: [build(), *parts_cka], controls, [live, *cka_live])
    view.cka_matrix = matrix if by == "word" else None
    view.runs = runs
    return view


def _short(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _relative_layer(layer: int, depth: int, n_layers: int) -> int:
    return round(layer * (n_layers - 1) / (depth - 1)) if depth > 1 else 0


def _panel_title(name, patterns, layer, depth, head) -> str:
    model_layer = _relative_layer(layer, depth, patterns.shape[0])
    head_text = "mean" if head == "mean" else f"H{head % patterns.shape[1]}"
    return f"{name}: L{model_layer} {head_text}"
