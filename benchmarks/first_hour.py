"""The first hour of a new user, timed: the README's first command and the command line's help.

Measures, each as wall-clock and CPU seconds (user + system, every process involved):

- ``workbench --help`` and ``workbench <command> --help`` for every command (a fresh interpreter each);
- ``workbench report`` as the README runs it (the quick default), per notebook and in total, skipped
  notebooks listed with why;
- with ``--full``, ``workbench report --full`` the same way (about half an hour of CPU on 2 cores);

and prints one table. The times quoted in README.md and the notebooks' headers come from this script.

CPU seconds are the figure to quote: on a shared machine the wall-clock time grows with the other work
running (the load average is printed with the results), the CPU time much less. Notebook CPU is the kernel's
(measured when it has exited); "runner" is this process's own share (reading, exporting, writing the pages).

On an oversubscribed machine, torch's threads wait for each other at every parallel section, spinning, and
the CPU time of a 2-thread kernel grows several-fold with the load (here, a matmul loop took 7 s of CPU on one
thread and did not finish in 270 s on two at a load average of 19; notebook 03 took 106 s of CPU with two
threads, 21 s with one). ``workbench report`` therefore gives each kernel one thread unless told otherwise
(``--threads``), and so does this script; ``--threads 0`` times torch's default (one thread per core).

Usage::

    PYTHONPATH=. python benchmarks/first_hour.py            # help + the quick report (a few minutes)
    PYTHONPATH=. python benchmarks/first_hour.py --full     # + the full report
    PYTHONPATH=. python benchmarks/first_hour.py --data ../shared/data --json times.json
    PYTHONPATH=. python benchmarks/first_hour.py --threads 0   # kernels with torch's default threads
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cpu_now() -> tuple[float, float]:
    """(this process's CPU seconds, its finished children's CPU seconds)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime, children.ru_utime + children.ru_stime


def time_help(argv: list[str]) -> dict:
    """Wall and CPU seconds of ``python -m workbench <argv> --help`` in a fresh interpreter."""
    _, children_before = cpu_now()
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "workbench", *argv, "--help"], capture_output=True, text=True, cwd=REPO
    )
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"workbench {' '.join(argv)} --help failed: {result.stderr.strip()[:300]}")
    _, children_after = cpu_now()
    return {
        "what": f"workbench {' '.join(argv)} --help".replace("  ", " "),
        "wall": wall,
        "cpu": children_after - children_before,
    }


def time_report(quick: bool, data: str | None, threads: int | None) -> list[dict]:
    """Run the report as ``workbench report [--full]`` does, in a temporary folder; one row per notebook and
    a total (runner included)."""
    from workbench.report import run_report

    rows = []
    with tempfile.TemporaryDirectory(prefix="first-hour-") as out:
        me_before, children_before = cpu_now()
        start = time.perf_counter()
        runs = run_report(
            out, quick=quick, data=data, notebooks_dir=REPO / "notebooks", log=None, threads=threads
        )
        wall = time.perf_counter() - start
        me_after, children_after = cpu_now()
    label = "report" if quick else "report --full"
    for run in runs:
        if run.skipped:
            rows.append(
                {"what": f"  {run.name}", "wall": None, "cpu": None, "note": run.skipped.split(";")[0]}
            )
        else:
            note = "ok" if run.ok else f"FAILED: {run.error[:80]}"
            if run.stand_ins:
                note += f", {len(run.stand_ins)} stand-in(s)"
            rows.append({"what": f"  {run.name}", "wall": run.seconds, "cpu": run.cpu_seconds, "note": note})
    rows.append({"what": "  runner (export, pages)", "wall": None, "cpu": me_after - me_before, "note": ""})
    total_cpu = (me_after - me_before) + (children_after - children_before)
    failed = sum(1 for run in runs if not run.ok)
    rows.insert(
        0,
        {
            "what": f"workbench {label}" + (f" --data {data}" if data else ""),
            "wall": wall,
            "cpu": total_cpu,
            "note": f"{failed} failed" if failed else "all ok",
        },
    )
    return rows


def print_table(rows: list[dict]) -> None:
    def seconds(value):
        return "" if value is None else f"{value:.1f}"

    width = max(len(row["what"]) for row in rows)
    print(f"{'what':<{width}}  {'wall s':>8}  {'CPU s':>8}  note")
    print("-" * (width + 30))
    for row in rows:
        print(
            f"{row['what']:<{width}}  {seconds(row['wall']):>8}  {seconds(row['cpu']):>8}  {row.get('note', '')}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="also time workbench report --full (long)")
    parser.add_argument("--no-report", action="store_true", help="time only the help of every command")
    parser.add_argument("--no-quick", action="store_true", help="with --full, time only the full report")
    parser.add_argument("--data", default=None, help="time the reports with --data DIR")
    parser.add_argument("--json", default=None, help="also write the rows to this JSON file")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the notebooks' kernels (default 1, as workbench report; 0: torch's default)",
    )
    args = parser.parse_args()

    from workbench.cli import _build_parser

    subcommands = next(a for a in _build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    commands = list(subcommands.choices)
    rows = [time_help([])] + [time_help([command]) for command in commands]
    if not args.no_report:
        if not args.no_quick:
            rows += time_report(quick=True, data=args.data, threads=args.threads or None)
        if args.full:
            rows += time_report(quick=False, data=args.data, threads=args.threads or None)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    threads = args.threads or "torch's default"
    print(
        f"\n{os.cpu_count()} CPUs, kernel threads: {threads}; load average at the end {load[0]:.1f} (1 min), "
        f"{load[2]:.1f} (15 min)\n"
    )
    print_table(rows)
    if args.json:
        record = {"load_average": load, "threads": threads, "cpus": os.cpu_count(), "rows": rows}
        Path(args.json).write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
