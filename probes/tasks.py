"""Probing tasks: turn UD sentences (:class:`probes.data.Sentence`) into labels.

Every task has ``name``, ``level`` (``"word"``, ``"word_pair"`` or ``"sentence"``), ``kind``
(``"classification"`` or ``"regression"``), ``label_names`` and ``labels(sentences)``:

- word level: one list per sentence, one label per word (``upos``, ``xpos``, ``deprel``; ``depth``,
  the integer tree depth of each word with the root at 0, for the structural depth probe);
- word pair: one ``[n, n]`` numpy matrix per sentence (``distance``: tree distance between words
  i and j, for the structural distance probe; ``arc``: 1 where word j is the head of word i);
- sentence level (SentEval-style): one label per sentence (``sentence_length_bin``,
  ``tree_depth_bin``, ``subject_number``, ``main_verb_tense``).

``None`` means "no label": a sentence-level task gives ``None`` for a sentence it does not apply to
(no nominal subject of the root, no tensed root or auxiliary) and ``task.dataset(sentences)`` drops
those sentences. Classification tasks raise ``ValueError`` when the data has fewer than two labels
(``labels(..., check=False)`` skips that check).

``ControlTask(task, seed)`` is Hewitt & Liang's (2019) control task for a word-level classification
task and ``ArcControlTask(seed)`` theirs for arc prediction; ``DataFrameTask(frame, name)`` wraps a user's own labels; ``get_task(name)`` builds a task by name.

Indices are 0-based everywhere in this module (word i is ``sentence.words[i]``); only
``Sentence.heads`` keeps UD's 1-based numbering with 0 for the root.
"""

from __future__ import annotations

import hashlib
import numbers
from collections import Counter, deque
from collections.abc import Callable, Sequence

import numpy as np

from .data import Sentence

__all__ = [
    "ArcControlTask",
    "ArcTask",
    "ControlTask",
    "DataFrameTask",
    "DepthTask",
    "DeprelTask",
    "DistanceTask",
    "MainVerbTenseTask",
    "SentenceLengthBinTask",
    "SubjectNumberTask",
    "Task",
    "TreeDepthBinTask",
    "UnknownTaskError",
    "UposTask",
    "XposTask",
    "get_task",
    "task_names",
    "tree_depths",
    "tree_distances",
]

UPOS_TAGS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Trees
# ----------------------------------------------------------------------------------------------


def _adjacency(heads: Sequence[int]) -> tuple[list[list[int]], int]:
    """Undirected adjacency lists (0-based) of the tree given by UD heads, and the root's index."""
    n = len(heads)
    neighbours: list[list[int]] = [[] for _ in range(n)]
    roots = []
    for i, head in enumerate(heads):
        if not isinstance(head, (int, np.integer)) or head < 0 or head > n:
            raise ValueError(f"heads[{i}] = {head!r} is not a head in 0..{n}")
        if head == 0:
            roots.append(i)
        else:
            neighbours[i].append(head - 1)
            neighbours[head - 1].append(i)
    if len(roots) != 1:
        raise ValueError(f"heads must have exactly one root (0), found {len(roots)}: {list(heads)}")
    return neighbours, roots[0]


def _bfs(neighbours: list[list[int]], start: int) -> list[int]:
    dist = [-1] * len(neighbours)
    dist[start] = 0
    queue = deque([start])
    while queue:
        i = queue.popleft()
        for j in neighbours[i]:
            if dist[j] < 0:
                dist[j] = dist[i] + 1
                queue.append(j)
    return dist


def tree_depths(heads: Sequence[int]) -> list[int]:
    """Depth of every word in the tree given by 1-based UD ``heads`` (0 = root): the root is at 0."""
    neighbours, root = _adjacency(heads)
    depths = _bfs(neighbours, root)
    if min(depths, default=0) < 0:
        raise ValueError(
            f"heads do not form a tree (a cycle leaves words unreachable from the root): {list(heads)}"
        )
    return depths


