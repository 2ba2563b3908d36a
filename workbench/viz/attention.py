"""Attention views: the head view (token-to-token lines), the model view (every layer × head), the matrix
heatmap with token labels, and the neuron view (how q·k builds each score of one query token).

Patterns are shown as they are: a bidirectional encoder's full matrix, a decoder's causal mask (cells a
query cannot see are grey in heatmaps, never drawn as attention). The mask is read from the data — a
(query, key) cell that is exactly 0 in every layer and head is masked — so nothing here is specific to
an architecture.

Shapes: ``patterns`` [layer, head, query_pos, key_pos] (one layer: [head, query_pos, key_pos]), as
``cache.stack("attn.hook_pattern")[:, batch]``; ``q``/``k`` [layer, pos, head, d_head], as
``cache.stack("attn.hook_q")[:, batch]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._base import (
    PALETTE,
    View,
    as_array,
    check_choice,
    check_length,
    check_tokens,
    figure_widget,
    label_tokens,
    replace_figure,
)

# Line opacity for attention weights in [low, high): four levels keep the trace count small.
_WEIGHT_BINS = ((0.02, 0.1, 0.15), (0.1, 0.25, 0.35), (0.25, 0.5, 0.6), (0.5, 1.01, 0.9))


# Inputs ------------------------------------------------------------------------------------------------


def check_patterns(patterns, tokens, key_tokens=None) -> tuple[np.ndarray, list[str], list[str]]:
    """-> (patterns [layer, head, query_pos, key_pos], query tokens, key tokens), or a ValueError naming the
    mismatch. Accepts [head, q, k] (one layer) and a list of per-layer [head, q, k] / [1, head, q, k]."""
    tokens = check_tokens(tokens)
    key_tokens = tokens if key_tokens is None else check_tokens(key_tokens, "key_tokens")
    if isinstance(patterns, (list, tuple)):
        layers = [as_array(p, f"patterns[{i}]", (3, 4)) for i, p in enumerate(patterns)]
        for i, layer in enumerate(layers):
            if layer.ndim == 4 and layer.shape[0] != 1:
                raise ValueError(
                    f"patterns[{i}] has a batch of {layer.shape[0]}; pass one sequence (e.g. p[0])"
                )
        layers = [layer[0] if layer.ndim == 4 else layer for layer in layers]
        shapes = {layer.shape for layer in layers}
        if len(shapes) != 1:
            raise ValueError(f"the layers of patterns differ in shape: {sorted(shapes)}")
        array = np.stack(layers)
    else:
        array = as_array(patterns, "patterns", (3, 4))
        array = array[None] if array.ndim == 3 else array
    check_length(array.shape[2], "patterns has {n} query positions", tokens)
    check_length(
        array.shape[3],
        "patterns has {n} key positions",
        key_tokens,
        "key_tokens" if key_tokens is not tokens else "tokens",
    )
    if np.isnan(array).any():
        raise ValueError("patterns contains NaN")
    return array, tokens, key_tokens


def visible_cells(patterns: np.ndarray) -> np.ndarray:
    """[query_pos, key_pos] bool: False where every layer and head gives exactly 0 (a mask, not a choice)."""
    return (patterns != 0).any(axis=(0, 1))


def is_causal(patterns: np.ndarray) -> bool:
    """True when no query sees a later key (a decoder's mask)."""
    visible = visible_cells(patterns)
    n_q, n_k = visible.shape
    offset = n_k - n_q  # keys may include cached/memory positions before the queries
    above = np.triu(np.ones((n_q, n_k), dtype=bool), k=1 + offset)
    return n_q > 1 and above.any() and not visible[above].any()


def _layer_names(n_layers: int, layer_names) -> list[str]:
    if layer_names is None:
        return [str(i) for i in range(n_layers)]
    if len(layer_names) != n_layers:
        raise ValueError(f"layer_names has {len(layer_names)} names but patterns has {n_layers} layers")
    return [str(name) for name in layer_names]


def _mask_note(patterns: np.ndarray) -> str:
    if is_causal(patterns):
        return " · causal mask (grey: later tokens, unseen)"
    if not visible_cells(patterns).all():
        return " · grey: masked"
    return ""


def _checked_patterns(patterns, tokens, key_tokens, layer_names):
    """:func:`check_patterns` plus the layers' labels: ``(patterns [layer, head, q, k], tokens, key_tokens,
    layer names)``."""
    patterns, tokens, key_tokens = check_patterns(patterns, tokens, key_tokens)
    return patterns, tokens, key_tokens, _layer_names(patterns.shape[0], layer_names)


def _layer_dropdown(names: Sequence[str], layer: int):
    """The ``layer`` selector (values are layer indices, labels the layer names); ``layer`` is checked."""
    import ipywidgets as widgets

    check_choice(layer, range(len(names)), "layer")
    options = [(f"layer {n}", i) for i, n in enumerate(names)]
    return widgets.Dropdown(options=options, value=layer, description="layer")


def _head_dropdown(n_heads: int, head, mean: bool = False):
    """The ``head`` selector over ``n_heads`` heads (and ``"mean"`` of them when ``mean``); ``head`` is checked."""
    import ipywidgets as widgets

    options = [(f"head {h}", h) for h in range(n_heads)] + ([("mean of heads", "mean")] if mean else [])
    check_choice(head, [value for _, value in options], "head")
    return widgets.Dropdown(options=options, value=head, description="head")


def _one_figure_view(kind: str, controls: dict, build, on_draw=None) -> View:
    """A :class:`View` of one live figure under its controls, rebuilt by ``build()`` when any control changes.

    ``on_draw(live)`` runs after every draw (click handlers belong to the traces, which a redraw replaces).
    """
    import ipywidgets as widgets

    live = figure_widget(build())

    def redraw(_=None):
        replace_figure(live, build())
        if on_draw is not None:
            on_draw(live)

    if on_draw is not None:
        on_draw(live)
    for control in controls.values():
        control.observe(redraw, names="value")
    widget = widgets.VBox([widgets.HBox(list(controls.values())), live])
    return View(kind, widget, lambda: [build()], controls, [live])


# Figures -----------------------------------------------------------------------------------------------


def head_view_figure(
    tokens, key_tokens, pattern: np.ndarray, heads: Sequence[int], query: int | None = None, title: str = ""
):
    """Lines from each query token (left) to the keys it attends to (right), one colour per head.

    Args:
        pattern: [head, query_pos, key_pos] of one layer.
        query: draw only this query's lines (None: every query).
    """
    import plotly.graph_objects as go

    figure = go.Figure()
    rows = range(len(tokens)) if query is None else [query]
    for head in heads:
        colour = PALETTE[head % len(PALETTE)]
        # A line-less trace carries the legend entry at full opacity; the weight bins below share its group.
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="lines",
                name=f"head {head}",
                legendgroup=f"head {head}",
                line={"color": colour, "width": 3},
            )
        )
        weights = pattern[head]
        for low, high, opacity in _WEIGHT_BINS:
            selected = (weights >= low) & (weights < high)
            pairs = [(i, j) for i in rows for j in np.flatnonzero(selected[i])]
            if not pairs:
                continue
            xs, ys = [], []
            for i, j in pairs:
                xs += [0, 1, None]
                ys += [-i, -int(j), None]
            figure.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines",
                    opacity=opacity,
                    hoverinfo="skip",
                    name=f"head {head}",
                    legendgroup=f"head {head}",
                    showlegend=False,
                    line={"color": colour, "width": 2},
                )
            )
    # The query tokens (left; the chosen query in black, the others grey) and the key tokens (right): the
    # query column is the next-to-last trace, which head view's click handler listens to.
    query_colours = ["#000" if query in (None, i) else "#aaa" for i in range(len(tokens))]
    figure.add_trace(_token_column(tokens, "query", textfont={"color": query_colours}))
    figure.add_trace(_token_column(key_tokens, "key"))
    n = max(len(tokens), len(key_tokens))
    figure.update_layout(
        title=title,
        height=24 * n + 110,
        width=560,
        plot_bgcolor="white",
        margin={"l": 20, "r": 20, "t": 50},
        xaxis={"visible": False, "range": [-0.9, 1.9]},
        yaxis={"visible": False, "range": [-n + 0.5, 0.7]},
        legend={"orientation": "v", "x": 1.0},
    )
    return figure


