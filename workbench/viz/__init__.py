"""Views for notebooks: attention, attributions, hidden states, generation and probing results.

Every view is a function taking plain data (tensors or arrays, token lists, DataFrames) or a model / cache,
that checks its input (a ``ValueError`` names the mismatch) and returns a :class:`View`: ``.widget`` (live
ipywidgets + plotly ``FigureWidget``, for JupyterLab), ``.controls`` (its selectors), ``.figure()`` /
``.to_html()`` (static, for reports and tests) and ``.show()``. Displayed in a notebook, a view carries both
renderings; :func:`export.notebook_to_html` turns an executed notebook into one HTML file that draws
offline (no CDN).

>>> from workbench import viz
>>> view = viz.attention_matrix(["a", "b"], [[[[1.0, 0.0], [0.4, 0.6]]]])
>>> view.kind
'attention_matrix'
"""

from . import export
from ._base import View
from .attention import attention, attention_heads, attention_matrix, model_view, neuron_view
from .attributions import faithfulness_curves, token_attributions
from .chat import chat
from .compare import cka, cka_matrix, compare, linear_cka
from .export import notebook_to_html
from .features import feature_comparison, feature_dashboard
from .generation import generation_explorer
from .notices import missing_checkpoints
from .probes_view import probe_results
from .representations import logit_lens_table, projection, projection_methods
from .trees import dependency_tree


def plot(figure, kind: str = "figure") -> View:
    """Any plotly figure as a :class:`View`, so it draws in an offline export too
    (``viz.plot(lens.figure())``)."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    from ._base import figure_widget

    if not hasattr(figure, "to_plotly_json"):
        raise ValueError(f"plot needs a plotly figure, got {type(figure).__name__}")
    frozen = go.Figure(figure)
    live = figure_widget(frozen)
    return View(kind, widgets.VBox([live]), lambda: [frozen], {}, [live])


__all__ = [
    "View",
    "attention",
    "attention_heads",
    "attention_matrix",
    "chat",
    "cka",
    "cka_matrix",
    "compare",
    "dependency_tree",
    "export",
    "faithfulness_curves",
    "feature_comparison",
    "feature_dashboard",
    "generation_explorer",
    "linear_cka",
    "logit_lens_table",
    "missing_checkpoints",
    "model_view",
    "neuron_view",
    "notebook_to_html",
    "plot",
    "probe_results",
    "projection",
    "projection_methods",
    "token_attributions",
]
