"""Issue 15, report and CLI: a failing notebook of any kind is contained, the index describes this run and
names the random stand-ins, argument mistakes are one-line errors (exit 2), `workbench lab` passes options on.

The notebooks here are tiny synthetic ones written to tmp_path (the real notebooks take minutes).
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from workbench import cli

OFFLINE = "import os\nos.environ['HF_HUB_OFFLINE'] = '1'\nimport workbench as wb\n"


def write_notebook(path, *sources, kernel="python3"):
    cells = [new_code_cell("quick = True\ndevice = 'auto'", metadata={"tags": ["parameters"]})]
    cells += [new_code_cell(source) for source in sources]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": kernel, "display_name": kernel, "language": "python"}
    nbformat.write(notebook, path)
    return path


def report(*args, folder, out):
    return cli.main(["report", "--notebooks-dir", str(folder), "--out", str(out), "--device", "cpu", *args])


@pytest.fixture
def broken(tmp_path):
    """One good notebook among every kind of broken one."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_good.ipynb", "print('first ran')")
    write_notebook(folder / "02_no_kernel.ipynb", "print('x')", kernel="no-such-kernel-xyz")
    (folder / "03_not_json.ipynb").write_text('{"cells": [', encoding="utf-8")
    write_notebook(folder / "04_raises.ipynb", "raise RuntimeError('broken cell\\nsecond line')")
    write_notebook(folder / "05_slow.ipynb", "import time\ntime.sleep(60)")
    (folder / "06_not_a_notebook.ipynb").write_text("[]", encoding="utf-8")
    write_notebook(folder / "07_last.ipynb", "print('last ran')")
    return folder


def test_every_kind_of_notebook_failure_is_contained_and_the_index_is_this_run(broken, tmp_path, capsys):
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("THE PREVIOUS RUN", encoding="utf-8")
    (out / "02_no_kernel.html").write_text("STALE PAGE", encoding="utf-8")
    (out / "03_not_json.html").write_text("STALE PAGE", encoding="utf-8")

    assert report("--timeout", "3", folder=broken, out=out) == 1
    printed = capsys.readouterr().out
    index = (out / "index.html").read_text()
    assert "THE PREVIOUS RUN" not in index
    # Every notebook is listed, in order, with its status.
    positions = [
        index.index(f">{name}<")
        for name in [
            "01_good",
            "02_no_kernel",
            "03_not_json",
            "04_raises",
            "05_slow",
            "06_not_a_notebook",
            "07_last",
        ]
    ]
    assert positions == sorted(positions)
    assert index.count('class="ok"') == 2 and index.count('class="failed"') == 5
    assert "no-such-kernel-xyz" in index and "no such kernel" in index
    assert "could not read 03_not_json.ipynb: NotJSONError" in index
    assert "could not read 06_not_a_notebook.ipynb" in index
    assert "RuntimeError: broken cell</span>" in index  # the error's first line only
    assert "05_slow" in printed and "ran past the timeout of 3 s" in index
    # The good notebooks (also the one after all the failures) ran and are linked.
    assert 'href="01_good.html"' in index and 'href="07_last.html"' in index
    assert "last ran" in (out / "07_last.html").read_text()
    # No stale page under the name of a notebook that could not run.
    assert not (out / "02_no_kernel.html").exists() and not (out / "03_not_json.html").exists()
    assert 'href="02_no_kernel.html"' not in index
    assert "2 of 7 notebooks ran without errors" in printed


def test_an_interrupted_report_leaves_an_index_of_this_run(tmp_path, monkeypatch):
    from workbench import report as report_module

    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_a.ipynb", "print(1)")
    write_notebook(folder / "02_b.ipynb", "print(2)")
    out = tmp_path / "reports"
    out.mkdir()
    (out / "index.html").write_text("THE PREVIOUS RUN", encoding="utf-8")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(report_module, "run_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        report_module.run_report(out, notebooks_dir=folder, log=None)
    index = (out / "index.html").read_text()
    assert "THE PREVIOUS RUN" not in index
    assert index.count("not run: the report was interrupted") == 2


def test_the_index_names_the_random_stand_ins_of_each_notebook(tmp_path, capsys):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_stand_ins.ipynb",
        OFFLINE + "gpt2 = wb.zoo.load('gpt2', device='cpu')\nbert = wb.zoo.tiny('bert', device='cpu')",
    )
    # Fails after loading a stand-in: the warning in its output still names it.
    write_notebook(
        folder / "02_fails_after.ipynb",
        OFFLINE + "model = wb.zoo.load('roberta-base', device='cpu')",
        "raise ValueError('later')",
    )
    write_notebook(
        folder / "03_real.ipynb", "import workbench as wb\nmodel = wb.load('minilm', device='cpu')"
    )
    out = tmp_path / "reports"
    assert report("--notebooks", "1-3", folder=folder, out=out) == 1
    index = (out / "index.html").read_text()
    rows = {
        name: index[index.index(f">{name}<") :].split("</tr>")[0]
        for name in ["01_stand_ins", "02_fails_after", "03_real"]
    }
    assert "gpt2 is not available offline: using a random-initialized tiny GPT-2" in rows["01_stand_ins"]
    assert "tiny random BERT" in rows["01_stand_ins"]
    assert "2 random stand-in model(s)" in rows["01_stand_ins"]
    assert (
        "roberta-base is not available offline: using a random-initialized tiny RoBERTa"
        in rows["02_fails_after"]
    )
    assert "stand-in" not in rows["03_real"] and "none seen" in rows["03_real"]
    assert "2 notebook(s) used random stand-in models" in index
    # The cell that lists them is not part of the page.
    assert "__workbench_report_stand_ins__" not in (out / "01_stand_ins.html").read_text()
    assert "stand-in: tiny random BERT" in capsys.readouterr().out
