"""``workbench report``: run the notebooks headless and write each as an HTML page that opens offline.

Each numbered notebook (``NN_name.ipynb``) is executed top to bottom with ``nbclient`` in its own kernel,
after a cell with the report's parameters (``device``, ``quick``, ``data_root`` with ``--data``, and any
``--param``) is inserted right after the notebook's cell tagged ``parameters`` (as papermill does, so the
notebook's own defaults stay visible above). Every notebook is written as ``NN_name.html``, which opens with
a box saying what data it ran on (the committed samples with their sizes, or the ``--data`` folder), plus an
``index.html`` linking them with their run times; the pages load plotly.js from one ``plotly.min.js`` beside
them. A notebook that fails is still written (up to the failing cell, whose error shows) and reported with
the number of that cell; the others run anyway.

The default is the quick report (the notebooks' small sizes): notebooks with nothing real to show without a
checkpoint that is not available here (a causal LM offline) are skipped, and the index says which checkpoint
each needs. ``quick=False`` (``workbench report --full``) runs every notebook at the sizes meant for reading.
While a notebook runs, the terminal shows its cell (k of n) and the time so far; at the end, a table of every
notebook's wall-clock and CPU time, status and stand-ins.

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
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .pages import PLOTLY_FILE, STYLE, write_plotlyjs

_print = functools.partial(print, flush=True)
NOTEBOOK_PATTERN = re.compile(r"^(\d+)_[\w-]+\.ipynb$")
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
DATA_TAG = "workbench-report-data"
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
        cpu_seconds: CPU time of the notebook's kernel (user + system, all its threads); None when unknown.
        skipped: why the notebook was not run (a checkpoint it needs is not available); None: it was run.
        stderr_outputs: how many outputs of the page are warnings or other text on stderr.
    """

    name: str
    source: Path
    html: Path | None
    seconds: float
    error: str | None = None
    failed_cell: int | None = None
    stand_ins: list[str] = field(default_factory=list)
    cpu_seconds: float | None = None
    skipped: str | None = None
    stderr_outputs: int = 0

    @property
    def ok(self) -> bool:
        """No error (a skipped notebook is ok: it was left out on purpose, and the index says why)."""
        return self.error is None

    @property
    def status(self) -> str:
        return "skipped" if self.skipped else "ok" if self.ok else "FAILED"


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


# The data a report runs on -----------------------------------------------------------------------------------


def data_root_of(data: str | Path | None) -> Path | None:
    """``--data DIR`` as the absolute folder passed to the notebooks (None or ``"sample"``: the samples).

    Raises:
        FileNotFoundError: ``data`` is not an existing folder (the message names it).
    """
    if data is None or str(data) == "sample":
        return None
    folder = Path(data).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise FileNotFoundError(
            f"--data {data}: {folder.resolve()} {what}; give a data root laid out like ../shared/data "
            "(ud_english_ewt/, glue/, superglue/, ...) or leave --data out for the committed samples"
        )
    return folder.resolve()


def describe_data(data_root: Path | None) -> str:
    """One sentence (HTML) naming the data of a report: the ``--data`` folder with the datasets found in it,
    or the committed samples with their sizes."""
    if data_root is not None:
        found = sorted(p.name for p in data_root.iterdir() if p.is_dir() and not p.name.startswith("."))
        inside = f" ({', '.join(found)})" if found else " (it holds no dataset folder)"
        return (
            f"<b>Data:</b> the data root <code>{html.escape(str(data_root))}</code>{html.escape(inside)}, passed "
            "to every notebook as <code>data_root</code>; each figure names the dataset, split and size it used."
        )
    package = Path(__file__).resolve().parent
    treebank = package.parent / "probes" / "sample_data"
    sentences = {
        split: _count_sentences(treebank / f"en_ewt-ud-{split}.conllu") for split in ("train", "dev", "test")
    }
    sst2 = _count_rows(package / "bench" / "sample_data" / "glue" / "SST-2" / "dev.tsv", header=True)
    sizes = "/".join(str(n) for n in sentences.values() if n is not None) or "a few"
    return (
        "<b>Data:</b> the small samples committed with workbench: UD English EWT, "
        f"{sizes} sentences (train/dev/test), and {sst2 if sst2 is not None else 'a few'} dev examples per "
        "GLUE/SuperGLUE task (SST-2, MRPC, COPA, ...). Scores on so few examples have wide confidence "
        "intervals. For the real datasets: <code>workbench report --data ../shared/data</code>."
    )


