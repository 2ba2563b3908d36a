"""The official metrics of GLUE, SuperGLUE and SQuAD, in plain Python/numpy (no scikit-learn at run time).

- accuracy; F1 of the positive class (MRPC, QQP); macro F1 (CB); Matthews correlation (CoLA);
  Pearson and Spearman correlation (STS-B);
- SQuAD exact match and F1 with the official answer normalization (lower case, no punctuation, no articles
  a/an/the, whitespace collapsed), the maximum over the reference answers; SQuAD 2.0 scores an empty
  prediction against an unanswerable question as correct;
- the GLUE score: the mean over tasks of each task's mean of its official metrics (MRPC/QQP: F1 and accuracy;
  STS-B: Pearson and Spearman), as the GLUE leaderboard computes it.

Every metric is on the 0-1 scale (multiply by 100 for the tables in papers). Pearson and Spearman are NaN,
with a WARNING, when a prediction or label is NaN or infinite (never a number computed from such values).
"""

from __future__ import annotations

import collections
import logging
import re
import string
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)


def accuracy(predictions: Sequence, labels: Sequence) -> float:
    predictions, labels = _pair(predictions, labels)
    return float((predictions == labels).mean())


def f1(predictions: Sequence[int], labels: Sequence[int], positive: int = 1) -> float:
    """F1 of the ``positive`` class: 2·TP / (2·TP + FP + FN) (0 when there is no positive anywhere)."""
    predictions, labels = _pair(predictions, labels)
    tp = int(((predictions == positive) & (labels == positive)).sum())
    fp = int(((predictions == positive) & (labels != positive)).sum())
    fn = int(((predictions != positive) & (labels == positive)).sum())
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0


def macro_f1(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Unweighted mean of the per-class F1 over the classes in the labels or the predictions."""
    predictions, labels = _pair(predictions, labels)
    classes = np.union1d(predictions, labels)
    return float(np.mean([f1(predictions, labels, positive=c) for c in classes]))


def matthews_corrcoef(predictions: Sequence[int], labels: Sequence[int]) -> float:
    """Matthews correlation (binary): (TP·TN − FP·FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)); 0 when undefined."""
    predictions, labels = _pair(predictions, labels)
    tp = float(((predictions == 1) & (labels == 1)).sum())
    tn = float(((predictions != 1) & (labels != 1)).sum())
    fp = float(((predictions == 1) & (labels != 1)).sum())
    fn = float(((predictions != 1) & (labels == 1)).sum())
    denominator = np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return float((tp * tn - fp * fn) / denominator) if denominator else 0.0


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Pearson correlation; NaN (with a WARNING) when a value is NaN or infinite; 0 for constant values."""
    x, y = _pair(predictions, labels, dtype=float)
    if not _finite(x, y, "pearson"):
        return float("nan")
    x, y = x - x.mean(), y - y.mean()
    denominator = np.sqrt((x * x).sum() * (y * y).sum())
    return float((x * y).sum() / denominator) if denominator else 0.0


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank (as scipy.stats.rankdata)."""
    order = np.argsort(values, kind="stable")
    ranks = np.empty(len(values), dtype=float)
    ranks[order] = np.arange(1, len(values) + 1)
    for value in np.unique(values):
        tied = values == value
        if tied.sum() > 1:
            ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Spearman correlation (Pearson of average ranks); NaN (with a WARNING) when a value is NaN or infinite
    (a rank of NaN would be a number)."""
    x, y = _pair(predictions, labels, dtype=float)
    if not _finite(x, y, "spearman"):
        return float("nan")
    return pearson(_average_ranks(x), _average_ranks(y))


def _finite(predictions: np.ndarray, labels: np.ndarray, metric: str) -> bool:
    bad = {
        name: int((~np.isfinite(v)).sum()) for name, v in (("predictions", predictions), ("labels", labels))
    }
    if any(bad.values()):
        logger.warning(
            "%s: %s non-finite value(s) (NaN or infinite); the metric is NaN",
            metric,
            " and ".join(f"{name} hold {n}" for name, n in bad.items() if n),
        )
        return False
    return True


def _pair(predictions, labels, dtype=None) -> tuple[np.ndarray, np.ndarray]:
    p, y = np.asarray(predictions, dtype=dtype), np.asarray(labels, dtype=dtype)
    if p.shape != y.shape or p.ndim != 1:
        raise ValueError(f"predictions {p.shape} and labels {y.shape} must be 1-D of the same length")
    if p.size == 0:
        raise ValueError("no predictions to score")
    return p, y


