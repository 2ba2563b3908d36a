"""Probing classifiers on workbench activations (linear, MLP, control tasks, structural probes).

The package is filled by the probing issue; it is importable now so that the layout is in place.
"""
