"""Benchmarks: architectures compared on GLUE, SuperGLUE, SQuAD, SWAG, RACE and ARC, in one call.

>>> import workbench as wb
>>> results = wb.bench.run(models=["minilm"], tasks=["sst2", "copa"], mode="probe", data="sample")  # doctest: +SKIP
>>> results.frame, results.figures(), results.save("reports/bench")  # doctest: +SKIP

Three modes: ``zeroshot`` (multiple choice scored by a causal LM's log-likelihood, a masked LM's
pseudo-log-likelihood or XLNet's permutation LM), ``probe`` (pooled frozen features from every layer, a
cross-validated linear probe per layer) and ``finetune`` (the task heads trained with AdamW and a schedule).
Loaders read each task's official files (:mod:`workbench.bench.data`); metrics follow the official scripts
(:mod:`workbench.bench.metrics`).
"""

from . import metrics
from .data import (
    TASKS,
    ChoiceExample,
    DataFormatError,
    SpanExample,
    TaskSpec,
    TextExample,
    get_task,
    load_task,
)
from .finetune import FinetuneConfig
from .runner import MODES, BenchResults, run

__all__ = [
    "MODES",
    "TASKS",
    "BenchResults",
    "ChoiceExample",
    "DataFormatError",
    "FinetuneConfig",
    "SpanExample",
    "TaskSpec",
    "TextExample",
    "get_task",
    "load_task",
    "metrics",
    "run",
    "widget",
]


def widget(data: str = "sample", out: str | None = None):
    """An ipywidgets form: models, tasks, mode, device and example cap -> run, then the figures and table."""
    # The form lives in .form, not .widget: importing a submodule named like this function would rebind
    # ``workbench.bench.widget`` to the module after the first call.
    from .form import bench_widget

    return bench_widget(data=data, out=out)