def tree_distances(heads: Sequence[int]) -> np.ndarray:
    """``[n, n]`` int matrix of path lengths between words in the (undirected) dependency tree."""
    neighbours, _ = _adjacency(heads)
    n = len(heads)
    out = np.zeros((n, n), dtype=np.int64)
    for i in range(n):
        row = _bfs(neighbours, i)
        if min(row) < 0:
            raise ValueError(f"heads do not form a tree (a cycle leaves words unreachable): {list(heads)}")
        out[i] = row
    return out


# ----------------------------------------------------------------------------------------------
# Base class
# ----------------------------------------------------------------------------------------------


class Task:
    """A probing task. Subclasses set ``name``, ``level``, ``kind`` and implement ``_labels``."""

    name: str = "task"
    level: str = "word"  # "word", "word_pair" or "sentence"
    kind: str = "classification"  # or "regression"
    fixed_labels: Sequence = ()  # a classification task's fixed label inventory, in order

    def __init__(self):
        # Classification tasks: the label inventory, in a stable order (fixed inventories first, then
        # labels new to each labels() call, appended sorted), so that label_names.index(label) never changes.
        self._label_names: list | None = (
            list(self.fixed_label_names()) if self.kind == "classification" else None
        )

    def fixed_label_names(self) -> Sequence:
        """The fixed label inventory (``fixed_labels``; a task whose inventory depends on its settings
        computes it here)."""
        return self.fixed_labels

    @property
    def label_names(self) -> list | None:
        """Classification: every label known so far (fixed inventory + labels seen by ``labels``); else None."""
        return None if self._label_names is None else list(self._label_names)

    def _labels(self, sentences: Sequence[Sentence]) -> list:
        raise NotImplementedError

    def labels(self, sentences: Sequence[Sentence], check: bool = True) -> list:
        """Labels aligned with ``sentences`` (see the module docstring for their shape per level)."""
        out = self._labels(list(sentences))
        if self.kind == "classification" and self.level != "word_pair":
            seen = self._distinct(out)
            if check and len(seen) < 2:
                raise ValueError(
                    f"task {self.name!r} has {len(seen)} distinct label(s) {sorted(map(str, seen))} on these "
                    f"{len(sentences)} sentence(s); a classifier needs at least two "
                    "(use more or other sentences, or labels(..., check=False) to inspect the labels)"
                )
            for label in sorted(seen - set(self._label_names), key=str):
                self._label_names.append(label)
        return out

    def _distinct(self, labels: list) -> set:
        if self.level == "word":
            return {label for sent in labels if sent is not None for label in sent if label is not None}
        return {label for label in labels if label is not None}

    def dataset(self, sentences: Sequence[Sentence], check: bool = True) -> tuple[list[Sentence], list]:
        """``(sentences, labels)`` without the sentences whose label is None (not applicable)."""
        sentences = list(sentences)
        labels = self.labels(sentences, check=check)
        kept = [(s, y) for s, y in zip(sentences, labels) if y is not None]
        return [s for s, _ in kept], [y for _, y in kept]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, level={self.level!r}, kind={self.kind!r})"


# ----------------------------------------------------------------------------------------------
# Word level
# ----------------------------------------------------------------------------------------------


class UposTask(Task):
    """Universal part-of-speech tag of every word."""

    name, level = "upos", "word"

    fixed_labels = UPOS_TAGS

    def _labels(self, sentences):
        return [list(s.upos) for s in sentences]


class XposTask(Task):
    """Language-specific part-of-speech tag of every word (Penn Treebank tags in EWT); None where "_"."""

    name, level = "xpos", "word"

    def _labels(self, sentences):
        return [list(s.xpos) for s in sentences]


class DeprelTask(Task):
    """Relation of every word to its head ("root" for the root).

    ``universal=True`` strips subtypes ("nmod:poss" -> "nmod"); by default they are kept as in the file.
    """

    name, level = "deprel", "word"

    def __init__(self, universal: bool = False):
        self.universal = universal
        super().__init__()

    def _labels(self, sentences):
        if self.universal:
            return [[rel.split(":")[0] for rel in s.deprels] for s in sentences]
        return [list(s.deprels) for s in sentences]


