"""``workbench report``: run the notebooks headless and write each as a self-contained HTML file.

Each numbered notebook (``NN_name.ipynb``) is executed top to bottom with ``nbclient`` in its own kernel,
after a cell with the report's parameters (``device``, ``quick``, and any ``--param``) is inserted right
after the notebook's cell tagged ``parameters`` (as papermill does, so the notebook's own defaults stay
visible above). Every notebook is written as ``NN_name.html`` that draws offline, plus an ``index.html``
linking them with their run times. A notebook that fails is still written (up to the failing cell, whose
error shows) and reported with the number of that cell; the others run anyway.

Any failure of one notebook is contained: invalid JSON, a kernel that does not exist, a cell that raises or
runs past the timeout, a kernel that dies, an HTML export that fails. That notebook is reported as failed
with the error's first line (and no stale HTML of an earlier run is left under its name); the others still
run. ``index.html`` is written fresh at the start of every run (the selected notebooks as "not run yet") and
rewritten after each notebook, so it always describes this run, even one that was interrupted.

The index also names, per notebook, every random stand-in model it used (:func:`workbench.zoo.load` without
the checkpoint offline, or :func:`workbench.zoo.tiny`): the warning lines ``<name> is not available offline:
using a random-initialized tiny ...`` found in the outputs, and the ``stand_in_notice`` of every model still
alive when the notebook finished (read by a last cell that is run in the same kernel and left out of the
HTML).

>>> from workbench.report import run_report
>>> runs = run_report(out="reports", select=[1, 3], quick=True)  # doctest: +SKIP
>>> [(r.name, r.ok, round(r.seconds)) for r in runs]  # doctest: +SKIP
[('01_quickstart', True, 9), ('03_probing', True, 31)]
"""

from __future__ import annotations

import functools
import html
import importlib.util
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_print = functools.partial(print, flush=True)
NOTEBOOK_PATTERN = re.compile(r"^(\d+)_[\w-]+\.ipynb$")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
STAND_IN_TAG = "workbench-report-stand-ins"
STAND_IN_MARKER = "__workbench_report_stand_ins__ = "
# The line zoo.load logs when it builds a random stand-in: "gpt2 is not available offline: using a random-...".
STAND_IN_LINE = re.compile(r"^.*\bis not available offline: using a random.*$", re.MULTILINE)
# Run in the notebook's kernel after its last cell: the stand_in_notice of every model still alive.
_STAND_IN_PROBE = f"""# workbench report: which models are random stand-ins (this cell is not part of the HTML)
import gc as _wb_gc, json as _wb_json, sys as _wb_sys, warnings as _wb_warnings
_wb_notices = set()
if "torch" in _wb_sys.modules:
    with _wb_warnings.catch_warnings():
        _wb_warnings.simplefilter("ignore")
        for _wb_object in _wb_gc.get_objects():
            try:
                if isinstance(_wb_object, _wb_sys.modules["torch"].nn.Module):
                    _wb_notice = getattr(_wb_object, "stand_in_notice", None)
                    if isinstance(_wb_notice, str):
                        _wb_notices.add(_wb_notice)
            except Exception:
                pass
print({STAND_IN_MARKER!r} + _wb_json.dumps(sorted(_wb_notices)))
del _wb_gc, _wb_json, _wb_sys, _wb_warnings, _wb_notices
"""


