"""Hidden-state views: a 2-D projection of token (or word) representations coloured by a label, and the
logit-lens table of a language model.

Projection: PCA (always; centred SVD) or UMAP (when the ``umap-learn`` package is installed), of one layer
at a time; hover shows each point's token and sentence.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ._base import PALETTE, View, as_array, check_choice, figure_widget, label_tokens, replace_figure


def projection_methods() -> list[str]:
    """``["pca"]``, plus ``"umap"`` when umap-learn is installed."""
    return ["pca"] + (["umap"] if importlib.util.find_spec("umap") is not None else [])


def pca_2d(x: np.ndarray) -> np.ndarray:
    """[n, d] -> [n, 2]: the projection on the two leading principal components (signs fixed for stability)."""
    centred = x - x.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    components = vt[:2]
    signs = np.sign(components[np.arange(len(components)), np.abs(components).argmax(1)])
    projected = centred @ (components * signs[:, None]).T
    return projected if projected.shape[1] == 2 else np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))


def project(x: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    if method == "pca":
        return pca_2d(x)
    import umap

    return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)


def projection_figure(points: np.ndarray, labels: Sequence[str], hover: Sequence[str], title: str):
    import plotly.graph_objects as go

    figure = go.Figure()
    order = [label for label, _ in Counter(labels).most_common()]
    labels_array = np.asarray(labels, dtype=object)
    hover_array = np.asarray(hover, dtype=object)
    for i, label in enumerate(order):
        rows = np.flatnonzero(labels_array == label)
        figure.add_trace(
            go.Scattergl(
                x=points[rows, 0],
                y=points[rows, 1],
                mode="markers",
                name=str(label),
                marker={"size": 6, "color": PALETTE[i % len(PALETTE)], "opacity": 0.75},
                hovertext=hover_array[rows],
                hovertemplate="%{hovertext}<extra>" + str(label) + "</extra>",
            )
        )
    figure.update_layout(
        title=title, height=560, width=760, xaxis_title="component 1", yaxis_title="component 2"
    )
    return figure


def projection(
    reps,
    labels: Sequence | None = None,
    hover: Sequence[str] | None = None,
    layer: int = 0,
    method: str = "pca",
    layer_names: Sequence[str] | None = None,
    seed: int = 0,
    name: str | None = None,
) -> View:
    """A 2-D projection of representations, one colour per label, with a layer and a method selector.

    Args:
        reps: [n, d] (one layer) or [layer, n, d].
        labels: n labels (e.g. UPOS tags); None colours every point the same.
        hover: n strings shown on hover (e.g. ``"keys — The keys to the cabinet..."``).
        method: ``"pca"`` or ``"umap"`` (needs umap-learn).
        name: what the representations are (the model and the data), shown in the title.
    """
    import ipywidgets as widgets

    reps = as_array(reps, "reps", (2, 3))
    reps = reps[None] if reps.ndim == 2 else reps
    n = reps.shape[1]
    if n < 3:
        raise ValueError(f"reps has {n} points; a projection needs at least 3")
    labels = ["all"] * n if labels is None else [str(label) for label in labels]
    if len(labels) != n:
        raise ValueError(f"labels has {len(labels)} entries but reps has {n} points")
    hover = [f"point {i}" for i in range(n)] if hover is None else [str(h) for h in hover]
    if len(hover) != n:
        raise ValueError(f"hover has {len(hover)} entries but reps has {n} points")
    names = [str(i) for i in range(reps.shape[0])] if layer_names is None else [str(x) for x in layer_names]
    if len(names) != reps.shape[0]:
        raise ValueError(f"layer_names has {len(names)} names but reps has {reps.shape[0]} layers")
    check_choice(layer, range(reps.shape[0]), "layer")
    check_choice(method, projection_methods(), "method")
    controls = {
        "layer": widgets.Dropdown(
            options=[(f"layer {name}", i) for i, name in enumerate(names)], value=layer, description="layer"
        ),
        "method": widgets.Dropdown(options=projection_methods(), value=method, description="method"),
    }
    computed: dict[tuple[int, str], np.ndarray] = {}

    def build():
        key = (controls["layer"].value, controls["method"].value)
        if key not in computed:
            computed[key] = project(reps[key[0]], key[1], seed)
        title = f"{key[1].upper()} of layer {names[key[0]]} ({n} points)"
        return projection_figure(computed[key], labels, hover, f"{name} · {title}" if name else title)

    live = figure_widget(build())
    for control in controls.values():
        control.observe(lambda _: replace_figure(live, build()), names="value")
    widget = widgets.VBox([widgets.HBox(list(controls.values())), live])
    return View("projection", widget, lambda: [build()], controls, [live])


# Logit lens ---------------------------------------------------------------------------------------------


def lens_figure(lens, target_id: int | None, k: int, batch: int = 0, name: str | None = None):
    """Layers × positions: cell text = the top token, colour = its probability (or the target's), hover = top k.
    ``name``: the model's label (default: from ``lens.model``, ``wb.zoo.display_name``), in the title."""
    from ..zoo import display_name

    if name is None and getattr(lens, "model", None) is not None:
        name = display_name(lens.model)
    import plotly.graph_objects as go

    probs = lens.probabilities(batch).cpu().numpy()  # [layer + 1, pos, vocab]
    top = np.argsort(-probs, axis=-1)[..., :k]
    text = [
        [lens._token_text(int(top[layer, pos, 0])) for pos in range(probs.shape[1])]
        for layer in range(probs.shape[0])
    ]
    hover = [
        [
            "<br>".join(f"{lens._token_text(int(i))!r}: {probs[layer, pos, i]:.3f}" for i in top[layer, pos])
            for pos in range(probs.shape[1])
        ]
        for layer in range(probs.shape[0])
    ]
    if target_id is None:
        z, title = (
            np.take_along_axis(probs, top[..., :1], -1)[..., 0],
            "logit lens: top token per layer (colour: its probability)",
        )
    else:
        z = probs[..., target_id]
        title = f"logit lens: probability of {lens._token_text(target_id)!r} per layer (text: top token)"
    tokens = lens.tokens[batch] if lens.tokens else [str(i) for i in range(probs.shape[1])]
    figure = go.Figure(
        go.Heatmap(
            z=z,
            x=label_tokens(tokens),
            y=lens.layer_names,
            text=text,
            texttemplate="%{text}",
            customdata=hover,
            colorscale="Blues",
            zmin=0,
            zmax=1,
            colorbar={"title": "p"},
            hovertemplate="layer %{y} · input %{x}<br>%{customdata}<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"{name} · {title}" if name else title,
        xaxis_title="input position (predicting the next token)",
        yaxis_title="layer",
        height=34 * len(lens.layer_names) + 220,
        width=max(600, 70 * len(tokens) + 200),
        xaxis={"tickangle": -45},
    )
    return figure


def logit_lens_table(
    source, inputs=None, k: int = 5, target: str | int | None = None, batch: int = 0
) -> View:
    """The logit lens as a table: every layer's top token at every position, with a target-token box.

    Args:
        source: a :class:`~workbench.LogitLens`, or a model with a language-modelling head (then ``inputs``).
        k: candidates listed on hover; target: colour cells by this token's probability instead.

    The view's ``frame`` is the tidy top-k DataFrame (``LogitLens.top_k``).
    """
    import ipywidgets as widgets

    from ..lens import LogitLens, logit_lens

    if isinstance(source, LogitLens):
        if inputs is not None:
            raise ValueError("logit_lens_table(lens) takes no inputs: the lens already holds a run")
        lens = source
    else:
        if inputs is None:
            raise ValueError("logit_lens_table(model, inputs): give the text to read")
        lens = logit_lens(source, inputs)
    check_choice(batch, range(lens.states.shape[1]), "batch")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    target_id = None if target is None else lens._token_id(target)
    controls = {
        "target": widgets.Text(
            value="" if target is None else str(target),
            description="target",
            placeholder="a token, e.g. ' Paris'",
            continuous_update=False,
        )
    }
    message = widgets.HTML("")
    state = {"target": target_id}

    def build():
        return lens_figure(lens, state["target"], k, batch)

    live = figure_widget(build())

    def on_target(change):
        value = change["new"]
        try:
            state["target"] = lens._token_id(value) if value else None
            message.value = ""
        except ValueError as error:
            message.value = f"<span style='color:#b00'>{error}</span>"
            return
        replace_figure(live, build())

    controls["target"].observe(on_target, names="value")
    widget = widgets.VBox([widgets.HBox([controls["target"], message]), live])
    view = View("logit_lens", widget, lambda: [build()], controls, [live])
    view.frame = lens.top_k(k, batch=batch)
    view.lens = lens
    return view