class DepthTask(Task):
    """Tree depth of every word (root = 0): the integer target of the structural depth probe."""

    name, level, kind = "depth", "word", "regression"

    def _labels(self, sentences):
        return [tree_depths(s.heads) for s in sentences]


# ----------------------------------------------------------------------------------------------
# Word pairs
# ----------------------------------------------------------------------------------------------


class DistanceTask(Task):
    """``[n, n]`` tree distance between every pair of words: the structural distance probe's target."""

    name, level, kind = "distance", "word_pair", "regression"

    def _labels(self, sentences):
        return [tree_distances(s.heads) for s in sentences]


class ArcTask(Task):
    """``[n, n]`` 0/1 matrix: ``arc[i, j] = 1`` when word j is the head of word i (the root's row is all 0)."""

    name, level, kind = "arc", "word_pair", "classification"

    fixed_labels = (0, 1)

    def _labels(self, sentences):
        out = []
        for s in sentences:
            n = len(s.heads)
            tree_depths(s.heads)  # validates the tree
            arc = np.zeros((n, n), dtype=np.int64)
            for i, head in enumerate(s.heads):
                if head > 0:
                    arc[i, head - 1] = 1
            out.append(arc)
        return out


class ArcControlTask(Task):
    """Hewitt & Liang (2019) control task for arc prediction: structure without syntax.

    Every word type (lowercased form) gets one of three fixed behaviours, drawn uniformly with a draw fixed by
    ``(seed, type)``: attach to itself, to the first word of the sentence, or to the last word. The labels are
    ``[n, n]`` 0/1 matrices like :class:`ArcTask`'s (``arc[i, j] = 1`` when word i "attaches" to word j), so
    the same pair sampling and the same probe apply; a probe that does well here memorizes word types.
    """

    name, level, kind = "control_arc", "word_pair", "classification"
    BEHAVIOURS = ("self", "first", "last")

    def __init__(self, seed: int = 0):
        self.seed = _integer(seed, "seed")
        self.task = ArcTask()
        super().__init__()

    fixed_labels = (0, 1)

    def behaviour(self, word: str) -> str:
        """The fixed behaviour (``"self"``, ``"first"`` or ``"last"``) of a word type."""
        index = int(_uniform(self.seed, f"arc\x00{word.lower()}") * len(self.BEHAVIOURS))
        return self.BEHAVIOURS[min(index, len(self.BEHAVIOURS) - 1)]

    def _labels(self, sentences):
        out = []
        for s in sentences:
            n = len(s.words)
            arc = np.zeros((n, n), dtype=np.int64)
            for i, word in enumerate(s.words):
                behaviour = self.behaviour(word)
                arc[i, i if behaviour == "self" else 0 if behaviour == "first" else n - 1] = 1
            out.append(arc)
        return out

    def __repr__(self) -> str:
        return f"ArcControlTask(seed={self.seed})"


# ----------------------------------------------------------------------------------------------
# Sentence level
# ----------------------------------------------------------------------------------------------


def _bin_names(edges: Sequence[int], low: int) -> list[str]:
    names, start = [], low
    for edge in edges:
        names.append(str(start) if edge == start else f"{start}-{edge}")
        start = edge + 1
    names.append(f"{start}+")
    return names


class _BinnedTask(Task):
    """A sentence-level integer measure cut into bins; ``edges`` are the inclusive upper ends of all bins but the last."""

    level = "sentence"
    default_edges: tuple[int, ...] = ()
    low = 0

    def __init__(self, edges: Sequence[int] | None = None):
        edges = tuple(_integer(e, "bin edges") for e in (self.default_edges if edges is None else edges))
        if not edges or any(b <= a for a, b in zip(edges, edges[1:])) or edges[0] < self.low:
            raise ValueError(f"bin edges must be increasing integers >= {self.low}, got {edges}")
        self.edges = edges
        super().__init__()

    def fixed_label_names(self):
        return _bin_names(self.edges, self.low)

    @staticmethod
    def measure(sentence: Sentence) -> int:
        raise NotImplementedError

    def _labels(self, sentences):
        names = self.fixed_label_names()
        return [names[int(np.searchsorted(self.edges, self.measure(s)))] for s in sentences]

    @classmethod
    def equal_frequency(cls, sentences: Sequence[Sentence], n_bins: int = 5):
        """The task with ``n_bins`` bins of about equal frequency on ``sentences`` (compute them on train)."""
        values = np.array([cls.measure(s) for s in sentences])
        if _integer(n_bins, "n_bins") < 2 or len(values) == 0:
            raise ValueError("equal_frequency needs n_bins >= 2 and at least one sentence")
        cuts = np.quantile(values, np.arange(1, n_bins) / n_bins, method="lower")
        edges = sorted({int(c) for c in cuts if c < values.max()})
        if not edges:
            raise ValueError(f"every sentence has the same value {values[0]}; cannot make bins")
        return cls(edges)