def _count_sentences(path: Path) -> int | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.startswith("# sent_id"))


def _count_rows(path: Path, header: bool) -> int | None:
    if not path.is_file():
        return None
    with path.open(encoding="utf-8") as lines:
        return sum(1 for line in lines if line.strip()) - int(header)


def add_data_header(notebook, text: str, mode: str):
    """Put a box with ``text`` (what data the page used) and ``mode`` right under the notebook's title (or
    first, without a title cell); a box of an earlier run is replaced."""
    import nbformat

    cells = [c for c in notebook.cells if DATA_TAG not in c.get("metadata", {}).get("tags", [])]
    box = nbformat.v4.new_markdown_cell(
        f'<div class="wb-data">{text}<br><b>Run:</b> {html.escape(mode)}</div>', metadata={"tags": [DATA_TAG]}
    )
    titled = bool(cells) and cells[0].cell_type == "markdown" and cells[0].source.lstrip().startswith("#")
    notebook.cells = cells[:1] + [box] + cells[1:] if titled else [box, *cells]
    return notebook


# Notebooks left out of the quick report ----------------------------------------------------------------------

# Per shipped notebook, the parameters that name the checkpoints it is about. Without any of them (offline, no
# Hugging Face cache) the notebook could only show a random stand-in or a box saying what it would show: the
# quick report skips it and says so. A notebook can declare its own in its metadata:
# {"workbench": {"needs_checkpoints": ["decoder"]}}.
NEEDS_CHECKPOINTS = {"06_interventions": ("decoder",), "07_modern_decoders": ("decoders",)}


def missing_checkpoints(notebook, name: str, parameters: dict[str, Any]) -> list[str]:
    """The checkpoints ``notebook`` is about that are not available here; empty when it needs none, or when
    at least one of them is available (it then has something real to show)."""
    needs = checkpoint_parameters(notebook, name)
    if not needs:
        return []
    defaults = _parameter_defaults(notebook)
    names: list[str] = []
    for parameter in needs:
        value = parameters.get(parameter, defaults.get(parameter))
        values = value if isinstance(value, (list, tuple)) else [value]
        names += [str(v) for v in values if isinstance(v, str)]
    from .hub import available_offline  # the check the notebooks make, so the index and the pages agree

    if not names or any(available_offline(n) for n in names):
        return []
    return names


def checkpoint_parameters(notebook, name: str) -> list[str]:
    """The parameters of ``notebook`` (named ``name``) that name the checkpoints it is about."""
    return list(
        notebook.metadata.get("workbench", {}).get("needs_checkpoints", NEEDS_CHECKPOINTS.get(name, ()))
    )


