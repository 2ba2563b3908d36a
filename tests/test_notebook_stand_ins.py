"""The notebooks' stand-in paths, run cheaply.

The test suite runs every notebook with its defaults under nbval (``stand_ins = False``: offline, a section
whose checkpoint is missing shows one box and moves on). The code those sections run on a model
(``stand_ins = True``: tiny random-initialized stand-ins, labelled) is run here instead, in this process
rather than in a kernel (no kernel start, torch already imported), with the parameters the report would
inject. 01 and 07 are the cheap ones; 06's decoder sections make the calls 07 makes (activation patching,
generation) plus ``steer``, which tests/test_interventions.py covers; its MiniLM section runs under nbval.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """huggingface_hub offline, so that looking for the missing checkpoints never waits on the network."""
    import importlib

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(importlib.import_module("huggingface_hub.constants"), "HF_HUB_OFFLINE", True)


def run_notebook_here(name: str, **parameters) -> str:
    """Execute the code cells of ``notebooks/<name>*.ipynb`` in one namespace, ``parameters`` assigned after the
    cell tagged ``parameters`` (as ``workbench report --param`` does); returns what the cells printed."""
    (path,) = NOTEBOOKS.glob(f"{name}*.ipynb")
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    namespace: dict = {"__name__": "__notebook__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for index, cell in enumerate(cells):
            exec(compile("".join(cell["source"]), f"{path.name}:cell {index}", "exec"), namespace)
            if "parameters" in cell.get("metadata", {}).get("tags", []):
                namespace.update(parameters)
    return printed.getvalue()


@pytest.mark.parametrize(
    "name, parameters",
    [
        ("01", dict(second_model="not-here/gpt2")),
        ("07", dict(decoders=["not-here/gpt2"])),  # every section of 07 on one decoder
    ],
    ids=["01_quickstart", "07_modern_decoders"],
)
def test_a_missing_checkpoint_runs_on_a_labelled_stand_in_when_asked(name, parameters):
    printed = run_notebook_here(name, device="cpu", quick=True, stand_ins=True, **parameters)
    assert "(random stand-in)" in printed  # every model shown is labelled as what it is
    assert "Not shown here" not in printed  # no box: the sections ran


def test_without_stand_ins_a_missing_checkpoint_is_one_box():
    printed = run_notebook_here("07", device="cpu", quick=True, decoders=["not-here/gpt2"])
    assert printed.count("Not shown here: the logit lens") == 1 and "(random stand-in)" not in printed
