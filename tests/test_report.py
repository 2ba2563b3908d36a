"""workbench report: notebooks run headless with injected parameters, one offline HTML file each, an index."""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from workbench import cli
from workbench.report import find_notebooks, inject_parameters, parse_selection, run_report


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
    write_notebook(folder / "03_other.ipynb", "print('third ran', quick, globals().get('data_root'))")
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