def _parameter_defaults(notebook) -> dict[str, Any]:
    """The literal values the notebook's ``parameters`` cell assigns."""
    import ast

    values: dict[str, Any] = {}
    for cell in notebook.cells:
        if PARAMETERS_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            return values
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
            ):
                try:
                    values[node.targets[0].id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return values


def skip_reason(missing: Sequence[str], number: int, parameters: Sequence[str] = ()) -> str:
    """Why the quick report skipped notebook ``number``, and the ways to run it."""
    listed = ", ".join(missing)
    local = f", or --param {parameters[0]}=FOLDER for a local copy" if parameters else ""
    return (
        f"skipped: needs the checkpoint{'s' if len(missing) > 1 else ''} {listed}, not available offline here "
        f"(download once with `hf download {missing[0]}`{local}); `workbench report --notebooks {number}` runs "
        "it anyway"
    )


class CellProgress:
    """nbclient's cell hooks -> a line on the terminal: ``[2/5] 03_probing  cell 7/13  42 s``.

    On a terminal the line is redrawn every half second (the seconds keep counting during a long cell); in a
    log file or a pipe, one line for every cell that ran 5 s or more, and a line every 30 s while one runs.
    """

    def __init__(self, label: str, n_cells: int, stream=None, log=None) -> None:
        self.label = label
        self.n_cells = n_cells
        self.stream = stream if stream is not None else sys.stdout
        self.log = log
        self.live = self.stream.isatty()
        self.start = time.monotonic()
        self.cell = 0
        self.cell_start = self.start
        self.cell_source = "starting the kernel"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, daemon=True)

    def __enter__(self) -> CellProgress:
        self._thread.start()
        return self

    def __exit__(self, *error) -> None:
        self._stop.set()
        self._thread.join()
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def on_cell_execute(self, cell, cell_index: int, **_) -> None:
        if STAND_IN_TAG in cell.get("metadata", {}).get("tags", []):
            return
        self.cell += 1
        self.cell_start = time.monotonic()
        first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
        self.cell_source = first_line[:50]

    def on_cell_executed(self, cell, cell_index: int, **_) -> None:
        seconds = time.monotonic() - self.cell_start
        if (
            not self.live
            and self.log
            and seconds >= 5
            and STAND_IN_TAG not in cell.get("metadata", {}).get("tags", [])
        ):
            self.log(f"    cell {self.cell}/{self.n_cells} ({self.cell_source}) took {seconds:.0f} s")

    def line(self) -> str:
        now = time.monotonic()
        return f"{self.label}  cell {self.cell}/{self.n_cells}  {now - self.start:.0f} s" + (
            f"  ({self.cell_source}: {now - self.cell_start:.0f} s)" if now - self.cell_start >= 3 else ""
        )

    def _tick(self) -> None:
        last_heartbeat = time.monotonic()
        while not self._stop.wait(0.5):
            if self.live:
                self.stream.write("\r\033[K" + self.line()[: _terminal_width() - 1])
                self.stream.flush()
            elif self.log and time.monotonic() - last_heartbeat >= 30:
                last_heartbeat = time.monotonic()
                self.log(f"    ... {self.line()}")


def _terminal_width() -> int:
    import shutil

    return shutil.get_terminal_size((100, 20)).columns


