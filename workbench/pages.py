"""Static HTML pages that workbench writes: one look and one plotly.js for every report in a folder.

The notebook reports of ``workbench report``, their index, the ``probes run`` report and the ``workbench bench``
report share :data:`STYLE` (readable width, tables, figures that scroll sideways instead of running off the
page) and load plotly.js from one file beside them (:data:`PLOTLY_FILE`, written once per folder by
:func:`write_plotlyjs`) instead of inlining its 4 MB in every page. Everything stays offline: the script is a
local file, never a CDN link.

>>> from workbench.pages import page, figure_div, write_page
>>> write_page("reports/bench/report.html", "Benchmark report", ["<h1>...</h1>", figure_div(fig)])  # doctest: +SKIP
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path

# The file every page of a folder loads plotly.js from.
PLOTLY_FILE = "plotly.min.js"
# Height of a figure that sets none: plotly's own default stretches the figure to the window's height.
DEFAULT_FIGURE_HEIGHT = 460

STYLE = """
body{font-family:-apple-system,BlinkMacSystemFont,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;
  margin:0 auto;padding:1.5em 2em;max-width:1200px;color:#222;line-height:1.45}
h1{font-size:1.6em;margin:.4em 0} h2{font-size:1.25em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}
th,td{padding:4px 10px;text-align:left;vertical-align:top;border-bottom:1px solid #e3e3e3}
th{background:#f5f5f5}
.wb-figure,.wb-view,.jp-OutputArea-output{max-width:100%;overflow-x:auto}
.jp-OutputArea-child,.jp-OutputArea-output{min-width:0}
.wb-figure .plotly-graph-div{margin:0}
.wb-data{background:#eef4fb;border-left:4px solid #4a7fb5;padding:.5em .9em;margin:.6em 0 1em;font-size:.95em}
.wb-skipped{color:#666} .ok{color:#186a1f} .failed{color:#b00} .pending{color:#777}
.stand-in{color:#a40;background:#fff4e0;padding:2px 6px} .stand-in ul{margin:2px 0;padding-left:1.2em}
""".strip()


def plotly_script_tag(plotlyjs: str = PLOTLY_FILE) -> str:
    """The ``<script>`` that loads plotly.js: ``"inline"`` puts the library in the page, anything else is the
    (relative) path of the file beside the page."""
    if plotlyjs == "inline":
        from plotly.offline import get_plotlyjs

        return f"<script>{get_plotlyjs()}</script>"
    return f'<script src="{html.escape(plotlyjs)}" charset="utf-8"></script>'


def write_plotlyjs(folder: str | Path) -> Path:
    """Write ``folder/plotly.min.js`` (the installed plotly's), unless the same file is already there."""
    from plotly.offline import get_plotlyjs

    path = Path(folder) / PLOTLY_FILE
    script = get_plotlyjs()
    if not (path.is_file() and path.stat().st_size == len(script.encode()) and path.read_text() == script):
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{PLOTLY_FILE}.tmp")
        temporary.write_text(script, encoding="utf-8")
        temporary.replace(path)
    return path


def figure_div(figure, height: int | None = None) -> str:
    """A plotly figure as a ``<div class="wb-figure">`` that needs plotly.js on the page; its height is the
    figure's own, else ``height``, else :data:`DEFAULT_FIGURE_HEIGHT` px (never the window's height)."""
    import plotly.io as pio

    own = getattr(figure.layout, "height", None)
    div = pio.to_html(
        figure,
        full_html=False,
        include_plotlyjs=False,
        default_height=f"{own or height or DEFAULT_FIGURE_HEIGHT}px",
        config={"displaylogo": False, "responsive": True},
    )
    return f'<div class="wb-figure">{div}</div>'


def page(title: str, parts: Sequence[str], plotlyjs: str | None = PLOTLY_FILE) -> str:
    """A whole page: :data:`STYLE`, plotly.js (see :func:`plotly_script_tag`; None: no plotly) and ``parts``."""
    script = plotly_script_tag(plotlyjs) if plotlyjs else ""
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n{script}</head>\n<body>\n{body}\n</body></html>\n"
    )


def write_page(path: str | Path, title: str, parts: Sequence[str]) -> Path:
    """Write :func:`page` to ``path`` with ``plotly.min.js`` beside it (written once per folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    uses_plotly = any("Plotly.newPlot" in part for part in parts)
    if uses_plotly:
        write_plotlyjs(path.parent)
    path.write_text(page(title, parts, PLOTLY_FILE if uses_plotly else None), encoding="utf-8")
    return path


def label_facet_axes(figure, facet: str, y_titles: dict[str, str]):
    """Name each panel's y axis after what it shows, in a plotly express figure faceted by ``facet``.

    plotly express labels every y axis with the column name (``"value"``); here the axis of the panel for
    ``facet=name`` gets ``y_titles[name]`` (a metric: ``"accuracy"``, ``"mcc"``) and the panel's title reads
    ``name`` instead of ``facet=name``. Returns ``figure``.

    >>> label_facet_axes(px.line(frame, x="layer", y="value", facet_col="task"), "task", {"sst2": "accuracy"})  # doctest: +SKIP
    """
    import re

    pattern = re.compile(rf"(?:^|<br>){re.escape(facet)}=([^<]*)")
    for trace in figure.data:
        match = pattern.search(trace.hovertemplate or "")
        if match is None:
            continue
        name = match.group(1)
        axis = "yaxis" + (trace.yaxis or "y")[1:]
        figure.layout[axis].title.text = y_titles.get(name, name)
        figure.layout[axis].showticklabels = True
    figure.for_each_annotation(lambda note: note.update(text=note.text.split("=", 1)[-1]))
    return figure
