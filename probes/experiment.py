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

from workbench.pages import figure_div, label_facet_axes, write_page

from .data import load_treebank
from .features import FeatureStore, dictionary_layer, dictionary_record, top_features
from .models import ArcProbe, DepthProbe, DistanceProbe, LinearProbe, MDLProbe, MLPProbe
from .store import extract
from .tasks import ArcControlTask, ControlTask, Task, get_task

SPLITS = ("train", "dev", "test")
CLASSIFIERS = {"linear": LinearProbe, "mlp": MLPProbe}


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
        store_dir: where activations are stored, one folder per model fingerprint, data, pooling and layers
            (reused only when all are equal); default: a temporary folder.
        rank: the structural probes' rank.
        mdl: also measure the online codelength (Voita & Titov 2020) of classification tasks on the train
            split: metrics ``codelength_bits`` and ``compression`` (split "train").
        features: a ``workbench.sae.SparseAutoencoder`` on a residual-stream hook point (or a mapping model
            name -> dictionary, a name for every model): probe its feature activations at its layer instead of
            the activations (only that layer is extracted; see :mod:`probes.features`).
        top_k: with ``features``, also probe classification tasks on the k features that separate the classes
            best on the train split (ANOVA F), for each k (those larger than the dictionary are skipped).
    """
    # from the modules, not the package's face: the ``probes`` command does not import that face (fast --help)
    from workbench.api import default_device
    from workbench.auto import AutoModel
    from workbench.model import HookedTransformer
    from workbench.version import __version__

    if probe not in CLASSIFIERS:
        raise ValueError(f"probe must be one of {sorted(CLASSIFIERS)}, got {probe!r}")
    model_list = [models] if isinstance(models, (str, Path, HookedTransformer)) else list(models)
    task_list = [
        get_task(t) if isinstance(t, str) else t for t in ([tasks] if isinstance(tasks, str) else tasks)
    ]
    sentences = {split: load_treebank(data, split, max_sentences=max_sentences) for split in SPLITS}
    store_root = Path(store_dir) if store_dir is not None else Path(tempfile.mkdtemp(prefix="probes-"))
    from workbench.provenance import data_fingerprint, model_fingerprint, record_id
    from workbench.zoo import is_stand_in

    data_fingerprints = {split: data_fingerprint(sentences[split]) for split in SPLITS}
    rows = []
    provenance: dict[str, dict[str, Any]] = {}
    for entry in model_list:
        if isinstance(entry, HookedTransformer):
            model = entry
            name = str(getattr(model.config, "name_or_path", "") or type(model).__name__)
        else:
            name = str(entry)
            model = AutoModel.from_pretrained(name, device=default_device())
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
            "probe_options": probe_options or {},
        }
        if dictionary is not None:
            ks = sorted({int(k) for k in top_k if int(k) <= dictionary.cfg.d_sae})
            record.update(layers=model_layers, features=dictionary_record(dictionary), top_k=ks)
        key = record_id(record)
        provenance[key] = record
        store_key = record_id(
            {"model": fingerprint, "data": data_fingerprints, "pooling": pooling, "layers": record["layers"]}
        )
        stores = {
            split: extract(
                model,
                [s.words for s in sentences[split]],
                store_root / _slug(name) / f"{_slug(data)}-{split}-{pooling}-{store_key}",
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
        layer_numbers = stores["train"].layers
        # training the probes (every layer, every task, its control task) is the long wait after extraction
        bar = _probe_bar(name, task_list, control, progress)
        for task in task_list:
            runs = [(task, False)]
            if control and task.level == "word" and task.kind == "classification":
                runs.append((ControlTask(task, seed=seed), True))
            elif control and task.name == "arc":
                runs.append((ArcControlTask(seed=seed), True))
            results = {}
            for current, is_control in runs:
                bar.set_postfix_str(f"{task.name}{' control task' if is_control else ''}")
                results[is_control] = _probe_task(
                    current, sentences, stores, probe, seed, rank, probe_options or {}, mdl
                )
                bar.update()
            for (split, metric), values in results[False].items():
                control_values = results.get(True, {}).get((split, metric))
                for layer, value in zip(layer_numbers, values.tolist()):
                    row = {
                        "model": name,
                        "task": task.name,
                        "layer": layer,
                        "probe": _probe_name(task, probe),
                        "split": split,
                        "metric": metric,
                        "value": value,
                        "control": None,
                        "selectivity": None,
                        "stand_in": stand_in,
                        "provenance_id": key,
                    }
                    if control_values is not None:
                        control_value = control_values[layer_numbers.index(layer)].item()
                        row.update(control=control_value, selectivity=value - control_value)
                    if dictionary is not None:
                        row.update(
                            input="sae_features", dictionary=_dictionary_id(record), top_k=None, features=None
                        )
                    rows.append(row)
            if (
                dictionary is not None
                and task.kind == "classification"
                and task.level in ("word", "sentence")
            ):
                same = ("model", "layer", "probe", "stand_in", "provenance_id", "input", "dictionary")
                template = {column: rows[-1][column] for column in same}  # this task's last row
                options = probe_options or {}
                rows.extend(
                    _top_k_rows(runs, sentences, stores, probe, seed, options, record["top_k"], template)
                )
        bar.close()
    frame = pd.DataFrame(rows)
    if "top_k" in frame:  # None for the all-features rows: an integer column that can be missing
        frame["top_k"] = frame["top_k"].astype("Int64")
    return ProbingResults(frame, provenance)


def _probe_bar(name: str, tasks: Sequence[Task], control: bool, progress: bool):
    """A progress bar over the probes to train for one model: one step per task and per control task."""
    from tqdm.auto import tqdm

    steps = sum(
        1 + int(control and ((t.level == "word" and t.kind == "classification") or t.name == "arc"))
        for t in tasks
    )
    return tqdm(total=steps, desc=f"probes for {Path(name).name or name}", unit="task", disable=not progress)


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


def _probe_task(task, sentences, stores, probe, seed, rank, options, mdl=False) -> dict:
    """{(split, metric): [layer] values} on dev and test (and the MDL code of train with ``mdl``)."""
    if isinstance(task, ControlTask):
        task.fit(sentences["train"])
    if _is_structural(task):
        features, labels = {}, {}
        for split in SPLITS:
            store = stores[split]
            kept = task.labels(sentences[split])
            features[split] = _sentence_features(store, len(sentences[split]))
            labels[split] = [torch.as_tensor(np.asarray(y), dtype=torch.float32) for y in kept]
        model = _structural_probe(task, rank, seed, options)
        model.fit(features["train"], labels["train"], features["dev"], labels["dev"])
        return _dev_test_scores(lambda split: model.score(features[split], labels[split]))
    if task.level == "word_pair" and task.kind == "classification":
        return _arc_scores(task, sentences, stores, rank, seed, options)
    if task.kind != "classification":
        raise ValueError(
            f"task {task.name!r} is a regression task; probes.run supports classification and "
            f"the structural tasks 'depth' and 'distance'"
        )
    data = {split: _classification_data(task, sentences[split], stores[split]) for split in SPLITS}
    names = task.label_names
    classifier = CLASSIFIERS[probe](len(names), seed=seed, **options)
    classifier.fit(*data["train"], *data["dev"])
    scores = _dev_test_scores(lambda split: classifier.score(*data[split]))
    if mdl:
        code = MDLProbe(len(names), seed=seed).fit(*data["train"], *data["dev"]).result_
        scores[("train", "codelength_bits")] = code["codelength_bits"]
        scores[("train", "compression")] = code["compression"]
    return scores


def _dev_test_scores(score) -> dict:
    """``{(split, metric): values}`` on the dev and test splits from ``score(split)`` (a probe's ``score``
    dict), the training loss left out."""
    return {
        (split, metric): values
        for split in ("dev", "test")
        for metric, values in score(split).items()
        if metric != "loss"
    }


def _sentence_features(store, n_sentences: int) -> list[torch.Tensor]:
    return [store.stack(rows=slice(store.offsets[i], store.offsets[i + 1])) for i in range(n_sentences)]


def _arc_scores(task: Task, sentences, stores, rank: int, seed: int, options: dict) -> dict:
    """Arc prediction (or its control) as head selection with the bilinear :class:`ArcProbe`."""
    features, heads = {}, {}
    for split in SPLITS:
        features[split] = _sentence_features(stores[split], len(sentences[split]))
        heads[split] = [
            torch.as_tensor(np.where(matrix.any(1), matrix.argmax(1), -1))
            for matrix in task.labels(sentences[split], check=False)
        ]
    probe = ArcProbe(rank, seed=seed, **options)
    probe.fit(features["train"], heads["train"], features["dev"], heads["dev"])
    return _dev_test_scores(lambda split: probe.score(features[split], heads[split]))


def _classification_data(task: Task, sentences, store):
    """(features [layer, n, d], labels [n]) for word- or sentence-level classification; labels the train split
    did not see are dropped (they cannot be predicted)."""
    labels = task.labels(sentences, check=False)
    names = task.label_names
    index = {label: i for i, label in enumerate(names)}
    if task.level == "word":
        rows, targets = [], []
        for sentence_index, word_labels in enumerate(labels):
            if word_labels is None:
                continue
            start = int(store.offsets[sentence_index])
            for word, label in enumerate(word_labels):
                if label is not None and label in index:
                    rows.append(start + word)
                    targets.append(index[label])
        return store.stack(rows=np.asarray(rows)), torch.tensor(targets)
    # Sentence level: the mean of the sentence's word vectors.
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
