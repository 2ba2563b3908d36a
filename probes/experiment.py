"""``probes.run``: a probing experiment over models × tasks × layers, with control tasks, as one call.

For every model: word representations of the train/dev/test sentences are extracted once into the
activation store (all layers in one pass); for every task a probe is trained on all layers at once (train,
early-stopped on dev) and scored on dev and test. Control tasks (Hewitt & Liang 2019) give selectivity =
task accuracy − control accuracy, per layer.

Every result row carries ``stand_in`` (the model is a random stand-in from ``wb.zoo``) and ``provenance_id``,
the key of its record in :attr:`ProbingResults.provenance`: the model's fingerprint (a hash of its weights as
loaded, dtype, config, editing hooks), the data's (a hash of every sentence's annotation, per split) and the
arguments. Activations are stored per (model fingerprint, data, pooling, layers) under ``store_dir``, so a
rerun reuses them only when all of those are equal, and another model of the same name gets its own store.

With ``features=`` (a sparse dictionary of ``workbench.sae``, or one per model) the probes read the dictionary's
feature activations at its layer instead of the activations (:mod:`probes.features`), and classification tasks
are also probed on the ``top_k`` features that best separate the classes on the training split: is the
property carried by a few features? Those rows say ``input="sae_features"``, ``dictionary`` (a hash of the
dictionary's weights and config, also in the provenance record, so results of two dictionaries never share a
key), ``top_k`` (None for all features) and ``features`` (the chosen features, best first).
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from workbench import distributed
from workbench.pages import figure_div, label_facet_axes, write_page

from .data import load_treebank
from .features import FeatureStore, dictionary_layer, dictionary_record, top_features
from .models import ArcProbe, DepthProbe, DistanceProbe, LinearProbe, MDLProbe, MLPProbe
from .store import extract
from .tasks import ArcControlTask, ControlTask, Task, get_task

SPLITS = ("train", "dev", "test")
CLASSIFIERS = {"linear": LinearProbe, "mlp": MLPProbe}
PARALLEL_MODES = ("units", "data")  # how torchrun's ranks share probe training: see run()


@dataclass
class ProbingResults:
    """Attributes:
    frame: tidy: model, task, layer, probe, split, metric, value, control (the control task's value of the
        same metric, where there is one), selectivity (value − control), stand_in (a random stand-in model:
        its numbers are not meaningful) and provenance_id (the key of the row's record in ``provenance``);
        with ``features=`` also input (``"sae_features"``), dictionary (its id), top_k (None: all features)
        and features (a top-k row's features, comma-separated, best first).
    provenance: ``{provenance_id: record}``: model fingerprint, data fingerprints and arguments.
    """

    frame: pd.DataFrame
    provenance: dict[str, dict[str, Any]] = field(default_factory=dict)

    def figure(self, split: str = "test", metric: str | None = None):
        """Plotly: the metric per layer, one line per model, one panel per task."""
        import plotly.express as px

        data = self.frame[self.frame["split"] == split]
        if "top_k" in data:  # the top-k feature probes are rows of the table, not points of the curves
            data = data[data["top_k"].isna()]
        if metric is not None:
            data = data[data["metric"] == metric]
        else:  # each task's headline metric
            data = data[data["metric"].isin(["accuracy", "uuas", "root_accuracy"])]
        data = data.assign(model=_labels(data))
        figure = px.line(
            data,
            x="layer",
            y="value",
            color="model",
            facet_col="task",
            facet_col_wrap=3,
            markers=True,
            hover_data=["metric", "control", "selectivity"],
            labels={"value": "score", "layer": "layer (0 = embeddings)"},
            title=f"probing ({split} split): metric per layer",
        )
        metrics = data.groupby("task")["metric"].agg(lambda names: " / ".join(sorted(set(names))))
        rows = 1 + (data["task"].nunique() - 1) // 3
        return label_facet_axes(figure, "task", metrics.to_dict()).update_layout(height=150 + 300 * rows)

    def save(self, folder: str | Path) -> Path:
        """Write ``results.csv``, ``provenance.json`` and ``report.html``, a report that draws offline (plotly.js
        from ``plotly.min.js``, written beside it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(folder / "results.csv", index=False)
        (folder / "provenance.json").write_text(json.dumps(self.provenance, indent=2, sort_keys=True))
        best = (
            self.frame[self.frame["split"] == "test"]
            .sort_values("value", ascending=False)
            .groupby(["model", "task", "metric"], as_index=False)
            .first()
        )
        parts = [
            "<h1>Probing report</h1>",
            "<p>Probes trained on train, early-stopped on dev, scored on test. Selectivity = task − control "
            "(Hewitt &amp; Liang 2019).</p>",
            *_stand_in_notice(self.frame),
            figure_div(self.figure()),
            "<h2>Best layer per model, task and metric (test)</h2>",
            best.to_html(index=False, float_format=lambda v: f"{v:.3f}"),
        ]
        write_page(folder / "report.html", "Probing report", parts)  # styled as the notebook reports
        return folder


def _labels(frame: pd.DataFrame) -> pd.Series:
    """Model names for plots: a random stand-in is never shown under the real model's name alone."""
    if "stand_in" not in frame:
        return frame["model"]
    return (
        frame["model"]
        .where(~frame["stand_in"].astype(bool), frame["model"] + " (random stand-in)")
        .rename("model")
    )


def _stand_in_notice(frame: pd.DataFrame) -> list[str]:
    if "stand_in" not in frame or not frame["stand_in"].astype(bool).any():
        return []
    names = sorted(set(frame.loc[frame["stand_in"].astype(bool), "model"]))
    return [
        f'<p class="stand-in"><b>Random stand-ins</b> (random weights; their numbers are not meaningful): '
        f"{', '.join(names)}</p>"
    ]


def run(
    models,
    tasks: str | Sequence[str | Task],
    data: str = "sample",
    layers="all",
    probe: str = "linear",
    control: bool = True,
    pooling: str = "mean",
    store_dir: str | Path | None = None,
    max_sentences: int | None = None,
    seed: int = 0,
    rank: int = 32,
    mdl: bool = False,
    progress: bool = True,
    probe_options: dict | None = None,
    features=None,
    top_k: Sequence[int] = (1, 4, 16),
    stream_rows: int | None = None,
    parallel: str = "units",
) -> ProbingResults:
    """Probe every layer of every model for every task.

    Args:
        models: names, folders or hub ids (``"minilm"``), or loaded workbench models (e.g. a stand-in from
            ``wb.zoo.tiny``), one or a list.
        tasks: task names (``"upos"``, ``"xpos"``, ``"deprel"``, ``"arc"``, ``"depth"``, ``"distance"``, sentence
            tasks such as ``"sentence_length_bin"``) or :class:`~probes.tasks.Task` objects.
        data: a UD treebank: ``"sample"`` (committed), ``"ud_english_ewt"`` or a folder of ``*-ud-*.conllu``.
        layers: ``"all"`` (embeddings + every block) or a list of layer numbers (0 = embeddings).
        probe: ``"linear"`` or ``"mlp"`` for classification tasks (structural tasks use their own probes).
        control: also train control tasks for word-level classification tasks and report selectivity.
        store_dir: where activations are stored (a folder or an fsspec URL), one store per model fingerprint,
            data, pooling and layers (reused only when all are equal); default: a temporary folder.
        rank: the structural probes' rank.
        mdl: also measure the online codelength (Voita & Titov 2020) of classification tasks on the train
            split: metrics ``codelength_bits`` and ``compression`` (split "train").
        features: a ``workbench.sae.SparseAutoencoder`` on a residual-stream hook point (or a mapping model
            name -> dictionary, a name for every model): probe its feature activations at its layer instead of
            the activations (only that layer is extracted; see :mod:`probes.features`).
        top_k: with ``features``, also probe classification tasks on the k features that separate the classes
            best on the train split (ANOVA F), for each k (those larger than the dictionary are skipped).
        stream_rows: read the features of word-level classification, structural and arc tasks from the store
            this many words at a time instead of loading a split (probes larger than memory; the MLP,
            structural and arc probes then train with full-batch L-BFGS): memory is set by it, not by the data.
        parallel: under ``torchrun``, how the ranks share the probe training: ``"units"`` (each rank trains
            its own probes, below) or ``"data"`` (with ``stream_rows``: every rank trains every probe on its
            share of the store's chunks, the losses and gradients summed over the ranks, so one probe larger
            than a machine's memory or time trains on all of them; the fit equals one process's). Alone, both
            are the same.

    Under ``torchrun`` every rank calls this with the same arguments and gets the same results back, equal
    (to float tolerance) to a single process's, rows in the same order. Each model's activations are
    extracted by all ranks together (:func:`probes.store.extract`), into ``store_dir``, which every rank must
    see (with ``store_dir=None``, rank 0's temporary folder: one node only). Then the probes to train — a
    model's task or control task on a group of layers (:func:`_units`) — are shared among the ranks
    (:func:`workbench.distributed.map_units`): a rank reads and trains only its layers. The linear probe's
    layers are split (each layer's L-BFGS is independent of the others, so a layer trains alike alone or
    batched); the Adam-trained probes (MLP, structural, arc) keep their layers together, as their random start
    and data order are drawn for all layers at once. Rank 0 shows the progress bar, over every rank's probes.
    """
    # from the modules, not the package's face: the ``probes`` command does not import that face (fast --help)
    from workbench.api import default_device
    from workbench.auto import AutoModel
    from workbench.model import HookedTransformer
    from workbench.version import __version__

    if probe not in CLASSIFIERS:
        raise ValueError(f"probe must be one of {sorted(CLASSIFIERS)}, got {probe!r}")
    if stream_rows is not None and (not isinstance(stream_rows, int) or stream_rows < 1):
        raise ValueError(f"stream_rows must be a positive integer or None, got {stream_rows!r}")
    if parallel not in PARALLEL_MODES:
        raise ValueError(f"parallel must be one of {PARALLEL_MODES}, got {parallel!r}")
    if parallel == "data" and stream_rows is None:
        raise ValueError(
            "parallel='data' shares each probe's rows among the ranks by streaming them from the store: "
            "give stream_rows too (e.g. stream_rows=65536)"
        )
    ctx = distributed.init()  # under torchrun: before any model is loaded (NCCL picks this rank's GPU)
    model_list = [models] if isinstance(models, (str, Path, HookedTransformer)) else list(models)
    task_list = [
        get_task(t) if isinstance(t, str) else t for t in ([tasks] if isinstance(tasks, str) else tasks)
    ]
    options = probe_options or {}
    sentences = {split: load_treebank(data, split, max_sentences=max_sentences) for split in SPLITS}
    store_root = _store_root(store_dir)
    from workbench.provenance import data_fingerprint, model_fingerprint, record_id
    from workbench.zoo import is_stand_in

    data_fingerprints = {split: data_fingerprint(sentences[split]) for split in SPLITS}
    provenance: dict[str, dict[str, Any]] = {}
    plans = []
    for entry in model_list:
        if isinstance(entry, HookedTransformer):
            model = entry
            name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
        else:
            name = str(entry)
            model = AutoModel.from_pretrained(name, device=_rank_device(default_device(), ctx))
        fingerprint = model_fingerprint(model)
        stand_in = is_stand_in(model)
        dictionary = _dictionary_for(features, name, entry)
        model_layers = layers
        if dictionary is not None:
            model_layers = [_feature_layer(dictionary, model, layers)]
        record = {
            "format": 1,
            "workbench_version": __version__,
            "model": name,
            "model_fingerprint": fingerprint,
            "stand_in": stand_in,
            "data": str(data),
            "data_fingerprint": data_fingerprints,
            "max_sentences": max_sentences,
            "layers": layers if isinstance(layers, str) else [int(layer) for layer in layers],
            "pooling": pooling,
            "probe": probe,
            "control": control,
            "seed": seed,
            "rank": rank,
            "mdl": mdl,
            "probe_options": options,
        }
        if stream_rows is not None:  # streaming trains the MLP, structural and arc probes with L-BFGS
            record["stream_rows"] = stream_rows
        if dictionary is not None:
            ks = sorted({int(k) for k in top_k if int(k) <= dictionary.cfg.d_sae})
            record.update(layers=model_layers, features=dictionary_record(dictionary), top_k=ks)
        key = record_id(record)
        provenance[key] = record
        store_key = record_id(
            {"model": fingerprint, "data": data_fingerprints, "pooling": pooling, "layers": record["layers"]}
        )
        stores = {  # every rank extracts its share of each split's chunks (alone: all of them)
            split: extract(
                model,
                [s.words for s in sentences[split]],
                _join(store_root, _slug(name), f"{_slug(data)}-{split}-{pooling}-{store_key}"),
                pooling=pooling,
                layers=model_layers,
                data_id=_data_id(data, split, sentences[split]),
                progress=progress,
            )
            for split in SPLITS
        }
        if dictionary is not None:
            stores = {
                split: FeatureStore(store, dictionary, model_layers[0]) for split, store in stores.items()
            }
        plans.append(
            _ModelPlan(
                name=name,
                stand_in=stand_in,
                provenance_id=key,
                stores=stores,
                layers=list(stores["train"].layers),
                dictionary=_dictionary_id(record) if dictionary is not None else None,
                top_k=record.get("top_k", []),
            )
        )
        del model  # the stores are all the probes need; the next model loads into the freed memory
    data_parallel = parallel == "data"
    setup = _ProbeSetup(
        task_list, sentences, probe, control, seed, rank, options, mdl, stream_rows, data_parallel
    )
    # training the probes (every layer, every task, its control task) is the long wait after extraction
    if data_parallel:  # every rank takes part in every probe (all layers together), in the same order
        units = _units(plans, setup, world_size=1)
        outcomes = _run_together(units, plans, setup, progress)
    else:
        units = _units(plans, setup, ctx.world_size)
        outcomes = distributed.map_units(
            lambda unit: _run_unit(unit, plans, setup), units, progress=progress, desc="probes", unit="probe"
        )
    frame = pd.DataFrame(_result_rows(plans, setup, units, outcomes))
    if "top_k" in frame:  # None for the all-features rows: an integer column that can be missing
        frame["top_k"] = frame["top_k"].astype("Int64")
    return ProbingResults(frame, provenance)


def _rank_device(device: torch.device, ctx) -> torch.device:
    """The device a rank loads its model on: under ``torchrun`` with GPUs, its own (``cuda:{LOCAL_RANK}``)."""
    if device.type == "cuda" and ctx.distributed:
        return torch.device("cuda", ctx.local_rank)
    return device


def _store_root(store_dir) -> Path | str:
    """``store_dir`` (a URL stays a string), or a temporary folder: rank 0's, which every rank must see."""
    if store_dir is not None:
        return str(store_dir) if "://" in str(store_dir) else Path(store_dir)
    root = distributed.broadcast_object(tempfile.mkdtemp(prefix="probes-") if distributed.is_main() else None)
    if distributed.all_reduce_scalar(float(Path(root).is_dir()), "min") < 1:  # a collective: all ranks raise
        raise ValueError(
            f"store_dir=None: rank 0's temporary folder {root} is not visible on every rank (a job over "
            f"several nodes?); pass store_dir= a folder every rank sees, or an fsspec URL (s3://...)"
        )
    return Path(root)


def _join(root: Path | str, *parts: str) -> Path | str:
    if isinstance(root, Path):
        return root.joinpath(*parts)
    return "/".join([root.rstrip("/"), *parts])


@dataclass
class _ModelPlan:
    """One model's part of a run, once its activations are stored: what its rows say and where they come from.

    Attributes:
        name, stand_in, provenance_id: the rows' columns. stores: split -> its ActivationStore (or
        FeatureStore). layers: the stored layer numbers. dictionary: the dictionary's id with ``features=``
        (else None), top_k: the ks of its top-k feature probes.
    """

    name: str
    stand_in: bool
    provenance_id: str
    stores: dict[str, Any]
    layers: list[int]
    dictionary: str | None
    top_k: list[int]


@dataclass(frozen=True)
class _ProbeSetup:
    """The arguments of :func:`run` that every probe unit trains with."""

    tasks: list[Task]
    sentences: dict[str, list]
    probe: str
    control: bool
    seed: int
    rank: int
    options: dict
    mdl: bool
    stream_rows: int | None = None
    data_parallel: bool = False


@dataclass(frozen=True)
class _Unit:
    """One piece of probe training, run on one rank: a model's task (``control``: its control task) on some of
    the model's stored layers, or (``top_k``) the top-k feature probes of a task and its control."""

    model: int  # index into the plans
    task: int  # index into the tasks
    control: bool
    layers: tuple[int, ...]
    top_k: bool = False


def _task_runs(task: Task, control: bool, seed: int) -> list[tuple[Task, bool]]:
    """``[(task, False)]`` and, with ``control``, its control task ``(control task, True)`` where there is one."""
    runs = [(task, False)]
    if control and task.level == "word" and task.kind == "classification":
        runs.append((ControlTask(task, seed=seed), True))
    elif control and task.name == "arc":
        runs.append((ArcControlTask(seed=seed), True))
    return runs


def _layers_independent(task: Task, setup: _ProbeSetup) -> bool:
    """Whether a layer's probe for ``task`` trains alike alone or batched with other layers, so that its layers
    may be split among ranks: the linear probe's L-BFGS starts at zero and keeps one history, line search and
    stopping test per layer (the MDL code's probes too). Adam (the MLP and linear probes with
    optimizer="adam", the structural and arc probes) draws one random start and one data order for all layers
    and stops them together: a layer's result depends on which layers train with it."""
    if _is_structural(task) or task.level == "word_pair" or task.kind != "classification":
        return False
    return setup.probe == "linear" and LinearProbe(2, **setup.options).optimizer == "lbfgs"


def _units(plans: list[_ModelPlan], setup: _ProbeSetup, world_size: int) -> list[_Unit]:
    """Every probe to train, in the order a single process trains them. A run whose layers are independent
    (:func:`_layers_independent`) is cut into ``min(world_size, n_layers)`` strided layer groups, so that
    every rank gets a part of every such run; alone, each run is one unit with all layers (batched)."""
    units = []
    for m, plan in enumerate(plans):
        n_groups = min(world_size, len(plan.layers))
        groups = [tuple(distributed.share(plan.layers, group, n_groups)) for group in range(n_groups)]
        for t, task in enumerate(setup.tasks):
            split = _layers_independent(task, setup)
            for _, is_control in _task_runs(task, setup.control, setup.seed):
                for layers in groups if split else [tuple(plan.layers)]:
                    units.append(_Unit(m, t, is_control, layers))
            if (
                plan.dictionary is not None
                and task.kind == "classification"
                and task.level in ("word", "sentence")
            ):
                units.append(_Unit(m, t, False, tuple(plan.layers), top_k=True))
    return units


def _run_unit(unit: _Unit, plans: list[_ModelPlan], setup: _ProbeSetup):
    """A probe unit's scores ``{(split, metric): [value per layer of unit.layers]}`` (plain floats), or a top-k
    unit's rows."""
    plan, task = plans[unit.model], setup.tasks[unit.task]
    stores = {split: _LayerSubset.of(store, unit.layers) for split, store in plan.stores.items()}
    runs = _task_runs(task, setup.control, setup.seed)
    if unit.top_k:
        template = {
            "model": plan.name,
            "layer": plan.layers[-1],
            "probe": _probe_name(task, setup.probe),
            "stand_in": plan.stand_in,
            "provenance_id": plan.provenance_id,
            "input": "sae_features",
            "dictionary": plan.dictionary,
        }
        return _top_k_rows(
            runs, setup.sentences, stores, setup.probe, setup.seed, setup.options, plan.top_k, template
        )
    current = {is_control: run_task for run_task, is_control in runs}[unit.control]
    scores = _probe_task(  # data_parallel=False: this rank's alone, the other ranks train other units
        current,
        setup.sentences,
        stores,
        setup.probe,
        setup.seed,
        setup.rank,
        setup.options,
        setup.mdl,
        stream_rows=setup.stream_rows,
        data_parallel=setup.data_parallel,
    )
    return {key: torch.as_tensor(values).detach().cpu().tolist() for key, values in scores.items()}


def _run_together(units: list[_Unit], plans: list[_ModelPlan], setup: _ProbeSetup, progress: bool) -> list:
    """``parallel="data"``: every rank runs every unit, in order, each probe's chunks shared among the ranks
    (the streamed sources' collectives keep the ranks in step); every rank ends with the same results."""
    from tqdm.auto import tqdm

    outcomes = []
    with tqdm(
        total=len(units), desc="probes", unit="probe", disable=not (progress and distributed.is_main())
    ) as bar:
        for unit in units:
            outcomes.append(_run_unit(unit, plans, setup))
            bar.update()
    return outcomes


class _LayerSubset:
    """A store seen through some of its layers: ``layers`` and ``stack()`` name only those (what the probes
    train on); everything else is the store's."""

    def __init__(self, store, layers: Sequence[int]) -> None:
        self._store = store
        self.layers = list(layers)

    @classmethod
    def of(cls, store, layers: Sequence[int]):
        """``store`` itself when ``layers`` are all its layers, else the subset."""
        return store if list(layers) == list(store.layers) else cls(store, layers)

    def layer(self, layer: int):
        if layer not in self.layers:
            raise KeyError(f"layer {layer} is not in this subset of the store; its layers: {self.layers}")
        return self._store.layer(layer)

    def stack(self, layers: Sequence[int] | None = None, rows=None) -> torch.Tensor:
        return self._store.stack(self.layers if layers is None else layers, rows=rows)

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def _result_rows(
    plans: list[_ModelPlan], setup: _ProbeSetup, units: list[_Unit], outcomes: list
) -> list[dict]:
    """The rows of the frame, in the order of a single process (model, task, split and metric, layer), from the
    units' outcomes: a run's layer groups are put back together, and a task's control values are its rows'."""
    parts: dict[tuple[int, int, bool], list[tuple[tuple[int, ...], dict]]] = {}
    top_k_rows: dict[tuple[int, int], list[dict]] = {}
    for unit, outcome in zip(units, outcomes):
        if unit.top_k:
            top_k_rows[(unit.model, unit.task)] = outcome
        else:
            parts.setdefault((unit.model, unit.task, unit.control), []).append((unit.layers, outcome))
    rows = []
    for m, plan in enumerate(plans):
        for t, task in enumerate(setup.tasks):
            results = {
                is_control: _merge_layers(parts[(m, t, is_control)], plan.layers)
                for _, is_control in _task_runs(task, setup.control, setup.seed)
            }
            for (split, metric), values in results[False].items():
                control_values = results.get(True, {}).get((split, metric))
                for index, (layer, value) in enumerate(zip(plan.layers, values)):
                    row = {
                        "model": plan.name,
                        "task": task.name,
                        "layer": layer,
                        "probe": _probe_name(task, setup.probe),
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "control": None,
                        "selectivity": None,
                        "stand_in": plan.stand_in,
                        "provenance_id": plan.provenance_id,
                    }
                    if control_values is not None:
                        row.update(control=control_values[index], selectivity=value - control_values[index])
                    if plan.dictionary is not None:
                        row.update(
                            input="sae_features", dictionary=plan.dictionary, top_k=None, features=None
                        )
                    rows.append(row)
            rows.extend(top_k_rows.get((m, t), []))
    return rows


def _merge_layers(parts: list[tuple[tuple[int, ...], dict]], layers: list[int]) -> dict:
    """``{(split, metric): [value per layer of layers]}`` from the scores of groups of those layers."""
    by_layer = {layer: (scores, i) for group, scores in parts for i, layer in enumerate(group)}
    keys = by_layer[layers[0]][0].keys()  # every group has the same (split, metric) keys, in the same order
    return {key: [by_layer[layer][0][key][by_layer[layer][1]] for layer in layers] for key in keys}


def _dictionary_id(record: dict) -> str:
    """The short id of the dictionary of a provenance record (a hash of its weights and config)."""
    from workbench.provenance import record_id

    return record_id(record["features"])


def _dictionary_for(features, name: str, entry):
    """The dictionary for this model: ``features`` itself, or its entry for the model's name."""
    if features is None:
        return None
    from workbench.sae import SparseAutoencoder

    if isinstance(features, SparseAutoencoder):
        return features
    if not isinstance(features, dict):
        raise TypeError(
            f"features must be a workbench.sae.SparseAutoencoder or a dict of model name -> one, "
            f"got {type(features).__name__}"
        )
    for key in (entry, name):
        if isinstance(key, str) and key in features:
            return features[key]
    raise KeyError(f"features has no dictionary for model {name!r}; it has {sorted(map(str, features))}")


def _feature_layer(dictionary, model, layers) -> int:
    """The store layer the dictionary reads, checked against ``layers``."""
    layer = dictionary_layer(dictionary, model)
    if layers != "all" and layer not in [int(chosen) for chosen in layers]:
        raise ValueError(
            f"the dictionary reads layer {layer} ({dictionary.cfg.hook_name}) but layers={layers!r} leaves it "
            f"out; pass layers='all' (only the dictionary's layer is extracted) or include {layer}"
        )
    return layer


def _top_k_rows(runs, sentences, stores, probe, seed, options, ks, template) -> list[dict]:
    """The rows of the probes on each task's top-k features (chosen on train), with selectivity against the
    control task's own top-k probe (the control chooses its features on its own labels)."""
    task = runs[0][0]
    results = {
        is_control: _top_k_scores(current, sentences, stores, probe, seed, options, ks)
        for current, is_control in runs
    }
    rows = []
    for k, (chosen, scores) in results[False].items():
        for (split, metric), values in scores.items():
            row = {
                **template,
                "task": task.name,
                "split": split,
                "metric": metric,
                "value": values[0].item(),
                "control": None,
                "selectivity": None,
                "top_k": k,
                "features": ",".join(map(str, chosen)),
            }
            control = results.get(True, {}).get(k, (None, {}))[1].get((split, metric))
            if control is not None:
                row.update(control=control[0].item(), selectivity=row["value"] - control[0].item())
            rows.append(row)
    return rows


def _top_k_scores(task, sentences, stores, probe, seed, options, ks) -> dict:
    """{k: (chosen features, {(split, metric): values [1]})}: the probe on the k features that separate the
    train split's classes best."""
    if isinstance(task, ControlTask):
        task.fit(sentences["train"])
    data = {split: _classification_data(task, sentences[split], stores[split]) for split in SPLITS}
    train_features, train_labels = data["train"]
    out = {}
    for k in ks:
        chosen = top_features(train_features[0], train_labels, k)
        restricted = {split: (x[:, :, chosen], y) for split, (x, y) in data.items()}
        classifier = CLASSIFIERS[probe](len(task.label_names), seed=seed, **options)
        classifier.fit(*restricted["train"], *restricted["dev"])
        scores = _dev_test_scores(
            lambda split, fitted=classifier, inputs=restricted: fitted.score(*inputs[split])
        )
        out[k] = (chosen, scores)
    return out


def _probe_name(task: Task, probe: str) -> str:
    if _is_structural(task):
        return "depth" if task.name == "depth" else "distance"
    return "arc" if task.level == "word_pair" else probe


def _is_structural(task: Task) -> bool:
    return task.name in ("depth", "distance")


def _structural_probe(task: Task, rank: int, seed: int, options: dict):
    return (DepthProbe if task.name == "depth" else DistanceProbe)(rank, seed=seed, **options)


def _probe_task(
    task, sentences, stores, probe, seed, rank, options, mdl=False, *, stream_rows=None, data_parallel=False
) -> dict:
    """{(split, metric): [layer] values} on dev and test (and the MDL code of train with ``mdl``).

    ``stream_rows``: read each split from its store ``stream_rows`` words at a time instead of loading its
    features (word-level classification, the structural and the arc probes; a sentence-level task's features,
    one mean vector per sentence, are loaded): the probes then train with full-batch L-BFGS (the MLP,
    structural and arc probes too, as if ``optimizer="lbfgs"`` were in ``options``), so memory is set by
    ``stream_rows``, not by the data. ``data_parallel``: every rank calls this for the same task and reads only
    its share of the chunks, the losses and gradients summed over the ranks (the fit equals one process's);
    False: the probe is this process's alone.
    """
    if isinstance(task, ControlTask):
        task.fit(sentences["train"])
    stream = None if stream_rows is None else _Streaming(int(stream_rows), data_parallel)
    if stream is not None and (probe == "mlp" or _is_structural(task) or task.level == "word_pair"):
        options = {"optimizer": "lbfgs", **options}  # streamed training is full-batch L-BFGS
    if _is_structural(task):
        features, labels = {}, {}
        for split in SPLITS:
            store = stores[split]
            kept = task.labels(sentences[split])
            features[split] = _sentence_features(store, len(sentences[split]), stream)
            labels[split] = [torch.as_tensor(np.asarray(y), dtype=torch.float32) for y in kept]
        model = _structural_probe(task, rank, seed, options)
        model.fit(features["train"], labels["train"], features["dev"], labels["dev"])
        return _dev_test_scores(lambda split: model.score(features[split], labels[split]))
    if task.level == "word_pair" and task.kind == "classification":
        return _arc_scores(task, sentences, stores, rank, seed, options, stream)
    if task.kind != "classification":
        raise ValueError(
            f"task {task.name!r} is a regression task; probes.run supports classification and "
            f"the structural tasks 'depth' and 'distance'"
        )
    if mdl and stream is not None and task.level == "word":
        raise ValueError(
            "mdl=True trains a probe on random subsets of the training words, which are read into memory; "
            "it cannot stream from the store: leave out mdl or stream_rows"
        )
    data = {split: _classification_data(task, sentences[split], stores[split], stream) for split in SPLITS}
    names = task.label_names
    classifier = CLASSIFIERS[probe](len(names), seed=seed, **options)
    classifier.fit(*data["train"], *data["dev"])
    scores = _dev_test_scores(lambda split: classifier.score(*data[split]))
    if mdl:
        code = MDLProbe(len(names), seed=seed).fit(*data["train"], *data["dev"]).result_
        scores[("train", "codelength_bits")] = code["codelength_bits"]
        scores[("train", "compression")] = code["compression"]
    return scores


@dataclass(frozen=True)
class _Streaming:
    """How :func:`_probe_task` reads a store it does not load: ``rows`` words per read, and whether the ranks
    share the chunks of one probe (``data_parallel``) or each trains its own."""

    rows: int
    data_parallel: bool

    def reader(self, store):
        """``read(index, layers)`` for the streamed sources: the store's rows ``index`` of ``layers``, float32."""
        return lambda index, layers: store.stack(layers, rows=index)


def _dev_test_scores(score) -> dict:
    """``{(split, metric): values}`` on the dev and test splits from ``score(split)`` (a probe's ``score``
    dict), the training loss left out."""
    return {
        (split, metric): values
        for split in ("dev", "test")
        for metric, values in score(split).items()
        if metric != "loss"
    }


def _sentence_features(store, n_sentences: int, stream: _Streaming | None = None):
    """The first ``n_sentences`` sentences' features: a list of [layer, n_i, d] tensors, or with ``stream`` a
    :class:`~workbench.probing.StreamedSentences` that reads them from the store chunk by chunk."""
    if stream is not None:
        from workbench.probing import StreamedSentences

        return StreamedSentences(
            stream.reader(store),
            np.asarray(store.offsets[: n_sentences + 1]),
            chunk_rows=stream.rows,
            layers=store.layers,
            distributed=stream.data_parallel,
        )
    return [store.stack(rows=slice(store.offsets[i], store.offsets[i + 1])) for i in range(n_sentences)]


def _arc_scores(task: Task, sentences, stores, rank: int, seed: int, options: dict, stream=None) -> dict:
    """Arc prediction (or its control) as head selection with the bilinear :class:`ArcProbe`."""
    features, heads = {}, {}
    for split in SPLITS:
        features[split] = _sentence_features(stores[split], len(sentences[split]), stream)
        heads[split] = [
            torch.as_tensor(np.where(matrix.any(1), matrix.argmax(1), -1))
            for matrix in task.labels(sentences[split], check=False)
        ]
    probe = ArcProbe(rank, seed=seed, **options)
    probe.fit(features["train"], heads["train"], features["dev"], heads["dev"])
    return _dev_test_scores(lambda split: probe.score(features[split], heads[split]))


def _word_rows(task: Task, sentences, store) -> tuple[np.ndarray, torch.Tensor]:
    """The store rows [n] (ascending) of the words with a label the train split saw, and those labels [n]."""
    index = {label: i for i, label in enumerate(task.label_names)}
    rows, targets = [], []
    for sentence_index, word_labels in enumerate(task.labels(sentences, check=False)):
        if word_labels is None:
            continue
        start = int(store.offsets[sentence_index])
        for word, label in enumerate(word_labels):
            if label is not None and label in index:
                rows.append(start + word)
                targets.append(index[label])
    return np.asarray(rows, dtype=np.int64), torch.tensor(targets, dtype=torch.long)


def _classification_data(task: Task, sentences, store, stream: _Streaming | None = None):
    """(features [layer, n, d], labels [n]) for word- or sentence-level classification; labels the train split
    did not see are dropped (they cannot be predicted). With ``stream``, a word-level task's features are a
    :class:`~workbench.probing.StreamedRows` over the store instead of a tensor."""
    if task.level == "word":
        rows, targets = _word_rows(task, sentences, store)
        if stream is None:
            return store.stack(rows=rows), targets
        from workbench.probing import StreamedRows

        features = StreamedRows(
            stream.reader(store),
            rows,
            chunk_rows=stream.rows,
            layers=store.layers,
            distributed=stream.data_parallel,
        )
        return features, targets
    # Sentence level: the mean of the sentence's word vectors.
    labels = task.labels(sentences, check=False)
    index = {label: i for i, label in enumerate(task.label_names)}
    features, targets = [], []
    for sentence_index, label in enumerate(labels):
        if label is None or label not in index:
            continue
        start, end = int(store.offsets[sentence_index]), int(store.offsets[sentence_index + 1])
        features.append(store.stack(rows=slice(start, end)).mean(1))
        targets.append(index[label])
    return torch.stack(features, dim=1), torch.tensor(targets)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_")[-80:] or "model"


def _data_id(data: str, split: str, sentences) -> str:
    digest = hashlib.sha256(json.dumps([s.words for s in sentences]).encode()).hexdigest()[:16]
    return f"{data}:{split}:{digest}"
