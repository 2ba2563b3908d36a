"""``run``: architectures × tasks in one call, resumable, as a tidy DataFrame, a CSV and an HTML report.

Every (model, task, mode) result is written to ``out/results/<model>__<task>__<mode>__<id>.csv`` as soon as
it is finished, with its provenance record beside it (``.json``): the model's fingerprint (a hash of its
weights as loaded, dtype, config, editing hooks: :func:`workbench.provenance.model_fingerprint`), the
content hashes of the data files, and every argument that changes the numbers (``max_examples``, ``folds``,
``pooling``, ``seed``, ``batch_size``, ``device``, the fine-tuning config). ``<id>`` is a hash of that
record. A later call with the same ``out`` reads a result back only when its record is the same, so an
interrupted run continues where it stopped, and a run with other data, weights or arguments computes anew
into a new entry (the old one stays).

Under ``torchrun`` (or any launcher that sets ``RANK``/``WORLD_SIZE``) every rank calls :func:`run` with the
same arguments: the (model, task) results are shared among the ranks (:func:`workbench.distributed.map_units`),
each rank loads only the models of its own results, writes each result as it finishes (as above, so a resumed
sweep may have another number of ranks), and every rank returns the same :class:`BenchResults`, gathered in
the order a single process gives; rank 0 writes ``results.csv``, ``provenance.json`` and ``report.html``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import distributed
from ..pages import figure_div, label_facet_axes, page, write_page
from . import metrics as M
from .data import (
    SAMPLE_DATA,
    DataFormatError,
    TaskSpec,
    TextExample,
    boolq_as_choices,
    get_task,
    load_task,
    task_file,
)

logger = distributed.get_logger(__name__)  # "[rank 1/4] ..." under torchrun

MODES = ("zeroshot", "probe", "finetune")
COLUMNS = [
    "model",
    "task",
    "mode",
    "layer",
    "metric",
    "value",
    "n",
    "seconds",
    "examples_per_second",
    "stand_in",
    "head_initialized",
    "data_note",
    "provenance_id",
]
RECORD_FORMAT = 1
_STRING_COLUMNS = ("model", "task", "mode", "metric", "data_note", "provenance_id")


class ResultFileError(ValueError):
    """A stored benchmark result that cannot be read back (damaged, or not the provenance it claims)."""


@dataclass
class BenchResults:
    """Attributes:
    frame: tidy, one row per (model, task, mode, layer, metric): value, n (examples scored), seconds (wall
        time of that model × task), examples_per_second (model forward throughput on that task). ``layer``
        is the probed layer (0 = embeddings) in probe mode and missing otherwise. ``stand_in``: the model is
        a random stand-in (``wb.zoo``). ``head_initialized``: zero-shot scores came from a freshly
        initialized (untrained) LM head (always False in probe mode, which uses no head, and in fine-tuning,
        which trains it). ``data_note``: what is special about the data ("" for official files read as
        they are): a sample or test fixture, repaired SQuAD spans, fine-tuning on 80% of dev for want of a
        train file. ``provenance_id``: the key of the row's record in ``provenance``.
    provenance: ``{provenance_id: record}``: model fingerprint, data file hashes and arguments of each result.
    """

    frame: pd.DataFrame
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        frame = self.frame.copy()
        if "stand_in" in frame:  # a random stand-in is never shown under the real model's name alone
            labelled = frame["model"].astype(str).str.contains("(random stand-in)", regex=False)
            stand_in = frame["stand_in"].astype(bool) & ~labelled  # once, also when the caller labelled it
            frame.loc[stand_in, "model"] = frame.loc[stand_in, "model"] + " (random stand-in)"
        for mode, group in frame.groupby("mode", sort=False):
            if mode == "probe":
                headline = group[
                    [m == get_task(t).metrics[0] for t, m in zip(group["task"], group["metric"])]
                ]
                metric_of = dict(zip(headline["task"], headline["metric"]))
                figure = px.line(
                    headline,
                    x="layer",
                    y="value",
                    color="model",
                    facet_col="task",
                    facet_col_wrap=4,
                    markers=True,
                    hover_data=["metric", "n"],
                    labels={"value": "score", "layer": "layer (0 = embeddings)"},
                    title="frozen features: cross-validated probe score per layer (each panel: its task's "
                    "headline metric)",
                )
                figures.append(label_facet_axes(figure, "task", metric_of))
            else:
                figure = px.bar(
                    group,
                    x="task",
                    y="value",
                    color="model",
                    barmode="group",
                    facet_col="metric",
                    hover_data=["n", "seconds"],
                    labels={"value": "score"},
                    title=f"{mode}: official metrics",
                )
                figures.append(label_facet_axes(figure, "metric", {}))
        for figure in figures:
            rows = 1 + (len(figure.layout.annotations) - 1) // 4 if figure.layout.annotations else 1
            figure.update_layout(height=150 + 300 * rows)
        return figures

    def page_parts(self) -> list[str]:
        """The report's body: notes, figures (they need plotly.js on the page) and tables."""
        parts = [
            "<h1>Benchmark report</h1>",
            "<p>Scores are on a 0-1 scale. Probe mode: k-fold cross-validation on the dev set.</p>",
        ]
        if "stand_in" in self.frame and self.frame["stand_in"].astype(bool).any():
            names = sorted(set(self.frame.loc[self.frame["stand_in"].astype(bool), "model"]))
            parts.append(
                '<p class="stand-in"><b>Random stand-ins</b> (random weights; their scores are not meaningful): '
                f"{', '.join(names)}</p>"
            )
        parts += [figure_div(figure) for figure in self.figures()]
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
        ]
        return parts

    def to_html(self) -> str:
        """A self-contained page (plotly.js inlined: it draws offline); :meth:`save` writes the page with
        plotly.js in a file beside it instead."""
        return page("Benchmark report", self.page_parts(), plotlyjs="inline")

    def save(self, folder: str | Path) -> Path:
        """Write ``results.csv``, ``provenance.json`` (the records of its ``provenance_id``s) and
        ``report.html`` (styled like the notebook reports; plotly.js in ``plotly.min.js`` beside it) into
        ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(folder / "results.csv", index=False)
        _write_atomic(folder / "provenance.json", json.dumps(self.provenance, indent=2, sort_keys=True))
        write_page(folder / "report.html", "Benchmark report", self.page_parts())  # + plotly.min.js beside it
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
            when there is one under ``data``, else, with a WARNING and a ``data_note``, on 80% of dev and
            scored on the other 20%; a malformed train file is an error).
        device: ``"cpu"``, ``"cuda"``...; inputs are batched and sorted by length.
        max_examples: use the first n dev examples of each task (None: all).
        data: a root folder laid out like ``../shared/data``, or ``"sample"`` (the committed samples).
        out: a folder: each result is stored there as it finishes with its provenance (model fingerprint,
            data hashes, arguments); a later call reuses a stored result only when all of them are equal
            (else computes it anew, beside the old one), and ``results.csv`` + ``provenance.json`` +
            ``report.html`` are written at the end. None keeps everything in memory.
        folds: cross-validation folds (probe mode). pooling: ``"mean"``, ``"first"`` or ``"last"`` (probe mode).
        finetune_config: a :class:`~workbench.bench.finetune.FinetuneConfig` (finetune mode).
        progress: progress bars: alone, over each result's examples; under ``torchrun``, one bar on rank 0
            counting the finished results of all ranks.

    Under ``torchrun`` every rank calls this with the same arguments (``device="cuda"`` puts each rank on its
    own GPU, ``cuda:{LOCAL_RANK}``; ``out`` must be a folder all ranks see) and gets the same results back.

    Raises:
        ResultFileError: a stored result under ``out`` is damaged (names the file; delete it to recompute).
        DataFormatError: a malformed data file, the train file of fine-tuning included (names the file).
    """
    specs = [get_task(name) for name in tasks]
    for spec in specs:
        check_compatible(spec, mode)
    if not models:
        raise ValueError("models is empty")
    ctx = distributed.init()  # under torchrun: before any model is loaded (NCCL picks this rank's GPU)
    store = Path(out) / "results" if out is not None else None
    if store is not None:
        store.mkdir(parents=True, exist_ok=True)
    settings = RunSettings(data, device, max_examples, folds, pooling, batch_size, finetune_config, seed)
    models = list(models)
    # Task-major: a strided share of this list keeps each rank on few models (on one each when the number of
    # ranks divides the number of models), and each rank runs its results model by model (order=), so that it
    # loads each of its models once.
    units = [(m, s) for s in range(len(specs)) for m in range(len(models))]
    loaded = _LoadedModel(mode, device)
    inner_progress = progress and not ctx.distributed  # per-example bars of several ranks would interleave

    def work(unit: tuple[int, int]) -> tuple[pd.DataFrame, str, dict[str, Any]]:
        model_name = models[unit[0]]
        return _result(
            model_name, *loaded.get(model_name), specs[unit[1]], mode, settings, store, inner_progress, out
        )

    done = dict(
        zip(
            units,
            distributed.map_units(
                work,
                units,
                order=lambda unit: unit,
                progress=progress and ctx.distributed,
                desc="bench",
                unit="result",
            ),
        )
    )
    loaded.release()
    frames = []
    provenance: dict[str, dict[str, Any]] = {}
    for m in range(len(models)):  # the order of a single process: model by model, task by task
        for s in range(len(specs)):
            frame, key, record = done[(m, s)]
            provenance[key] = record
            frames.append(frame)
    results = BenchResults(
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=COLUMNS), provenance
    )
    if out is not None:
        if ctx.is_main:
            results.save(out)
        distributed.barrier()  # every rank returns once the report is written
    return results


