"""What every view shares: the :class:`View` object, input checks that name the mismatch, and figure helpers.

A view is two renderings of the same state: a live ipywidgets widget (selectors + plotly ``FigureWidget``s,
for JupyterLab) and a static HTML fragment (plotly figures without plotly.js, plain HTML for text views) that
an exported notebook draws offline once :func:`workbench.viz.export.notebook_to_html` puts plotly.js on the
page, once. ``_repr_mimebundle_`` hands both to Jupyter: a live front end shows the widget, an export keeps
the HTML.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

# The marker the exporter looks for: an output holding it needs plotly.js on the page.
VIEW_CLASS = "wb-view"
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#393b79",
    "#637939",
    "#8c6d31",
    "#843c39",
    "#7b4173",
    "#3182bd",
)
_ids = itertools.count()


class View:
    """A view of some data: ``.widget`` for JupyterLab, ``.to_html()`` / ``.figure()`` for everything else.

    Attributes:
        kind: what the view shows (``"head_view"``, ``"attention_matrix"``...), written into its HTML.
        widget: the live ipywidgets widget (controls above the figures).
        controls: name -> the selector widgets; setting ``controls["layer"].value`` redraws the figures.
        figure_widgets: the live plotly ``FigureWidget``s, in display order.
    """

    def __init__(
        self,
        kind: str,
        widget,
        static_parts: Callable[[], Sequence[Any]],
        controls: dict[str, Any] | None = None,
        figure_widgets: Sequence[Any] = (),
        caption: Callable[[], str] | None = None,
    ) -> None:
        self.kind = kind
        self.widget = widget
        self.controls = dict(controls or {})
        self.figure_widgets = list(figure_widgets)
        self._static_parts = static_parts
        self._caption = caption

    def figures(self) -> list:
        """The current figures as plain ``plotly.graph_objects.Figure`` copies."""
        import plotly.graph_objects as go

        return [go.Figure(part) for part in self._static_parts() if _is_figure(part)]

    def figure(self, index: int = 0):
        """The ``index``-th current figure (a ``plotly.graph_objects.Figure``)."""
        figures = self.figures()
        if not figures:
            raise ValueError(f"the {self.kind} view draws HTML, not a plotly figure; use to_html()")
        return figures[index]

    def to_html(self, full_html: bool = False) -> str:
        """The view as static HTML: a ``<div class="wb-view">`` fragment without plotly.js (the page loads it
        once), or with ``full_html=True`` a whole page with plotly.js inlined, which draws offline."""
        parts = []
        if self._caption is not None:
            parts.append(f'<div class="wb-caption">{html.escape(self._caption())}</div>')
        for part in self._static_parts():
            parts.append(figure_html(part) if _is_figure(part) else str(part))
        fragment = f'<div class="{VIEW_CLASS}" data-wb-view="{self.kind}">{STYLE}{"".join(parts)}</div>'
        if not full_html:
            return fragment
        from plotly.offline import get_plotlyjs

        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{get_plotlyjs()}</script></head>"
            f"<body>{fragment}</body></html>"
        )

    def show(self) -> None:
        """Display the view in the notebook (the live widget, with the static HTML as fallback)."""
        from IPython.display import display

        display(self)

    def _repr_mimebundle_(self, include=None, exclude=None) -> dict:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude) or {}
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        data = dict(data)
        data["text/html"] = self.to_html()
        data["text/plain"] = repr(self)
        return data

    def __repr__(self) -> str:
        return f"<workbench.viz {self.kind} view>"


STYLE = (
    "<style>.wb-view{font-family:sans-serif;margin:4px 0}.wb-caption{color:#555;font-size:12px;margin:2px 0}"
    ".wb-token-rows td{padding:2px 6px;vertical-align:top}.wb-token{white-space:pre;padding:1px 2px;margin:1px;"
    "border-radius:3px;display:inline-block;font-family:monospace}.wb-method{font-weight:bold;font-size:12px}"
    "</style>"
)


def _is_figure(part) -> bool:
    return hasattr(part, "to_plotly_json")


def figure_html(figure) -> str:
    """A plotly figure as an HTML fragment that needs plotly.js on the page (never a CDN link)."""
    import plotly.graph_objects as go
    import plotly.io as pio

    return pio.to_html(
        go.Figure(figure),
        full_html=False,
        include_plotlyjs=False,
        div_id=f"wb-plot-{next(_ids)}",
        config={"displaylogo": False, "responsive": True},
    )


def replace_figure(widget, figure) -> None:
    """Redraw a live ``FigureWidget`` with the traces and layout of ``figure`` (non-finite numbers as gaps,
    see :func:`json_safe_figure`)."""
    figure = json_safe_figure(figure)
    with widget.batch_update():
        widget.data = ()
        widget.add_traces(list(figure.data))
        widget.layout = figure.layout


def figure_widget(figure):
    """A live ``FigureWidget`` of ``figure``, whose state is valid JSON (see :func:`json_safe_figure`)."""
    import plotly.graph_objects as go

    return go.FigureWidget(json_safe_figure(figure))


def json_safe_figure(figure):
    """``figure`` with every NaN or ±inf replaced by None, which plotly draws as a gap.

    A widget's state travels to the front end as JSON, which has no NaN: plotly leaves NaN in the state of a
    ``FigureWidget`` (masked cells of an attention heatmap, a missing control score), and the kernel then
    prints "Message serialization failed ... Out of range float values are not JSON compliant" under the
    cell. Arrays without such values are kept as they are.
    """
    import plotly.graph_objects as go

    return go.Figure(_finite_or_none(go.Figure(figure).to_plotly_json()), skip_invalid=False)


def _finite_or_none(value):
    if isinstance(value, dict) and _is_typed_array(value):
        return _finite_or_none(_decode_typed_array(value))
    if isinstance(value, dict):
        return {key: _finite_or_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(item) for item in value]
    if isinstance(value, np.ndarray):
        if value.dtype.kind == "f" and np.isfinite(value).all():
            return value
        if value.dtype.kind in "fO":
            return _finite_or_none(value.tolist())
        return value
    if isinstance(value, (float, np.floating)) and not np.isfinite(value):
        return None
    return value


def _is_typed_array(value: dict) -> bool:
    """Whether ``value`` is plotly's JSON form of a numpy array (``{"dtype": "f8", "bdata": ..., "shape": ...}``)."""
    return "bdata" in value and "dtype" in value and set(value) <= {"dtype", "bdata", "shape"}