class SentenceLengthBinTask(_BinnedTask):
    """Number of words, in bins. Default: 1-5, 6-10, 11-16, 17-24, 25+ words (the quintiles of EWT train).

    ``SentenceLengthBinTask(edges)`` sets other bins; ``SentenceLengthBinTask.equal_frequency(train, 5)``
    computes equal-frequency bins on given sentences.
    """

    name = "sentence_length_bin"
    default_edges = (5, 10, 16, 24)
    low = 1

    @staticmethod
    def measure(sentence):
        return len(sentence.words)


class TreeDepthBinTask(_BinnedTask):
    """Depth of the dependency tree (the deepest word's depth, root = 0), in bins.

    Default: 0-1, 2, 3, 4, 5+ (close to equal frequency on EWT train: 15%, 17%, 21%, 19%, 28%).
    """

    name = "tree_depth_bin"
    default_edges = (1, 2, 3, 4)
    low = 0

    @staticmethod
    def measure(sentence):
        return max(tree_depths(sentence.heads))


def _root(sentence: Sentence) -> int:
    return sentence.heads.index(0)


def _children(sentence: Sentence, head: int, relations: Sequence[str]) -> list[int]:
    """0-based indices of the dependents of word ``head`` (0-based) whose relation (subtype stripped) is in ``relations``."""
    return [
        i for i, (h, rel) in enumerate(zip(sentence.heads, sentence.deprels))
        if h == head + 1 and rel.split(":")[0] in relations
    ]  # fmt: skip


class SubjectNumberTask(Task):
    """Number (Sing/Plur) of the root's nominal subject (``nsubj``, subtypes such as ``nsubj:pass``
    included; the leftmost if several). None when the root has no nominal subject, or it has no
    Number feature: such sentences are dropped by ``dataset``.
    """

    name, level = "subject_number", "sentence"
    fixed_labels = ("Sing", "Plur")

    def _labels(self, sentences):
        out = []
        for s in sentences:
            subjects = _children(s, _root(s), ("nsubj",))
            number = s.feats[subjects[0]].get("Number") if subjects else None
            out.append(number if number in ("Sing", "Plur") else None)
        return out


class MainVerbTenseTask(Task):
    """Tense (Past/Pres) of the main clause: of the root if it is finite, else of its first finite
    ``aux``/``cop`` dependent ("has made" -> Pres, "was made" -> Past, "is bad" -> Pres). None when
    none of them is finite with Tense Past or Pres (imperatives, "will", fragments): dropped by ``dataset``.
    """

    name, level = "main_verb_tense", "sentence"
    fixed_labels = ("Past", "Pres")

    def _labels(self, sentences):
        out = []
        for s in sentences:
            root = _root(s)
            label = None
            for i in [root, *_children(s, root, ("aux", "cop"))]:
                feats = s.feats[i]
                if feats.get("VerbForm") == "Fin" and feats.get("Tense") is not None:
                    label = feats["Tense"] if feats["Tense"] in ("Past", "Pres") else None
                    break
            out.append(label)
        return out


# ----------------------------------------------------------------------------------------------
# Control tasks and user labels
# ----------------------------------------------------------------------------------------------


