"""The notebooks state what they show as asserts (run by ``pytest --nbval-lax notebooks/``), never leak a
temporary path into their output, and label a random stand-in wherever they show one."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest

import workbench as wb

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("0*.ipynb"))


def code_of(path: Path) -> list[str]:
    return [
        "".join(cell["source"])
        for cell in json.loads(path.read_text())["cells"]
        if cell["cell_type"] == "code"
    ]


def test_the_eight_notebooks_are_found():
    assert [p.name[:2] for p in NOTEBOOKS] == ["01", "02", "03", "04", "05", "06", "07", "08"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_asserts_what_it_shows(path):
    """At least four assert statements per notebook (there were three in all six), and the committed
    notebooks carry no outputs (they are run, not compared)."""
    asserts = sum(
        isinstance(node, ast.Assert) for source in code_of(path) for node in ast.walk(ast.parse(source))
    )
    assert asserts >= 4, f"{path.name}: {asserts} asserts"
    cells = json.loads(path.read_text())["cells"]
    assert all(not cell.get("outputs") for cell in cells if cell["cell_type"] == "code")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_notebook_prints_a_temporary_folder(path):
    for source in code_of(path):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                printed = ast.unparse(node)
                assert "folder" not in printed and "workdir" not in printed, f"{path.name}: {printed}"


def test_bench_figures_label_a_stand_in_once():
    """The notebooks label the stand-in's rows themselves; the figures used to add the label a second time
    ("gpt2 (random stand-in) (random stand-in)")."""
    rows = [
        dict(
            model=model,
            task="sst2",
            mode="probe",
            layer=layer,
            metric="accuracy",
            value=0.5,
            n=8,
            seconds=1.0,
            stand_in=stand_in,
        )
        for model, stand_in in (("minilm", False), ("gpt2 (random stand-in)", True), ("bert", True))
        for layer in (0, 1)
    ]
    figure = wb.bench.BenchResults(pd.DataFrame(rows)).figures()[0]
    assert sorted({trace.name for trace in figure.data}) == [
        "bert (random stand-in)",
        "gpt2 (random stand-in)",
        "minilm",
    ]
