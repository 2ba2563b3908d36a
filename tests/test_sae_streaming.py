"""Training a dictionary from an activation store larger than the memory it may use.

``sae.train`` reads an iterable of activation chunks through ``workbench.sae.stream.ActivationStream``: it
holds a shuffling buffer of ``buffer_size`` rows plus the chunk being read, never the whole store. Here a
store on disk (one ``.npy`` file per chunk, read one at a time, as ``probes``' store reads its chunks) of
64 MiB trains in a fresh process whose private memory is capped at what it holds after start-up plus a
budget of 16 MiB (``RLIMIT_DATA``, which counts heap and anonymous mappings: every torch and numpy
allocation, not the file's pages in the page cache). A control in the same process shows the cap bites:
reading the whole store at once fails there. The streamed run ends with the weights of the same training on
the chunks held in memory (same chunks, same order, same seed: the same batches).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from workbench import sae

D_IN, CHUNK_ROWS, N_CHUNKS = 256, 512, 128  # 0.5 MiB chunks, a 64 MiB store
# The memory the streamed training may take beyond start-up, a quarter of the store. It needs about 7 MiB:
# the buffer's rows, the chunk being read, and a step's batch-sized tensors (forward, backward, Adam).
BUDGET = 16 * 2**20
# A chunk per step, so one pass reads the whole store; the buffer holds two batches. One thread, here and in
# the child, so both runs sum in the same order.
SETTINGS = dict(d_sae=64, kind="topk", k=8, steps=N_CHUNKS, batch_size=CHUNK_ROWS, buffer_size=2 * CHUNK_ROWS,
                lr=1e-3, seed=0, device="cpu", progress=False)  # fmt: skip


class ChunkFiles:
    """A store on disk: one float32 ``.npy`` file [rows, d] per chunk, read one at a time, in order; iterating
    again starts over (so ``sae.train`` may run several epochs or resume)."""

    def __init__(self, folder: str | os.PathLike) -> None:
        self.paths = sorted(Path(folder).glob("chunk_*.npy"))
        if not self.paths:
            raise FileNotFoundError(f"no chunk_*.npy files in {folder}")

    def __iter__(self):
        for path in self.paths:
            yield torch.from_numpy(np.load(path))

    @property
    def nbytes(self) -> int:
        return sum(path.stat().st_size for path in self.paths)


def write_store(folder: Path) -> ChunkFiles:
    folder.mkdir()
    rng = np.random.default_rng(0)
    directions = rng.standard_normal((32, D_IN)).astype(np.float32)  # some structure to learn
    for index in range(N_CHUNKS):
        codes = rng.exponential(1.0, (CHUNK_ROWS, 32)).astype(np.float32) * (
            rng.random((CHUNK_ROWS, 32)) < 0.1
        )
        noise = 0.1 * rng.standard_normal((CHUNK_ROWS, D_IN)).astype(np.float32)
        np.save(folder / f"chunk_{index:04d}.npy", codes @ directions + noise)
    return ChunkFiles(folder)


def private_memory_bytes() -> int:
    """VmData: this process's heap and private anonymous mappings, what RLIMIT_DATA caps."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmData:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmData line")


def train_capped(folder: str, out: str) -> None:
    """The child process: warm up, cap private memory at now + BUDGET, train from the store, run the control."""
    torch.set_num_threads(1)
    store = ChunkFiles(folder)
    warm = dict(SETTINGS, steps=1)  # imports, torch's optimiser set-up, thread pools: start-up, not training
    sae.train(None, "stored", [next(iter(store))], **warm)
    cap = private_memory_bytes() + BUDGET
    resource.setrlimit(resource.RLIMIT_DATA, (cap, resource.getrlimit(resource.RLIMIT_DATA)[1]))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    dictionary = sae.train(None, "stored", store, **SETTINGS)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    torch.save({name: t.clone() for name, t in dictionary.state_dict().items()}, out)
    try:  # the control: the whole store at once does not fit under the cap
        whole = np.concatenate([chunk.numpy() for chunk in store])
        control = f"read the whole store ({whole.nbytes} bytes) under the cap"
    except MemoryError:
        control = "MemoryError"
    print(
        json.dumps(
            {"store_bytes": store.nbytes, "budget": BUDGET, "peak_rss_increase": peak, "control": control}
        )
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads VmData from /proc (Linux)")
def test_training_streams_a_store_four_times_larger_than_its_memory_cap(tmp_path):
    store = write_store(tmp_path / "store")
    assert store.nbytes >= 4 * BUDGET
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    done = subprocess.run(
        [sys.executable, __file__, str(tmp_path / "store"), str(tmp_path / "streamed.pt")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["control"] == "MemoryError", report  # the cap is real: the whole store does not fit
    assert report["peak_rss_increase"] < BUDGET, report

    streamed = torch.load(tmp_path / "streamed.pt", weights_only=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        in_memory = sae.train(None, "stored", [chunk.clone() for chunk in store], **SETTINGS)
    finally:
        torch.set_num_threads(threads)
    assert in_memory.training_log[-1]["explained_variance"] > 0.5  # it learned something to compare
    for name, tensor in in_memory.state_dict().items():
        torch.testing.assert_close(streamed[name], tensor, rtol=1e-5, atol=1e-6, msg=f"{name} differs")


if __name__ == "__main__":
    train_capped(sys.argv[1], sys.argv[2])
