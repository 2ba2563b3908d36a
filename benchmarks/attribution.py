"""Integrated gradients on MiniLM: batched steps vs one step at a time vs the floor, in one run.

For one sentence and 50 steps it times ``wb.attribute(..., method="integrated_gradients")`` with all steps in
one batch (``internal_batch_size=50``) and one step per forward (``internal_batch_size=1``), against the cost
of 50 plain forward+backward passes of the same model (the floor of any 50-step gradient method), and
prints the ratios. Interleaved repeats, medians.

    python benchmarks/attribution.py [--steps 50] [--repeats 5] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

import workbench as wb

TEXT = "The movie was not good at all, although the actors tried their best."


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    clf = wb.load("minilm", task="sequence_classification", num_labels=2, device=args.device)
    inputs = dict(clf.tokenize(TEXT))

    def batched():
        wb.attribute(clf, inputs, target=1, n_steps=args.steps, internal_batch_size=args.steps)

    def stepwise():
        wb.attribute(clf, inputs, target=1, n_steps=args.steps, internal_batch_size=1)

    _, cache = clf.run_with_cache(inputs, names_filter="hook_embed")
    embeddings = cache["hook_embed"]

    def floor():
        # What any 50-step gradient method must pay at least: 50 forwards and 50 backwards to the embeddings.
        for _ in range(args.steps):
            embeds = embeddings.clone().requires_grad_()
            with clf.hooks([("hook_embed", lambda act, hook, embeds=embeds: embeds)]):
                torch.autograd.grad(clf(**inputs).logits[:, 1].sum(), embeds)

    runs = {"IG, all steps in one batch": batched, "IG, one step per forward": stepwise,
            f"{args.steps} x (forward + backward)": floor}
    for fn in runs.values():
        fn()  # warm-up
    times = {name: [] for name in runs}
    for _ in range(args.repeats):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    floor_seconds = statistics.median(times[f"{args.steps} x (forward + backward)"])
    table = pd.DataFrame([
        {"run": name, "seconds": statistics.median(values), "vs_floor": statistics.median(values) / floor_seconds}
        for name, values in times.items()
    ])
    length = inputs["input_ids"].shape[1]
    print(f"MiniLM on {clf.device}, one sentence of {length} tokens, {args.steps} steps, median of "
          f"{args.repeats} interleaved runs")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    speedup = table["seconds"][1] / table["seconds"][0]
    print(f"\nbatching the steps: {speedup:.1f}x faster than one step at a time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
