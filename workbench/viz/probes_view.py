"""Probe results: a metric (accuracy, and selectivity where a control task ran) per layer, one line per
model, from the tidy DataFrame of a probing experiment (``probes.run(...).frame``)."""

from __future__ import annotations

from ._base import PALETTE, View, check_choice, figure_widget, replace_figure

REQUIRED_COLUMNS = ("model", "task", "layer", "metric", "value")
HEADLINE_METRICS = ("accuracy", "uuas", "root_accuracy", "spearman")


def probe_figure(frame, task: str, metric: str, split: str | None, show: str):
    import plotly.graph_objects as go

    from ..zoo import labelled

    data = frame[(frame["task"] == task) & (frame["metric"] == metric)]
    if split is not None:
        data = data[data["split"] == split]
    figure = go.Figure()
    for i, model in enumerate(dict.fromkeys(data["model"])):
        rows = data[data["model"] == model].sort_values("layer")
        label = labelled(
            model, "stand_in" in rows and bool(rows["stand_in"].fillna(False).astype(bool).any())
        )
        colour = PALETTE[i % len(PALETTE)]
        for column, dash in (("value", "solid"), ("selectivity", "dash")):
            if show not in (column, "both") or column not in rows or rows[column].isna().all():
                continue
            figure.add_trace(
                go.Scatter(
                    x=rows["layer"],
                    y=rows[column],
                    mode="lines+markers",
                    name=f"{label} {column if column != 'value' else metric}",
                    line={"color": colour, "dash": dash},
                    hovertemplate=f"{label}<br>layer %{{x}}<br>{column}: %{{y:.3f}}<extra></extra>",
                )
            )
    where = f" ({split})" if split is not None else ""
    figure.update_layout(
        title=f"{task}: {metric} per layer{where}",
        xaxis={"title": "layer (0 = embeddings)", "dtick": 1},
        yaxis_title=metric,
        height=420,
        width=760,
    )
    return figure


def probe_results(
    frame, task: str | None = None, metric: str | None = None, split: str | None = "test", show: str = "value"
) -> View:
    """Probing results per layer, one line per model, with task / metric / split selectors.

    Args:
        frame: a DataFrame with columns model, task, layer, metric, value (and split, selectivity, as
            ``probes.run(...).frame`` has), or a :class:`probes.experiment.ProbingResults`. Where a
            ``stand_in`` column is true, the model's legend says "(random stand-in)".
        show: ``"value"``, ``"selectivity"`` (task − control) or ``"both"`` (selectivity dashed).
    """
    import ipywidgets as widgets
    import pandas as pd

    frame = getattr(frame, "frame", frame)
    if not isinstance(frame, pd.DataFrame):
        raise ValueError(f"frame must be a DataFrame (or ProbingResults), got {type(frame).__name__}")
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"the probing DataFrame lacks columns {missing}; it has {list(frame.columns)}")
    if frame.empty:
        raise ValueError("the probing DataFrame is empty")
    tasks = list(dict.fromkeys(frame["task"]))
    task = tasks[0] if task is None else check_choice(task, tasks, "task")
    splits = list(dict.fromkeys(frame["split"])) if "split" in frame.columns else []
    split = None if not splits else (split if split in splits else splits[-1])
    check_choice(show, ["value", "selectivity", "both"], "show")

    def metrics_of(task_name):
        return list(dict.fromkeys(frame[frame["task"] == task_name]["metric"]))

    metric = metric or next((m for m in HEADLINE_METRICS if m in metrics_of(task)), metrics_of(task)[0])
    check_choice(metric, metrics_of(task), "metric")
    controls = {
        "task": widgets.Dropdown(options=tasks, value=task, description="task"),
        "metric": widgets.Dropdown(options=metrics_of(task), value=metric, description="metric"),
        "show": widgets.ToggleButtons(
            options=["value", "selectivity", "both"], value=show, description="show"
        ),
    }
    if splits:
        controls["split"] = widgets.Dropdown(options=splits, value=split, description="split")

    def build():
        return probe_figure(
            frame,
            controls["task"].value,
            controls["metric"].value,
            controls["split"].value if "split" in controls else None,
            controls["show"].value,
        )

    live = figure_widget(build())

    def on_task(change):
        options = metrics_of(change["new"])
        current = controls["metric"].value
        keep = (
            current if current in options else next((m for m in HEADLINE_METRICS if m in options), options[0])
        )
        controls["metric"].options = options  # resets the value to the first option
        controls["metric"].value = keep
        replace_figure(live, build())

    controls["task"].observe(on_task, names="value")
    for name in ("metric", "show", "split"):
        if name in controls:
            controls[name].observe(lambda _: replace_figure(live, build()), names="value")
    widget = widgets.VBox(
        [widgets.HBox(list(controls.values())[:2] + list(controls.values())[3:]), controls["show"], live]
    )
    return View("probe_results", widget, lambda: [build()], controls, [live])
