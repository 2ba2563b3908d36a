"""A dashboard of one sparse-dictionary feature (Neuronpedia-style): the distribution of its activations, its
top-activating tokens in context coloured by activation, and its direct logit effects.

Every part says what data it shows: the model the dictionary was trained on (``"gpt2 (random stand-in)"``
for a stand-in, as ``wb.zoo.display_name`` labels it), the hook point, and the texts searched (``data``,
``split``, how many texts and tokens).
"""

from __future__ import annotations

import html

import numpy as np

from ._base import STYLE, View, check_choice, figure_widget, replace_figure

EXAMPLE_COLUMNS = ("feature", "rank", "activation", "token", "left", "right")


def _colour(value: float, scale: float) -> str:
    strength = 0.0 if scale <= 0 else min(value / scale, 1.0)
    return f"rgba(255,127,14,{0.9 * strength:.3f})"


def examples_html(rows, scale: float) -> str:
    """The top examples as HTML: one line per example, the context tokens plain and the example's token
    coloured by its activation (relative to ``scale``, the feature's largest)."""
    lines = []
    for row in rows.itertuples():
        left = "".join(f'<span class="wb-token">{html.escape(t)}</span>' for t in row.left)
        right = "".join(f'<span class="wb-token">{html.escape(t)}</span>' for t in row.right)
        token = (
            f'<span class="wb-token" style="background:{_colour(row.activation, scale)};font-weight:bold" '
            f'title="activation {row.activation:.4g}">{html.escape(row.token)}</span>'
        )
        lines.append(f"<tr><td>{row.activation:.3g}</td><td>{left}{token}{right}</td></tr>")
    if not lines:
        return "<div>no positive activation of this feature in these texts</div>"
    return (
        f'{STYLE}<table class="wb-token-rows"><tr><th>act</th><th>context</th></tr>{"".join(lines)}</table>'
    )


def histogram_figure(activations: np.ndarray, title: str, bins: int = 20):
    """A bar chart of ``np.histogram(activations, bins)`` (counts computed here, so the figure holds them)."""
    import plotly.graph_objects as go

    counts, edges = np.histogram(activations, bins=bins) if len(activations) else (np.zeros(0), np.zeros(1))
    centres = (edges[:-1] + edges[1:]) / 2
    figure = go.Figure(
        go.Bar(
            x=centres,
            y=counts,
            width=np.diff(edges),
            marker_color="#ff7f0e",
            hovertemplate="activation %{x:.3g}<br>count %{y}<extra></extra>",
        )
    )
    figure.update_layout(title=title, xaxis_title="activation", yaxis_title="count", height=320, width=760)
    return figure


def logits_figure(effects, feature: int, title: str):
    """Top (positive) and bottom (negative) direct logit effects of ``feature`` as horizontal bars."""
    import plotly.graph_objects as go

    rows = effects[effects["feature"] == feature]
    figure = go.Figure()
    for side, colour in (("bottom", "#1f77b4"), ("top", "#d62728")):
        part = rows[rows["side"] == side].sort_values("effect")
        figure.add_trace(
            go.Bar(
                x=part["effect"],
                y=[f"{t!r} ({i})" for t, i in zip(part["token"], part["token_id"])],
                orientation="h",
                name=side,
                marker_color=colour,
                hovertemplate="%{y}: %{x:.4g}<extra></extra>",
            )
        )
    figure.update_layout(title=title, xaxis_title="logit per unit activation", height=420, width=760)
    return figure


def _data_label(examples, data: str | None, split: str | None) -> str:
    """``"UD EWT (test), 40 texts, 512 tokens"``: what the examples were drawn from."""
    texts = examples.attrs.get("texts", examples["text"].nunique() if "text" in examples else None)
    tokens = examples.attrs.get("tokens")
    name = data or "texts"
    where = f"{name} ({split})" if split else name
    counts = [f"n={texts} texts"] if texts is not None else []
    counts += [f"{tokens} tokens"] if tokens is not None else []
    return ", ".join([where, *counts])


