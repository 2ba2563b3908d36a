"""Views of probing data: a model's word representations from a treebank, drawn by :mod:`workbench.viz`.

``probes.treebank_projection(lm)`` is here, not in ``workbench.viz``, because it reads the treebank, the probing
tasks and the activation store of this package (workbench never imports ``probes``); ``workbench.viz.projection``
draws what it computes.
"""

from __future__ import annotations

import tempfile

from workbench.viz import View, projection
from workbench.zoo import display_name

from .data import load_treebank
from .store import extract
from .tasks import get_task


def treebank_projection(
    model,
    sentences=None,
    task: str = "upos",
    layer: int | None = None,
    data: str = "sample",
    split: str = "dev",
    max_sentences: int = 100,
    store_dir=None,
) -> View:
    """:func:`workbench.viz.projection` of a model's word representations (mean over subwords, every layer,
    from the activation store) coloured by a word-level probing label (UPOS by default).

    Args:
        sentences: :class:`probes.data.Sentence` objects; default the first ``max_sentences`` of ``data``/``split``.
        task: a word-level classification task of ``probes.tasks`` (``"upos"``, ``"xpos"``, ``"deprel"``).
        layer: the layer shown first (0 = embeddings); default the middle layer.
    """
    given = sentences
    sentences = (
        load_treebank(data, split, max_sentences=max_sentences) if sentences is None else list(sentences)
    )
    probing_task = get_task(task)
    if probing_task.level != "word":
        raise ValueError(
            f"task {task!r} labels {probing_task.level}s, not words; pick a word-level task (upos)"
        )
    with tempfile.TemporaryDirectory(prefix="probes-view-") as scratch:  # removed once read, unless store_dir
        store = extract(model, [s.words for s in sentences], store_dir or scratch, progress=False)
        reps = store.stack().float().numpy()  # [layer, words, d]
    labels, hover = [], []
    for sentence, word_labels in zip(sentences, probing_task.labels(sentences, check=False)):
        text = " ".join(sentence.words)
        short = text if len(text) < 90 else text[:87] + "..."
        for i, word in enumerate(sentence.words):
            labels.append("?" if word_labels is None or word_labels[i] is None else str(word_labels[i]))
            hover.append(f"<b>{word}</b><br>{short}")
    layer = reps.shape[0] // 2 if layer is None else layer
    source = f"{data}/{split}" if given is None else "given sentences"
    return projection(
        reps,
        labels,
        hover,
        layer=layer,
        layer_names=["embed", *map(str, range(reps.shape[0] - 1))],
        name=f"{display_name(model)} · {task} labels, {len(sentences)} sentences ({source})",
    )
