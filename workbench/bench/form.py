"""One widget to compare models on benchmarks: pick models, tasks, mode and device, press run."""

from __future__ import annotations

import html

from .data import TASKS
from .runner import MODES, run


def bench_widget(data: str = "sample", out: str | None = None, models: str = "minilm"):
    """An ipywidgets box; ``box.run_button.click()`` runs :func:`workbench.bench.run` with the form's values
    and shows the figures and the headline table in ``box.output`` (``box.results`` keeps the results,
    ``box.error`` the message of a refused request). Models that ran as random stand-ins are named above
    the figures (``box.stand_ins``), in a line that cannot be missed."""
    import ipywidgets as widgets
    from IPython.display import display

    models_box = widgets.Text(value=models, description="models", placeholder="minilm,/path/to/model")
    tasks_box = widgets.SelectMultiple(options=sorted(TASKS), value=("sst2",), description="tasks", rows=8)
    mode_box = widgets.Dropdown(options=MODES, value="probe", description="mode")
    device_box = widgets.Dropdown(options=["cpu", "cuda"], value="cpu", description="device")
    data_box = widgets.Text(value=str(data), description="data")
    limit_box = widgets.IntText(value=0, description="max examples", tooltip="0: all")
    button = widgets.Button(description="run", button_style="primary")
    output = widgets.Output()
    box = widgets.VBox(
        [models_box, tasks_box, widgets.HBox([mode_box, device_box]), data_box, limit_box, button, output]
    )
    box.results = None
    box.error = None
    box.stand_ins = []

    def on_click(_):
        output.clear_output()
        with output:
            try:
                box.results = run(
                    models=[m.strip() for m in models_box.value.split(",") if m.strip()],
                    tasks=list(tasks_box.value),
                    mode=mode_box.value,
                    device=device_box.value,
                    max_examples=limit_box.value or None,
                    data=data_box.value,
                    out=out,
                )
            except (ValueError, FileNotFoundError) as err:
                box.error = str(err)
                print(f"error: {err}")
                return
            box.error = None
            box.stand_ins = stand_in_models(box.results.frame)
            if box.stand_ins:
                display(
                    widgets.HTML(
                        "<p style='color:#b00'><b>random stand-ins</b> (random weights: these scores say nothing "
                        f"about the real models): {html.escape(', '.join(box.stand_ins))}</p>"
                    )
                )
            for figure in box.results.figures():
                figure.show()
            display(box.results.headline())

    button.on_click(on_click)
    box.run_button, box.output = button, output
    box.controls = {
        "models": models_box,
        "tasks": tasks_box,
        "mode": mode_box,
        "device": device_box,
        "data": data_box,
        "max_examples": limit_box,
    }
    return box


def stand_in_models(frame) -> list[str]:
    """The models of a results frame whose ``stand_in`` column is true (none without that column)."""
    if "stand_in" not in frame.columns or "model" not in frame.columns:
        return []
    flagged = frame[frame["stand_in"].fillna(False).astype(bool)]
    return list(dict.fromkeys(str(model) for model in flagged["model"]))
