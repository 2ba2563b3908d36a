"""One widget to compare models on benchmarks: pick models, tasks, mode and device, press run."""

from __future__ import annotations

from .data import TASKS
from .runner import MODES, run


def bench_widget(data: str = "sample", out: str | None = None, models: str = "minilm"):
    """An ipywidgets box; ``box.run_button.click()`` runs :func:`workbench.bench.run` with the form's values
    and shows the figures and the headline table in ``box.output`` (``box.results`` keeps the results,
    ``box.error`` the message of a refused request)."""
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
