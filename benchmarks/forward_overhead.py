"""Forward-pass overhead of the workbench's BERT, measured against Hugging Face and against itself.

For each model it times, side by side in one process:

1. our plain forward vs Hugging Face's forward (HF's default attention implementation, i.e. sdpa),
   same weights, same inputs; target: ours / HF <= 1.05;
2. ``model.run_with_cache(inputs)`` caching every hook point vs our plain forward; target: <= 1.25.

It also reports, as information only, the peak extra memory of each kind of run (above what was allocated
before the call; on CPU from the profiler's allocation records, on CUDA from the caching allocator) and the
bytes held by the activation cache (``cache.nbytes``, which counts a tensor shared by two hook points once).

Models (``--models``, comma separated):

- ``bert-base``: a random-init BERT-base shape (hidden 768, 12 layers, 12 heads, intermediate 3072) built
  with ``transformers.BertModel`` from a fixed seed, saved with ``save_pretrained`` and loaded by both
  libraries from that folder, so the weights are identical;
- ``minilm``: the embedded all-MiniLM-L6-v2 checkpoint (any other alias, folder or hub id works too).

Inputs: ``--batch`` x ``--seq`` random token ids, some rows padded through ``attention_mask``; the same
dict goes to both models. Everything runs in eval mode, float32, under ``torch.inference_mode``.

Timing: after ``--warmup`` calls of each, the three runs (ours, HF, ours with cache) are interleaved for
``--repeats`` rounds, rotating their order every round so that neither machine drift nor call order
favours one. The table shows the median time of each run and the median of the per-round ratios (a ratio
compares two calls made back to back, so load from other processes that comes and goes hits both alike;
the load average printed before and after tells whether the machine was shared). Run it with::

    python benchmarks/forward_overhead.py [--batch 8 --seq 128 --repeats 15 --device cpu|cuda|auto
                                           --models bert-base,minilm --strict --quiet]

It prints a table and exits 0 (it is a report, not a test), unless ``--strict`` is given and a target
is missed (exit 1).

On Linux the CPU figure for ``run_with_cache`` depends on glibc's allocator: a full cache of BERT-base is
~730 MiB of fresh tensors per call, and glibc hands freed memory of that size back to the kernel, so every
call page-faults it in again. ``--tuned-allocator`` re-runs the script with ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` raised, so that freed memory stays in the process (users can export the same
variables before starting Jupyter). The header says which allocator setting a run used.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import itertools
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import torch
from tqdm import tqdm

import workbench as wb

PLAIN_TARGET = 1.05  # our forward / HF forward
CACHE_TARGET = 1.25  # run_with_cache / our forward
MIB = 2**20

# glibc settings that keep freed memory in the process (values in bytes; read when the process starts).
TUNED_ALLOCATOR_ENV = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}

BERT_BASE_SHAPE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)


# Models and inputs -----------------------------------------------------------------------------------


@dataclass
class ModelPair:
    """Our model and Hugging Face's, with identical weights, on the same device."""

    name: str
    ours: torch.nn.Module
    hf: torch.nn.Module


def load_pair(name: str, device: torch.device, seed: int) -> ModelPair:
    """``bert-base`` (random init from ``seed``) or a checkpoint name/alias/folder, loaded by both libraries."""
    if name == "bert-base":
        with tempfile.TemporaryDirectory() as folder:
            save_random_bert(folder, seed)
            return ModelPair(name, *load_both(folder, device))
    return ModelPair(name, *load_both(str(wb.hub.resolve_checkpoint(name)), device))


def save_random_bert(folder: str, seed: int) -> None:
    """Save a random-init Hugging Face BERT of BERT-base's shape to ``folder``."""
    import transformers

    torch.manual_seed(seed)
    transformers.BertModel(transformers.BertConfig(**BERT_BASE_SHAPE)).save_pretrained(folder)