def _integer(value, name: str) -> int:
    """``value`` as an int; a float, bool or string is an error naming ``name`` (never silently truncated)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__} {value!r:.40}")
    return int(value)


def _uniform(seed: int, word_type: str) -> float:
    """A uniform number in [0, 1) fixed by (seed, word type), independent of PYTHONHASHSEED."""
    digest = hashlib.sha256(f"{seed}\x00{word_type}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


class ControlTask(Task):
    """Hewitt & Liang (2019) control task for a word-level classification ``task``.

    Every word type (lowercased form) gets one random label, drawn from the task's empirical label
    distribution (over word tokens) with a draw fixed by ``(seed, type)``: the same type always gets
    the same label for a seed, in every sentence and split. The distribution is fitted on the first
    sentences given (``fit(train)`` or the first ``labels(train)``) and kept for later calls.
    """

    level = "word"
    kind = "classification"

    def __init__(self, task: Task | str, seed: int = 0):
        task = get_task(task) if isinstance(task, str) else task
        if task.level != "word" or task.kind != "classification":
            raise ValueError(
                f"control tasks need a word-level classification task; {task.name!r} is a "
                f"{task.level}-level {task.kind} task"
            )
        self.task = task
        self.seed = _integer(seed, "seed")
        self.name = f"control_{task.name}"
        self._names: list | None = None  # labels of the fitted distribution, sorted
        self._cdf: np.ndarray | None = None
        super().__init__()

    @property
    def distribution(self) -> dict | None:
        """The fitted label distribution (label -> probability), or None before fitting."""
        if self._names is None:
            return None
        probs = np.diff(np.concatenate([[0.0], self._cdf]))
        return dict(zip(self._names, probs.tolist()))

    def fit(self, sentences: Sequence[Sentence]) -> ControlTask:
        counts = Counter(
            y for sent in self.task.labels(sentences) if sent is not None for y in sent if y is not None
        )
        if len(counts) < 2:
            raise ValueError(f"task {self.task.name!r} has fewer than two labels on these sentences")
        self._names = sorted(counts, key=str)
        self._label_names = list(self._names)
        cdf = np.cumsum([counts[y] for y in self._names], dtype=np.float64)
        self._cdf = cdf / cdf[-1]
        return self

    def label_of(self, word: str):
        """The control label of a word type (the word is lowercased)."""
        if self._names is None:
            raise RuntimeError("fit the control task first: fit(sentences) or labels(sentences)")
        index = int(np.searchsorted(self._cdf, _uniform(self.seed, word.lower()), side="right"))
        return self._names[min(index, len(self._names) - 1)]

    def _labels(self, sentences):
        if self._names is None:
            self.fit(sentences)
        return [[self.label_of(w) for w in s.words] for s in sentences]

    def __repr__(self) -> str:
        return f"ControlTask({self.task.name!r}, seed={self.seed})"


class DataFrameTask(Task):
    """A user's own labels from a pandas DataFrame.

    Columns ``(sentence, word, label)`` make a word-level task, ``(sentence, label)`` a sentence-level
    one; ``sentence`` is the 0-based position in the sentence list given to ``labels`` and ``word`` the
    0-based word index in that sentence. Words without a row get None, and sentences without any row
    get None (dropped by ``dataset``). ``kind`` defaults to "regression" for float labels, else
    "classification".
    """

    def __init__(self, frame, name: str, kind: str | None = None):
        import pandas as pd

        if not isinstance(frame, pd.DataFrame):
            raise TypeError(f"DataFrameTask needs a pandas DataFrame, got {type(frame).__name__}")
        columns = set(frame.columns)
        if {"sentence", "word", "label"} <= columns:
            self.level = "word"
        elif {"sentence", "label"} <= columns:
            self.level = "sentence"
        else:
            raise ValueError(
                f"DataFrameTask needs columns (sentence, word, label) or (sentence, label); got {list(frame.columns)}"
            )
        keys = ["sentence", "word"] if self.level == "word" else ["sentence"]
        for key in keys:
            if not pd.api.types.is_integer_dtype(frame[key]):
                raise ValueError(
                    f"column {key!r} must hold integer indices (0-based), got dtype {frame[key].dtype}"
                )
            if (frame[key] < 0).any():
                raise ValueError(f"column {key!r} has negative indices")
        if frame["label"].isna().any():
            raise ValueError("column 'label' has missing values; leave those rows out instead")
        if (
            pd.api.types.is_numeric_dtype(frame["label"])
            and not np.isfinite(frame["label"].to_numpy(float)).all()
        ):
            bad = float(frame["label"][~np.isfinite(frame["label"].to_numpy(float))].iloc[0])
            raise ValueError(f"column 'label' must hold finite values, got {bad}")
        duplicated = frame.duplicated(keys)
        if duplicated.any():
            first = frame[duplicated].iloc[0]
            raise ValueError(f"several labels for {', '.join(f'{k}={int(first[k])}' for k in keys)}")
        if kind is None:
            kind = "regression" if pd.api.types.is_float_dtype(frame["label"]) else "classification"
        if kind not in ("classification", "regression"):
            raise ValueError(f"kind must be 'classification' or 'regression', got {kind!r}")
        self.name = name
        self.kind = kind
        self._table: dict = {}
        for row in frame[[*keys, "label"]].itertuples(index=False):
            key = tuple(int(k) for k in row[:-1])
            label = row[-1].item() if hasattr(row[-1], "item") else row[-1]
            self._table[key] = label
        super().__init__()

    def fixed_label_names(self):
        return sorted(set(self._table.values()), key=str)

    def _labels(self, sentences):
        n = len(sentences)
        beyond = [k for k in self._table if k[0] >= n]
        if beyond:
            raise ValueError(
                f"task {self.name!r}: the frame labels sentence {min(beyond)[0]} but only {n} sentences were given"
            )
        if self.level == "sentence":
            return [self._table.get((i,)) for i in range(n)]
        out: list = [None] * n
        for (i, j), label in self._table.items():
            if j >= len(sentences[i]):
                raise ValueError(
                    f"task {self.name!r}: the frame labels word {j} of sentence {i}, which has {len(sentences[i])} words"
                )
            if out[i] is None:
                out[i] = [None] * len(sentences[i])
            out[i][j] = label
        return out

    def __repr__(self) -> str:
        return f"DataFrameTask(name={self.name!r}, level={self.level!r}, kind={self.kind!r}, rows={len(self._table)})"


# ----------------------------------------------------------------------------------------------
# Registry
# ----------------------------------------------------------------------------------------------

_TASKS: dict[str, Callable[..., Task]] = {
    "upos": UposTask,
    "xpos": XposTask,
    "deprel": DeprelTask,
    "depth": DepthTask,
    "distance": DistanceTask,
    "arc": ArcTask,
    "sentence_length_bin": SentenceLengthBinTask,
    "tree_depth_bin": TreeDepthBinTask,
    "subject_number": SubjectNumberTask,
    "main_verb_tense": MainVerbTenseTask,
}
_CONTROLLABLE = ("upos", "xpos", "deprel")


class UnknownTaskError(KeyError):
    """``get_task`` was given a name it does not know; the message lists the known tasks."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def task_names() -> list[str]:
    """Every name ``get_task`` knows."""
    return [*_TASKS, *(f"control_{name}" for name in _CONTROLLABLE), "control_arc"]


def get_task(name: str, **kwargs) -> Task:
    """A new task by name; ``control_<task>`` makes its control task (``seed=`` keyword, default 0).

    Keywords go to the task's constructor (``get_task("deprel", universal=True)``,
    ``get_task("sentence_length_bin", edges=(8, 16))``).
    """
    if isinstance(name, Task):
        return name
    if not isinstance(name, str):
        raise TypeError(f"task name must be a string, got {type(name).__name__}")
    if name == "control_arc":
        return ArcControlTask(**kwargs)
    if name.startswith("control_") and name[len("control_") :] in _CONTROLLABLE:
        seed = kwargs.pop("seed", 0)
        return ControlTask(get_task(name[len("control_") :], **kwargs), seed=seed)
    if name not in _TASKS:
        raise UnknownTaskError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}")
    try:
        return _TASKS[name](**kwargs)
    except TypeError as err:
        raise TypeError(f"task {name!r}: {err}") from None
