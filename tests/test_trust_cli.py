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

    assert report("--timeout", "5", folder=broken, out=out) == 1
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
    assert "05_slow" in printed and "ran past the timeout of 5 s" in index
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


# Argument mistakes: one line "error: ..." on stderr, exit code 2, nothing run -----------------------------

BAD_ARGUMENTS = [
    # workbench report
    (["report", "--out", "{file}"], "argument --out: {file} is a file, not a folder"),
    (["report", "--out", "{file}/sub"], "is inside {file}, which is a file"),
    (["report", "--notebooks", "3-1"], "the range '3-1' runs backwards"),
    (["report", "--notebooks", "9"], "no notebook numbered 9"),
    (["report", "--notebooks", ""], "the selection is empty"),
    (["report", "--notebooks", "1,x"], "expected numbers such as 3,4"),
    (["report", "--timeout", "0"], "argument --timeout: must be an integer >= 1"),
    (["report", "--param", "x"], "expected NAME=VALUE"),
    (["report", "--param", "1x=3"], "is not a Python identifier"),
    (["report", "--data", "{tmp}/nowhere"], "argument --data: "),
    (["report", "--device", "banana"], "'banana' is not a device"),
    (["report", "--notebooks-dir", "{tmp}/nowhere"], "no notebooks folder"),
    # workbench bench
    (["bench", "--tasks", ""], "argument --tasks: is empty"),
    (["bench", "--tasks", "sst2,,cola"], "has an empty name"),
    (["bench", "--tasks", "nosuch"], "nosuch"),
    (["bench", "--tasks", "sst2", "--models", ""], "argument --models: is empty"),
    (["bench", "--tasks", "sst2", "--out", "{file}"], "is a file, not a folder"),
    (["bench", "--tasks", "sst2", "--max-examples", "-1"], "must be an integer >= 1"),
    (["bench", "--tasks", "sst2", "--folds", "1"], "must be an integer >= 2"),
    (["bench", "--tasks", "sst2", "--batch-size", "0"], "must be an integer >= 1"),
    (["bench", "--tasks", "sst2", "--epochs", "x"], "must be an integer, got 'x'"),
    (["bench", "--tasks", "sst2", "--learning-rate", "-1"], "must be a finite number > 0"),
    (["bench", "--tasks", "sst2", "--data", "{tmp}/nowhere"], "no such folder"),
    # model commands (checked before any model is loaded)
    (["inspect", ""], "argument text: is empty"),
    (["inspect", "Hello", "--device", "banana"], "is not a device"),
    (["generate", "Hello", "--max-new-tokens", "-1"], "must be an integer >= 1"),
    (["generate", "Hello", "--top-p", "1.5"], "must be a number in (0, 1]"),
    (["generate", "Hello", "--top-k", "0"], "must be an integer >= 1"),
    (["generate", "Hello", "--temperature", "0"], "must be a finite number > 0"),
    (["generate", "Hello", "--seed", "-2"], "must be an integer >= 0"),
    (["lens", "Hello", "--target", ""], "argument --target: is empty"),
    (["hooks", "--model", ""], "argument --model: is empty"),
    (["lab", "--port", "0"], "must be a port number from 1 to 65535"),
    ([], "the following arguments are required: command"),
]

PROBES_BAD_ARGUMENTS = [
    (["run", "--model", "minilm", "--task", "upos", "--layers", "1,x"], "not 'x'"),
    (["run", "--model", "minilm", "--task", "upos", "--layers", "-1"], "not '-1'"),
    (["run", "--model", "minilm", "--task", "upos", "--layers", ""], "expected 'all' or layer numbers"),
    (["run", "--model", "minilm", "--task", "upos", "--layers", "1,1"], "layer 1 is named twice"),
    (["run", "--model", "minilm", "--task", "nosuch"], "unknown task 'nosuch'"),
    (["run", "--model", "", "--task", "upos"], "argument --model: is empty"),
    (["run", "--model", "minilm", "--task", "upos", "--max-sentences", "0"], "must be an integer >= 1"),
    (["run", "--model", "minilm", "--task", "upos", "--out", "{file}"], "is a file, not a folder"),
    (["run", "--model", "minilm", "--task", "upos", "--store", "{file}/x"], "is inside {file}"),
    (["run"], "the following arguments are required: --model, --task"),
]


@pytest.fixture
def nothing_runs(monkeypatch):
    """Every command's work fails the test if it starts: a usage error must come before it."""
    import probes.experiment
    import probes.store
    import workbench.bench
    import workbench.cli
    import workbench.report

    def started(*args, **kwargs):
        raise AssertionError("the command started its work despite the bad arguments")

    monkeypatch.setattr(workbench.report, "run_report", started)
    monkeypatch.setattr(workbench.report, "open_lab", started)
    monkeypatch.setattr(workbench.bench, "run", started)
    monkeypatch.setattr(workbench.cli, "load", started)
    monkeypatch.setattr(probes.experiment, "run", started)  # probes/cli.py imports it when the command runs
    monkeypatch.setattr(probes.store, "extract", started)