class _LoadedModel:
    """The model a rank is working with, loaded once for its consecutive results and released for the next:
    ``get(name)`` gives (model, fingerprint, stand_in); in finetune mode the model is None (fine-tuning builds
    its own head model; the base model was loaded to fingerprint it)."""

    def __init__(self, mode: str, device: str) -> None:
        self.mode, self.device = mode, device
        self.name: str | None = None
        self.value: tuple[Any, str, bool] | None = None

    def get(self, name: str) -> tuple[Any, str, bool]:
        from workbench.provenance import model_fingerprint
        from workbench.zoo import is_stand_in

        if self.name != name or self.value is None:
            self.release()  # before the next model is loaded: one model in memory at a time
            # Loaded even when every result is stored: only the weights as loaded say whether they still apply.
            model = _load_model(name, self.mode, self.device)
            self.value = (
                None if self.mode == "finetune" else model,
                model_fingerprint(model),
                is_stand_in(model),
            )
            self.name = name
        return self.value

    def release(self) -> None:
        self.name, self.value = None, None


def _result(
    model_name,
    model,
    fingerprint,
    stand_in,
    spec: TaskSpec,
    mode: str,
    settings: RunSettings,
    store,
    progress,
    out,
) -> tuple[pd.DataFrame, str, dict[str, Any]]:
    """One (model, task, mode) result: read back from ``store`` when stored with the same provenance, else
    computed and written there (atomically). Returns (rows, provenance id, provenance record)."""
    record = provenance_record(model_name, fingerprint, spec, mode, settings)
    key = record_key(record)
    path = store / f"{model_slug(model_name)}__{spec.name}__{mode}__{key}.csv" if store is not None else None
    if path is not None and path.is_file():
        logger.info(
            "%s / %s / %s: done before with the same provenance, read from %s",
            model_name,
            spec.name,
            mode,
            path,
        )
        return read_result(path, record, key), key, record
    if path is not None:
        _log_other_entries(store, model_name, spec.name, mode, record)
    rows = evaluate_one(model_name, model, spec, mode, settings, progress, out)
    for row in rows:
        row["stand_in"] = stand_in
        row["provenance_id"] = key
    frame = pd.DataFrame(rows, columns=COLUMNS)
    if path is not None:
        # The record first, then the rows: a result file is complete or absent, never half-written, and never
        # without its record.
        _write_atomic(path.with_suffix(".json"), json.dumps(record, indent=2, sort_keys=True))
        tmp = path.with_name(path.name + ".tmp")
        frame.to_csv(tmp, index=False)
        os.replace(tmp, path)
    return frame, key, record


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _data_root(data) -> Path:
    return SAMPLE_DATA if str(data) == "sample" else Path(data)


