"""Probing speed: all-layer batched probe training vs scikit-learn per layer, and extraction throughput/memory.

(a) UPOS on MiniLM word representations of the committed EWT sample (or ``--data``): our ``LinearProbe``
trained on all layers at once vs ``sklearn.linear_model.LogisticRegression`` fitted layer by layer on the
same features, with test accuracy side by side (they should agree within 1 point).
(b) Extraction into the activation store at two dataset sizes: words/s and the peak resident memory of a
fresh process for each, to show that memory stays flat as the dataset grows.

    python benchmarks/probing.py [--data sample|ud_english_ewt|PATH] [--sizes 100,400]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import torch

EXTRACT_SCRIPT = """
import json, resource, sys, tempfile, time
import probes, workbench as wb
sentences = probes.load_treebank(sys.argv[1], "train", max_sentences=int(sys.argv[2]))
model = wb.AutoModel.from_pretrained("minilm")
start = time.perf_counter()
store = probes.extract(model, [s.words for s in sentences], tempfile.mkdtemp(), progress=False)
seconds = time.perf_counter() - start
print(json.dumps({"sentences": len(sentences), "words": int(store.n_words), "seconds": seconds,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def probe_comparison(data: str) -> pd.DataFrame:
    from sklearn.linear_model import LogisticRegression

    import probes
    import workbench as wb
    from probes.experiment import _classification_data

    model = wb.AutoModel.from_pretrained("minilm")
    task = probes.get_task("upos")
    splits = {}
    for split in ("train", "test"):
        sentences = probes.load_treebank(data, split)
        store = probes.extract(model, [s.words for s in sentences], tempfile.mkdtemp(), progress=False)
        splits[split] = _classification_data(task, sentences, store)
    (x_train, y_train), (x_test, y_test) = splits["train"], splits["test"]
    n_classes = len(task.label_names)

    start = time.perf_counter()
    ours = probes.models.LinearProbe(n_classes, seed=0).fit(x_train, y_train)
    ours_seconds = time.perf_counter() - start
    ours_accuracy = ours.score(x_test, y_test)["accuracy"]

    sklearn_accuracy, start = [], time.perf_counter()
    for layer in range(x_train.shape[0]):
        mean, std = x_train[layer].mean(0), x_train[layer].std(0) + 1e-6  # the same standardization as ours
        classifier = LogisticRegression(max_iter=1000, C=1.0 / (len(y_train) * 1e-4))
        classifier.fit(((x_train[layer] - mean) / std).numpy(), y_train.numpy())
        predictions = classifier.predict(((x_test[layer] - mean) / std).numpy())
        sklearn_accuracy.append(float(np.mean(predictions == y_test.numpy())))
    sklearn_seconds = time.perf_counter() - start
    print(
        f"(a) UPOS linear probes, {x_train.shape[0]} layers, {x_train.shape[1]} train / {x_test.shape[1]} test "
        f"words, d={x_train.shape[2]}: ours {ours_seconds:.2f} s (all layers at once), scikit-learn "
        f"{sklearn_seconds:.2f} s (per layer): ratio {ours_seconds / sklearn_seconds:.2f}"
    )
    return pd.DataFrame(
        {
            "layer": range(x_train.shape[0]),
            "ours": ours_accuracy.tolist(),
            "sklearn": sklearn_accuracy,
            "difference_points": (ours_accuracy - torch.tensor(sklearn_accuracy)).mul(100).tolist(),
        }
    )


def extraction(data: str, sizes: list[int]) -> pd.DataFrame:
    rows = []
    for size in sizes:
        out = subprocess.run(
            [sys.executable, "-c", EXTRACT_SCRIPT, data, str(size)],
            capture_output=True,
            text=True,
            check=True,
        )
        row = json.loads(out.stdout.strip().splitlines()[-1])
        row["words_per_second"] = row["words"] / row["seconds"]
        rows.append(row)
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="sample")
    parser.add_argument("--sizes", default="50,200", help="sentence counts for the extraction measurement")
    args = parser.parse_args(argv)
    with pd.option_context("display.width", 160):
        print(probe_comparison(args.data).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        table = extraction(args.data, [int(s) for s in args.sizes.split(",")])
        print(
            "\n(b) extraction into the activation store (MiniLM, all 7 layers, float16), one fresh process each"
        )
        print(table.to_string(index=False, float_format=lambda v: f"{v:.1f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
