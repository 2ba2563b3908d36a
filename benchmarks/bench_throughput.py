"""Benchmark-runner throughput: frozen-feature extraction with length-sorted batches vs batches in file order.

Both runs use the same model, examples, batch size and device, in one process; the ratio is what sorting by
length buys (less padding). A zero-shot causal-LM pass is timed too when ``--zeroshot-model`` is given.

    python benchmarks/bench_throughput.py [--data ../shared/data] [--task sst2] [--n 400] [--device cpu]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import workbench as wb
from workbench.bench.data import load_task
from workbench.bench.probe import pooled_features


def timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_data = Path(__file__).resolve().parents[2] / "shared" / "data"
    parser.add_argument("--data", default=str(default_data) if default_data.is_dir() else "sample")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--n", type=int, default=400, help="examples (the first n of dev)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    examples = load_task(args.task, args.data, max_examples=args.n)
    model = wb.load(args.model, task="base", device=args.device)
    pooled_features(model, examples[: args.batch_size], progress=False)  # warm-up
    results = {}
    for name, sort in (("length-sorted", True), ("file order", False)):
        seconds = timed(
            lambda sort=sort: pooled_features(
                model, examples, batch_size=args.batch_size, progress=False, sort_by_length=sort
            ),
            args.repeats,
        )
        results[name] = len(examples) / seconds
        print(
            f"{name:>14}: {results[name]:8.1f} examples/s ({seconds:.2f} s for {len(examples)} {args.task} examples)"
        )
    same = torch.allclose(
        pooled_features(model, examples[:64], progress=False),
        pooled_features(model, examples[:64], progress=False, sort_by_length=False),
        atol=1e-4,
    )
    print(
        f"length-sorted / file order: {results['length-sorted'] / results['file order']:.2f}x "
        f"(model {args.model}, device {args.device}, batch {args.batch_size}; same features: {same})"
    )


if __name__ == "__main__":
    main()
