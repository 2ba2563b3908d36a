"""``workbench report``: run the notebooks headless and write each as a self-contained HTML file.

Each numbered notebook (``NN_name.ipynb``) is executed top to bottom with ``nbclient`` in its own kernel,
after a cell with the report's parameters (``device``, ``quick``, and any ``--param``) is inserted right
after the notebook's cell tagged ``parameters`` (as papermill does, so the notebook's own defaults stay
visible above). Every notebook is written as ``NN_name.html`` that draws offline, plus an ``index.html``
linking them with their run times. A notebook that fails is still written (up to the failing cell, whose
error shows) and reported with the number of that cell; the others run anyway.

>>> from workbench.report import run_report
>>> runs = run_report(out="reports", select=[1, 3], quick=True)  # doctest: +SKIP
>>> [(r.name, r.ok, round(r.seconds)) for r in runs]  # doctest: +SKIP
[('01_quickstart', True, 9), ('03_probing', True, 31)]
"""

from __future__ import annotations

import functools
import html
import importlib.util
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_print = functools.partial(print, flush=True)
NOTEBOOK_PATTERN = re.compile(r"^(\d+)_[\w-]+\.ipynb$")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


@dataclass
class NotebookRun:
    """What happened to one notebook.

    Attributes:
        name: the notebook's file name without ``.ipynb`` (``"03_probing"``).
        source: the notebook that was run.
        html: the HTML file written (also for a failed run), or None when nothing could be written.
        seconds: wall-clock time of the execution.
        error: None when every cell ran; else the failing cell and the error's last line.
        failed_cell: the index (0-based, among all cells of the executed notebook) of the failing cell.
    """

    name: str
    source: Path
    html: Path | None
    seconds: float
    error: str | None = None
    failed_cell: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def default_notebooks_dir() -> Path:
    """``./notebooks`` when the current folder has one, else the ``notebooks/`` beside the installed package."""
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parent.parent / "notebooks"


def find_notebooks(folder: str | Path, select: Sequence[int] | None = None) -> list[Path]:
    """The numbered notebooks of ``folder``, in order; ``select``: only these numbers (``[3, 4]``).

    Raises:
        FileNotFoundError: no such folder, or no numbered notebook in it.
        ValueError: a selected number that has no notebook.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {folder.resolve()}; pass --notebooks-dir")
    numbered = {}
    for path in sorted(folder.glob("*.ipynb")):
        match = NOTEBOOK_PATTERN.match(path.name)
        if match:
            numbered.setdefault(int(match.group(1)), path)
    if not numbered:
        raise FileNotFoundError(f"no numbered notebooks (NN_name.ipynb) in {folder.resolve()}")
    if select is None:
        return [numbered[n] for n in sorted(numbered)]
    missing = [n for n in select if n not in numbered]
    if missing:
        raise ValueError(
            f"no notebook numbered {', '.join(map(str, missing))} in {folder.resolve()}; there are: "
            + ", ".join(f"{n} ({numbered[n].stem})" for n in sorted(numbered))
        )
    return [numbered[n] for n in dict.fromkeys(select)]


def parse_selection(text: str) -> list[int]:
    """``"3,4"`` or ``"1-3,6"`` -> ``[3, 4]`` / ``[1, 2, 3, 6]``."""
    numbers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+", part):
            numbers.append(int(part))
        elif re.fullmatch(r"\d+-\d+", part):
            first, last = map(int, part.split("-"))
            numbers.extend(range(first, last + 1))
        else:
            raise ValueError(f"--notebooks {text!r}: expected numbers such as 3,4 or 1-3, not {part!r}")
    return numbers


def inject_parameters(notebook, parameters: dict[str, Any]):
    """Insert a cell assigning ``parameters`` right after the cell tagged ``parameters`` (first, without one).

    A cell injected by an earlier run is replaced. Values are written with ``repr``, so they must be Python
    literals (numbers, strings, booleans, None, lists, dicts).
    """
    import nbformat

    cells = [c for c in notebook.cells if INJECTED_TAG not in c.get("metadata", {}).get("tags", [])]
    lines = ["# Parameters injected by workbench report"]
    for name, value in parameters.items():
        if not name.isidentifier():
            raise ValueError(f"parameter name {name!r} is not a Python identifier")
        lines.append(f"{name} = {value!r}")
    injected = nbformat.v4.new_code_cell("\n".join(lines), metadata={"tags": [INJECTED_TAG]})
    position = next(
        (i + 1 for i, c in enumerate(cells) if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), 0
    )
    notebook.cells = cells[:position] + [injected] + cells[position:]
    return notebook


def execute_notebook(path: str | Path, parameters: dict[str, Any], timeout: int = 600):
    """Run a notebook in a fresh kernel, in its own folder -> (executed notebook, failed cell index or None,
    error text or None). A failure stops the notebook at that cell; the cells before keep their outputs."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    path = Path(path)
    notebook = inject_parameters(nbformat.read(path, as_version=4), parameters)
    kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel,
        allow_errors=False,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        failed = _failed_cell(notebook)
        return notebook, failed, _describe_failure(notebook, failed, err)
    return notebook, None, None


