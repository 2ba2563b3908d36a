"""Token attribution views: the text coloured by score, one row per method, with a method selector; and
faithfulness (deletion / insertion) curves.

Colours: red for positive scores, blue for negative; each method is scaled by its own largest absolute
score (methods differ in units), so the strongest token of every row is fully coloured.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np

from ._base import STYLE, View, as_array, check_length, check_tokens, figure_widget, replace_figure

CURVE_COLUMNS = ("method", "text_index", "curve", "fraction", "value")


def _colour(score: float, scale: float) -> str:
    strength = 0.0 if scale == 0 else min(abs(score) / scale, 1.0)
    red, green, blue = (214, 39, 40) if score >= 0 else (31, 119, 180)
    return f"rgba({red},{green},{blue},{0.85 * strength:.3f})"


def token_rows_html(tokens: Sequence[str], scores: Mapping[str, np.ndarray]) -> str:
    """An HTML table: one row per method, each token a span coloured by its score (hover: the score)."""
    rows = []
    for method, values in scores.items():
        scale = float(np.abs(values).max()) if len(values) else 0.0
        spans = "".join(
            f'<span class="wb-token" style="background:{_colour(v, scale)}" title="{html.escape(t)}: {v:.4g}">'
            f"{html.escape(t)}</span>"
            for t, v in zip(tokens, values.tolist())
        )
        rows.append(f'<tr><td class="wb-method">{html.escape(method)}</td><td>{spans}</td></tr>')
    # The style travels with the rows: an ipywidgets HTML widget shows them outside a .wb-view.
    return f'{STYLE}<table class="wb-token-rows">{"".join(rows)}</table>'


def token_attributions(
    tokens, scores=None, methods: Sequence[str] | None = None, index: int = 0, name: str | None = None
) -> View:
    """Text coloured by attribution score, one row per method, with a method selector.

    Args:
        tokens: token strings, or a :class:`~workbench.attribution.Attribution` (then ``scores`` is None and
            ``index`` picks the sequence; padding is dropped).
        scores: method -> [pos] scores (tensors, arrays or lists), one per token.
        methods: the methods shown first (default all).
        name: the model the scores come from (``wb.zoo.display_name(model)``: a random stand-in reads
            "gpt2 (random stand-in)"), shown above the rows.

    >>> view = token_attributions(["a", "b"], {"saliency": [0.1, 0.9]})
    >>> view.controls["methods"].value
    ('saliency',)
    """
    import ipywidgets as widgets

    if hasattr(tokens, "scores") and hasattr(tokens, "attention_mask"):
        if scores is not None:
            raise ValueError(
                "token_attributions(attribution): the scores come from the Attribution; pass no scores"
            )
        frame = tokens.to_frame(index)
        tokens, scores = list(frame["token"]), {m: frame[m].to_numpy() for m in frame.columns if m != "token"}
    tokens = check_tokens(tokens)
    if not isinstance(scores, Mapping) or not scores:
        raise ValueError("scores must be a non-empty mapping method -> [pos] scores")
    arrays = {}
    for method, values in scores.items():
        array = as_array(values, f"scores[{method!r}]", (1, 2))
        if array.ndim == 2:
            if array.shape[0] != 1:
                raise ValueError(f"scores[{method!r}] has a batch of {array.shape[0]}; pass one sequence")
            array = array[0]
        check_length(len(array), f"scores[{method!r}] has {{n}} positions", tokens)
        arrays[str(method)] = array
    methods = list(arrays) if methods is None else list(methods)
    unknown = [m for m in methods if m not in arrays]
    if unknown:
        raise ValueError(f"methods {unknown} have no scores; scores has {list(arrays)}")
    controls = {
        "methods": widgets.SelectMultiple(
            options=list(arrays), value=tuple(methods), description="methods", rows=min(len(arrays), 6)
        )
    }

    def build() -> str:
        rows = token_rows_html(tokens, {m: arrays[m] for m in arrays if m in controls["methods"].value})
        return f"<div><b>model</b>: {html.escape(name)}</div>{rows}" if name else rows

    output = widgets.HTML(build())
    controls["methods"].observe(lambda _: setattr(output, "value", build()), names="value")
    view = View(
        "token_attributions", widgets.VBox([controls["methods"], output]), lambda: [build()], controls
    )
    view.output = output
    return view


def curves_figure(curves, text_index: int, methods: Sequence[str], aopc: Mapping | None = None):
    """Deletion and insertion curves side by side, one line per method (tidy ``curves`` DataFrame)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    figure = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=["deletion (falls fast = faithful)", "insertion (rises fast = faithful)"],
    )
    data = curves[curves["text_index"] == text_index]
    all_methods = list(dict.fromkeys(curves["method"]))
    for method in methods:
        colour = _method_colour(all_methods.index(method))
        label = method
        if aopc and (method, "deletion") in aopc:
            label = (
                f"{method} (AOPC del {aopc[(method, 'deletion')]:.3f}, ins {aopc[(method, 'insertion')]:.3f})"
            )
        for col, curve in enumerate(("deletion", "insertion"), start=1):
            rows = data[(data["method"] == method) & (data["curve"] == curve)].sort_values("fraction")
            line = {"color": colour, "dash": "dot" if method == "random" else "solid"}
            figure.add_trace(
                go.Scatter(
                    x=rows["fraction"],
                    y=rows["value"],
                    mode="lines+markers",
                    name=label,
                    legendgroup=method,
                    showlegend=col == 1,
                    line=line,
                ),
                row=1,
                col=col,
            )
    figure.update_xaxes(title_text="fraction of tokens changed")
    figure.update_yaxes(title_text="target", col=1)
    figure.update_layout(
        height=420, width=980, title=f"faithfulness of attribution methods (input {text_index})"
    )
    return figure


