"""The probing classifiers (linear, MLP, MDL) and structural probes (distance, depth, arc), trained for every
layer at once. They live in :mod:`workbench.probing`, which the benchmarks' probe mode uses too (workbench
never imports ``probes``); ``probes.models`` is the same module's public names."""

from workbench.probing import (  # noqa: F401  (re-exported)
    ArcProbe,
    DepthProbe,
    DistanceProbe,
    LinearProbe,
    MDLProbe,
    MLPProbe,
    minimum_spanning_tree,
    spearman,
    tree_depths,
    tree_distances,
    uuas,
)

__all__ = [
    "LinearProbe",
    "MLPProbe",
    "DistanceProbe",
    "DepthProbe",
    "MDLProbe",
    "ArcProbe",
    "tree_distances",
    "tree_depths",
    "minimum_spanning_tree",
    "uuas",
    "spearman",
]