def feature_dashboard(
    dictionary,
    examples,
    feature: int,
    model=None,
    logit_effects=None,
    data: str | None = None,
    split: str | None = None,
    k: int = 10,
    bins: int = 20,
) -> View:
    """One feature of a sparse dictionary: activation histogram, top examples, logit effects.

    Args:
        dictionary: a :class:`workbench.sae.SparseAutoencoder`.
        examples: ``dictionary.top_examples(model, texts, ...)`` (its ``attrs`` say how many texts and tokens
            were searched).
        feature: the feature shown first (a selector lists the features the examples hold).
        model: the model, for logit effects when it has an unembedding (``dictionary.logit_effects``).
        logit_effects: a ``dictionary.logit_effects(...)`` frame instead of ``model``.
        data, split: the name and split of the texts (e.g. ``"UD EWT"``, ``"test"``), shown in every title.
        k: tokens per side in the logit effects; bins: histogram bins.

    The histogram counts the activations of the feature's rows in ``examples`` (the top ``n`` per feature:
    the upper tail of its distribution, not all its activations).
    """
    import ipywidgets as widgets
    import pandas as pd

    from ..zoo import display_name

    if not isinstance(examples, pd.DataFrame):
        raise ValueError(
            f"examples must be the DataFrame of dictionary.top_examples, got {type(examples).__name__}"
        )
    missing = [c for c in EXAMPLE_COLUMNS if c not in examples.columns]
    if missing:
        raise ValueError(
            f"examples lacks columns {missing} (it has {list(examples.columns)}): pass top_examples'"
        )
    features = sorted(set(examples["feature"].tolist()) | {int(feature)})
    if not 0 <= int(feature) < dictionary.cfg.d_sae:
        raise ValueError(f"feature={feature} is outside the dictionary's d_sae={dictionary.cfg.d_sae}")
    if logit_effects is None and model is not None and hasattr(model, "decode_residual"):
        logit_effects = dictionary.logit_effects(model, k=k, features=features)
    model_label = (
        display_name(model)
        if model is not None
        else (dictionary.cfg.model_name or examples.attrs.get("model_name") or "an unnamed model")
    )
    source = f"{model_label}, {dictionary.cfg.hook_name}; {_data_label(examples, data, split)}"
    controls = {"feature": widgets.Dropdown(options=features, value=int(feature), description="feature")}
    check_choice(int(feature), features, "feature")

    def rows():
        chosen = examples[examples["feature"] == controls["feature"].value]
        return chosen.sort_values("rank") if "rank" in chosen else chosen

    def figures():
        current = controls["feature"].value
        chosen = rows()
        parts = [
            histogram_figure(
                chosen["activation"].to_numpy(float),
                f"feature {current}: activations of its top {len(chosen)} examples<br><sup>{source}</sup>",
                bins,
            )
        ]
        if logit_effects is not None:
            parts.append(
                logits_figure(
                    logit_effects,
                    current,
                    f"feature {current}: direct logit effects<br><sup>{model_label}</sup>",
                )
            )
        return parts

    def text() -> str:
        chosen = rows()
        scale = float(chosen["activation"].max()) if len(chosen) else 0.0
        title = f"<div><b>feature {controls['feature'].value}</b>: top examples ({html.escape(source)})</div>"
        return title + examples_html(chosen, scale)

    live = [figure_widget(figure) for figure in figures()]
    output = widgets.HTML(text())

    def redraw(_):
        for widget, figure in zip(live, figures()):
            replace_figure(widget, figure)
        output.value = text()

    controls["feature"].observe(redraw, names="value")
    widget = widgets.VBox([controls["feature"], live[0], output, *live[1:]])
    view = View(
        "feature_dashboard",
        widget,
        lambda: [figures()[0], text(), *figures()[1:]],
        controls,
        live,
        caption=lambda: f"feature {controls['feature'].value} of {source}",
    )
    view.output = output
    return view