CLASSIFICATION_METRICS = {
    "accuracy": accuracy,
    "f1": f1,
    "macro_f1": macro_f1,
    "mcc": matthews_corrcoef,
    "pearson": pearson,
    "spearman": spearman,
}


def compute(names: Sequence[str], predictions: Sequence, labels: Sequence) -> dict[str, float]:
    """The metrics ``names`` (from ``CLASSIFICATION_METRICS``) of ``predictions`` against ``labels``."""
    unknown = [name for name in names if name not in CLASSIFICATION_METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; known: {sorted(CLASSIFICATION_METRICS)}")
    return {name: CLASSIFICATION_METRICS[name](predictions, labels) for name in names}


# SQuAD (the official evaluation script's normalization) -------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, remove punctuation, remove the articles a/an/the, collapse whitespace (SQuAD's script)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_exact(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


def squad_f1(prediction: str, truth: str) -> float:
    """Token-overlap F1 of the normalized answers; an empty answer scores 1 only against an empty one."""
    predicted, gold = normalize_answer(prediction).split(), normalize_answer(truth).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = collections.Counter(predicted) & collections.Counter(gold)
    overlap = sum(common.values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(predicted), overlap / len(gold)
    return 2 * precision * recall / (precision + recall)


def squad_scores(predictions: dict[str, str], answers: dict[str, list[str]]) -> dict[str, float]:
    """``exact_match`` and ``f1`` (0-1), each the max over a question's answers, averaged over questions.

    Args:
        predictions: question id -> predicted answer text ("" predicts no answer).
        answers: question id -> reference answers ([] for an unanswerable SQuAD 2.0 question).

    With unanswerable questions also ``HasAns_*``/``NoAns_*`` (the official v2.0 breakdown).
    """
    for qid, golds in answers.items():
        if not isinstance(golds, (list, tuple)) or not all(isinstance(g, str) for g in golds):
            raise TypeError(f"answers[{qid!r}] must be a list of answer texts, got {golds!r:.60}")
        if qid in predictions and not isinstance(predictions[qid], str):
            raise TypeError(f"predictions[{qid!r}] must be a text, got {predictions[qid]!r:.60}")
    missing = [qid for qid in answers if qid not in predictions]
    if missing:
        raise ValueError(f"no prediction for {len(missing)} question(s), e.g. {missing[:3]}")
    if not answers:
        raise ValueError("no questions to score")
    exact, f1_scores, has_answer = [], [], []
    for qid, golds in answers.items():
        golds = [g for g in golds if normalize_answer(g)] or [""]
        prediction = predictions[qid]
        exact.append(max(squad_exact(prediction, g) for g in golds))
        f1_scores.append(max(squad_f1(prediction, g) for g in golds))
        has_answer.append(golds != [""])
    scores = {"exact_match": float(np.mean(exact)), "f1": float(np.mean(f1_scores))}
    has = np.array(has_answer)
    if not has.all():
        for name, mask in (("HasAns", has), ("NoAns", ~has)):
            if mask.any():
                scores[f"{name}_exact"] = float(np.mean(np.array(exact)[mask]))
                scores[f"{name}_f1"] = float(np.mean(np.array(f1_scores)[mask]))
    return scores


# GLUE score ---------------------------------------------------------------------------------------------------
GLUE_METRICS = {
    "cola": ("mcc",),
    "sst2": ("accuracy",),
    "mrpc": ("f1", "accuracy"),
    "stsb": ("pearson", "spearman"),
    "qqp": ("f1", "accuracy"),
    "mnli": ("accuracy",),
    "mnli_mm": ("accuracy",),
    "qnli": ("accuracy",),
    "rte": ("accuracy",),
    "wnli": ("accuracy",),
}


def glue_score(results: dict[str, dict[str, float]]) -> float:
    """The GLUE macro score: per task the mean of its official metrics, then the mean over tasks.

    Args:
        results: task -> {metric: value}; MNLI matched and mismatched count as two tasks, as on the leaderboard.
    """
    if not results:
        raise ValueError("no task results to average")
    per_task = []
    for task, values in results.items():
        if task not in GLUE_METRICS:
            raise ValueError(f"{task!r} is not a GLUE task; GLUE tasks: {sorted(GLUE_METRICS)}")
        missing = [m for m in GLUE_METRICS[task] if m not in values]
        if missing:
            raise ValueError(f"GLUE task {task!r} lacks metric(s) {missing}; it needs {GLUE_METRICS[task]}")
        per_task.append(np.mean([values[m] for m in GLUE_METRICS[task]]))
    return float(np.mean(per_task))