def _token_column(tokens, kind: str, **style):
    """The tokens as a column of text: queries at x=0 (right-aligned), keys at x=1, first token on top."""
    import plotly.graph_objects as go

    return go.Scatter(
        x=[0 if kind == "query" else 1] * len(tokens),
        y=[-i for i in range(len(tokens))],
        mode="text",
        text=list(tokens),
        textposition="middle left" if kind == "query" else "middle right",
        name=kind,
        showlegend=False,
        hovertext=[f"{kind} {i}: {t}" for i, t in enumerate(tokens)],
        hoverinfo="text",
        **style,
    )


def matrix_figure(tokens, key_tokens, pattern: np.ndarray, visible: np.ndarray, title: str = ""):
    """A heatmap of one head's pattern [query_pos, key_pos]; masked cells are left empty (grey)."""
    import plotly.graph_objects as go

    z = np.where(visible, pattern, np.nan)
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=label_tokens(key_tokens),
            y=label_tokens(tokens),
            colorscale="Blues",
            zmin=0,
            zmax=float(np.nanmax(z)) if np.isfinite(z).any() else 1.0,
            colorbar={"title": "weight"},
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.3f}<extra></extra>",
        )
    )
    size = 26 * max(len(tokens), len(key_tokens))
    figure.update_layout(
        title=title,
        plot_bgcolor="#d9d9d9",
        height=size + 200,
        width=size + 260,
        yaxis={"autorange": "reversed"},
        xaxis={"tickangle": -60},
    )
    return figure