def _check_usage_error(code, err, message, tmp_path, prog):
    message = message.format(file=tmp_path / "a_file", tmp=tmp_path)
    assert code == 2, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"{prog}") and "error: " in last, err
    assert message in last, err


@pytest.mark.parametrize(
    ("argv", "message"), BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_workbench_argument_mistakes_are_one_line_errors(argv, message, tmp_path, capsys, nothing_runs):
    (tmp_path / "a_file").write_text("not a folder")
    argv = [a.format(file=tmp_path / "a_file", tmp=tmp_path) for a in argv]
    code = cli.main(argv)
    captured = capsys.readouterr()
    _check_usage_error(code, captured.err, message, tmp_path, "workbench")
    assert captured.out == ""


@pytest.mark.parametrize(
    ("argv", "message"), PROBES_BAD_ARGUMENTS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_probes_argument_mistakes_are_one_line_errors(argv, message, tmp_path, capsys, nothing_runs):
    from probes.cli import main

    (tmp_path / "a_file").write_text("not a folder")
    argv = [a.format(file=tmp_path / "a_file", tmp=tmp_path) for a in argv]
    code = main(argv)
    captured = capsys.readouterr()
    _check_usage_error(code, captured.err, message, tmp_path, "probes")


def test_a_layer_out_of_range_is_a_one_line_error_and_writes_nothing(tmp_path, capsys):
    from probes.cli import main

    out = tmp_path / "probing"
    argv = ["run", "--model", "minilm", "--task", "upos", "--layers", "0,99", "--max-sentences", "10"]
    assert main([*argv, "--no-control", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [err.strip()] and err.startswith(
        "probes run: error: layer 99 is out of range"
    )
    assert not out.exists()


def test_the_command_line_shows_no_traceback(tmp_path):
    """The installed entry point (python -m workbench): a bad --out is one line of usage error, exit 2."""
    import subprocess
    import sys

    (tmp_path / "a_file").write_text("x")
    result = subprocess.run(
        [sys.executable, "-m", "workbench", "report", "--out", str(tmp_path / "a_file")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("workbench report: error: argument --out:")


def test_report_data_option_reaches_the_notebooks_as_data_root(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "01_data.ipynb", "print('data root is', data_root)")
    data = tmp_path / "data"
    data.mkdir()
    out = tmp_path / "reports"
    assert report("--data", str(data), folder=folder, out=out) == 0
    assert f"data root is {data.resolve()}" in (out / "01_data.html").read_text()  # absolute


# workbench lab ----------------------------------------------------------------------------------------


def test_lab_passes_options_and_extra_arguments_to_jupyter_lab(lab_call, tmp_path, monkeypatch):
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)  # as root, as in a container
    folder = str(tmp_path / "notebooks")
    assert (
        cli.main(
            [
                "lab",
                "--notebooks-dir",
                folder,
                "--port",
                "8899",
                "--no-browser",
                "--allow-root",
                "--",
                "--ServerApp.token=abc",
            ]
        )
        == 0
    )
    assert lab_call[-1][1:] == [
        "-m",
        "jupyterlab",
        folder,
        "--ServerApp.token=abc",
        "--port=8899",
        "--no-browser",
        "--allow-root",
    ]
    assert cli.main(["lab", "--notebooks-dir", folder, "--", "--allow-root", "--ip=0.0.0.0"]) == 0
    assert lab_call[-1][-2:] == ["--allow-root", "--ip=0.0.0.0"]


def test_lab_as_root_without_allow_root_passes_it_and_says_so(lab_call, tmp_path, monkeypatch, capsys):
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    assert cli.main(["lab", "--notebooks-dir", str(tmp_path / "notebooks")]) == 0
    assert capsys.readouterr().err == "workbench lab: running as root, so passing --allow-root to jupyter lab\n"
    assert lab_call[-1][-2:] == [str(tmp_path / "notebooks"), "--allow-root"]
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    assert cli.main(["lab", "--notebooks-dir", str(tmp_path / "notebooks")]) == 0
    assert lab_call[-1][-1] == str(tmp_path / "notebooks")


def test_lens_with_a_multi_token_target_is_an_error_before_any_output(tmp_path, capsys):
    from tiny_gpt2 import save_tiny_gpt2

    save_tiny_gpt2(tmp_path)
    capsys.readouterr()  # the progress bar of saving it
    argv = ["lens", "The cat", "--model", str(tmp_path), "--device", "cpu", "--target", "xqzj unusual words"]
    assert cli.main(argv) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("workbench lens: error: 'xqzj unusual words' is not one token"), captured.err
    assert captured.out == ""
