"""Static pages: one plotly.js file per folder, the shared style, metric-named axes, JSON-safe live figures."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.bench.runner import BenchResults
from workbench.pages import PLOTLY_FILE, STYLE, figure_div, write_page
from workbench.viz._base import figure_widget, json_safe_figure

_PLOTLY_SIZE = 3_000_000  # plotly.min.js is 4-5 MB; a page that carries it is at least this large


def y_titles(page: str) -> list[str]:
    """The y-axis titles of every figure of a page (from the figures' JSON in Plotly.newPlot calls)."""
    titles = []
    for chunk in page.split('"yaxis')[1:]:
        if chunk.startswith(('":{', '2":{', '3":{', '4":{')) and '"title":{"text":"' in chunk[:400]:
            titles.append(chunk.split('"title":{"text":"', 1)[1].split('"', 1)[0])
    return titles


def test_a_live_figure_with_nan_and_inf_has_json_state():
    """Masked attention cells (NaN), a missing score in hover data and an open range used to reach the widget
    state as NaN, and the kernel printed "Out of range float values are not JSON compliant" under the cell."""
    figure = go.Figure(
        go.Heatmap(
            z=np.array([[0.5, np.nan], [np.inf, 1.0]]),
            customdata=np.array([[np.nan, "a"], [1.0, "b"]], dtype=object),
            zmax=float("nan"),
        )
    )
    plain = go.FigureWidget(figure).get_state()
    with pytest.raises(ValueError, match="not JSON compliant"):  # what the kernel met
        json.dumps(plain["_widget_data"], allow_nan=False)
    state = figure_widget(figure).get_state()
    for value in state.values():
        json.dumps(value, allow_nan=False)  # raises ValueError on NaN or inf
    safe = json_safe_figure(figure)
    assert safe.data[0].customdata[0][0] is None and safe.data[0].zmax is None
    assert list(safe.data[0].customdata[1]) == [1.0, "b"]  # finite values kept


def test_pages_share_one_plotly_file_and_the_style(tmp_path):
    figure = go.Figure(go.Scatter(x=[0, 1], y=[1, 2]))
    first = write_page(tmp_path / "a.html", "a", ["<h1>a</h1>", figure_div(figure)])
    second = write_page(tmp_path / "b.html", "b", [figure_div(figure)])
    script = tmp_path / PLOTLY_FILE
    assert script.stat().st_size > _PLOTLY_SIZE
    for page in (first.read_text(), second.read_text()):
        assert f'<script src="{PLOTLY_FILE}"' in page and "Plotly.newPlot" in page and STYLE in page
        assert len(page) < 100_000 and "https://" not in page  # offline, and the library is not inlined
        assert "460px" in page  # a set height, not the window's
    assert not (tmp_path / ".plotly.min.js.tmp").exists()
    text_only = write_page(tmp_path / "sub" / "t.html", "t", ["<p>no figure</p>"])
    assert "<script" not in text_only.read_text() and not (tmp_path / "sub" / PLOTLY_FILE).exists()


def test_bench_report_page_is_styled_and_names_the_metric_on_its_axes(tmp_path):
    rows = [
        {
            "model": m,
            "task": t,
            "mode": "probe",
            "layer": layer,
            "metric": metric,
            "value": v,
            "n": 8,
            "seconds": 1.0,
        }
        for m in ("minilm", "other")
        for t, metric in (("sst2", "accuracy"), ("cola", "mcc"))
        for layer, v in ((0, 0.5), (1, 0.6))
    ]
    results = BenchResults(pd.DataFrame(rows))
    results.save(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert STYLE in page and f'src="{PLOTLY_FILE}"' in page and len(page) < 1_000_000
    assert (tmp_path / PLOTLY_FILE).stat().st_size > _PLOTLY_SIZE
    titles = y_titles(page)
    assert "value" not in titles and {"accuracy", "mcc"} <= set(titles), titles
    assert '"text":"task=' not in page  # panel titles read "sst2", not "task=sst2"
    assert len(results.to_html()) > _PLOTLY_SIZE  # to_html alone is still one self-contained page


def test_probing_report_page_is_styled_and_names_the_metric_on_its_axes(tmp_path):
    from probes.experiment import ProbingResults

    rows = [
        {
            "model": "minilm",
            "task": task,
            "layer": layer,
            "probe": "linear",
            "split": split,
            "metric": metric,
            "value": 0.5 + 0.1 * layer,
            "control": None,
            "selectivity": None,
            "stand_in": False,
            "provenance_id": "x",
        }
        for task, metric in (("upos", "accuracy"), ("distance", "uuas"))
        for layer in (0, 1, 2)
        for split in ("dev", "test")
    ]
    ProbingResults(pd.DataFrame(rows)).save(tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert STYLE in page and f'src="{PLOTLY_FILE}"' in page and len(page) < 1_000_000
    titles = y_titles(page)
    assert "value" not in titles and {"accuracy", "uuas"} <= set(titles), titles
    assert '"height":' in page and "Best layer per model" in page


def test_treebank_projection_leaves_no_temporary_folder(tmp_path, monkeypatch):
    """A notebook's projection used to leave its activation store in a temporary folder (and print its path)."""
    import tempfile

    import probes
    from workbench import zoo

    model = zoo.tiny("bert", task="base")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    view = probes.treebank_projection(model, max_sentences=3)
    assert view.figures() and list(tmp_path.iterdir()) == []