def _decode_typed_array(value: dict) -> np.ndarray:
    # Back to the array, so a widget's traces hold arrays (trace.y.sum() works) as they did before encoding.
    import base64

    array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
    shape = value.get("shape")
    if shape:
        array = array.reshape([int(size) for size in str(shape).split(",")])
    return array.copy()


# Input checks ----------------------------------------------------------------------------------------


def as_array(value, name: str, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """A float numpy array from a tensor, array or nested list; ``ndim`` checks the number of dimensions."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be numeric (a tensor, an array or nested lists): {error}") from None
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and array.ndim not in allowed:
        wanted = " or ".join(str(n) for n in allowed)
        raise ValueError(f"{name} must have {wanted} dimensions, got shape {tuple(array.shape)}")
    return array


def check_tokens(tokens, name: str = "tokens") -> list[str]:
    if (
        isinstance(tokens, str)
        or not isinstance(tokens, Sequence)
        or (tokens and not isinstance(tokens[0], str))
    ):
        raise ValueError(
            f"{name} must be a list of token strings (one sequence), got {type(tokens).__name__}"
            + (f" of {type(tokens[0]).__name__}" if isinstance(tokens, Sequence) and tokens else "")
        )
    if not tokens:
        raise ValueError(f"{name} is empty")
    return list(tokens)


def check_length(actual: int, what: str, tokens: Sequence[str], name: str = "tokens") -> None:
    """Raise "``what`` (with ``{n}`` = actual) but tokens has N" when ``actual != len(tokens)``."""
    if actual != len(tokens):
        raise ValueError(f"{what.format(n=actual)} but {name} has {len(tokens)}")


def check_choice(value, choices: Sequence, name: str):
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not available; choose one of {list(choices)}")
    return value


def label_tokens(tokens: Sequence[str]) -> list[str]:
    """Unique axis labels (plotly merges equal category labels): ``"3: the"``."""
    return [f"{i}: {token}" for i, token in enumerate(tokens)]
