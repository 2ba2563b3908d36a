"""workbench report: notebooks run headless with injected parameters, one offline HTML file each, an index."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from workbench import cli
from workbench.report import (
    CellProgress,
    NotebookRun,
    data_root_of,
    describe_data,
    find_notebooks,
    inject_parameters,
    missing_checkpoints,
    parse_selection,
    run_report,
    summary_table,
)


def write_notebook(path, *sources, parameters="quick = True\ndevice = 'auto'"):
    cells = [
        new_markdown_cell(f"# {path.stem}"),
        new_code_cell(parameters, metadata={"tags": ["parameters"]}),
    ]
    cells += [new_code_cell(source) for source in sources]
    notebook = new_notebook(cells=cells)
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(
        folder / "01_small.ipynb",
        "import plotly.express as px\nfrom workbench import viz\n"
        "viz.plot(px.line(x=[0, 1, 2], y=[3, 1, 2], title='a line'))",
        "print(f'quick={quick} device={device}')",
    )
    write_notebook(
        folder / "02_fails.ipynb", "x = 1", "raise RuntimeError('this cell is broken')", "print('never')"
    )
    write_notebook(
        folder / "03_other.ipynb",
        "import os\nprint('third ran', quick, globals().get('data_root'), 'threads', os.environ.get('OMP_NUM_THREADS'))",
    )
    (folder / "scratch.ipynb").write_text((folder / "03_other.ipynb").read_text())  # not numbered: never run
    return folder


def test_selection_and_discovery(notebooks):
    assert parse_selection("3,4") == [3, 4] and parse_selection("1-3, 6") == [1, 2, 3, 6]
    with pytest.raises(ValueError, match="expected numbers"):
        parse_selection("three")
    assert [p.name for p in find_notebooks(notebooks)] == [
        "01_small.ipynb",
        "02_fails.ipynb",
        "03_other.ipynb",
    ]
    assert [p.name for p in find_notebooks(notebooks, [3, 1])] == ["03_other.ipynb", "01_small.ipynb"]
    with pytest.raises(ValueError, match=r"no notebook numbered 7 .*there are: 1 \(01_small\)"):
        find_notebooks(notebooks, [7])


def test_parameters_are_injected_after_the_tagged_cell(notebooks):
    notebook = nbformat.read(notebooks / "01_small.ipynb", as_version=4)
    inject_parameters(notebook, {"quick": False, "device": "cpu"})
    inject_parameters(notebook, {"quick": False, "device": "cuda"})  # replaces the earlier injection
    sources = [cell.source for cell in notebook.cells]
    assert sources[1].startswith("quick = True")
    assert sources[2] == "# Parameters injected by workbench report\nquick = False\ndevice = 'cuda'"
    assert len(sources) == 5


def test_report_runs_notebooks_into_html_and_reports_the_failing_cell(notebooks, tmp_path, capfd):
    out = tmp_path / "reports"
    data = tmp_path / "my data"
    (data / "glue").mkdir(parents=True)
    code = cli.main(
        [
            "report",
            "--notebooks-dir",
            str(notebooks),
            "--out",
            str(out),
            "--device",
            "cpu",
            "--notebooks",
            "1,2,3",
            "--data",
            str(data),
            "--threads",
            "1",
        ]
    )
    captured = capfd.readouterr()
    printed = captured.out
    assert code == 1  # one notebook failed
    assert sorted(p.name for p in out.iterdir()) == [
        "01_small.html",
        "02_fails.html",
        "03_other.html",
        "index.html",
        "plotly.min.js",
    ]
    small = (out / "01_small.html").read_text()
    assert "quick=True device=cpu" in small  # the injected parameters reached the kernel
    # plotly.js is one file beside the pages (offline), not 4 MB inlined in each
    assert "Plotly.newPlot" in small and 'src="plotly.min.js"' in small and '<script src="http' not in small
    assert len(small) < 1_000_000 and (out / "plotly.min.js").stat().st_size > 3_000_000
    # every page says at its top what data it ran on: here the --data folder, passed as an absolute data_root
    assert small.index('class="wb-data"') < small.index("quick=True device=cpu")
    assert (
        f"the data root <code>{data}</code> (glue)" in small
        and str(data) in (out / "03_other.html").read_text()
    )
    assert "Kernel is running over TCP" not in captured.err + printed  # the runner's kernels use IPC sockets
    assert "CPU s" in printed and "total" in printed  # the summary table
    failed = (out / "02_fails.html").read_text()
    assert "this cell is broken" in failed and "<pre>never" not in failed  # the cell after it did not run
    assert (
        "02_fails ..." in printed
        and "FAILED (cell [4] (raise RuntimeError('this cell is broken')) failed: RuntimeError: this cell is broken)"
        in printed
    )
    assert "third ran True" in (out / "03_other.html").read_text()  # later notebooks still ran
    assert "threads 1" in (out / "03_other.html").read_text()  # --threads reached the kernels
    index = (out / "index.html").read_text()
    assert 'href="01_small.html"' in index and "failed: cell [4]" in index and " s</td>" in index


def test_report_of_the_quickstart_notebook(tmp_path):
    """The real first notebook, headless, in quick mode (the rest run under nbval in the test suite)."""
    runs = run_report(tmp_path, select=[1], quick=True, device="cpu", log=None)
    assert [(r.name, r.ok) for r in runs] == [("01_quickstart", True)], runs[0].error
    page = (tmp_path / "01_quickstart.html").read_text()
    assert "run_with_cache" in page and "Plotly.newPlot" in page


def test_unknown_folder_and_missing_jupyterlab_are_clear_errors(tmp_path, monkeypatch, capsys):
    assert cli.main(["report", "--notebooks-dir", str(tmp_path / "nowhere")]) == 2
    assert "no notebooks folder" in capsys.readouterr().err
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "jupyterlab" else real_find_spec(name, *a),
    )
    assert cli.main(["lab", "--notebooks-dir", str(tmp_path)]) == 2
    assert "pip install jupyterlab" in capsys.readouterr().err


def test_data_must_be_a_folder_and_the_samples_are_described_with_their_sizes(tmp_path, capsys):
    assert cli.main(["report", "--data", str(tmp_path / "nowhere")]) == 2
    error = capsys.readouterr().err
    assert "--data" in error and "nowhere" in error and "does not exist" in error
    with pytest.raises(FileNotFoundError, match="is a file"):
        data_root_of(write_notebook(tmp_path / "01_x.ipynb"))
    assert data_root_of("sample") is None and data_root_of(tmp_path) == tmp_path.resolve()
    sample = describe_data(None)
    assert "UD English EWT, 200/50/50 sentences" in sample and "8 dev examples per" in sample


def test_the_quick_report_skips_a_notebook_whose_checkpoint_is_missing_and_says_so(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    path = write_notebook(
        folder / "06_needs.ipynb",
        "raise RuntimeError('must not run')",
        parameters="decoder = 'nobody/no-such-lm'",
    )
    notebook = nbformat.read(path, as_version=4)
    notebook.metadata["workbench"] = {"needs_checkpoints": ["decoder"]}
    nbformat.write(notebook, path)
    out = tmp_path / "out"
    lines = []
    runs = run_report(out, notebooks_dir=folder, log=lines.append)
    assert [(r.name, r.ok, r.html) for r in runs] == [("06_needs", True, None)]
    assert runs[0].skipped.startswith("skipped: needs the checkpoint nobody/no-such-lm")
    index = (out / "index.html").read_text()
    assert "skipped: needs the checkpoint nobody/no-such-lm" in index and "--notebooks 6" in index
    assert any("0 notebook(s) to run, 1 skipped" in line for line in lines)
    # a folder that exists is a checkpoint that is here: the notebook has something real to show
    assert missing_checkpoints(notebook, "06_needs", {"decoder": str(tmp_path)}) == []
    assert missing_checkpoints(notebook, "06_needs", {}) == ["nobody/no-such-lm"]


def test_cell_progress_and_the_summary_table():
    import io

    lines = []
    progress = CellProgress("[1/2] 03_probing", n_cells=3, stream=io.StringIO(), log=lines.append)
    progress.on_cell_execute(cell=nbformat.v4.new_code_cell("results = probes.run(...)\nmore"), cell_index=4)
    assert progress.line().startswith("[1/2] 03_probing  cell 1/3  0 s")
    progress.cell_start -= 12  # a cell that ran 12 s gets a line of its own in a log
    progress.on_cell_executed(cell=nbformat.v4.new_code_cell("x"), cell_index=4)
    assert lines == ["    cell 1/3 (results = probes.run(...)) took 12 s"]
    runs = [
        NotebookRun("01_a", Path("01_a.ipynb"), Path("01_a.html"), 10.0, cpu_seconds=8.5, stand_ins=["x"]),
        NotebookRun("02_b", Path("02_b.ipynb"), Path("02_b.html"), 5.0, "cell [3] failed", cpu_seconds=4.0),
        NotebookRun("06_c", Path("06_c.ipynb"), None, 0.0, skipped="skipped: needs the checkpoint gpt2"),
    ]
    table = summary_table(runs).splitlines()
    assert table[0].split() == ["notebook", "status", "wall", "s", "CPU", "s", "stand-ins", "stderr"]
    assert table[2].split() == ["01_a", "ok", "10.0", "8.5", "1", "0"]
    assert table[3].split() == ["02_b", "FAILED", "5.0", "4.0", "0", "0"]
    assert table[4].split() == ["06_c", "skipped"] and table[-1].split() == ["total", "15.0", "12.5"]
