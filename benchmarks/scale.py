"""Scale: extraction words/s with 1 and 2 processes (torchrun), and store write/read MB/s, zarr vs memmap.

(a) Extraction: ``probes.store.extract`` of MiniLM (or ``--model``) on the first ``--sentences`` train
sentences of ``--data``, timed inside the processes from a barrier to the end (model loading and imports
left out), as the memmap format in one process (the baseline), the zarr store in one process, and the zarr
store under ``torchrun --nproc-per-node 2``. Every process gets ``cores // processes`` torch threads, so
the runs use the same cores. The 2-process store is checked to equal the 1-process one byte for byte.
(b) Store I/O: random float16 word vectors [--words, --d-model] for --layers layers written as a memmap
store's files and as zarr chunks (``probes.chunked``: CRC32C, uncompressed), then read three ways: all
rows in order, sentence by sentence (20-row slices in order, as ``probes run`` reads them), and 4096-row
random index batches, each as the float32 copy ``ActivationStore.stack`` makes. MB/s of float16 data; each figure is the best of ``--repeat`` runs (page cache
dropped is not possible without root, so reads are warm: they measure the format's overhead, not the disk).

    python benchmarks/scale.py [--data sample|ud_english_ewt|PATH] [--sentences 400] [--words 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]

EXTRACT_SCRIPT = """
import json, os, sys, time
import torch
import probes, workbench as wb
from probes.store import extract
from workbench import distributed

ctx = distributed.init()
data, n, model_name, folder, fmt, threads, chunk_rows = sys.argv[1:8]
torch.set_num_threads(int(threads))
sentences = probes.load_treebank(data, "train", max_sentences=int(n))
model = wb.AutoModel.from_pretrained(model_name, device="cpu")
options = dict(layers="all", batch_size=32, progress=False, format=fmt)
if fmt == "zarr":
    options["chunk_rows"] = int(chunk_rows)
distributed.barrier()
start = time.perf_counter()
store = extract(model, [s.words for s in sentences], folder, **options)
distributed.barrier()
seconds = time.perf_counter() - start
if ctx.is_main:
    print("RESULT " + json.dumps({"words": int(store.n_words), "seconds": seconds, "layers": len(store.layers),
                                  "d_model": store.d_model}))
distributed.shutdown()
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return env


def _run_extract(script: Path, args: argparse.Namespace, folder: Path, fmt: str, processes: int) -> dict:
    threads = max(1, (os.cpu_count() or 1) // processes)
    target = [str(script), args.data, str(args.sentences), args.model, str(folder), fmt, str(threads)]
    target.append(str(args.chunk_rows))
    if processes == 1:
        command = [sys.executable, *target]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc-per-node={processes}",
        ]
        command += target
    done = subprocess.run(command, env=_env(), capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"extraction ({fmt}, {processes} processes) failed:\n{done.stderr[-3000:]}")
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line[len("RESULT ") :])


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def extraction(args: argparse.Namespace) -> pd.DataFrame:
    """Words/s of the memmap store (1 process), the zarr store with 1 and with 2 processes."""
    work = Path(tempfile.mkdtemp(prefix="scale-"))
    script = work / "extract.py"
    script.write_text(EXTRACT_SCRIPT)
    rows = []
    for fmt, processes in (("memmap", 1), ("zarr", 1), ("zarr", 2)):
        result = _run_extract(script, args, work / f"{fmt}-{processes}", fmt, processes)
        rows.append({"store": fmt, "processes": processes, **result})
    if _files(work / "zarr-1") != _files(work / "zarr-2"):
        raise AssertionError("the 2-process zarr store differs from the 1-process one")
    frame = pd.DataFrame(rows)
    frame["words_per_s"] = frame["words"] / frame["seconds"]
    frame["vs_memmap"] = frame["words_per_s"] / frame["words_per_s"].iloc[0]
    return frame