@dataclass
class NotebookRun:
    """What happened to one notebook.

    Attributes:
        name: the notebook's file name without ``.ipynb`` (``"03_probing"``).
        source: the notebook that was run.
        html: the HTML file written (also for a failed run), or None when nothing could be written.
        seconds: wall-clock time of the execution.
        error: None when every cell ran; else what failed: the failing cell and the error, or why the
            notebook could not be read, started or written.
        failed_cell: the index (0-based, among all cells of the executed notebook) of the failing cell.
        stand_ins: the notices of the random stand-in models the notebook used (empty: none seen).
    """

    name: str
    source: Path
    html: Path | None
    seconds: float
    error: str | None = None
    failed_cell: int | None = None
    stand_ins: list[str] = field(default_factory=list)

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
    """``"3,4"`` or ``"1-3,6"`` -> ``[3, 4]`` / ``[1, 2, 3, 6]``.

    Raises:
        ValueError: an empty selection, a part that is not a number or a range, a reversed range (``3-1``).
    """
    if not text.strip():
        raise ValueError("--notebooks '': the selection is empty; give numbers such as 3,4 or 1-3")
    numbers: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if re.fullmatch(r"\d+", part):
            numbers.append(int(part))
        elif re.fullmatch(r"\d+\s*-\s*\d+", part):
            first, last = (int(n) for n in part.split("-"))
            if first > last:
                raise ValueError(
                    f"--notebooks {text!r}: the range {part!r} runs backwards; write {last}-{first}"
                )
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
    error text or None). A failure stops the notebook at that cell; the cells before keep their outputs.

    The returned notebook still ends with the cell that lists the stand-in models (see :func:`stand_ins_of`,
    which reads and removes it).

    Raises:
        Whatever stops the notebook from being read or its kernel from starting (invalid JSON, a kernel that
        does not exist); :func:`run_report` reports these as the notebook's failure.
    """
    import nbformat

    path = Path(path)
    return _execute(nbformat.read(path, as_version=4), path, parameters, timeout)


def _execute(notebook, path: Path, parameters: dict[str, Any], timeout: int):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = inject_parameters(notebook, parameters)
    notebook.cells.append(nbformat.v4.new_code_cell(_STAND_IN_PROBE, metadata={"tags": [STAND_IN_TAG]}))
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
        return notebook, failed, _describe_failure(notebook, failed, err, timeout)
    return notebook, None, None


def stand_ins_of(notebook) -> list[str]:
    """The random stand-ins an executed notebook used, and the notebook without the cell that listed them.

    Reads the stand-in warnings of :func:`workbench.zoo.load` from every text output, and the list printed
    by the last cell (tagged ``workbench-report-stand-ins``; absent when an earlier cell failed), which it
    removes from ``notebook``. Returns the distinct notices in the order first seen.
    """
    notices: dict[str, None] = {}
    kept = []
    for cell in notebook.cells:
        probe = STAND_IN_TAG in cell.get("metadata", {}).get("tags", [])
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            text = output.get("text", "")
            if output.get("output_type") == "error":
                text = str(output.get("evalue", ""))
            elif output.get("output_type") in ("display_data", "execute_result"):
                text = output.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else str(text)
            if probe:
                for line in text.splitlines():
                    if line.startswith(STAND_IN_MARKER):
                        try:
                            listed = json.loads(line[len(STAND_IN_MARKER) :])
                        except ValueError:
                            continue
                        notices.update(dict.fromkeys(str(n) for n in listed if isinstance(n, str)))
            else:
                notices.update(dict.fromkeys(m.group(0).strip() for m in STAND_IN_LINE.finditer(text)))
        if not probe:
            kept.append(cell)
    notebook.cells = kept
    return _merge_notices(notices)


def _merge_notices(notices: dict[str, None]) -> list[str]:
    """Drop a notice that is part of a longer one (a warning line that also carries a logging prefix)."""
    distinct = list(notices)
    return [n for n in distinct if not any(n != other and n in other for other in distinct)]


def _describe_failure(notebook, failed: int | None, err: Exception, timeout: int | None = None) -> str:
    """``cell [5] (probe = DistanceProbe(...) failed: ValueError: ...``: the In [n] number shown in the HTML,
    the cell's first line, and the error's type and message (for a timeout: that it ran past it)."""
    from nbclient.exceptions import CellTimeoutError

    if isinstance(err, CellTimeoutError):
        what = (
            f"CellTimeoutError: the cell ran past the timeout of {timeout} s (--timeout) and was interrupted"
        )
    else:
        what = None
    if failed is None:
        return f"a cell failed: {what or f'{type(err).__name__}: {_first_line(err)}'}"
    cell = notebook.cells[failed]
    first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
    errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
    if what is None and errors:
        what = f"{errors[0].get('ename', 'Error')}: {errors[0].get('evalue', '')}"
    elif what is None:
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

    A notebook that cannot be read, started, run or written is a failed :class:`NotebookRun` (its error
    says why); the others run anyway. ``index.html`` is written before the first notebook runs and after
    each one, so it never shows an earlier run.

    Args:
        out: the output folder (created).
        select: notebook numbers (``[3, 4]``); None: all.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, passed to every notebook as the parameter ``device``.
        quick: the notebooks' CI sizes (the parameter ``quick``); False: the sizes meant for reading.
        parameters: more parameters for every notebook (they override ``device`` and ``quick``).
        timeout: seconds one cell may run.
        log: where progress lines go (``print`` by default; None for silence).

    Raises:
        FileNotFoundError: no notebooks folder, or no numbered notebook in it.
        ValueError: a selected number with no notebook; an empty selection; ``timeout`` < 1.
        NotADirectoryError: ``out`` is an existing file.
    """
    if select is not None and not list(select):
        raise ValueError("the selection of notebooks is empty")
    if timeout < 1:
        raise ValueError(f"timeout must be at least 1 second, got {timeout}")
    notebooks = find_notebooks(notebooks_dir or default_notebooks_dir(), select)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a folder; name a folder for the HTML reports")
    out.mkdir(parents=True, exist_ok=True)
    values = {"device": device, "quick": quick, **(parameters or {})}
    runs: list[NotebookRun] = []
    pending = [NotebookRun(path.stem, path, None, 0.0, _NOT_RUN) for path in notebooks]
    write_index(pending, out, values)
    try:
        for number, path in enumerate(notebooks, 1):
            if log:
                log(f"[{number}/{len(notebooks)}] running {path.name} ...")
            run = run_one(path, out, values, timeout)
            runs.append(run)
            write_index(runs + pending[len(runs) :], out, values)
            if log:
                status = "ok" if run.ok else f"FAILED ({run.error})"
                written = f" -> {run.html}" if run.html else " (no HTML written)"
                log(f"    {status}, {run.seconds:.1f} s{written}")
                for notice in run.stand_ins:
                    log(f"    stand-in: {notice}")
    finally:
        if len(runs) < len(notebooks):  # interrupted: say so in this run's index
            interrupted = [
                NotebookRun(r.name, r.source, None, 0.0, "not run: the report was interrupted")
                for r in pending[len(runs) :]
            ]
            write_index(runs + interrupted, out, values)
    index = out / "index.html"
    if log:
        failed_runs = [r for r in runs if not r.ok]
        log(
            f"\n{len(runs) - len(failed_runs)} of {len(runs)} notebooks ran without errors; open {index.resolve()}"
        )
    return runs


_NOT_RUN = "not run yet (the report is still running, or it was stopped)"


def run_one(path: Path, out: Path, parameters: dict[str, Any], timeout: int = 600) -> NotebookRun:
    """Execute one notebook and write ``out/<name>.html``; never raises for a problem of the notebook.

    An earlier ``out/<name>.html`` is removed first, so a notebook that cannot be run leaves no stale page.
    """
    target = out / f"{path.stem}.html"
    target.unlink(missing_ok=True)
    import nbformat

    start = time.perf_counter()
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except Exception as err:  # noqa: BLE001 - whatever one notebook does, the others run
        message = f"could not read {path.name}: {type(err).__name__}: {_first_line(err)}"
        return NotebookRun(path.stem, path, None, time.perf_counter() - start, message)
    try:
        notebook, failed, error = _execute(notebook, path, parameters, timeout)
    except Exception as err:  # noqa: BLE001
        return NotebookRun(path.stem, path, None, time.perf_counter() - start, _could_not_run(path, err))
    seconds = time.perf_counter() - start
    stand_ins = stand_ins_of(notebook)
    try:
        written = write_html(notebook, target, title=path.stem)
    except Exception as err:  # noqa: BLE001
        target.unlink(missing_ok=True)
        message = f"could not write {target.name}: {type(err).__name__}: {_first_line(err)}"
        error = message if error is None else f"{error}; {message}"
        written = None
    return NotebookRun(path.stem, path, written, seconds, error, failed, stand_ins)


def _could_not_run(path: Path, err: Exception) -> str:
    from jupyter_client.kernelspec import NoSuchKernel

    if isinstance(err, NoSuchKernel):
        return (
            f"could not start the kernel {err.name!r} named in {path.name}'s kernelspec: no such kernel "
            "(`jupyter kernelspec list` shows the installed ones)"
        )
    return f"could not run {path.name}: {type(err).__name__}: {_first_line(err)}"


def _first_line(text: object) -> str:
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


def write_index(runs: Sequence[NotebookRun], out: Path, parameters: dict[str, Any]) -> Path:
    """``out/index.html``: one row per notebook with its link, status, run time and stand-in models."""
    rows = []
    for run in runs:
        link = f'<a href="{html.escape(run.html.name)}">{html.escape(run.name)}</a>' if run.html else run.name
        if run.ok:
            status = '<span class="ok">ok</span>'
        elif run.error.startswith("not run"):
            status = f'<span class="pending">{html.escape(run.error)}</span>'
        else:
            status = (
                f'<span class="failed" title="{html.escape(run.error)}">failed: '
                f"{html.escape(_first_line(run.error))}</span>"
            )
        if run.stand_ins:
            items = "".join(f"<li>{html.escape(notice)}</li>" for notice in run.stand_ins)
            stand_ins = (
                f'<div class="stand-in"><strong>{len(run.stand_ins)} random stand-in model(s): their '
                f"outputs are not meaningful</strong><ul>{items}</ul></div>"
            )
        else:
            stand_ins = "" if run.html is None else "none seen" if run.ok else "none seen before the failure"
        seconds = f"{run.seconds:.1f} s" if run.html or run.seconds else ""
        rows.append(f"<tr><td>{link}</td><td>{status}</td><td>{seconds}</td><td>{stand_ins}</td></tr>")
    settings = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    n_stand_in = sum(1 for run in runs if run.stand_ins)
    warning = (
        f'<p class="stand-in"><strong>{n_stand_in} notebook(s) used random stand-in models</strong> (the '
        "checkpoints were not available offline): their figures do not describe the real models.</p>"
        if n_stand_in
        else ""
    )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>workbench reports</title>
<style>body{{font-family:sans-serif;margin:2em}} td,th{{padding:4px 12px;text-align:left;vertical-align:top}}
.failed{{color:#b00}} .pending{{color:#777}} .stand-in{{color:#a40;background:#fff4e0;padding:2px 6px}}
.stand-in ul{{margin:2px 0;padding-left:1.2em}}</style></head>
<body><h1>workbench reports</h1>
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} with {html.escape(settings)}. Each page opens offline.</p>
{warning}
<table><tr><th>notebook</th><th>status</th><th>run time</th><th>random stand-in models</th></tr>
{chr(10).join(rows)}
</table></body></html>
"""
    path = out / "index.html"
    temporary = out / ".index.html.tmp"
    temporary.write_text(page, encoding="utf-8")
    temporary.replace(path)
    return path


def open_lab(notebooks_dir: str | Path | None = None, jupyter_args: Sequence[str] = ()) -> int:
    """Start JupyterLab on the notebooks folder; returns its exit code.

    Args:
        notebooks_dir: the folder (default: :func:`default_notebooks_dir`).
        jupyter_args: more arguments for ``jupyter lab`` (``["--port=8899", "--no-browser"]``).

    Raises:
        ModuleNotFoundError: JupyterLab is not installed (with the command that installs it).
        FileNotFoundError: no notebooks folder.
        PermissionError: running as root without ``--allow-root`` (JupyterLab would refuse and exit 1).
    """
    import os
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
    jupyter_args = [str(arg) for arg in jupyter_args]
    if (
        hasattr(os, "geteuid")
        and os.geteuid() == 0
        and not any("allow-root" in arg or "allow_root" in arg for arg in jupyter_args)
    ):
        raise PermissionError(
            "running as root, which JupyterLab refuses; pass --allow-root (workbench lab --allow-root) "
            "if that is what you mean, e.g. in a container"
        )
    return subprocess.call([sys.executable, "-m", "jupyterlab", str(folder), *jupyter_args])
