"""Probing classifiers on workbench activations: linguistic tasks from Universal Dependencies, probes with
control tasks, structural probes and MDL, at dataset scale, across architectures.

>>> import probes
>>> results = probes.run(models=["minilm"], tasks=["upos", "depth"], data="sample")  # doctest: +SKIP
>>> results.frame, results.figure(), results.save("reports/probing")  # doctest: +SKIP
"""

from .data import Sentence, load_treebank, read_conllu
from .experiment import ProbingResults, run
from .store import ActivationStore, extract
from .tasks import ControlTask, DataFrameTask, get_task, task_names
from .views import treebank_projection

__all__ = [
    "ActivationStore",
    "ControlTask",
    "DataFrameTask",
    "ProbingResults",
    "Sentence",
    "extract",
    "get_task",
    "load_treebank",
    "read_conllu",
    "run",
    "task_names",
    "treebank_projection",
]
