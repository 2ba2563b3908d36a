"""A dashboard of one sparse-dictionary feature (Neuronpedia-style): the distribution of its activations, its
top-activating tokens in context coloured by activation, and its direct logit effects.

Every part says what data it shows: the model the dictionary was trained on (``"gpt2 (random stand-in)"``
for a stand-in, as ``wb.zoo.display_name`` labels it), the hook point, and the texts searched (``data``,
``split``, how many texts and tokens).

:func:`feature_comparison` shows a :class:`workbench.sae.FeatureComparison` (the dictionaries of several
models correlated on the same words): a model-pair selector, the histogram of best-match correlations, a
scatter of each feature's firing frequency against its best match, and the best- and least-matched features
with their top words; every title names the models and the words compared.
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


# Comparing the dictionaries of several models ---------------------------------------------------------------
def _pair_options(comparison) -> list[tuple[str, tuple[str, str]]]:
    return [(f"{a} -> {b}", (a, b)) for a, b in comparison.pairs]


def best_match_histogram(comparison, a: str, b: str, bins: int = 20):
    """A bar chart of the best-match correlations of ``a``'s alive features in ``b``, the threshold marked."""
    import plotly.graph_objects as go

    matches = comparison.matches(a, b)
    values = matches["correlation"].to_numpy(float)
    counts, edges = np.histogram(values, bins=bins, range=(min(0.0, values.min(initial=0.0)), 1.0))
    figure = go.Figure(
        go.Bar(
            x=(edges[:-1] + edges[1:]) / 2,
            y=counts,
            width=np.diff(edges),
            marker_color="#1f77b4",
            hovertemplate="correlation %{x:.3g}<br>features %{y}<extra></extra>",
        )
    )
    figure.add_vline(x=comparison.threshold, line_dash="dash", line_color="#d62728")
    alive, n = int(comparison.alive[a].sum()), comparison.d_sae[a]
    shared = int(matches["shared"].sum())
    figure.update_layout(
        title=(
            f"best-match correlation of {comparison.labels[a]}'s features in {comparison.labels[b]}<br>"
            f"<sup>{comparison.describe_data()}; {alive} of {n} features alive ({n - alive} dead, left out); "
            f"{shared} shared (>= {comparison.threshold:g}, dashed)</sup>"
        ),
        xaxis_title="best-match correlation",
        yaxis_title="features",
        height=360,
        width=760,
    )
    return figure


def match_scatter(comparison, a: str, b: str):
    """Each alive feature of ``a``: how often it fires (x, log) against its best-match correlation (y),
    shared and unique in two colours; hover names its match and both features' top words."""
    import plotly.graph_objects as go

    matches = comparison.matches(a, b)
    figure = go.Figure()
    for shared, name, colour in ((True, "shared", "#2ca02c"), (False, "unique", "#7f7f7f")):
        part = matches[matches["shared"] == shared]
        figure.add_trace(
            go.Scatter(
                x=part["frequency"],
                y=part["correlation"],
                mode="markers",
                name=name,
                marker={"color": colour, "size": 6},
                customdata=np.stack(
                    [
                        part["feature"],
                        part["match"],
                        part["top_words"].fillna(""),
                        part["match_top_words"].fillna(""),
                    ],
                    axis=-1,
                )
                if len(part)
                else None,
                hovertemplate=(
                    f"{html.escape(a)} feature %{{customdata[0]}} (%{{customdata[2]}})<br>"
                    f"{html.escape(b)} feature %{{customdata[1]}} (%{{customdata[3]}})<br>"
                    "correlation %{y:.3f}, fires on %{x:.2%} of words<extra></extra>"
                ),
            )
        )
    figure.update_layout(
        title=(
            f"{comparison.labels[a]}'s features and their best match in {comparison.labels[b]}<br>"
            f"<sup>{comparison.describe_data()}</sup>"
        ),
        xaxis={"title": "fraction of words the feature fires on", "type": "log"},
        yaxis_title="best-match correlation",
        height=400,
        width=760,
    )
    return figure


def matches_html(comparison, a: str, b: str, rows: int = 15) -> str:
    """The ``rows`` best-matched feature pairs and the ``rows`` least-matched features of ``a``, with the
    words each fires on most."""
    matches = comparison.matches(a, b)

    def table(part, heading: str) -> str:
        lines = [
            f"<tr><td>{int(r.feature)}</td><td>{html.escape(str(r.top_words or ''))}</td><td>{int(r.match)}</td>"
            f"<td>{html.escape(str(r.match_top_words or ''))}</td><td>{r.correlation:.3f}</td></tr>"
            for r in part.itertuples()
        ]
        head = (
            f"<tr><th>{html.escape(a)} feature</th><th>top words</th><th>{html.escape(b)} match</th>"
            f"<th>top words</th><th>correlation</th></tr>"
        )
        return f"<div><b>{heading}</b></div><table class='wb-token-rows'>{head}{''.join(lines)}</table>"

    if matches.empty:
        return f"<div>no alive features of {html.escape(a)} (or of {html.escape(b)}) on these words</div>"
    best = table(matches.head(rows), f"best-matched features of {html.escape(comparison.labels[a])}")
    worst = table(matches.tail(rows).iloc[::-1], f"least-matched (most {html.escape(a)}-specific) features")
    return STYLE + best + worst


def feature_comparison(
    comparison, pair: tuple[str, str] | None = None, rows: int = 15, bins: int = 20
) -> View:
    """The dictionaries of several models compared (``workbench.sae.compare``): pick a pair of models, see
    the histogram of best-match correlations, a scatter of every feature's firing frequency against its
    best-match correlation, and tables of the best- and least-matched features with their top words.

    Args:
        comparison: a :class:`workbench.sae.FeatureComparison`.
        pair: ``(a, b)``, the pair shown first (a's features matched into b); default the first pair.
        rows: rows in each table; bins: histogram bins.
    """
    import ipywidgets as widgets

    if not hasattr(comparison, "matches") or not hasattr(comparison, "pairs"):
        raise ValueError(
            f"comparison must be what workbench.sae.compare returns, got {type(comparison).__name__}"
        )
    options = _pair_options(comparison)
    first = tuple(pair) if pair is not None else options[0][1]
    check_choice(first, [value for _, value in options], "pair")
    controls = {"pair": widgets.Dropdown(options=options, value=first, description="models")}

    def figures():
        a, b = controls["pair"].value
        return [best_match_histogram(comparison, a, b, bins), match_scatter(comparison, a, b)]

    def text() -> str:
        return matches_html(comparison, *controls["pair"].value, rows=rows)

    live = [figure_widget(figure) for figure in figures()]
    output = widgets.HTML(text())

    def redraw(_):
        for widget, figure in zip(live, figures()):
            replace_figure(widget, figure)
        output.value = text()

    controls["pair"].observe(redraw, names="value")
    widget = widgets.VBox([controls["pair"], *live, output])

    def caption() -> str:
        a, b = controls["pair"].value
        return f"{comparison.labels[a]} vs {comparison.labels[b]}: {comparison.describe_data()}"

    view = View("feature_comparison", widget, lambda: [*figures(), text()], controls, live, caption=caption)
    view.output = output
    return view
