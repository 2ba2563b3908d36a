"""Exact activation patching vs attribution patching on MiniLM, measured side by side in one run.

A full residual-stream sweep (every layer × position of ``hook_resid_pre``) is run both ways on the
embedded MiniLM with a two-label classifier head (randomly initialized, seeded: the metric is the logit
difference of its two labels). It prints the time of each, their ratio, the number of forward passes
each needs, and how well the estimate tracks the exact values (Pearson correlation, and whether the most
important (layer, position) is the same).

    python benchmarks/interventions.py [--repeats 3] [--variants 16] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import statistics
import time

import pandas as pd
import torch

import workbench as wb
from workbench import interventions as iv

CLEAN = "The keys to the cabinet are on the table, said the old man."
CORRUPTED = "The key to the cabinets are on the table, said the old man."


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (default 3)")
    parser.add_argument("--variants", type=int, default=16, help="patched variants per forward (default 16)")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    model = wb.load("minilm", task="sequence_classification", num_labels=2, device=args.device)
    metric = lambda output: output.logits[:, 1] - output.logits[:, 0]  # noqa: E731
    length = model.tokenize(CLEAN)["input_ids"].shape[1]
    assert model.tokenize(CORRUPTED)["input_ids"].shape[1] == length, "the two sentences must align"

    def exact():
        return iv.activation_patching(model, CLEAN, CORRUPTED, metric, variants_per_batch=args.variants,
                                      progress=False)

    def estimate():
        return iv.attribution_patching(model, CLEAN, CORRUPTED, metric)

    exact(), estimate()  # warm-up
    exact_times, estimate_times = [], []
    for _ in range(args.repeats):  # interleaved, so load on the machine hits both alike
        seconds, exact_result = timed(exact)
        exact_times.append(seconds)
        seconds, estimate_result = timed(estimate)
        estimate_times.append(seconds)

    values = pd.DataFrame({"exact": exact_result.frame["value"], "estimate": estimate_result.frame["value"]})
    best_exact = exact_result.frame.loc[values["exact"].abs().idxmax(), ["layer", "pos"]].tolist()
    best_estimate = estimate_result.frame.loc[values["estimate"].abs().idxmax(), ["layer", "pos"]].tolist()
    n_layers = model.n_layers
    table = pd.DataFrame([
        {"method": "activation patching (exact)", "seconds": statistics.median(exact_times),
         "forward_passes": 2 + n_layers * -(-length // args.variants), "backward_passes": 0},
        {"method": "attribution patching", "seconds": statistics.median(estimate_times),
         "forward_passes": 2, "backward_passes": 1},
    ])
    print(f"MiniLM ({n_layers} layers) on {model.device}, {length} tokens: a {n_layers} x {length} sweep of "
          f"hook_resid_pre; median of {args.repeats} interleaved runs; {args.variants} variants per forward")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"\nspeed-up of attribution patching: {table['seconds'][0] / table['seconds'][1]:.1f}x")
    print(f"Pearson correlation of the estimate with exact patching: {values.corr().iloc[0, 1]:.3f}")
    print(f"most important (layer, pos): exact {best_exact}, estimate {best_estimate}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
