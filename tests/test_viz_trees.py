"""What the notebooks draw and say instead of a random model: the dependency-tree view (gold vs predicted
arcs), the box shown where a checkpoint is missing, the offline availability check that decides between the
two, and side-by-side comparisons that wrap instead of growing wider than the page."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import workbench as wb
from workbench import viz, zoo
from workbench.hub import available_offline
from workbench.viz.trees import arc_pairs


def adjacency(n, arcs):
    edges = np.zeros((n, n), dtype=bool)
    for i, j in arcs:
        edges[i, j] = edges[j, i] = True
    return edges


WORDS = ["The", "keys", "are", "on", "the", "table"]
GOLD = adjacency(6, [(0, 1), (1, 2), (2, 5), (3, 5), (4, 5)])
PREDICTED = adjacency(6, [(0, 1), (1, 2), (2, 3), (3, 5), (4, 5)])  # (2, 3) instead of (2, 5)


def traces_named(figure, name):
    return [t for t in figure.data if t.name == name]


def test_dependency_tree_draws_gold_above_and_colours_predicted_arcs_by_whether_they_are_gold():
    view = viz.dependency_tree(WORDS, GOLD, torch.tensor(PREDICTED), title="a tree", data="EWT test, n=1")
    figure = view.figure()
    assert (view.found, view.n_arcs) == (4, 5) and view.kind == "dependency_tree"
    gold, found, wrong = (
        traces_named(figure, n) for n in ("gold arc", "predicted, in gold", "predicted, not in gold")
    )
    assert (len(gold), len(found), len(wrong)) == (5, 4, 1)
    assert all(min(t.y) >= 0 for t in gold) and all(max(t.y) <= 0 for t in found + wrong)  # above / below
    wrong_x = wrong[0].x
    assert (min(wrong_x), max(wrong_x)) == pytest.approx((2, 3))  # the arc between "are" and "on"
    assert sum(t.showlegend for t in figure.data) == 3  # one legend entry per kind of arc
    assert "EWT test, n=1" in figure.layout.title.text and figure.layout.width <= 1000
    assert list(figure.data[-1].text) == WORDS
    assert "dependency_tree" in view.to_html()  # the static rendering of reports


def test_dependency_tree_gold_only_and_clear_errors():
    view = viz.dependency_tree(WORDS, GOLD.astype(int))
    assert view.found is None and len(view.figure().data) == 5 + 1
    assert arc_pairs(GOLD) == [(0, 1), (1, 2), (2, 5), (3, 5), (4, 5)]
    with pytest.raises(ValueError, match=r"shape \(6, 6\) for the 6 words, got shape \(5, 5\)"):
        viz.dependency_tree(WORDS, GOLD[:5, :5])
    one_way = GOLD.copy()
    one_way[1, 0] = False
    with pytest.raises(ValueError, match="predicted must be symmetric"):
        viz.dependency_tree(WORDS, GOLD, one_way)
    loop = GOLD.copy()
    loop[2, 2] = True
    with pytest.raises(ValueError, match="attached to itself"):
        viz.dependency_tree(WORDS, loop)


def test_missing_checkpoint_box_says_what_and_how_in_one_box():
    box = viz.missing_checkpoints(
        ["gpt2", "EleutherAI/pythia-70m"], "the logit lens on decoders.", "decoders"
    )
    text, page = box.text(), box._repr_html_()
    assert text.startswith("Not shown here: the logit lens on decoders.") and "..." not in text
    for needed in (
        "hf download gpt2",
        "hf download EleutherAI/pythia-70m",
        "--param decoders=",
        "stand_ins=True",
    ):
        assert needed in text
    assert page.count("<div") == 1 and "hf download EleutherAI/pythia-70m" in page and repr(box) == text
    single = viz.missing_checkpoints("gpt2", "causal attention", "second_model")
    assert "--param second_model=/path/to/folder" in single.text()
    with pytest.raises(ValueError, match="at least one checkpoint"):
        viz.missing_checkpoints([], "x", "p")
    with pytest.raises(ValueError, match="shows must be a non-empty string"):
        viz.missing_checkpoints("gpt2", " ", "p")


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache that huggingface_hub reads, offline."""
    import importlib

    constants = importlib.import_module("huggingface_hub.constants")
    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def cache_repo(cache, repo_id, names):
    snapshot = cache / ("models--" + repo_id.replace("/", "--")) / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in names:
        (snapshot / name).write_text("{}")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)


def test_available_offline_reads_folders_aliases_and_the_cache_without_network(empty_cache, tmp_path):
    assert available_offline("minilm") and available_offline(wb.hub.resolve_checkpoint("minilm"))
    assert not available_offline("gpt2") and not available_offline(tmp_path / "nowhere")
    cache_repo(empty_cache, "org/with-weights", ["config.json", "model.safetensors"])
    cache_repo(empty_cache, "org/config-only", ["config.json"])
    assert available_offline("org/with-weights")
    assert not available_offline("org/config-only")  # loading it would fail: no weights


def test_compare_wraps_many_models_onto_rows_that_fit_the_page():
    minilm = wb.load("minilm", device="cpu")
    gpt = zoo.tiny("gpt2", device="cpu")
    models = {"minilm": minilm, "gpt2 a": gpt, "gpt2 b": gpt}
    figure = viz.compare(models, "The keys are on the table.").figure()
    assert figure.layout.width <= 1000
    rows = {trace.yaxis for trace in figure.data}
    assert len(figure.data) == 3 and len(rows) == 3  # a panel each, the third on a second row
    assert figure.layout.yaxis3.domain[1] < figure.layout.yaxis.domain[0]  # below the first row
