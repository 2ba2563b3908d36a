"""Export an executed notebook to one self-contained HTML file that draws offline.

nbconvert's own HTML export draws widgets with ``@jupyter-widgets/html-manager`` and loads it, require.js and
MathJax from a CDN: offline, every widget stays blank. Views (:class:`workbench.viz.View`) put a static
rendering beside their live widget in each output (``text/html``: plotly figures without plotly.js, and
plain HTML). This exporter keeps that static rendering instead of the widget, drops every CDN script, and
inlines plotly.js once per page (not once per figure), so the file draws with no network.

>>> notebook_to_html("executed.ipynb", "report.html")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path

from ..pages import STYLE, plotly_script_tag
from ._base import VIEW_CLASS

logger = logging.getLogger(__name__)

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"

# Extends nbconvert's JupyterLab template: no require.js, MathJax, Mermaid or widget manager from a CDN;
# plotly.js once in the head when some output needs it (inlined, or a file beside the page); the pages' style.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
<style>{{ resources.workbench_style }}</style>
{%- if resources.workbench_plotlyjs -%}
<script type="text/javascript">window.PlotlyConfig = {MathJaxConfig: 'local'};</script>
{{ resources.workbench_plotlyjs }}
{%- endif -%}
{%- endblock html_head_js -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
"""


def static_notebook(notebook):
    """A copy of ``notebook`` whose outputs draw without a widget manager.

    Outputs with a widget view and a ``text/html`` rendering keep the HTML; a widget with no static
    rendering (a plain ipywidgets control) keeps its ``text/plain`` and is logged. Stored widget state is
    removed (nothing would read it offline).
    """
    notebook = copy.deepcopy(notebook)
    notebook.metadata.pop("widgets", None)
    without_static = 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data")
            if not data or WIDGET_VIEW not in data:
                continue
            del data[WIDGET_VIEW]
            if "text/html" not in data:
                without_static += 1
    if without_static:
        logger.warning(
            "%d widget output(s) have no static rendering; the HTML shows their text instead "
            "(wrap plots in workbench.viz views to draw them)",
            without_static,
        )
    return notebook


def needs_plotly(notebook) -> bool:
    """Whether some output draws a plotly figure that expects plotly.js on the page."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            text = output.get("data", {}).get("text/html", "")
            text = "".join(text) if isinstance(text, list) else text
            if VIEW_CLASS in text and "Plotly.newPlot" in text:
                return True
    return False


def execute_notebook(
    notebook, timeout: int = 600, kernel_name: str = "python3", cwd: str | Path | None = None
):
    """Run every cell of ``notebook`` (a path or a NotebookNode) with nbclient; returns the executed copy."""
    import nbclient

    notebook = _read(notebook)
    client = nbclient.NotebookClient(
        copy.deepcopy(notebook),
        timeout=timeout,
        kernel_name=kernel_name,
        resources={"metadata": {"path": str(cwd or Path.cwd())}},
    )
    return client.execute()


def notebook_to_html(
    notebook,
    out_path: str | Path,
    execute: bool = False,
    timeout: int = 600,
    kernel_name: str = "python3",
    title: str | None = None,
    plotlyjs: str = "inline",
) -> Path:
    """Write ``notebook`` as one HTML file that draws offline (no CDN: plotly.js once per page).

    Args:
        notebook: an executed notebook: a path to an ``.ipynb`` or an ``nbformat`` NotebookNode.
        out_path: the HTML file to write.
        execute: run the notebook first (nbclient; cells run in the notebook's folder).
        title: the page title (default: the notebook's file name).
        plotlyjs: ``"inline"``: the page carries plotly.js (4 MB) itself; else the path of the file the page
            loads it from, relative to the page (``"plotly.min.js"``; the caller writes it there, e.g. with
            :func:`workbench.pages.write_plotlyjs`).

    Returns:
        ``out_path``.
    """
    from jinja2 import DictLoader
    from nbconvert import HTMLExporter

    source = notebook
    notebook = _read(notebook)
    if execute:
        cwd = Path(source).parent if isinstance(source, (str, Path)) else None
        notebook = execute_notebook(notebook, timeout=timeout, kernel_name=kernel_name, cwd=cwd)
    notebook = static_notebook(notebook)
    exporter = HTMLExporter(
        template_name="lab",
        extra_loaders=[DictLoader({"workbench_offline.html.j2": _TEMPLATE})],
        template_file="workbench_offline.html.j2",
    )
    name = title or (Path(source).stem if isinstance(source, (str, Path)) else "notebook")
    resources = {
        "metadata": {"name": name},
        "workbench_plotlyjs": plotly_script_tag(plotlyjs) if needs_plotly(notebook) else "",
        "workbench_style": STYLE,
    }
    body, _ = exporter.from_notebook_node(notebook, resources=resources)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(body, encoding="utf-8")
    return out_path


def _read(notebook):
    import nbformat

    if isinstance(notebook, (str, Path)):
        path = Path(notebook)
        if not path.is_file():
            raise FileNotFoundError(f"no notebook at {path}")
        return nbformat.read(path, as_version=4)
    if not hasattr(notebook, "cells"):
        raise ValueError(
            f"notebook must be a path or an nbformat NotebookNode, got {type(notebook).__name__}"
        )
    return notebook
