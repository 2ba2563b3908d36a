"""Run a script or module under ``torchrun --standalone`` (CPU, gloo) from a test, with the repository
importable and no launcher variables leaking in from the test's own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LAUNCHER_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in LAUNCHER_VARIABLES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def torchrun(
    target: list[str], n: int, timeout: float = 120, **extra_env: str
) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node n *target`` (``target``: a script path and its arguments,
    or ``["-m", module, ...]``); returns the finished process (stdout and stderr as text)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}"]
    return subprocess.run(
        [*command, *target],
        env=clean_env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=REPO,
    )
