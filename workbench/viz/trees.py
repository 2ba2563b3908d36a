"""Dependency trees drawn as arcs over a sentence: the gold tree above the words, a predicted one below.

The distance probe of Hewitt & Manning (2019) predicts an undirected tree (the minimum spanning tree of its
predicted distances); this view puts it under the gold tree, so the arcs it found (green) and missed (the
gold arcs above with no green twin; the red ones below are arcs that are not in the gold tree) are seen at a
glance.

>>> import numpy as np
>>> gold = np.zeros((3, 3), bool); gold[0, 1] = gold[1, 0] = gold[1, 2] = gold[2, 1] = True
>>> view = dependency_tree(["a", "small", "tree"], gold, gold, data="an example")
>>> view.found, view.n_arcs
(2, 2)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._base import View

GOLD_COLOUR = "#1f77b4"
FOUND_COLOUR = "#2ca02c"
WRONG_COLOUR = "#d62728"
_ARC_POINTS = 30


def _edges(name: str, edges, n_words: int) -> np.ndarray:
    """``edges`` ([word, word] adjacency, any array-like of bools or 0/1) as a checked symmetric bool array."""
    array = np.asarray(edges.cpu() if hasattr(edges, "cpu") else edges)
    if array.shape != (n_words, n_words):
        raise ValueError(
            f"{name} must be a [word, word] adjacency of shape ({n_words}, {n_words}) for the "
            f"{n_words} words, got shape {array.shape}"
        )
    array = array.astype(bool)
    if not np.array_equal(array, array.T):
        raise ValueError(f"{name} must be symmetric (undirected arcs): [i, j] and [j, i] differ somewhere")
    if np.diagonal(array).any():
        raise ValueError(f"{name} has a word attached to itself (a true diagonal entry)")
    return array


def arc_pairs(edges: np.ndarray) -> list[tuple[int, int]]:
    """The arcs of a symmetric adjacency as (i, j) pairs with i < j, left to right."""
    rows, cols = np.nonzero(np.triu(edges, 1))
    return list(zip(rows.tolist(), cols.tolist()))


def _arc(i: int, j: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """A half ellipse from word i to word j, above the words (side 1) or below (side -1)."""
    t = np.linspace(0.0, np.pi, _ARC_POINTS)
    x = (i + j) / 2 - (j - i) / 2 * np.cos(t)
    y = side * (j - i) / 2 * np.sin(t) ** 0.8
    return x, y


def tree_figure(words: Sequence[str], gold, predicted=None, title: str = "dependency tree", data: str = ""):
    """The plotly figure of :func:`dependency_tree` (same arguments)."""
    import plotly.graph_objects as go

    words = [str(w) for w in words]
    n = len(words)
    gold = _edges("gold", gold, n)
    predicted = None if predicted is None else _edges("predicted", predicted, n)
    figure = go.Figure()
    sides = [(gold, 1)] + ([] if predicted is None else [(predicted, -1)])
    legend_seen = set()
    for edges, side in sides:
        for i, j in arc_pairs(edges):
            if side == 1:
                colour, name = GOLD_COLOUR, "gold arc"
            elif gold[i, j]:
                colour, name = FOUND_COLOUR, "predicted, in gold"
            else:
                colour, name = WRONG_COLOUR, "predicted, not in gold"
            x, y = _arc(i, j, side)
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=y,
                    mode="lines",
                    line=dict(color=colour, width=2),
                    name=name,
                    legendgroup=name,
                    showlegend=name not in legend_seen,
                    hoverinfo="text",
                    text=f"{name}: {words[i]} - {words[j]}",
                )
            )
            legend_seen.add(name)
    figure.add_trace(
        go.Scatter(x=list(range(n)), y=[0] * n, mode="text", text=words, showlegend=False, hoverinfo="skip")
    )
    full_title = f"{title}<br><sup>{data}</sup>" if data else title
    figure.update_layout(
        title=full_title,
        height=420,
        width=min(1000, 140 + 70 * n),
        plot_bgcolor="white",
        xaxis=dict(visible=False),
        yaxis=dict(visible=False, zeroline=False),
        legend=dict(orientation="h", yanchor="bottom", y=-0.12),
    )
    return figure


def dependency_tree(
    words: Sequence[str], gold, predicted=None, title: str = "dependency tree", data: str = ""
) -> View:
    """A sentence's gold dependency tree as arcs above its words and, optionally, a predicted tree below.

    Predicted arcs that are in the gold tree are green, the others red.

    Args:
        words: the sentence's words, left to right (n of them).
        gold: the gold tree's arcs, an undirected [n, n] adjacency (bools, 0/1, a tensor: e.g.
            ``probes.models.minimum_spanning_tree(tree_distances(heads))``).
        predicted: the predicted tree's arcs, the same way; None draws the gold tree only.
        title: the figure's title.
        data: where the sentence comes from (data set, split, which sentence), written under the title.

    Returns:
        A :class:`View` with ``found`` (predicted arcs that are gold arcs; None without a prediction) and
        ``n_arcs`` (gold arcs).

    Raises:
        ValueError: an adjacency whose shape is not [n, n], that is not symmetric, or that links a word to
            itself.
    """
    from . import plot

    figure = tree_figure(words, gold, predicted, title=title, data=data)
    view = plot(figure, kind="dependency_tree")
    gold_edges = _edges("gold", gold, len(words))
    view.n_arcs = len(arc_pairs(gold_edges))
    view.found = None
    if predicted is not None:
        view.found = int((np.triu(_edges("predicted", predicted, len(words)), 1) & gold_edges).sum())
    return view
