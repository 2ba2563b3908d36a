"""The official metrics against values computed by hand (and scikit-learn where it has the metric)."""

from __future__ import annotations

import math

import pytest
from sklearn.metrics import f1_score, matthews_corrcoef

from workbench.bench import metrics as M


def test_accuracy_and_f1_by_hand():
    predictions = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    labels = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]  # TP 3, FP 1, FN 2, TN 4
    assert M.accuracy(predictions, labels) == pytest.approx(0.7)
    assert M.f1(predictions, labels) == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert M.f1(predictions, labels, positive=0) == pytest.approx(2 * 4 / (2 * 4 + 2 + 1))


def test_matthews_correlation_on_a_confusion_matrix():
    # TP 3, TN 4, FP 1, FN 2: (3*4 - 1*2) / sqrt((3+1)(3+2)(4+1)(4+2)) = 10 / sqrt(600)
    predictions = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    labels = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]
    assert M.matthews_corrcoef(predictions, labels) == pytest.approx(10 / math.sqrt(600))
    assert M.matthews_corrcoef(predictions, labels) == pytest.approx(matthews_corrcoef(labels, predictions))
    assert M.matthews_corrcoef([1, 1, 1], [1, 0, 1]) == 0.0  # a constant prediction: undefined -> 0, as GLUE


def test_macro_f1_matches_scikit_learn():
    predictions = [0, 1, 2, 2, 1, 0, 2, 1]
    labels = [0, 2, 2, 1, 1, 0, 2, 2]
    assert M.macro_f1(predictions, labels) == pytest.approx(f1_score(labels, predictions, average="macro"))


def test_pearson_and_spearman_by_hand():
    x, y = [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 4.0]
    # deviations x: -1.5,-.5,.5,1.5; y: -1.75,.25,1.25,.25 -> sum xy = 2.625+(-.125)+.625+.375 = 3.5
    expected = 3.5 / math.sqrt(5.0 * (1.75**2 + 0.25**2 + 1.25**2 + 0.25**2))
    assert M.pearson(x, y) == pytest.approx(expected)
    # ranks of y with the tie averaged: [1, 2.5, 4, 2.5]
    assert M.spearman(x, y) == pytest.approx(M.pearson([1, 2, 3, 4], [1, 2.5, 4, 2.5]))
    assert M.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("text", "normalized"),
    [
        ("The Eiffel Tower!", "eiffel tower"),
        ("an apple, a pear   and the fig.", "apple pear and fig"),
        ("Theatre", "theatre"),  # "the" inside a word stays
        ("A-10's", "a10s"),  # punctuation goes before articles: "a10s" is not the article "a"
        ("  (the)  ", ""),
    ],
)
def test_squad_normalization(text, normalized):
    assert M.normalize_answer(text) == normalized


def test_squad_exact_match_and_f1():
    assert M.squad_exact("the Cat.", "A cat") == 1.0
    # "cat sat" against "cat sat down": precision 1, recall 2/3 -> F1 0.8
    assert M.squad_f1("the cat sat", "A cat sat down") == pytest.approx(0.8)
    assert M.squad_f1("dog", "cat") == 0.0
    scores = M.squad_scores(
        {"q1": "the cat sat", "q2": "Paris"}, {"q1": ["A cat sat down", "cat sat"], "q2": ["London"]}
    )
    assert scores["exact_match"] == pytest.approx(0.5)  # q1 exact against its second answer
    assert scores["f1"] == pytest.approx(0.5)


def test_squad_v2_unanswerable():
    scores = M.squad_scores({"a": "", "b": "x", "c": ""}, {"a": [], "b": [], "c": ["Bern"]})
    assert scores["exact_match"] == pytest.approx(1 / 3)
    assert scores["NoAns_exact"] == pytest.approx(0.5) and scores["HasAns_exact"] == 0.0
    with pytest.raises(ValueError, match="no prediction"):
        M.squad_scores({}, {"a": ["x"]})


def test_glue_score_is_the_mean_of_task_means():
    results = {
        "cola": {"mcc": 0.4},
        "mrpc": {"f1": 0.9, "accuracy": 0.8},
        "stsb": {"pearson": 0.8, "spearman": 0.6},
    }
    assert M.glue_score(results) == pytest.approx((0.4 + 0.85 + 0.7) / 3)
    with pytest.raises(ValueError, match="lacks metric"):
        M.glue_score({"mrpc": {"accuracy": 0.8}})
    with pytest.raises(ValueError, match="not a GLUE task"):
        M.glue_score({"copa": {"accuracy": 0.8}})


def test_metric_input_errors():
    with pytest.raises(ValueError, match="same length"):
        M.accuracy([1, 0], [1])
    with pytest.raises(ValueError, match="unknown metric"):
        M.compute(["bleu"], [1], [1])