def load_both(folder: str, device: torch.device) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(ours, Hugging Face's) from one checkpoint folder, eval mode, float32, on ``device``."""
    import transformers

    ours = wb.AutoModel.from_pretrained(folder, device=device, dtype=torch.float32).eval()
    hf = transformers.AutoModel.from_pretrained(folder).to(device=device, dtype=torch.float32).eval()
    return ours, hf


def make_inputs(batch: int, seq: int, vocab_size: int, pad_token_id: int, device: torch.device, seed: int):
    """Random token ids [batch, seq] with every third row (from row 1) padded to a shorter length."""
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1000, vocab_size, (batch, seq), generator=generator)
    attention_mask = torch.ones(batch, seq, dtype=torch.long)
    for k, row in enumerate(range(1, batch, 3)):
        length = max(1, seq - (k + 1) * seq // 4)
        attention_mask[row, length:] = 0
        input_ids[row, length:] = pad_token_id
    return {"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)}


def max_abs_diff(pair: ModelPair, inputs: dict) -> float:
    """Largest |ours - HF| of the last hidden state over real (non-padding) tokens: a sanity check."""
    with torch.inference_mode():
        ours = pair.ours(**inputs).last_hidden_state
        theirs = pair.hf(**inputs).last_hidden_state
    real = inputs["attention_mask"].bool()
    return (ours[real] - theirs[real]).abs().max().item()


# Timing ----------------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device) -> float:
    """Milliseconds of one call of ``fn``; its result is freed after the clock stops."""
    gc.collect()
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    elapsed = time.perf_counter() - start
    del result
    return elapsed * 1e3


def interleaved_times(
    fns: dict[str, Callable[[], object]], device: torch.device, warmup: int, repeats: int, quiet: bool, label: str
) -> dict[str, list[float]]:
    """Warm each function up, then run all of them once per round, rotating the order; ms per round of each."""
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                time_call(fn, device)
        times: dict[str, list[float]] = {name: [] for name in fns}
        names = list(fns)
        for r in tqdm(range(repeats), desc=label, disable=quiet, leave=False, file=sys.stderr):
            shift = r % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(time_call(fns[name], device))
    return times


def timing_row(model: str, measurement: str, ours: list[float], baseline: list[float], target: float) -> dict:
    """Medians of both, and the median of the per-round ratios (a round runs both back to back, so load
    that comes and goes during the run hits both sides of a ratio alike)."""
    ratio = statistics.median(o / b for o, b in zip(ours, baseline))
    return {
        "model": model,
        "measurement": measurement,
        "ours_ms": statistics.median(ours),
        "baseline_ms": statistics.median(baseline),
        "ratio": ratio,
        "target": target,
        "pass/fail": "pass" if ratio <= target else "FAIL",
    }


# Memory ----------------------------------------------------------------------------------------------


def peak_extra_bytes(fn: Callable[[], object], device: torch.device) -> int | float:
    """Peak bytes allocated during one call of ``fn`` above what was allocated before it (nan if unknown)."""
    gc.collect()
    with torch.inference_mode():
        if device.type == "cuda":
            synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            before = torch.cuda.memory_allocated(device)
            result = fn()
            synchronize(device)
            peak = torch.cuda.max_memory_allocated(device) - before
            del result
            return peak
        return cpu_peak_extra_bytes(fn)


@contextlib.contextmanager
def stderr_silenced():
    """Send file descriptor 2 to /dev/null (the profiler's C++ side logs its start and stop there)."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_peak_extra_bytes(fn: Callable[[], object]) -> int | float:
    """Replay the profiler's CPU allocation records (+bytes / -bytes, in time order) and take the maximum."""
    from torch.profiler import ProfilerActivity, profile

    with stderr_silenced(), profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        result = fn()
    del result
    try:
        records = sorted(
            (event.start_ns(), event.nbytes())
            for event in prof.profiler.kineto_results.events()
            if event.name() == "[memory]" and str(event.device_type()) == "DeviceType.CPU"
        )
    except AttributeError:  # a private API; the report goes on without memory numbers
        return float("nan")
    return max(itertools.accumulate((nbytes for _, nbytes in records), initial=0))


# One model -------------------------------------------------------------------------------------------


@dataclass
class ModelReport:
    timing_rows: list[dict] = field(default_factory=list)
    memory_rows: list[dict] = field(default_factory=list)


def benchmark_model(pair: ModelPair, args: argparse.Namespace, device: torch.device) -> ModelReport:
    """Time plain forward / HF forward / run_with_cache, and measure their memory, for one model."""
    config = pair.ours.config
    inputs = make_inputs(args.batch, args.seq, config.vocab_size, config.pad_token_id, device, args.seed)
    if not args.quiet:
        print(
            f"{pair.name}: d_model {config.d_model}, {config.n_layers} layers, HF attention "
            f"{getattr(pair.hf.config, '_attn_implementation', '?')}, "
            f"max |ours - HF| on the last hidden state {max_abs_diff(pair, inputs):.2e}",
            file=sys.stderr,
        )
    fns = {
        "ours": lambda: pair.ours(**inputs),
        "hf": lambda: pair.hf(**inputs),
        "cache": lambda: pair.ours.run_with_cache(inputs),
    }
    ms = interleaved_times(fns, device, args.warmup, args.repeats, args.quiet, pair.name)
    report = ModelReport()
    report.timing_rows.append(timing_row(pair.name, "plain forward vs HF (sdpa)", ms["ours"], ms["hf"], PLAIN_TARGET))
    report.timing_rows.append(timing_row(pair.name, "run_with_cache vs plain", ms["cache"], ms["ours"], CACHE_TARGET))

    with torch.inference_mode():
        _, cache = pair.ours.run_with_cache(inputs)
    cache_info = {"cache_nbytes_mib": cache.nbytes / MIB, "cached_hooks": len(cache)}
    del cache
    no_cache = dict.fromkeys(cache_info, float("nan")) | {"cached_hooks": pd.NA}
    for run, fn in [("ours forward", fns["ours"]), ("HF forward", fns["hf"]), ("ours run_with_cache", fns["cache"])]:
        row = {"model": pair.name, "run": run, "peak_extra_mib": peak_extra_bytes(fn, device) / MIB}
        report.memory_rows.append(row | (cache_info if fn is fns["cache"] else no_cache))
    return report


# Command line ----------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="sequences per batch (default 8)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds per model (default 15)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls of each run first (default 2)")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="default: auto")
    parser.add_argument("--models", default="bert-base,minilm", help="comma-separated (default bert-base,minilm)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the tables")
    parser.add_argument("--tuned-allocator", action="store_true",
                        help="re-run with glibc keeping freed memory in the process (see the module docstring)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be at least 1 and --warmup at least 0")
    return args


def pick_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    return torch.device(name)


def load_average() -> str:
    """The 1-, 5- and 15-minute load averages, to tell a shared machine from an idle one."""
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def allocator_setting() -> str:
    tuned = all(os.environ.get(name) == value for name, value in TUNED_ALLOCATOR_ENV.items())
    return "glibc tuned (freed memory kept)" if tuned else "default"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.tuned_allocator and allocator_setting() == "default":
        # glibc reads these when the process starts, so the script starts itself again with them.
        argv = sys.argv[1:] if argv is None else argv
        os.execve(sys.executable, [sys.executable, os.path.abspath(__file__), *argv], os.environ | TUNED_ALLOCATOR_ENV)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, workbench {wb.__version__}; "
        f"device {device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", {torch.get_num_threads()} CPU threads; batch {args.batch} x {args.seq} tokens; "
        f"median of {args.repeats} interleaved rounds after {args.warmup} warm-up calls; "
        f"allocator: {allocator_setting()}; load average before: {load_average()}"
    )
    timing_rows, memory_rows = [], []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        pair = load_pair(name, device, args.seed)
        report = benchmark_model(pair, args, device)
        timing_rows += report.timing_rows
        memory_rows += report.memory_rows
        del pair
        gc.collect()

    print(f"load average after: {load_average()} (on {os.cpu_count()} CPUs)")
    timings = pd.DataFrame(timing_rows)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print("\nratio: median of the per-round ratios ours / baseline; pass when ratio <= target")
        print(timings.to_string(index=False))
        print("\nmemory (information only; peak allocated during one call, above what was allocated before it):")
        print(pd.DataFrame(memory_rows).to_string(index=False))
    missed = (timings["pass/fail"] == "FAIL").any()
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
