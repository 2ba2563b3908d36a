"""Forward-pass time of the workbench's XLNet against Hugging Face's, and of ``run_with_cache`` against it.

One process, one random-init XLNet of xlnet-base-cased's shape (d_model 768, 12 layers, 12 heads, d_inner
3072; ``--small`` for a 4-layer, 256-wide one) saved by ``transformers`` and loaded by both libraries, the
same inputs (``--batch`` x ``--seq`` token ids, some rows left-padded, segment ids), eval mode, float32,
``torch.inference_mode``. Measured, as ratios of calls made back to back in the same round (rounds rotate
the order, so load that comes and goes hits both sides alike):

1. our plain forward / Hugging Face's (content stream only);
2. the same with the query stream (``perm_mask`` and a ``target_mapping`` of ``--predict`` positions);
3. ``run_with_cache`` of every hook point / our plain forward.

It prints a pandas table (medians of the times and of the per-round ratios) and exits 0: a report, not a
test. Run it with ``python benchmarks/xlnet_overhead.py [--batch 8 --seq 128 --repeats 10 --small]``.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

import pandas as pd
import torch
from tqdm import tqdm

import workbench as wb

BASE_SHAPE = dict(d_model=768, n_layer=12, n_head=12, d_inner=3072)
SMALL_SHAPE = dict(d_model=256, n_layer=4, n_head=4, d_inner=1024)


def load_both(folder: str):
    import transformers

    ours = wb.XLNetLMHeadModel.from_pretrained(folder).eval()
    theirs = transformers.XLNetLMHeadModel.from_pretrained(folder).eval()
    return ours, theirs


def make_inputs(batch: int, seq: int, predict: int, vocab: int, seed: int = 0):
    """(content-stream inputs, two-stream inputs): left padding on every third row, two segments, and for
    the second a random factorization order with ``predict`` target positions per row."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(10, vocab, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    for k, row in enumerate(range(1, batch, 3)):
        attention_mask[row, : (k + 1) * seq // 4] = 0
    token_type_ids = (torch.arange(seq) >= seq // 2).long().expand(batch, seq)
    plain = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
    rank = torch.stack([torch.randperm(seq, generator=generator) for _ in range(batch)])
    perm_mask = (rank[:, None, :] >= rank[:, :, None]).float()
    target_mapping = torch.zeros(batch, predict, seq)
    last = rank.argsort(dim=1)[:, -predict:]  # the positions predicted last in each order
    target_mapping.scatter_(2, last[:, :, None], 1.0)
    return plain, {**plain, "perm_mask": perm_mask, "target_mapping": target_mapping}


def time_ms(fn) -> float:
    gc.collect()
    start = time.perf_counter()
    result = fn()
    elapsed = time.perf_counter() - start
    del result
    return elapsed * 1e3


def interleaved(fns: dict, warmup: int, repeats: int, quiet: bool) -> dict[str, list[float]]:
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        times = {name: [] for name in fns}
        names = list(fns)
        for r in tqdm(range(repeats), desc="rounds", disable=quiet, file=sys.stderr):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                times[name].append(time_ms(fns[name]))
    return times


def row(measurement: str, ours: list[float], baseline: list[float]) -> dict:
    return {
        "measurement": measurement,
        "ours_ms": round(statistics.median(ours), 1),
        "baseline_ms": round(statistics.median(baseline), 1),
        "ratio": round(statistics.median(o / b for o, b in zip(ours, baseline)), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--predict", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--small", action="store_true", help="a 4-layer, 256-wide model instead of base")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    import transformers

    shape = SMALL_SHAPE if args.small else BASE_SHAPE
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as folder:
        transformers.XLNetLMHeadModel(transformers.XLNetConfig(vocab_size=32000, **shape)).save_pretrained(
            folder
        )
        ours, theirs = load_both(folder)
    plain, two_stream = make_inputs(args.batch, args.seq, args.predict, 32000)
    with torch.inference_mode():
        diff = (ours(**two_stream).logits - theirs(**two_stream).logits).abs().max().item()
    fns = {
        "ours": lambda: ours(**plain, use_mems=False),
        "hf": lambda: theirs(**plain, use_mems=False),
        "ours_two_stream": lambda: ours(**two_stream, use_mems=False),
        "hf_two_stream": lambda: theirs(**two_stream, use_mems=False),
        "ours_cache": lambda: ours.run_with_cache(plain, use_mems=False),
    }
    times = interleaved(fns, args.warmup, args.repeats, args.quiet)
    _, cache = ours.run_with_cache(plain, use_mems=False)
    table = pd.DataFrame(
        [
            row("ours / Hugging Face, content stream", times["ours"], times["hf"]),
            row("ours / Hugging Face, two streams", times["ours_two_stream"], times["hf_two_stream"]),
            row(
                f"run_with_cache ({len(cache)} hooks, {cache.nbytes / 2**20:.0f} MiB) / ours",
                times["ours_cache"],
                times["ours"],
            ),
        ]
    )
    print(
        f"XLNet {'small' if args.small else 'base'} shape {shape}, batch {args.batch} x {args.seq} tokens, "
        f"{args.predict} predictions, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average {os.getloadavg()[0]:.1f}; max |logits diff| vs Hugging Face {diff:.1e}"
    )
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