def model_view_figure(patterns: np.ndarray, visible: np.ndarray, layer_names, selected: tuple[int, int]):
    """Every layer (rows) × head (columns) as a small heatmap; the selected one is outlined."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    n_layers, n_heads = patterns.shape[:2]
    figure = make_subplots(
        rows=n_layers,
        cols=n_heads,
        horizontal_spacing=0.01,
        vertical_spacing=0.01,
        row_titles=[f"L{name}" for name in layer_names],
        column_titles=[f"H{h}" for h in range(n_heads)],
    )
    for layer in range(n_layers):
        for head in range(n_heads):
            figure.add_trace(
                go.Heatmap(
                    z=np.where(visible, patterns[layer, head], np.nan),
                    zmin=0,
                    zmax=1,
                    colorscale="Blues",
                    showscale=False,
                    name=f"{layer},{head}",
                    hovertemplate=f"layer {layer_names[layer]} head {head}<br>query %{{y}} key %{{x}}: %{{z:.2f}}"
                    "<extra>click to open</extra>",
                ),
                row=layer + 1,
                col=head + 1,
            )
    figure.update_xaxes(visible=False)
    figure.update_yaxes(visible=False, autorange="reversed")
    layer, head = selected
    index = layer * n_heads + head + 1
    suffix = "" if index == 1 else str(index)
    figure.add_shape(
        type="rect",
        xref=f"x{suffix} domain",
        yref=f"y{suffix} domain",
        x0=-0.05,
        x1=1.05,
        y0=-0.05,
        y1=1.05,
        line={"color": "#d62728", "width": 2},
    )
    figure.update_layout(
        height=62 * n_layers + 90,
        width=min(62 * n_heads + 120, 1100),
        plot_bgcolor="#d9d9d9",
        title="every layer × head (click one to open it)",
        margin={"l": 20, "r": 40, "t": 70},
    )
    return figure


# Views -------------------------------------------------------------------------------------------------


def attention_heads(
    tokens,
    patterns,
    layer: int = 0,
    heads: Sequence[int] | None = None,
    query: int | None = None,
    key_tokens=None,
    layer_names=None,
    name: str | None = None,
) -> View:
    """The head view: for one layer, lines from each token to the tokens it attends to, one colour per head.

    Args:
        tokens: the query tokens (strings).
        patterns: [layer, head, query_pos, key_pos] or [head, query_pos, key_pos].
        layer: the layer shown first; heads: the heads shown (default all); query: only this query's lines.
        key_tokens: when keys differ from queries (memory, cached positions).
        name: what the patterns come from (the model's label, ``wb.zoo.display_name``), shown in the title;
            :func:`attention` fills it in from the model.

    Click a token on the left (live widget) to show only its lines.

    >>> view = attention_heads(["a", "b"], np.full((1, 2, 2, 2), 0.5))
    >>> view.controls["layer"].value
    0
    """
    import ipywidgets as widgets

    patterns, tokens, key_tokens, names = _checked_patterns(patterns, tokens, key_tokens, layer_names)
    n_heads = patterns.shape[1]
    layer_control = _layer_dropdown(names, layer)
    heads = (
        list(range(n_heads)) if heads is None else [check_choice(h, range(n_heads), "head") for h in heads]
    )
    if query is not None:
        check_choice(query, range(len(tokens)), "query")
    controls = {
        "layer": layer_control,
        "heads": widgets.SelectMultiple(
            options=[(f"head {h}", h) for h in range(n_heads)],
            value=tuple(heads),
            description="heads",
            rows=min(n_heads, 6),
        ),
        "query": widgets.Dropdown(
            # -1 stands for "every query": ipywidgets reads a None value as "nothing selected".
            options=[("all", -1)] + [(t, i) for t, i in zip(label_tokens(tokens), range(len(tokens)))],
            value=-1 if query is None else query,
            description="query",
        ),
    }
    note = _mask_note(patterns)

    def build():
        c = {name: control.value for name, control in controls.items()}
        title = _titled(name, f"layer {names[c['layer']]} · {len(c['heads'])} head(s){note}")
        query = None if c["query"] == -1 else c["query"]
        return head_view_figure(tokens, key_tokens, patterns[c["layer"]], c["heads"], query, title)

    def on_click(trace, points, state):
        if points.point_inds:
            controls["query"].value = points.point_inds[0]

    def attach_query_click(live):
        live.data[-2].on_click(on_click)  # the query tokens' trace (left column)

    return _one_figure_view("head_view", controls, build, on_draw=attach_query_click)


def attention_matrix(
    tokens,
    patterns,
    layer: int = 0,
    head: int = 0,
    key_tokens=None,
    layer_names=None,
    name: str | None = None,
) -> View:
    """One head's pattern as a heatmap with token labels (queries down, keys across; grey cells are masked).

    Args:
        patterns: [layer, head, query_pos, key_pos] or [head, query_pos, key_pos]; ``head="mean"`` averages heads.
        name: what the patterns come from (the model's label), shown in the title.
    """
    patterns, tokens, key_tokens, names = _checked_patterns(patterns, tokens, key_tokens, layer_names)
    controls = {
        "layer": _layer_dropdown(names, layer),
        "head": _head_dropdown(patterns.shape[1], head, mean=True),
    }
    visible = visible_cells(patterns)
    note = _mask_note(patterns)

    def build():
        layer, head = controls["layer"].value, controls["head"].value
        pattern = patterns[layer].mean(0) if head == "mean" else patterns[layer, head]
        return matrix_figure(
            tokens, key_tokens, pattern, visible, _titled(name, f"layer {names[layer]} · head {head}{note}")
        )

    return _one_figure_view("attention_matrix", controls, build)


def model_view(
    tokens,
    patterns,
    layer: int = 0,
    head: int = 0,
    key_tokens=None,
    layer_names=None,
    name: str | None = None,
) -> View:
    """Every layer × head as a small heatmap; clicking one (or the selectors) opens it as a full matrix.
    ``name``: what the patterns come from (the model's label), shown in the titles."""
    import ipywidgets as widgets

    patterns, tokens, key_tokens, names = _checked_patterns(patterns, tokens, key_tokens, layer_names)
    controls = {"layer": _layer_dropdown(names, layer), "head": _head_dropdown(patterns.shape[1], head)}
    visible = visible_cells(patterns)
    note = _mask_note(patterns)

    def selected():
        return controls["layer"].value, controls["head"].value

    def build_grid():
        figure = model_view_figure(patterns, visible, names, selected())
        if name:
            figure.update_layout(title=_titled(name, figure.layout.title.text))
        return figure

    def build_detail():
        layer, head = selected()
        return matrix_figure(
            tokens,
            key_tokens,
            patterns[layer, head],
            visible,
            _titled(name, f"layer {names[layer]} · head {head}{note}"),
        )

    grid, detail = figure_widget(build_grid()), figure_widget(build_detail())

    def open_cell(trace, points, state):
        if points.point_inds:
            layer, head = (int(v) for v in trace.name.split(","))
            controls["layer"].value, controls["head"].value = layer, head

    def attach_clicks():
        for trace in grid.data:
            trace.on_click(open_cell)

    def redraw(_=None):
        replace_figure(grid, build_grid())
        replace_figure(detail, build_detail())
        attach_clicks()

    attach_clicks()
    for control in controls.values():
        control.observe(redraw, names="value")
    widget = widgets.VBox([grid, widgets.HBox(list(controls.values())), detail])
    return View("model_view", widget, lambda: [build_grid(), build_detail()], controls, [grid, detail])


def neuron_view(
    q,
    k,
    tokens,
    layer: int = 0,
    head: int = 0,
    query: int = 0,
    key_tokens=None,
    patterns=None,
    scale: float | None = None,
    layer_names=None,
    name: str | None = None,
) -> View:
    """How q·k builds the attention scores of one query token: its query vector, every key vector, their
    element-wise products, the scores (sum of the products × scale) and the softmax over the visible keys.

    Args:
        q: [layer, query_pos, head, d_head] or [query_pos, head, d_head] (``hook_q``; ``hook_rot_q`` for a
            rotary model, whose scores use the rotated vectors).
        k: [layer, key_pos, kv_head, d_head] or [key_pos, kv_head, d_head] (``hook_k`` / ``hook_rot_k``). With
            grouped- or multi-query attention (fewer key heads than query heads) query head h reads key head
            ``h // (head / kv_head)``, as the model does.
        patterns: optional [layer, head, query_pos, key_pos]; its zero cells mark masked keys (a decoder's mask).
        scale: multiplies q·k; default 1/sqrt(d_head).
        name: what q and k come from (the model's label), shown in the title.
    """
    import ipywidgets as widgets

    tokens = check_tokens(tokens)
    key_tokens = tokens if key_tokens is None else check_tokens(key_tokens, "key_tokens")
    q = as_array(q, "q", (3, 4))
    k = as_array(k, "k", (3, 4))
    q, k = (q[None] if q.ndim == 3 else q), (k[None] if k.ndim == 3 else k)
    if q.shape[0] != k.shape[0] or q.shape[3] != k.shape[3] or q.shape[2] % k.shape[2]:
        raise ValueError(
            f"q {tuple(q.shape)} and k {tuple(k.shape)} must agree in layer and d_head, and q's heads must be a "
            f"multiple of k's ([layer, pos, head, d_head])"
        )
    k = np.repeat(k, q.shape[2] // k.shape[2], axis=2)  # each key/value head serves a group of query heads
    check_length(q.shape[1], "q has {n} positions", tokens)
    check_length(
        k.shape[1], "k has {n} positions", key_tokens, "key_tokens" if key_tokens is not tokens else "tokens"
    )
    n_layers, _, n_heads, d_head = q.shape
    visible = np.ones((q.shape[1], k.shape[1]), dtype=bool)
    if patterns is not None:
        patterns, _, _ = check_patterns(patterns, tokens, key_tokens)
        if patterns.shape[:2] != (n_layers, n_heads):
            raise ValueError(
                f"patterns has {patterns.shape[:2]} layers × heads but q has {(n_layers, n_heads)}"
            )
        visible = visible_cells(patterns)
    scale = 1 / np.sqrt(d_head) if scale is None else scale
    names = _layer_names(n_layers, layer_names)
    controls = {
        "layer": _layer_dropdown(names, layer),
        "head": _head_dropdown(n_heads, head),
        "query": widgets.Dropdown(
            options=list(zip(label_tokens(tokens), range(len(tokens)))),
            value=check_choice(query, range(len(tokens)), "query"),
            description="query",
        ),
    }

    def build():
        layer, head, query = (controls[name].value for name in ("layer", "head", "query"))
        return neuron_figure(
            q[layer, query, head],
            k[layer, :, head],
            key_tokens,
            visible[query],
            scale,
            _titled(name, f"layer {names[layer]} · head {head} · query {query}: {tokens[query]!r}"),
        )

    return _one_figure_view("neuron_view", controls, build)


def attention_scores(q_vector: np.ndarray, keys: np.ndarray, visible: np.ndarray, scale: float):
    """(products [key_pos, d_head], scores [key_pos] with masked keys -inf, softmax [key_pos])."""
    products = keys * q_vector[None, :]
    scores = np.where(visible, products.sum(-1) * scale, -np.inf)
    weights = np.exp(scores - scores[visible].max()) if visible.any() else np.zeros_like(scores)
    weights = weights / weights.sum() if weights.sum() > 0 else weights
    return products, scores, weights


def neuron_figure(q_vector, keys, key_tokens, visible, scale, title=""):
    """Query vector (top), key vectors, their element-wise products, the scores and the softmax (rows: keys)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    products, scores, weights = attention_scores(q_vector, keys, visible, scale)
    labels = label_tokens(key_tokens)
    rows = list(range(len(key_tokens)))
    figure = make_subplots(
        rows=2,
        cols=4,
        row_heights=[0.12, 0.88],
        column_widths=[0.3, 0.3, 0.2, 0.2],
        horizontal_spacing=0.03,
        vertical_spacing=0.1,
        specs=[[None, {}, None, None], [{}, {}, {}, {}]],
        subplot_titles=["query q", "keys k", "q × k (element-wise)", "score = sum × scale", "softmax"],
    )
    bound = float(np.abs(np.concatenate([keys.ravel(), q_vector.ravel()])).max()) or 1.0
    colours = {"colorscale": "RdBu", "zmid": 0, "zmin": -bound, "zmax": bound, "showscale": False}
    per_cell = [[t] * keys.shape[1] for t in labels]
    figure.add_trace(
        go.Heatmap(
            z=q_vector[None, :], y=["q"], hovertemplate="q[%{x}] = %{z:.3f}<extra></extra>", **colours
        ),
        row=1,
        col=2,
    )
    figure.add_trace(
        go.Heatmap(
            z=keys,
            y=rows,
            customdata=per_cell,
            hovertemplate="%{customdata}<br>k[%{x}] = %{z:.3f}<extra></extra>",
            **colours,
        ),
        row=2,
        col=1,
    )
    product_bound = float(np.abs(products[visible]).max()) if visible.any() else 1.0
    figure.add_trace(
        go.Heatmap(
            z=np.where(visible[:, None], products, np.nan),
            y=rows,
            customdata=per_cell,
            colorscale="RdBu",
            zmid=0,
            zmin=-product_bound,
            zmax=product_bound,
            showscale=False,
            hovertemplate="%{customdata}<br>q×k[%{x}] = %{z:.3f}<extra></extra>",
        ),
        row=2,
        col=2,
    )
    figure.add_trace(
        go.Bar(
            x=np.where(visible, scores, 0.0),
            y=rows,
            orientation="h",
            customdata=labels,
            marker_color=["#4c78a8" if v else "#ccc" for v in visible],
            showlegend=False,
            hovertemplate="%{customdata}: %{x:.3f}<extra></extra>",
        ),
        row=2,
        col=3,
    )
    figure.add_trace(
        go.Bar(
            x=weights,
            y=rows,
            orientation="h",
            marker_color="#f58518",
            customdata=labels,
            hovertemplate="%{customdata}: %{x:.3f}<extra></extra>",
            showlegend=False,
        ),
        row=2,
        col=4,
    )
    for col in (1, 2, 3, 4):
        figure.update_yaxes(
            range=[len(rows) - 0.5, -0.5],
            tickvals=rows,
            ticktext=labels,
            showticklabels=col == 1,
            row=2,
            col=col,
        )
    figure.update_yaxes(showticklabels=False, row=1, col=2)
    figure.update_xaxes(showticklabels=False, row=1, col=2)
    masked = "" if visible.all() else " · grey: masked keys"
    figure.update_layout(
        title=title + masked,
        height=24 * len(key_tokens) + 230,
        width=1000,
        plot_bgcolor="#f4f4f4",
        margin={"t": 100},
    )
    return figure


def _titled(name: str | None, title: str) -> str:
    """``"gpt2 (random stand-in) · layer 3 · head 1"``: the title, after what the data comes from."""
    return f"{name} · {title}" if name else title


# From a model or a cache ------------------------------------------------------------------------------


def _score_scale(model) -> float | None:
    """The factor the model's first attention layer multiplies q·k by (None: 1/sqrt(d_head), the default)."""
    for module in model.modules():
        scale = getattr(module, "scale", None)
        if hasattr(module, "hook_pattern") and isinstance(scale, float):
            return scale
    return None


_KINDS = {"head": attention_heads, "model": model_view, "matrix": attention_matrix, "neuron": neuron_view}


def attention(source, inputs=None, view: str = "head", batch: int = 0, tokens=None, **options) -> View:
    """An attention view of a model's run: ``attention(model, "some text")`` or ``attention(cache)``.

    Args:
        source: a workbench model (with ``inputs``) or an :class:`~workbench.ActivationCache` holding
            ``attn.hook_pattern`` for every layer (and ``attn.hook_q``/``hook_k`` for the neuron view).
        view: ``"head"``, ``"model"``, ``"matrix"`` or ``"neuron"``.
        batch: which sequence of a batch.
        tokens: the token strings, when the cache has none (a model without a tokenizer run on ids). When
            there are more keys than tokens (a memory), the extra keys come first, labelled ``[mem i]``.
        **options: passed to the view (``layer=``, ``head=``, ``heads=``, ``query=``, ``name=``). From a
            model, ``name`` defaults to its label (``wb.zoo.display_name``: "gpt2 (random stand-in)" for a
            stand-in), so every title says which model it shows.
    """
    check_choice(view, list(_KINDS), "view")
    cache = source
    if hasattr(source, "run_with_cache"):
        if inputs is None:
            raise ValueError("attention(model, inputs): give the text (or token ids) to run the model on")
        wanted = (
            ("attn.hook_pattern", "attn.hook_q", "attn.hook_k", "attn.hook_rot_q", "attn.hook_rot_k")
            if view == "neuron"
            else ("attn.hook_pattern",)
        )
        _, cache = source.run_with_cache(inputs, names_filter=lambda name: name.endswith(wanted))
        if view == "neuron":  # after the run, so that a scale an attention module records as it runs is read
            options.setdefault("scale", _score_scale(source))
        from ..zoo import display_name

        options.setdefault("name", display_name(source))
    elif inputs is not None:
        raise ValueError("attention(cache) takes no inputs: the cache already holds a run")
    tokens = cache.tokens if tokens is None else tokens
    if tokens is None:
        raise ValueError("the cache has no token strings (the model had no tokenizer); pass tokens=[...]")
    if tokens and not isinstance(tokens[0], str):
        check_choice(batch, range(len(tokens)), "batch")
        tokens = tokens[batch]
    patterns = cache.stack("attn.hook_pattern")[:, batch]
    extra = patterns.shape[-1] - len(tokens)
    if extra > 0 and "key_tokens" not in options:
        # Keys before the queries: a memory of earlier segments (Transformer-XL) or cached positions.
        options["key_tokens"] = [f"[mem {i}]" for i in range(extra)] + list(tokens)
    if view == "neuron":
        # A rotary model scores the rotated queries and keys.
        rotated = any(name.endswith("attn.hook_rot_q") for name in cache.keys())
        q_name, k_name = ("attn.hook_rot_q", "attn.hook_rot_k") if rotated else ("attn.hook_q", "attn.hook_k")
        q, k = cache.stack(q_name)[:, batch], cache.stack(k_name)[:, batch]
        return neuron_view(q, k, tokens, patterns=patterns, **options)
    return _KINDS[view](tokens, patterns, **options)