def _file_record(spec: TaskSpec, data, split: str) -> dict[str, Any] | None:
    """Size and content hash of the ``split`` file of ``spec`` under ``data`` (None: the task has no such file)."""
    from workbench.provenance import file_fingerprint

    try:
        path = task_file(spec, _data_root(data), split)
    except FileNotFoundError:
        return None
    except ValueError:  # the task has no such split
        return None
    return file_fingerprint(path)


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The arguments of :func:`run` that change a result's numbers: all of them go into its provenance."""

    data: Any
    device: Any
    max_examples: int | None
    folds: int
    pooling: str
    batch_size: int
    finetune_config: Any
    seed: int


def provenance_record(model_name, fingerprint, spec: TaskSpec, mode, settings: RunSettings) -> dict[str, Any]:
    """Everything that makes the numbers of one (model, task, mode) result: the model's fingerprint, the data
    files' contents (``paths`` says where they were; it is not part of the key), and the arguments."""
    from ..version import __version__
    from .finetune import FinetuneConfig

    dev = _file_record(spec, settings.data, "dev")
    if dev is None:  # as load_task would: an error that lists the files looked for
        task_file(spec, _data_root(settings.data), "dev")
    files = {"dev": dev}
    if mode == "finetune":
        files["train"] = _file_record(spec, settings.data, "train")
    record: dict[str, Any] = {
        "format": RECORD_FORMAT,
        "workbench_version": __version__,
        "model": str(model_name),
        "model_fingerprint": fingerprint,
        "task": spec.name,
        "mode": mode,
        "data": {
            split: None if f is None else {"size": f["size"], "blake2b": f["blake2b"]}
            for split, f in files.items()
        },
        "max_examples": settings.max_examples,
        "seed": settings.seed,
        "batch_size": settings.batch_size,
        "device": str(settings.device),
    }
    if mode == "probe":
        record.update(folds=settings.folds, pooling=settings.pooling)
    if mode == "finetune":
        config = settings.finetune_config or FinetuneConfig(
            seed=settings.seed, batch_size=settings.batch_size
        )
        record["finetune_config"] = dataclasses.asdict(config)
    record["paths"] = {split: None if f is None else f["path"] for split, f in files.items()}
    return record