def _method_colour(index: int) -> str:
    from ._base import PALETTE

    return PALETTE[index % len(PALETTE)]


def faithfulness_curves(
    result, text_index: int = 0, methods: Sequence[str] | None = None, name: str | None = None
) -> View:
    """Deletion / insertion curves per method, with selectors for the input and the methods.

    Args:
        result: a :class:`~workbench.attribution.FaithfulnessResult` (``wb.attribution.evaluate(...)``) or its
            tidy ``curves`` DataFrame (columns method, text_index, curve, fraction, value).
        name: the model the curves come from (``wb.zoo.display_name(model)``), shown in the title.
    """
    import ipywidgets as widgets
    import pandas as pd

    curves = result.curves if hasattr(result, "curves") else result
    if not isinstance(curves, pd.DataFrame):
        raise ValueError(
            f"result must be a FaithfulnessResult or a curves DataFrame, got {type(result).__name__}"
        )
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise ValueError(f"the curves DataFrame lacks columns {missing}; it has {list(curves.columns)}")
    aopc = {}
    if hasattr(result, "frame"):
        for row in result.frame.itertuples():
            if row.text_index == text_index:
                aopc[(row.method, "deletion")] = row.deletion_aopc
                aopc[(row.method, "insertion")] = row.insertion_aopc
    all_methods = list(dict.fromkeys(curves["method"]))
    texts = sorted(set(curves["text_index"].tolist()))
    if text_index not in texts:
        raise ValueError(f"text_index {text_index} is not in the curves; they hold inputs {texts}")
    methods = all_methods if methods is None else list(methods)
    unknown = [m for m in methods if m not in all_methods]
    if unknown:
        raise ValueError(f"methods {unknown} have no curves; the curves hold {all_methods}")
    controls = {
        "text_index": widgets.Dropdown(options=texts, value=text_index, description="input"),
        "methods": widgets.SelectMultiple(
            options=all_methods, value=tuple(methods), description="methods", rows=min(len(all_methods), 6)
        ),
    }

    def build():
        index = controls["text_index"].value
        figure = curves_figure(
            curves, index, controls["methods"].value, aopc if index == text_index else None
        )
        if name:
            figure.update_layout(title=f"{name} · {figure.layout.title.text}")
        return figure

    live = figure_widget(build())
    for control in controls.values():
        control.observe(lambda _: replace_figure(live, build()), names="value")
    widget = widgets.VBox([widgets.HBox(list(controls.values())), live])
    return View("faithfulness_curves", widget, lambda: [build()], controls, [live])