def _thread_environment(threads: int | None) -> dict[str, Any]:
    """The kernel's environment with ``threads`` torch/OpenMP threads ({}: the kernel inherits ours).

    On a machine busy with other work, torch's threads wait for each other at every parallel section,
    spinning: one thread per kernel is then several times faster than two (benchmarks/first_hour.py).
    """
    if threads is None:
        return {}
    count = str(threads)
    return {"env": {**os.environ, "OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count}}


def _kernel_config():
    """Kernels of the report talk over local IPC sockets in a private folder (POSIX), not TCP: nothing
    listens on the network, and the kernel has no cause to warn that TCP is unencrypted."""
    from traitlets.config import Config

    config = Config()
    if os.name == "posix":
        folder = tempfile.mkdtemp(prefix="workbench-report-kernel-")
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(Path(folder) / "kernel")
    return config


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


def _execute(
    notebook,
    path: Path,
    parameters: dict[str, Any],
    timeout: int,
    progress: CellProgress | None = None,
    threads: int | None = None,
):
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    notebook = inject_parameters(notebook, parameters)
    notebook.cells.append(nbformat.v4.new_code_cell(_STAND_IN_PROBE, metadata={"tags": [STAND_IN_TAG]}))
    kernel = notebook.metadata.get("kernelspec", {}).get("name", "python3")
    config = _kernel_config()
    hooks = {}
    if progress is not None:
        hooks = {"on_cell_execute": progress.on_cell_execute, "on_cell_executed": progress.on_cell_executed}
    client = NotebookClient(
        notebook,
        timeout=timeout,
        kernel_name=kernel,
        allow_errors=False,
        store_widget_state=True,
        resources={"metadata": {"path": str(path.parent)}},
        config=config,
        **hooks,
    )
    try:
        client.execute(**_thread_environment(threads))
    except (CellExecutionError, CellTimeoutError, DeadKernelError) as err:
        failed = _failed_cell(notebook)
        return notebook, failed, _describe_failure(notebook, failed, err, timeout)
    finally:
        if "ip" in config.KernelManager:
            import shutil

            shutil.rmtree(Path(config.KernelManager.ip).parent, ignore_errors=True)
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
    """Write an executed notebook as an HTML page that opens offline; the one place the format is chosen.

    ``workbench.viz.export.notebook_to_html`` keeps each view's static rendering (plotly figures, HTML
    tables) in place of its live widget and drops every CDN script; the page loads plotly.js from the
    ``plotly.min.js`` that :func:`run_report` writes once beside the pages.
    """
    from .viz.export import notebook_to_html

    return notebook_to_html(notebook, path, title=title, plotlyjs=PLOTLY_FILE)


def run_report(
    out: str | Path = "reports",
    select: Sequence[int] | None = None,
    device: str = "auto",
    quick: bool = True,
    notebooks_dir: str | Path | None = None,
    parameters: dict[str, Any] | None = None,
    timeout: int = 600,
    log=_print,
    data: str | Path | None = None,
    progress_stream=None,
    threads: int | None = 1,
) -> list[NotebookRun]:
    """Execute the notebooks and write ``out/NN_name.html`` for each, ``out/plotly.min.js`` once and
    ``out/index.html``.

    A notebook that cannot be read, started, run or written is a failed :class:`NotebookRun` (its error
    says why); the others run anyway. ``index.html`` is written before the first notebook runs and after
    each one, so it never shows an earlier run.

    Args:
        out: the output folder (created).
        select: notebook numbers (``[3, 4]``); None: all (in the quick report: all but those skipped for a
            missing checkpoint, see :data:`NEEDS_CHECKPOINTS`; a notebook selected by number always runs).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``, passed to every notebook as the parameter ``device``.
        quick: the notebooks' small sizes (the parameter ``quick``); False: the sizes meant for reading.
        parameters: more parameters for every notebook (they override ``device``, ``quick``, ``data_root``).
        timeout: seconds one cell may run.
        log: where progress lines go (``print`` by default; None for silence, the cell progress too).
        data: a data root (laid out like ``../shared/data``), passed as the absolute path ``data_root``;
            None: the committed samples. Every page says which, at its top.
        progress_stream: where the live cell progress is drawn (default stdout; only on a terminal).
        threads: torch/OpenMP threads of each notebook's kernel (None: torch's default, one per core). One
            by default: the notebooks' models are small, and on a machine busy with other work two threads
            spin waiting for each other (notebook 03 took 106 s of CPU with two, 21 s with one, at a load
            average of 18 on 2 cores; benchmarks/first_hour.py).

    Raises:
        FileNotFoundError: no notebooks folder, no numbered notebook in it, or ``data`` not a folder.
        ValueError: a selected number with no notebook; an empty selection; ``timeout`` < 1.
        NotADirectoryError: ``out`` is an existing file.
    """
    if select is not None and not list(select):
        raise ValueError("the selection of notebooks is empty")
    if timeout < 1:
        raise ValueError(f"timeout must be at least 1 second, got {timeout}")
    data_root = data_root_of(data)
    notebooks = find_notebooks(notebooks_dir or default_notebooks_dir(), select)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out}: is a file, not a folder; name a folder for the HTML reports")
    out.mkdir(parents=True, exist_ok=True)
    values: dict[str, Any] = {"device": device, "quick": quick}
    if data_root is not None:
        values["data_root"] = str(data_root)
    values.update(parameters or {})
    header = (describe_data(data_root), _mode(quick, values))
    write_plotlyjs(out)
    # a notebook named by number, the full report and one asked to use stand-ins (stand_ins=True) always run
    ask_all = select is not None or not quick or values.get("stand_ins") is True
    skips = {} if ask_all else _quick_skips(notebooks, values)
    pending = [
        NotebookRun(p.stem, p, None, 0.0, skipped=skips[p])
        if p in skips
        else NotebookRun(p.stem, p, None, 0.0, _NOT_RUN)
        for p in notebooks
    ]
    write_index(pending, out, values, header[0])
    runs: list[NotebookRun] = []
    to_run = [p for p in notebooks if p not in skips]
    if log:
        kernels = f"{threads} torch thread(s) per kernel" if threads else "torch's default threads"
        log(
            f"workbench report: {_mode(quick, values)}; {kernels}; {len(to_run)} notebook(s) to run, "
            f"{len(skips)} skipped"
        )
        for path, reason in skips.items():
            log(f"    {path.stem}: {reason}")
    try:
        for number, path in enumerate(to_run, 1):
            label = f"[{number}/{len(to_run)}] {path.stem}"
            if log:
                log(f"{label} ...")
            run = run_one(
                path,
                out,
                values,
                timeout,
                header=header,
                label=label,
                log=log,
                stream=progress_stream,
                threads=threads,
            )
            runs.append(run)
            write_index(_in_order(notebooks, runs, pending), out, values, header[0])
            if log:
                status = "ok" if run.ok else f"FAILED ({run.error})"
                written = f" -> {run.html}" if run.html else " (no HTML written)"
                log(f"    {status}, {run.seconds:.1f} s{written}")
                for notice in run.stand_ins:
                    log(f"    stand-in: {notice}")
    finally:
        if len(runs) < len(to_run):  # interrupted: say so in this run's index
            ran = {r.source for r in runs}
            interrupted = [
                r
                if (r.skipped or r.source in ran)
                else NotebookRun(r.name, r.source, None, 0.0, "not run: the report was interrupted")
                for r in pending
            ]
            write_index(_in_order(notebooks, runs, interrupted), out, values, header[0])
    everything = _in_order(notebooks, runs, pending)
    if log:
        log("\n" + summary_table(everything))
        failed_runs = [r for r in runs if not r.ok]
        log(
            f"\n{len(runs) - len(failed_runs)} of {len(runs)} notebooks ran without errors"
            + (f", {len(skips)} skipped" if skips else "")
            + f"; open {(out / 'index.html').resolve()}"
        )
    return everything


def _mode(quick: bool, values: dict[str, Any]) -> str:
    settings = ", ".join(f"{k}={v!r}" for k, v in values.items() if k not in ("quick", "data_root"))
    size = "quick (the notebooks' small sizes)" if quick else "full (the sizes meant for reading)"
    return f"{size}; {settings}"


def _quick_skips(notebooks: Sequence[Path], values: dict[str, Any]) -> dict[Path, str]:
    """The notebooks the quick report leaves out, with why."""
    import nbformat

    skips = {}
    for path in notebooks:
        try:
            notebook = nbformat.read(path, as_version=4)
        except Exception:  # noqa: BLE001 - run_one reports an unreadable notebook as failed
            continue
        missing = missing_checkpoints(notebook, path.stem, values)
        if missing:
            number = int(NOTEBOOK_PATTERN.match(path.name).group(1))
            skips[path] = skip_reason(missing, number, checkpoint_parameters(notebook, path.stem))
    return skips


def _in_order(notebooks: Sequence[Path], runs: Sequence[NotebookRun], pending: Sequence[NotebookRun]) -> list:
    """One run per notebook, in the notebooks' order: the finished run, else its pending or skipped entry."""
    done = {run.source: run for run in runs}
    waiting = {run.source: run for run in pending}
    return [done.get(path, waiting[path]) for path in notebooks]


def summary_table(runs: Sequence[NotebookRun]) -> str:
    """The end-of-run table: notebook, status, wall-clock and CPU seconds, stand-ins, stderr outputs."""
    rows = [("notebook", "status", "wall s", "CPU s", "stand-ins", "stderr")]
    for run in runs:
        if run.skipped:
            rows.append((run.name, "skipped", "", "", "", ""))
            continue
        if run.error and run.error.startswith("not run"):
            rows.append((run.name, "not run", "", "", "", ""))
            continue
        cpu = f"{run.cpu_seconds:.1f}" if run.cpu_seconds is not None else "?"
        rows.append(
            (
                run.name,
                run.status,
                f"{run.seconds:.1f}",
                cpu,
                str(len(run.stand_ins)),
                str(run.stderr_outputs),
            )
        )
    ran = [r for r in runs if not r.skipped and r.html is not None]
    total_cpu = sum(r.cpu_seconds or 0.0 for r in ran)
    rows.append(("total", "", f"{sum(r.seconds for r in ran):.1f}", f"{total_cpu:.1f}", "", ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    return "\n".join(lines)


_NOT_RUN = "not run yet (the report is still running, or it was stopped)"


def run_one(
    path: Path,
    out: Path,
    parameters: dict[str, Any],
    timeout: int = 600,
    header: tuple[str, str] | None = None,
    label: str | None = None,
    log=_print,
    stream=None,
    threads: int | None = None,
) -> NotebookRun:
    """Execute one notebook and write ``out/<name>.html``; never raises for a problem of the notebook.

    An earlier ``out/<name>.html`` is removed first, so a notebook that cannot be run leaves no stale page.
    ``header``: (what data, which run) shown in a box at the top of the page.
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
    if header is not None:
        add_data_header(notebook, *header)
    n_cells = sum(1 for c in notebook.cells if c.cell_type == "code") + 1  # + the injected parameters
    cpu_before = _children_cpu()
    try:
        if log:
            with CellProgress(label or path.stem, n_cells, stream=stream, log=log) as progress:
                notebook, failed, error = _execute(notebook, path, parameters, timeout, progress, threads)
        else:
            notebook, failed, error = _execute(notebook, path, parameters, timeout, threads=threads)
    except Exception as err:  # noqa: BLE001
        return NotebookRun(path.stem, path, None, time.perf_counter() - start, _could_not_run(path, err))
    seconds = time.perf_counter() - start
    cpu = _children_cpu() - cpu_before if cpu_before is not None else None
    stand_ins = stand_ins_of(notebook)
    try:
        written = write_html(notebook, target, title=path.stem)
    except Exception as err:  # noqa: BLE001
        target.unlink(missing_ok=True)
        message = f"could not write {target.name}: {type(err).__name__}: {_first_line(err)}"
        error = message if error is None else f"{error}; {message}"
        written = None
    return NotebookRun(
        path.stem,
        path,
        written,
        seconds,
        error,
        failed,
        stand_ins,
        cpu_seconds=cpu,
        stderr_outputs=count_stderr_outputs(notebook),
    )


def _children_cpu() -> float | None:
    """User + system CPU seconds of this process's finished children (the notebooks' kernels, once shut
    down and reaped); None where the platform has no ``resource`` module."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def count_stderr_outputs(notebook) -> int:
    """How many outputs of the executed notebook went to stderr (warnings, logging): what a reader sees as
    noise on the page."""
    return sum(
        1
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    )


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


def write_index(
    runs: Sequence[NotebookRun], out: Path, parameters: dict[str, Any], data: str | None = None
) -> Path:
    """``out/index.html``: one row per notebook with its link, status (or why it was skipped), wall-clock and
    CPU time and stand-in models; ``data``: the sentence saying what data the reports used."""
    rows = []
    for run in runs:
        link = f'<a href="{html.escape(run.html.name)}">{html.escape(run.name)}</a>' if run.html else run.name
        if run.skipped:
            status = f'<span class="wb-skipped">{html.escape(run.skipped)}</span>'
        elif run.ok:
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
        cpu = f"{run.cpu_seconds:.1f} s" if run.cpu_seconds is not None else ""
        rows.append(
            f"<tr><td>{link}</td><td>{status}</td><td>{seconds}</td><td>{cpu}</td><td>{stand_ins}</td></tr>"
        )
    settings = ", ".join(f"{k}={v!r}" for k, v in parameters.items())
    n_stand_in = sum(1 for run in runs if run.stand_ins)
    warning = (
        f'<p class="stand-in"><strong>{n_stand_in} notebook(s) used random stand-in models</strong> (the '
        "checkpoints were not available offline): their figures do not describe the real models.</p>"
        if n_stand_in
        else ""
    )
    data_box = f'<div class="wb-data">{data}</div>' if data else ""
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>workbench reports</title>
<style>{STYLE}</style></head>
<body><h1>workbench reports</h1>
<p>Generated {time.strftime("%Y-%m-%d %H:%M:%S")} with {html.escape(settings)}. Each page opens offline.</p>
{data_box}
{warning}
<table><tr><th>notebook</th><th>status</th><th>run time</th><th>CPU time</th><th>random stand-in models</th></tr>
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