def _describe_failure(notebook, failed: int | None, err: Exception) -> str:
    """``cell [5] (probe = DistanceProbe(...) failed: ValueError: ...``: the In [n] number shown in the HTML,
    the cell's first line, and the error's type and message."""
    if failed is None:
        return f"a cell failed: {type(err).__name__}: {str(err).strip().splitlines()[-1:]}"
    cell = notebook.cells[failed]
    first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if errors:
        what = f"{errors[0].get('ename', 'Error')}: {errors[0].get('evalue', '')}"
    else:
        what = f"{type(err).__name__} (the cell did not finish)"
    number = cell.get("execution_count")
    return f"cell [{number if number is not None else ' '}] ({first_line[:60]}) failed: {what}"


def _failed_cell(notebook) -> int | None:
    for index, cell in enumerate(notebook.cells):
        if any(output.get("output_type") == "error" for output in cell.get("outputs", [])):
            return index
    # A timeout or a dead kernel leaves no error output: the first code cell that never ran.
    for index, cell in enumerate(notebook.cells):
        if cell.cell_type == "code" and cell.get("execution_count") is None and cell.source.strip():
            return index
    return None


def write_html(notebook, path: Path, title: str) -> Path:
    """Write an executed notebook as one HTML page that opens offline; the one place the format is chosen.

    ``workbench.viz.export.notebook_to_html`` keeps each view's static rendering (plotly figures, HTML
    tables) in place of its live widget, drops every CDN script and inlines plotly.js once.
    """
    from .viz.export import notebook_to_html

    return notebook_to_html(notebook, path, title=title)


def run_report(
    out: str | Path = "reports",
    select: Sequence[int] | None = None,
    device: str = "auto",
    quick: bool = False,
    notebooks_dir: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: int = 600,
    log=_print,
) -> list[NotebookRun]:
    """Execute the notebooks and write ``out/NN_name.html`` for each plus ``out/index.html``.

    Args:
        out: the output folder (created).
        select: notebook numbers (``[3, 4]``); None: all.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, passed to every notebook as the parameter ``device``.
        quick: the notebooks' CI sizes (the parameter ``quick``); False: the sizes meant for reading.
        parameters: more parameters for every notebook (they override ``device`` and ``quick``).
        timeout: seconds one cell may run.
        log: where progress lines go (``print`` by default; None for silence).
    """
    notebooks = find_notebooks(notebooks_dir or default_notebooks_dir(), select)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    values = {"device": device, "quick": quick, **(parameters or {})}
    runs = []
    for number, path in enumerate(notebooks, 1):
        if log:
            log(f"[{number}/{len(notebooks)}] running {path.name} ...")
        start = time.perf_counter()
        notebook, failed, error = execute_notebook(path, values, timeout=timeout)
        seconds = time.perf_counter() - start
        target = out / f"{path.stem}.html"
        target = write_html(notebook, target, title=path.stem)
        run = NotebookRun(path.stem, path, target, seconds, error, failed)
        runs.append(run)
        if log:
            status = "ok" if run.ok else f"FAILED ({error})"
            log(f"    {status}, {seconds:.1f} s -> {target}")
    index = write_index(runs, out, values)
    if log:
        failed_runs = [r for r in runs if not r.ok]
        log(
            f"\n{len(runs) - len(failed_runs)} of {len(runs)} notebooks ran without errors; open {index.resolve()}"
        )
    return runs


def write_index(runs: Sequence[NotebookRun], out: Path, parameters: dict[str, Any]) -> Path:
    """``out/index.html``: one row per notebook with its link, status and run time."""
    rows = []
    for run in runs:
        link = f'<a href="{html.escape(run.html.name)}">{html.escape(run.name)}</a>' if run.html else run.name
        status = "ok" if run.ok else f'<span class="failed">failed: {html.escape(run.error)}</span>'
        rows.append(f"<tr><td>{link}</td><td>{status}</td><td>{run.seconds:.1f} s</td></tr>")
    settings = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>workbench reports</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 12px;text-align:left}}
.failed{{color:#b00}}</style></head>
<body><h1>workbench reports</h1>
<p>Generated {time.strftime("%Y-%m-%d %H:%M")} with {html.escape(settings)}. Each page opens offline.</p>
<table><tr><th>notebook</th><th>status</th><th>run time</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def open_lab(notebooks_dir: str | Path | None = None) -> int:
    """Start JupyterLab on the notebooks folder; returns its exit code.

    Raises:
        ModuleNotFoundError: JupyterLab is not installed (with the command that installs it).
    """
    import subprocess
    import sys

    if importlib.util.find_spec("jupyterlab") is None:
        raise ModuleNotFoundError(
            "JupyterLab is not installed; install it with `pip install jupyterlab` "
            '(or the workbench\'s dev extra: pip install -e ".[dev]")'
        )
    folder = Path(notebooks_dir or default_notebooks_dir())
    if not folder.is_dir():
        raise FileNotFoundError(f"no notebooks folder at {folder.resolve()}; pass --notebooks-dir")
    return subprocess.call([sys.executable, "-m", "jupyterlab", str(folder)])
