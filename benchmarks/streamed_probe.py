"""Streamed probes vs in memory: time per L-BFGS iteration and peak resident memory of a linear probe trained
from an activation store (issue 19).

The store: MiniLM (all 7 layers, float16) on the first ``--sentences`` train sentences of ``--data``, tiled
``--tile`` times (the sentences repeated, so the store has ``tile`` times the words at the cost of one
extraction on a CPU: time and memory depend on the shape, not on the values), written as a zarr store as
``probes extract`` writes it. The probe: UPOS (``--task``), a ``LinearProbe`` on every layer, ``--epochs``
L-BFGS iterations (capped, so both runs do the same work; the time of a full fit is this times the
iterations to convergence), in a fresh process each (one torch thread), so that ``ru_maxrss`` is the
run's own peak:

- ``memory``: what ``probes.run`` does today, ``_classification_data`` (the [layer, n, d] float32 matrix)
  and ``LinearProbe.fit``;
- ``streamed``: ``_classification_data(..., stream)``: a ``StreamedRows`` over the store read
  ``--chunk-rows`` words at a time.

Runs alternate (memory, streamed, memory, ...) ``--repeat`` times; medians and the spread are printed, with
the largest parameter difference between the two fits and their train accuracy (scored the same way).

    python benchmarks/streamed_probe.py [--data ud_english_ewt] [--sentences 800] [--tile 15] [--epochs 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

CHILD = """
import json, resource, sys, time
import torch
torch.set_num_threads(1)
import probes
from probes.experiment import _classification_data, _Streaming
from probes.store import ActivationStore
from workbench.probing import LinearProbe
mode, folder, data, n_sentences, tile, task_name, chunk_rows, epochs, out = sys.argv[1:10]
sentences = probes.load_treebank(data, "train", max_sentences=int(n_sentences)) * int(tile)
store = ActivationStore(folder)
task = probes.get_task(task_name)
start = time.perf_counter()
stream = _Streaming(int(chunk_rows), False) if mode == "streamed" else None
features, labels = _classification_data(task, sentences, store, stream)
loaded = time.perf_counter() - start
probe = LinearProbe(len(task.label_names), max_epochs=int(epochs)).fit(features, labels)
fitted = time.perf_counter() - start
accuracy = probe.score(features, labels)["accuracy"]
torch.save(probe.params_, out)
print(json.dumps({
    "mode": mode, "words": int(labels.numel()), "load_s": loaded, "fit_s": fitted - loaded,
    "iterations": int(probe.history_["train_loss"].shape[0]),
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "accuracy": accuracy.tolist(),
}))
"""


def build_store(folder: Path, data: str, n_sentences: int, tile: int) -> Path:
    """The zarr store of MiniLM on the first ``n_sentences`` train sentences tiled ``tile`` times (cached)."""
    import probes
    import workbench as wb
    from probes.store import MANIFEST, OFFSETS, SUBWORDS, _offsets_hash, _write_manifest, convert, layer_file

    final = folder / f"tiled-{data}-{n_sentences}x{tile}"
    if final.exists():
        return final
    sentences = probes.load_treebank(data, "train", max_sentences=n_sentences)
    once = folder / "once"
    shutil.rmtree(once, ignore_errors=True)
    start = time.perf_counter()
    model = wb.AutoModel.from_pretrained("minilm")
    store = probes.extract(model, [s.words for s in sentences], once, format="memmap", progress=False)
    print(f"extracted {store.n_words} words in {time.perf_counter() - start:.0f} s")
    tiled = folder / "tiled-memmap"
    shutil.rmtree(tiled, ignore_errors=True)
    tiled.mkdir()
    for name in [layer_file(layer) for layer in store.layers] + [SUBWORDS]:
        block = (once / name).read_bytes()
        with open(tiled / name, "wb") as handle:
            for _ in range(tile):
                handle.write(block)
    offsets = np.concatenate(
        [store.offsets[:-1] + k * store.n_words for k in range(tile)] + [[tile * store.n_words]]
    )
    np.save(tiled / OFFSETS, offsets.astype(np.int64))
    manifest = dict(store.manifest)
    manifest.update(
        n_words=tile * store.n_words,
        n_sentences=tile * store.n_sentences,
        progress=tile * store.n_sentences,
        words_without_tokens=tile * store.manifest["words_without_tokens"],
        offsets_sha256=_offsets_hash(offsets.astype(np.int64)),
        shape=[tile * store.n_words, store.d_model],
    )
    _write_manifest(tiled / MANIFEST, manifest)
    convert(tiled, final, progress=False)
    shutil.rmtree(tiled)
    shutil.rmtree(once)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ud_english_ewt")
    parser.add_argument("--sentences", type=int, default=800)
    parser.add_argument("--tile", type=int, default=15)
    parser.add_argument("--task", default="upos")
    parser.add_argument("--chunk-rows", type=int, default=16384)
    parser.add_argument("--epochs", type=int, default=20, help="L-BFGS iterations of each fit")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--modes", default="memory,streamed", help="which runs, alternated")
    parser.add_argument("--folder", default="/tmp/streamed_probe_bench", help="where the store is kept")
    args = parser.parse_args(argv)
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    store = build_store(folder, args.data, args.sentences, args.tile)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    runs = []
    for trial in range(args.repeat):
        for mode in args.modes.split(","):  # alternated: the machine's load drifts
            out = folder / f"{mode}.pt"
            command = [sys.executable, "-c", CHILD, mode, str(store), args.data, str(args.sentences)]
            command += [str(args.tile), args.task, str(args.chunk_rows), str(args.epochs), str(out)]
            done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
            if done.returncode:
                raise SystemExit(f"{mode} run failed:\n{done.stderr[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            row["trial"] = trial
            runs.append(row)
            print(json.dumps(row))
    import torch

    memory, streamed = (
        torch.load(folder / "memory.pt", weights_only=True),
        torch.load(folder / "streamed.pt", weights_only=True),
    )  # this or a past run
    difference = max(float((a - b).abs().max()) for a, b in zip(memory, streamed))
    print(
        f"\nstore: {store} ({runs[0]['words']} labelled words, chunk_rows={args.chunk_rows}); load: {os.getloadavg()}"
    )
    print("| run | load + fit s (median, range) | fit s per iteration | peak RSS MiB (median) | iterations |")
    print("|---|---|---|---|---|")
    for mode in args.modes.split(","):
        rows = [r for r in runs if r["mode"] == mode]
        total = sorted(r["load_s"] + r["fit_s"] for r in rows)
        per_iteration = sorted(r["fit_s"] / r["iterations"] for r in rows)
        rss = sorted(r["peak_rss_mib"] for r in rows)
        print(
            f"| {mode} | {np.median(total):.1f} ({total[0]:.1f}-{total[-1]:.1f}) | {np.median(per_iteration):.2f} "
            f"| {np.median(rss):.0f} | {rows[0]['iterations']} |"
        )
    accuracy = {r["mode"]: r["accuracy"] for r in runs}
    print(f"largest parameter difference: {difference:.2e}; train accuracy per layer: {accuracy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