def record_key(record: dict[str, Any]) -> str:
    """The id of a provenance record (its ``paths`` excluded: moved data with the same content is the same)."""
    from workbench.provenance import record_id

    return record_id({k: v for k, v in record.items() if k != "paths"})


def read_result(path: Path, record: dict[str, Any], key: str) -> pd.DataFrame:
    """A stored result, checked: its record beside it is the requested one, its columns and ids are right.

    Raises:
        ResultFileError: naming the file and the fix (delete it, and its ``.json``, to compute it again).
    """
    from workbench.provenance import describe_differences

    record_path = path.with_suffix(".json")
    fix = f"Delete {path.name} and {record_path.name} in {path.parent} to compute this result again."
    try:
        stored = json.loads(record_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultFileError(
            f"{record_path} is missing: the result {path} has no provenance record. {fix}"
        ) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ResultFileError(f"{record_path} is damaged ({err}). {fix}") from None
    if not isinstance(stored, dict) or record_key(stored) != key:
        detail = describe_differences(stored, record) if isinstance(stored, dict) else "not a JSON object"
        raise ResultFileError(f"{record_path} does not hold the provenance its name says ({detail}). {fix}")
    try:
        frame = pd.read_csv(path, dtype={column: str for column in _STRING_COLUMNS})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise ResultFileError(f"{path} is damaged ({type(err).__name__}: {err}). {fix}") from None
    if list(frame.columns) != COLUMNS:
        raise ResultFileError(f"{path} has columns {list(frame.columns)}, expected {COLUMNS}. {fix}")
    if frame.empty or (frame["provenance_id"] != key).any():
        raise ResultFileError(f"{path} holds no rows of provenance {key}. {fix}")
    for column in ("value", "n", "seconds"):
        if not pd.api.types.is_numeric_dtype(frame[column]):
            raise ResultFileError(f"{path}: column {column!r} is not numeric. {fix}")
    frame["data_note"] = frame["data_note"].fillna("")
    for column in ("stand_in", "head_initialized"):
        if frame[column].dtype != bool:
            raise ResultFileError(f"{path}: column {column!r} is not True/False. {fix}")
    return frame


def _log_other_entries(store: Path, model_name, task: str, mode: str, record: dict[str, Any]) -> None:
    """Say why a (model, task, mode) stored under another provenance is not reused (it stays on disk)."""
    from workbench.provenance import describe_differences

    for other in sorted(store.glob(f"{model_slug(model_name)}__{task}__{mode}__*.json")):
        try:
            stored = json.loads(other.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(stored, dict):
            logger.info(
                "%s / %s / %s: a result with other provenance is stored in %s (kept); computing anew. "
                "Differences: %s",
                model_name,
                task,
                mode,
                other.with_suffix(".csv").name,
                describe_differences(stored, record),
            )


def _load_model(name: str, mode: str, device: str):
    from ..api import load
    from .zeroshot import load_scoring_model

    if mode == "zeroshot":
        return load_scoring_model(name, device=device)
    if mode == "finetune":  # only fingerprinted (build_head loads the model to train): the CPU will do
        return load(name, task="base", device="cpu")
    return load(name, task="base", device=device)


def evaluate_one(
    model_name, model, spec: TaskSpec, mode: str, settings: RunSettings, progress, out
) -> list[dict]:
    """The rows of one (model, task, mode), with ``data_note`` and ``head_initialized``."""
    examples = load_task(spec.name, settings.data, max_examples=settings.max_examples)
    note = getattr(examples, "data_note", "")
    base = {
        "model": model_name,
        "task": spec.name,
        "mode": mode,
        "head_initialized": False,
        "data_note": note,
    }
    start = time.perf_counter()
    if mode == "zeroshot":
        from .zeroshot import score_choices

        choices = [boolq_as_choices(ex) if isinstance(ex, TextExample) else ex for ex in examples]
        scores = score_choices(model, choices, batch_size=settings.batch_size, progress=progress)
        seconds = time.perf_counter() - start
        base["head_initialized"] = bool(getattr(scores, "head_initialized", False))
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

        features = pooled_features(
            model, examples, pooling=settings.pooling, batch_size=settings.batch_size, progress=progress
        )
        extraction = time.perf_counter() - start
        rows = cross_validate(spec, examples, features, folds=settings.folds, seed=settings.seed)
        seconds = time.perf_counter() - start
        return [
            {**base, **row, "seconds": seconds, "examples_per_second": len(examples) / extraction}
            for row in rows
        ]
    from .finetune import FinetuneConfig, build_head, finetune

    config = settings.finetune_config or FinetuneConfig(seed=settings.seed, batch_size=settings.batch_size)
    train, dev, train_note = _train_dev(spec, examples, settings.data, settings.max_examples, settings.seed)
    base["data_note"] = "; ".join(n for n in (note, train_note) if n)
    head = build_head(model_name, spec, device=settings.device)
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


def _train_dev(spec: TaskSpec, dev_examples: list, data, max_examples, seed: int) -> tuple[list, list, str]:
    """(train, dev, data note): the task's train file when there is one; without one, a seeded 80/20 split of
    dev, with a WARNING and a note for the results' ``data_note``. A train file that is there but malformed is
    an error (:class:`DataFormatError` naming the file), never a reason to fall back."""
    try:
        path = task_file(spec, _data_root(data), "train")
    except (FileNotFoundError, ValueError) as err:  # no train file, or the task has no train split
        order = np.random.default_rng(seed).permutation(len(dev_examples))
        cut = max(1, int(0.8 * len(dev_examples)))
        note = f"no train file: fine-tuned on {cut} dev examples (80%, seed {seed}), scored on the other {len(dev_examples) - cut}"
        logger.warning("%s: %s (%s)", spec.name, note, err)
        return [dev_examples[i] for i in order[:cut]], [dev_examples[i] for i in order[cut:]], note
    try:
        train = load_task(spec.name, data, split="train", max_examples=max_examples)
    except DataFormatError as err:
        if str(path) in str(err):
            raise
        raise DataFormatError(f"{path}: {err}") from err
    return train, dev_examples, getattr(train, "data_note", "")
