"""Scale: extraction words/s with 1 and 2 processes (torchrun), and store write/read MB/s, zarr vs memmap.

(a) Extraction: ``probes.store.extract`` of MiniLM (or ``--model``) on the first ``--sentences`` train
sentences of ``--data``, timed inside the processes from a barrier to the end (model loading and imports
left out), as the memmap format in one process (the baseline), the zarr store in one process, and the zarr
store under ``torchrun --nproc-per-node 2``. Every process gets ``cores // processes`` torch threads, so
the runs use the same cores. The 2-process store is checked to equal the 1-process one byte for byte.
(b) Store I/O: random float16 word vectors [--words, --d-model] for --layers layers, in sentences of 5-35
words. Writes: the memmap files and zarr chunks (``probes.chunked``: CRC32C, uncompressed), chunk by chunk.
Reads: a memmap store (format 2) and the zarr store ``probes.store.convert`` makes of it, read through
``ActivationStore`` as probe training reads them, as float32 tensors: (a) every row of each layer, (b)
``stack(layers, rows)`` over the sorted rows of 80% of the sentences, 65,536 at a time (a streamed probe),
(c) 20 sorted batches of 4,096 random rows per layer (again with a chunk cache of --small-cache-mb, smaller
than a layer), (d) ``stack()`` of every layer, (e) ``batches(layer, 4096)``, (f) ``stack(rows=sentence)``
sentence by sentence. Baselines in the same run: the memmap store read by this version's code, and by the
code before the zarr reader ("memmap, code before": numpy's float32 cast). Each trial opens its store anew
(opening untimed); stores alternate; median, fastest and slowest wall seconds of --repeat trials and the
median CPU seconds (all threads). Reads are from a warm page cache (dropping it needs root): they measure
the formats' overhead, not the disk. Torch runs one thread; the zarr reader uses its default threads.

    python benchmarks/scale.py --skip-extraction --words 100000 --repeat 7   # the store figures only
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


def store_write(args: argparse.Namespace) -> pd.DataFrame:
    """Write MB/s of one float16 [words, d_model] array per layer: memmap files vs zarr chunks, chunk by
    chunk as the writers do; alternating trials, the median."""
    import zarr

    from probes import chunked
    from probes.store import default_chunk_rows

    data = _random_layer(args)
    chunk_rows = default_chunk_rows(args.d_model)
    work = Path(tempfile.mkdtemp(prefix="scale-write-"))

    def write_memmap():
        for layer in range(args.layers):
            array = np.memmap(work / f"layer_{layer}.f16", dtype=np.float16, mode="w+", shape=data.shape)
            for start in range(0, args.words, chunk_rows):
                array[start : start + chunk_rows] = data[start : start + chunk_rows]
            array.flush()
            del array

    def write_zarr():
        group = zarr.open_group(str(work / "zarr"), mode="w", zarr_format=3)
        for layer in range(args.layers):
            array = chunked.create_rows_array(
                group, f"layer_{layer}", args.words, (args.d_model,), "float16", chunk_rows
            )
            for start in range(0, args.words, chunk_rows):
                array[start : start + chunk_rows] = data[start : start + chunk_rows]

    trials = {
        "memmap": (lambda: None, lambda _: write_memmap()),
        "zarr": (lambda: None, lambda _: write_zarr()),
    }
    megabytes = args.layers * data.nbytes / 2**20
    rows = [{"operation": "write", "store": name, "megabytes": megabytes, **figures}
            for name, figures in _alternate(trials, args.repeat).items()]  # fmt: skip
    return _frame(rows)


def _random_layer(args: argparse.Namespace) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((args.words, args.d_model), dtype=np.float32).astype(np.float16)


def make_stores(args: argparse.Namespace, work: Path) -> tuple[Path, Path]:
    """A memmap store (format 2) of --layers layers of random float16 [--words, --d-model] in sentences of
    5 to 35 words, and the zarr store ``probes.store.convert`` makes of it (default chunk rows)."""
    from probes.store import (
        MANIFEST,
        MEMMAP_FORMAT_VERSION,
        OFFSETS,
        SUBWORDS,
        _offsets_hash,
        _write_manifest,
        convert,
        layer_file,
    )

    rng = np.random.default_rng(1)
    lengths = rng.integers(5, 36, size=args.words // 5)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    offsets = offsets[offsets < args.words]
    offsets = np.append(offsets, args.words).astype(np.int64)
    old = work / "memmap"
    old.mkdir()
    values = _random_layer(args)
    for layer in range(args.layers):
        np.roll(values, layer, axis=1).tofile(old / layer_file(layer))  # layers differ
    np.ones(args.words, dtype=np.uint16).tofile(old / SUBWORDS)
    np.save(old / OFFSETS, offsets)
    n_sentences = len(offsets) - 1
    manifest = {
        "format_version": MEMMAP_FORMAT_VERSION, "model": "random", "model_class": "none", "n_sentences": n_sentences,
        "n_words": args.words, "d_model": args.d_model, "layers": list(range(args.layers)), "pooling": "mean",
        "dtype": "float16", "shape": [args.words, args.d_model], "offsets_sha256": _offsets_hash(offsets),
        "files": {str(layer): layer_file(layer) for layer in range(args.layers)}, "progress": n_sentences,
        "words_without_tokens": 0,
    }  # fmt: skip
    _write_manifest(old / MANIFEST, manifest)
    convert(old, work / "zarr", progress=False)
    return old, work / "zarr"


class MemmapBefore:
    """A memmap store read by the code ``ActivationStore`` had before the zarr reader (numpy's float16 ->
    float32 cast, then a copy into the output): the "today's memmaps" of the issue."""

    def __init__(self, store) -> None:
        self.store, self.offsets, self.n_sentences = store, store.offsets, store.n_sentences

    def stack(self, layers=None, rows=None):
        import torch

        chosen = self.store.layers if layers is None else list(layers)
        if rows is None:
            rows = slice(None)
        elif not isinstance(rows, slice):
            rows = np.asarray(rows)
            rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        first = np.asarray(self.store.layer(chosen[0])[rows], dtype=np.float32)
        out = torch.empty((len(chosen), *first.shape), dtype=torch.float32)
        out[0] = torch.from_numpy(first)
        for i, layer in enumerate(chosen[1:], start=1):
            out[i] = torch.from_numpy(np.asarray(self.store.layer(layer)[rows], dtype=np.float32))
        return out

    def batches(self, layer: int, batch_size: int):
        import torch

        vectors, counts = self.store.layer(layer), self.store.n_subwords
        for start in range(0, self.store.n_words, batch_size):
            stop = start + batch_size
            rows = np.asarray(vectors[start:stop], dtype=np.float32)[np.asarray(counts[start:stop]) > 0]
            if len(rows):
                yield torch.from_numpy(rows)


def store_reads(args: argparse.Namespace) -> pd.DataFrame:
    """Read MB/s of the ways probe training reads a store, through ``ActivationStore`` (float32 tensors, as
    ``stack`` gives them): zarr against memmap (both read by this version's code) and against memmap read
    by the code before it. Every trial opens its store anew (an empty chunk cache; opening is not timed),
    the stores alternate, and the figures are the median, fastest and slowest of --repeat trials, in wall
    and CPU seconds (CPU: every thread of the process)."""
    import torch

    from probes.store import ActivationStore

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="scale-read-"))
    memmap_folder, zarr_folder = make_stores(args, work)
    probe = ActivationStore(memmap_folder)
    layers, n_words, d_model = probe.layers, probe.n_words, probe.d_model
    rng = np.random.default_rng(2)
    train = np.sort(rng.permutation(probe.n_sentences)[: int(0.8 * probe.n_sentences)])
    train_rows = np.concatenate([np.arange(probe.offsets[s], probe.offsets[s + 1]) for s in train])
    batches = [np.sort(rng.choice(n_words, 4096, replace=False)) for _ in range(20)]
    row_mb = d_model * 2 / 2**20  # float16 MB per row and layer
    streamed = 65_536
    patterns = {
        "(a) read all rows, layer by layer": (
            lambda store: [store.stack([layer]) for layer in layers],
            len(layers) * n_words * row_mb,
        ),
        f"(b) stack(layers, sorted train rows), {streamed} at a time": (
            lambda store: [
                store.stack(layers, rows=train_rows[i : i + streamed])
                for i in range(0, len(train_rows), streamed)
            ],
            len(layers) * len(train_rows) * row_mb,
        ),
        "(c) 20 batches of 4096 random rows per layer": (
            lambda store: [store.stack([layer], rows=b) for layer in layers for b in batches],
            len(layers) * 20 * 4096 * row_mb,
        ),
        "(d) stack(all layers)": (lambda store: store.stack(), len(layers) * n_words * row_mb),
        "(e) batches(layer, 4096), every layer": (
            lambda store: [list(store.batches(layer, 4096)) for layer in layers],
            len(layers) * n_words * row_mb,
        ),
        "(f) stack(rows=sentence) per sentence": (
            lambda store: [
                store.stack(rows=slice(store.offsets[s], store.offsets[s + 1]))
                for s in range(store.n_sentences)
            ],
            len(layers) * n_words * row_mb,
        ),
    }
    small_cache = args.small_cache_mb * 2**20
    rows = []
    for operation, (read, megabytes) in patterns.items():
        trials = {
            "memmap": (lambda: ActivationStore(memmap_folder), read),
            "zarr": (lambda: ActivationStore(zarr_folder), read),
            "memmap, code before": (lambda: MemmapBefore(ActivationStore(memmap_folder)), read),
        }
        if operation.startswith("(c)"):
            trials[f"zarr, cache {args.small_cache_mb} MiB"] = (
                lambda: ActivationStore(zarr_folder, cache_bytes=small_cache),
                read,
            )
        for name, figures in _alternate(trials, args.repeat).items():
            rows.append({"operation": operation, "store": name, "megabytes": megabytes, **figures})
    return _frame(rows)


def _alternate(trials: dict, repeat: int) -> dict[str, dict[str, float]]:
    """Time ``read(open())`` for each (open, read) of ``trials`` (opening untimed), in alternating order
    (A B C, B C A, ...) so the machine's load hits all alike: the median wall seconds, the fastest and
    slowest trial, and the median CPU seconds."""
    walls: dict[str, list[float]] = {name: [] for name in trials}
    cpus: dict[str, list[float]] = {name: [] for name in trials}
    names = list(trials)
    for trial in range(repeat):
        for name in names[trial % len(names) :] + names[: trial % len(names)]:
            open_store, read = trials[name]
            store = open_store()
            wall, cpu = time.perf_counter(), time.process_time()
            read(store)
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
            del store
    return {
        name: {
            "seconds": float(np.median(walls[name])),
            "fastest": min(walls[name]),
            "slowest": max(walls[name]),
            "cpu_seconds": float(np.median(cpus[name])),
        }
        for name in names
    }


def _frame(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
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
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--small-cache-mb", type=int, default=16, help="(c) again with a chunk cache this small"
    )
    parser.add_argument("--skip-extraction", action="store_true")
    parser.add_argument("--skip-write", action="store_true")
    args = parser.parse_args(argv)
    print(f"cores: {os.cpu_count()}")
    if not args.skip_extraction:
        print("(a) extraction")
        print(extraction(args).to_string(index=False, float_format=lambda v: f"{v:.2f}"))
    import torch

    print(f"(b) store I/O: {args.layers} layers x [{args.words}, {args.d_model}] float16; torch threads 1")
    show = dict(index=False, float_format=lambda v: f"{v:.3f}")
    if not args.skip_write:
        print(store_write(args).to_string(**show))
    torch.set_num_threads(1)
    print(store_reads(args).to_string(**show))
    return 0


if __name__ == "__main__":
    sys.exit(main())
