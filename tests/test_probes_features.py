"""Sparse-dictionary features as probe inputs (probes.run(..., features=dictionary)): the same probe as one
trained by hand on hand-encoded features, top-k probes on the features chosen on train by the ANOVA F
statistic (checked against scipy), and the dictionary's identity in the result key."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sae_fixtures
import torch
from scipy.stats import f_oneway

import probes
import workbench as wb
from probes.data import load_treebank
from probes.experiment import SPLITS, _classification_data
from probes.features import class_separation, top_features
from probes.models import LinearProbe
from probes.store import ActivationStore
from probes.tasks import get_task
from workbench import sae

HOOK = "blocks.1.hook_resid_post"  # store layer 2
MAX_SENTENCES = 16
PROBE_OPTIONS = {"max_epochs": 25}  # L-BFGS iterations: enough to compare, few enough to be quick


def random_dictionary(d_in: int, d_sae: int = 24, seed: int = 0, hook: str = HOOK) -> sae.SparseAutoencoder:
    return sae_fixtures.random_dictionary(d_in, d_sae, hook, seed=seed)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    model = wb.zoo.tiny("bert", task="base", device="cpu")
    dictionary = random_dictionary(model.config.d_model)
    store_dir = tmp_path_factory.mktemp("store")
    results = probes.run(
        model,
        ["upos"],
        data="sample",
        max_sentences=MAX_SENTENCES,
        control=False,
        features=dictionary,
        top_k=(1, 4),
        store_dir=store_dir,
        progress=False,
        probe_options=PROBE_OPTIONS,
    )
    return model, dictionary, results, store_dir


@pytest.fixture(scope="module")
def hand_data(run):
    """(features [1, n, d_sae], labels [n]) per split: the stored activations the run extracted (layer 2
    only), encoded by hand; and n_classes."""
    _, dictionary, _, store_dir = run
    task = get_task("upos")
    data = {}
    for split in SPLITS:
        sentences = load_treebank("sample", split, max_sentences=MAX_SENTENCES)
        (folder,) = Path(store_dir).glob(f"*/sample-{split}-mean-*")
        store = ActivationStore(folder)
        assert store.layers == [2]
        activations, labels = _classification_data(task, sentences, store)
        with torch.no_grad():
            data[split] = (dictionary.encode(activations[0])[None].float(), labels)
    return data, len(task.label_names)


def scores_of(data, n_classes, columns=None) -> dict:
    """{(split, metric): value} of a LinearProbe (seed 0) trained on train, early-stopped on dev."""
    chosen = {split: (x if columns is None else x[:, :, columns], y) for split, (x, y) in data.items()}
    probe = LinearProbe(n_classes, seed=0, **PROBE_OPTIONS).fit(*chosen["train"], *chosen["dev"])
    return {
        (split, metric): values[0].item()
        for split in ("dev", "test")
        for metric, values in probe.score(*chosen[split]).items()
        if metric != "loss"
    }


def test_the_probe_reads_the_dictionarys_features_at_its_layer(run, hand_data):
    _, _, results, _ = run
    frame = results.frame
    assert (frame["input"] == "sae_features").all() and (frame["layer"] == 2).all()
    full = frame[frame["top_k"].isna()].set_index(["split", "metric"])["value"]
    expected = scores_of(*hand_data)
    assert len(full) == len(expected) == 4  # accuracy and macro_f1 on dev and test
    for key, value in expected.items():
        assert full[key] == pytest.approx(value, abs=1e-6), key


def test_top_k_probes_use_the_k_features_that_separate_the_train_classes_best(run, hand_data):
    _, _, results, _ = run
    data, n_classes = hand_data
    frame = results.frame
    train_x, train_y = data["train"]
    x = train_x[0].double().numpy()
    groups = [x[train_y.numpy() == c] for c in np.unique(train_y.numpy())]
    f_scores = np.nan_to_num(f_oneway(*groups).statistic, nan=0.0)
    for k in (1, 4):
        rows = frame[frame["top_k"] == k]
        assert set(zip(rows["split"], rows["metric"])) == {
            (s, m) for s in ("dev", "test") for m in ("accuracy", "macro_f1")
        }
        chosen = [int(i) for i in rows["features"].iloc[0].split(",")]
        assert len(chosen) == k and (rows["features"] == rows["features"].iloc[0]).all()
        assert chosen == np.argsort(-f_scores, kind="stable")[:k].tolist()  # chosen on train alone
        expected = scores_of(data, n_classes, chosen)
        for (split, metric), value in rows.set_index(["split", "metric"])["value"].items():
            assert value == pytest.approx(expected[(split, metric)], abs=1e-6)


def test_class_separation_is_the_anova_f_statistic():
    generator = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (60,), generator=generator)
    features = torch.randn(60, 5, generator=generator)
    features[:, 2] += 3.0 * labels  # feature 2 separates the classes
    features[:, 4] = 1.0  # constant: no evidence
    groups = [features[labels == c].numpy().astype(np.float64) for c in range(3)]
    expected = np.nan_to_num(f_oneway(*groups).statistic, nan=0.0)
    np.testing.assert_allclose(class_separation(features, labels).numpy(), expected, rtol=1e-5)
    assert top_features(features, labels, 1) == [2]
    with pytest.raises(ValueError, match="top_k"):
        top_features(features, labels, 6)


def test_results_of_another_dictionary_never_share_a_key(run):
    model, dictionary, first, store_dir = run
    other = random_dictionary(model.config.d_model, seed=1)
    second = probes.run(
        model,
        ["upos"],
        data="sample",
        max_sentences=MAX_SENTENCES,
        control=False,
        features={str(model.config.name_or_path): other},
        top_k=(),
        store_dir=store_dir,  # the stored activations are shared: only the dictionary differs
        progress=False,
        probe_options=PROBE_OPTIONS,
    )
    (key_1,), (key_2,) = set(first.frame["provenance_id"]), set(second.frame["provenance_id"])
    assert key_1 != key_2
    assert set(first.frame["dictionary"]) != set(second.frame["dictionary"])
    record_1, record_2 = first.provenance[key_1], second.provenance[key_2]
    assert record_1["features"]["weights"] != record_2["features"]["weights"]
    assert record_1["top_k"] == [1, 4] and record_2["top_k"] == [] and second.frame["top_k"].isna().all()


def test_features_refuses_dictionaries_it_cannot_read(run):
    model, _, _, _ = run
    arguments = dict(data="sample", max_sentences=4, control=False, progress=False)
    off_stream = random_dictionary(model.config.d_model, hook="blocks.1.hook_mlp_out")
    with pytest.raises(ValueError, match="residual stream"):
        probes.run(model, ["upos"], features=off_stream, **arguments)
    with pytest.raises(ValueError, match="d_model"):
        probes.run(model, ["upos"], features=random_dictionary(model.config.d_model + 1), **arguments)
    with pytest.raises(KeyError, match="no dictionary for model"):
        probes.run(model, ["upos"], features={"another model": off_stream}, **arguments)
    with pytest.raises(ValueError, match="leaves it out"):
        probes.run(
            model, ["upos"], features=random_dictionary(model.config.d_model), layers=[0, 1], **arguments
        )