def _best(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def store_io(args: argparse.Namespace) -> pd.DataFrame:
    """Write and read MB/s of one float16 [words, d_model] array per layer: memmap files vs zarr chunks."""
    import zarr

    from probes import chunked
    from probes.store import default_chunk_rows

    rng = np.random.default_rng(0)
    data = [rng.standard_normal((args.words, args.d_model), dtype=np.float32).astype(np.float16)]
    data = data * args.layers  # the same values per layer: the formats do not compress
    megabytes = args.layers * data[0].nbytes / 2**20
    chunk_rows = default_chunk_rows(args.d_model)
    work = Path(tempfile.mkdtemp(prefix="scale-io-"))

    def write_memmap():
        for layer, values in enumerate(data):
            array = np.memmap(work / f"layer_{layer}.f16", dtype=np.float16, mode="w+", shape=values.shape)
            for start in range(0, args.words, chunk_rows):  # the same pieces as the zarr writer's
                array[start : start + chunk_rows] = values[start : start + chunk_rows]
            array.flush()
            del array

    def write_zarr():
        group = zarr.open_group(str(work / "zarr"), mode="w", zarr_format=3)
        for layer, values in enumerate(data):
            array = chunked.create_rows_array(
                group, f"layer_{layer}", args.words, (args.d_model,), "float16", chunk_rows
            )
            for start in range(0, args.words, chunk_rows):
                array[start : start + chunk_rows] = values[start : start + chunk_rows]

    def readers():
        group = zarr.open_group(str(work / "zarr"), mode="r", zarr_format=3)
        memmaps = [
            np.memmap(
                work / f"layer_{layer}.f16", dtype=np.float16, mode="r", shape=(args.words, args.d_model)
            )
            for layer in range(args.layers)
        ]
        zarrs = [
            chunked.ChunkedRows(group[f"layer_{layer}"], chunk_rows, str) for layer in range(args.layers)
        ]
        return {"memmap": memmaps, "zarr": zarrs}

    rows = []
    for name, write in (("memmap", write_memmap), ("zarr", write_zarr)):
        rows.append({"operation": "write", "store": name, "seconds": _best(write, args.repeat)})
    arrays = readers()
    batches = [np.sort(rng.choice(args.words, 4096, replace=False)) for _ in range(20)]
    for name, layers in arrays.items():
        # As ActivationStore.stack gives them to probe training: float32 copies of the rows.
        patterns = {
            "read all rows": lambda layers=layers: [np.asarray(a[:], dtype=np.float32) for a in layers],
            "read by sentence (20 rows)": lambda layers=layers: [
                np.asarray(a[s : s + 20], dtype=np.float32) for a in layers for s in range(0, args.words, 20)
            ],
            "read 4096 random rows x20": lambda layers=layers: [
                np.asarray(a[b], dtype=np.float32) for a in layers for b in batches
            ],
        }
        for operation, read in patterns.items():
            seconds = _best(read, args.repeat)
            size = (
                megabytes if "random" not in operation else args.layers * 20 * 4096 * args.d_model * 2 / 2**20
            )
            rows.append({"operation": operation, "store": name, "seconds": seconds, "megabytes": size})
    frame = pd.DataFrame(rows)
    frame["megabytes"] = frame["megabytes"].fillna(megabytes)
    frame["mb_per_s"] = frame["megabytes"] / frame["seconds"]
    baseline = frame[frame["store"] == "memmap"].set_index("operation")["mb_per_s"]
    frame["vs_memmap"] = frame["mb_per_s"] / frame["operation"].map(baseline)
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--sentences", type=int, default=400)
    parser.add_argument("--chunk-rows", type=int, default=1024, help="zarr rows per chunk in (a)")
    parser.add_argument("--words", type=int, default=200_000)
    parser.add_argument("--d-model", type=int, default=384)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-extraction", action="store_true")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}")
    if not args.skip_extraction:
        print("(a) extraction")
        print(extraction(args).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    print(f"(b) store I/O: {args.layers} layers x [{args.words}, {args.d_model}] float16")
    print(store_io(args).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
