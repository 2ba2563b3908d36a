"""``run``: architectures × tasks in one call, resumable, as a tidy DataFrame, a CSV and an HTML report.

Every (model, task, mode) result is written to ``out/results/<model>__<task>__<mode>.csv`` as soon as it
is finished; a later call with the same ``out`` reads those back instead of recomputing them, so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from . import metrics as M
from .data import TaskSpec, TextExample, boolq_as_choices, get_task, load_task

logger = logging.getLogger(__name__)

MODES = ("zeroshot", "probe", "finetune")
COLUMNS = ["model", "task", "mode", "layer", "metric", "value", "n", "seconds", "examples_per_second"]


@dataclass
class BenchResults:
    """Attributes:
    frame: tidy, one row per (model, task, mode, layer, metric): value, n (examples scored), seconds (wall
        time of that model × task), examples_per_second (model forward throughput on that task). ``layer``
        is the probed layer (0 = embeddings) in probe mode and missing otherwise.
    """

    frame: pd.DataFrame

    def headline(self) -> pd.DataFrame:
        """Each task's headline (first official) metric only; in probe mode the best layer per model and task."""
        rows = []
        for (_, task, mode), group in self.frame.groupby(["model", "task", "mode"], sort=False):
            metric = get_task(task).metrics[0] if mode != "zeroshot" else "accuracy"
            if mode == "finetune" and get_task(task).family == "span":
                metric = "f1"
            chosen = group[group["metric"] == metric]
            if chosen.empty:
                continue
            best = chosen.loc[chosen["value"].idxmax()]
            rows.append(best.to_dict())
        return pd.DataFrame(rows, columns=COLUMNS)

    def glue_score(self) -> pd.DataFrame:
        """Per model and mode, the GLUE macro score over the GLUE tasks present (best layer in probe mode),
        with the number of tasks it averages (the official score needs all of them)."""
        rows = []
        for (model, mode), group in self.frame.groupby(["model", "mode"], sort=False):
            per_task = {}
            for task, rows_of_task in group.groupby("task"):
                if task not in M.GLUE_METRICS:
                    continue
                by_layer = rows_of_task.groupby(rows_of_task["layer"].fillna(-1))
                best = max(
                    by_layer,
                    key=lambda item: item[1][item[1]["metric"] == M.GLUE_METRICS[task][0]]["value"].max(),
                )[1]
                per_task[task] = dict(zip(best["metric"], best["value"]))
            if per_task:
                rows.append(
                    {
                        "model": model,
                        "mode": mode,
                        "glue_score": M.glue_score(per_task),
                        "tasks": ",".join(sorted(per_task)),
                        "n_tasks": len(per_task),
                    }
                )
        return pd.DataFrame(rows)

    def figures(self) -> list:
        """Plotly figures: probe mode, the headline metric per layer (a line per model, a panel per task);
        zero-shot and fine-tuning, bars per task and model."""
        import plotly.express as px

        figures = []
        for mode, group in self.frame.groupby("mode", sort=False):
            if mode == "probe":
                headline = group[
                    [m == get_task(t).metrics[0] for t, m in zip(group["task"], group["metric"])]
                ]
                figures.append(
                    px.line(
                        headline,
                        x="layer",
                        y="value",
                        color="model",
                        facet_col="task",
                        facet_col_wrap=4,
                        markers=True,
                        hover_data=["metric", "n"],
                        title="frozen features: cross-validated probe score per layer",
                    )
                )
            else:
                figures.append(
                    px.bar(
                        group,
                        x="task",
                        y="value",
                        color="model",
                        barmode="group",
                        facet_col="metric",
                        hover_data=["n", "seconds"],
                        title=f"{mode}: official metrics",
                    )
                )
        return figures

    def to_html(self) -> str:
        """A self-contained page (plotly.js inlined once: it draws offline)."""
        parts = [
            "<html><head><meta charset='utf-8'><title>Benchmark report</title></head><body>",
            "<h1>Benchmark report</h1>",
            "<p>Scores are on a 0-1 scale. Probe mode: k-fold cross-validation on the dev set.</p>",
        ]
        for i, figure in enumerate(self.figures()):
            parts.append(figure.to_html(full_html=False, include_plotlyjs=(i == 0)))
        glue = self.glue_score()
        if not glue.empty:
            parts += [
                "<h2>GLUE macro score (over the tasks run)</h2>",
                glue.to_html(index=False, float_format="%.3f"),
            ]
        parts += [
            "<h2>Headline metrics</h2>",
            self.headline().to_html(index=False, float_format="%.3f"),
            "<h2>All results</h2>",
            self.frame.to_html(index=False, float_format="%.4f"),
            "</body></html>",
        ]
        return "\n".join(parts)

    def save(self, folder: str | Path) -> Path:
        """Write ``results.csv`` and ``report.html`` into ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(folder / "results.csv", index=False)
        (folder / "report.html").write_text(self.to_html(), encoding="utf-8")
        return folder


def model_slug(model: str) -> str:
    """A file-name-safe name of a model: its last path part and a short hash of the full name."""
    base = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(str(model)).name or str(model))[:40]
    return f"{base}-{hashlib.sha1(str(model).encode()).hexdigest()[:8]}"


def check_compatible(spec: TaskSpec, mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "zeroshot" and not spec.zero_shot:
        raise ValueError(
            f"task {spec.name!r} cannot be scored zero-shot (only multiple choice and BoolQ can)"
        )
    if mode == "probe" and spec.family == "span":
        raise ValueError(f"task {spec.name!r} (span extraction) has no probe mode; fine-tune it instead")


def run(
    models: Sequence[str],
    tasks: Sequence[str],
    mode: str = "probe",
    device: str = "cpu",
    max_examples: int | None = None,
    data: str | Path = "sample",
    out: str | Path | None = None,
    folds: int = 5,
    pooling: str = "mean",
    batch_size: int = 32,
    finetune_config=None,
    seed: int = 0,
    progress: bool = True,
) -> BenchResults:
    """Compare ``models`` on ``tasks`` in one ``mode``; one row per (model, task, mode, layer, metric).

    Args:
        models: folders, aliases (``"minilm"``) or hub ids.
        tasks: task names (``sst2``, ``cola``, ``copa``, ``squad``, ...; see ``workbench.bench.TASKS``).
        mode: ``"zeroshot"`` (multiple choice by LM scoring), ``"probe"`` (frozen features per layer, k-fold
            cross-validated linear probes on dev) or ``"finetune"`` (the task head trained; on the train file
            when there is one under ``data``, else on 80% of dev and scored on the other 20%).
        device: ``"cpu"``, ``"cuda"``...; inputs are batched and sorted by length.
        max_examples: use the first n dev examples of each task (None: all).
        data: a root folder laid out like ``../shared/data``, or ``"sample"`` (the committed samples).
        out: a folder: each (model, task, mode) result is stored there as it finishes, a later call resumes,
            and ``results.csv`` + ``report.html`` are written at the end. None keeps everything in memory.
        folds: cross-validation folds (probe mode). pooling: ``"mean"``, ``"first"`` or ``"last"`` (probe mode).
        finetune_config: a :class:`~workbench.bench.finetune.FinetuneConfig` (finetune mode).
    """
    specs = [get_task(name) for name in tasks]
    for spec in specs:
        check_compatible(spec, mode)
    if not models:
        raise ValueError("models is empty")
    store = Path(out) / "results" if out is not None else None
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    frames = []
    for model_name in models:
        model = None
        for spec in specs:
            path = store / f"{model_slug(model_name)}__{spec.name}__{mode}.csv" if store is not None else None
            if path is not None and path.is_file():
                logger.info("%s / %s / %s: done before, read from %s", model_name, spec.name, mode, path)
                frames.append(pd.read_csv(path))
                continue
            if model is None and mode != "finetune":
                model = _load_model(model_name, mode, device)
            rows = evaluate_one(
                model_name,
                model,
                spec,
                mode,
                data,
                device,
                max_examples,
                folds,
                pooling,
                batch_size,
                finetune_config,
                seed,
                progress,
                out,
            )
            frame = pd.DataFrame(rows, columns=COLUMNS)
            if path is not None:
                tmp = path.with_name(path.name + ".tmp")
                frame.to_csv(tmp, index=False)
                os.replace(tmp, path)  # a result file is complete or absent, never half-written
            frames.append(frame)
    results = BenchResults(pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS))
    if out is not None:
        results.save(out)
    return results


def _load_model(name: str, mode: str, device: str):
    import workbench as wb

    from .zeroshot import load_scoring_model

    if mode == "zeroshot":
        return load_scoring_model(name, device=device)
    return wb.load(name, task="base", device=device)


def evaluate_one(
    model_name,
    model,
    spec: TaskSpec,
    mode: str,
    data,
    device,
    max_examples,
    folds,
    pooling,
    batch_size,
    finetune_config,
    seed,
    progress,
    out,
) -> list[dict]:
    """The rows of one (model, task, mode)."""
    examples = load_task(spec.name, data, max_examples=max_examples)
    base = {"model": model_name, "task": spec.name, "mode": mode}
    start = time.perf_counter()
    if mode == "zeroshot":
        from .zeroshot import score_choices

        choices = [boolq_as_choices(ex) if isinstance(ex, TextExample) else ex for ex in examples]
        scores = score_choices(model, choices, batch_size=batch_size, progress=progress)
        seconds = time.perf_counter() - start
        return [
            {
                **base,
                "layer": np.nan,
                "metric": k,
                "value": v,
                "n": len(choices),
                "seconds": seconds,
                "examples_per_second": len(choices) / seconds,
            }
            for k, v in scores.metrics().items()
        ]
    if mode == "probe":
        from .probe import cross_validate, pooled_features

        features = pooled_features(model, examples, pooling=pooling, batch_size=batch_size, progress=progress)
        extraction = time.perf_counter() - start
        rows = cross_validate(spec, examples, features, folds=folds, seed=seed)
        seconds = time.perf_counter() - start
        return [
            {**base, **row, "seconds": seconds, "examples_per_second": len(examples) / extraction}
            for row in rows
        ]
    from .finetune import FinetuneConfig, build_head, finetune

    config = finetune_config or FinetuneConfig(seed=seed, batch_size=batch_size)
    train, dev = _train_dev(spec, examples, data, max_examples, seed)
    head = build_head(model_name, spec, device=device)
    result = finetune(head, spec, train, dev, config, progress=progress)
    if out is not None:
        result.model.save_pretrained(Path(out) / "heads" / f"{model_slug(model_name)}__{spec.name}")
    seconds = time.perf_counter() - start
    return [
        {
            **base,
            "layer": np.nan,
            "metric": k,
            "value": v,
            "n": len(dev),
            "seconds": seconds,
            "examples_per_second": result.examples_per_second,
        }
        for k, v in result.metrics.items()
    ]


def _train_dev(spec: TaskSpec, dev_examples: list, data, max_examples, seed: int) -> tuple[list, list]:
    """The task's train file when there is one, else a seeded 80/20 split of dev (dev is all that is local)."""
    try:
        train = load_task(spec.name, data, split="train", max_examples=max_examples)
        return train, dev_examples
    except (FileNotFoundError, ValueError):
        order = np.random.default_rng(seed).permutation(len(dev_examples))
        cut = max(1, int(0.8 * len(dev_examples)))
        logger.info(
            "%s: no train file; fine-tuning on 80%% of dev (%d) and scoring on the rest", spec.name, cut
        )
        return [dev_examples[i] for i in order[:cut]], [dev_examples[i] for i in order[cut:]]
