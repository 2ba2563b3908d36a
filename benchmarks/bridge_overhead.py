"""Overhead of the bridge (``wb.from_hf``) on a GPT-2-shaped Hugging Face model, against Hugging Face's own forward.

A random GPT-2-small shape (default: 12 layers, n_embd 768, 12 heads, vocab 50257; ``--quick``: 2 layers, 256
wide, 4 heads, vocab 8000) is built with ``transformers.GPT2LMHeadModel`` from a fixed seed, with Hugging Face's
default attention (sdpa), and bridged with ``wb.from_hf`` (the same module: the bridge runs it unchanged). In
one process, as ratios against Hugging Face's plain forward (median of per-round ratios, the runs interleaved
as in forward_overhead.py, whose helpers this script imports):

(a) the bridged plain forward (no hook active); target <= 1.02;
(b) bridged ``run_with_cache`` of every canonical hook point (``names_filter`` leaving out the ``hf.<path>``
    module-path hooks); the attention hooks switch that run to eager attention, as hooking the pattern needs;
(c) bridged ``run_with_cache`` of everything, ``hf.<path>`` and ``hf.<path>.hook_in`` of every module included;
(d) for context, Hugging Face's own forward with ``output_hidden_states=True, output_attentions=True`` (eager
    attention for that call, which returning the attentions needs);
(e) TransformerLens's bridge (``TransformerBridge.boot_transformers(..., hf_model=<a copy>)``, which forces eager
    attention on its copy) ``run_with_cache`` of every hook, and its plain forward, when ``transformer_lens``
    is importable; otherwise the rows say "not installed".

Only (a) has a target; the others are information. Inputs: ``--batch`` x ``--seq`` random ids, some rows
right-padded through ``attention_mask``; every run gets the same ids and mask. On the CPU everything is float32;
with ``--device cuda`` (a GPU) bfloat16. Run it with::

    python benchmarks/bridge_overhead.py [--quick] [--batch 8 --seq 128 --repeats 15 --threads N --device cpu|cuda|auto]

It prints a table and exits 0 (a report, not a test), unless ``--strict`` is given and a target is missed. The
load average printed before and after tells whether the machine was shared; ratios are within one run. Runs
(b), (d) and (e) use eager attention and the baseline sdpa, which on a CPU is not always the faster of the two
at this shape. The defaults take about 30 minutes on a shared 2-core CPU with ``--threads 1`` (a GPT-2-small
forward of 8 x 128 tokens is several seconds there); ``--quick`` about a minute.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib.metadata
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import workbench as wb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_overhead import interleaved_times, load_average, make_inputs, pick_device, timing_row  # noqa: E402
from gpt2_overhead import save_synthetic_tokenizer  # noqa: E402

PLAIN_TARGET = 1.02  # bridged plain forward / Hugging Face's
PAD_ID = 0


def gpt2_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A random Hugging Face GPT-2 (seeded), its default attention implementation, eval mode."""
    import transformers

    config = transformers.GPT2Config(
        vocab_size=args.vocab, n_embd=args.d_model, n_layer=args.layers, n_head=args.heads, n_positions=1024,
        bos_token_id=args.vocab - 1, eos_token_id=args.vocab - 1,
    )
    torch.manual_seed(args.seed)
    return transformers.GPT2LMHeadModel(config).to(device=device, dtype=dtype).eval()


@contextlib.contextmanager
def eager_attention(hf: torch.nn.Module):
    """Hugging Face's eager attention for the calls inside (returning attentions needs it), then back."""
    before = hf.config._attn_implementation
    hf.config._attn_implementation = "eager"
    try:
        yield
    finally:
        hf.config._attn_implementation = before


def transformer_lens_bridge(hf: torch.nn.Module, vocab_size: int):
    """TransformerLens's bridge on a copy of ``hf`` (it switches its model to eager attention), or None when
    transformer_lens is not installed."""
    try:
        from transformer_lens.model_bridge import TransformerBridge
    except ImportError:
        return None
    import transformers

    with tempfile.TemporaryDirectory() as folder:
        save_synthetic_tokenizer(Path(folder), vocab_size)  # its boot needs a tokenizer; nothing is downloaded
        tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
        # Inside the with: the boot reads the tokenizer's folder again.
        return TransformerBridge.boot_transformers("gpt2", hf_model=copy.deepcopy(hf), tokenizer=tokenizer,
                                                   device=next(hf.parameters()).device,
                                                   dtype=next(hf.parameters()).dtype)


def runs(hf, bridged, tl, inputs: dict) -> dict:
    """The calls timed, by name (``hf`` is the baseline of every ratio)."""

    def hf_outputs():
        with eager_attention(hf):
            return hf(**inputs, output_hidden_states=True, output_attentions=True)

    fns = {
        "hf": lambda: hf(**inputs),
        "bridged": lambda: bridged(**inputs),
        "canonical cache": lambda: bridged.run_with_cache(dict(inputs), names_filter=lambda n: not n.startswith("hf.")),
        "full cache": lambda: bridged.run_with_cache(dict(inputs)),
        "hf outputs": hf_outputs,
    }
    if tl is not None:
        fns["tl cache"] = lambda: tl.run_with_cache(inputs["input_ids"], attention_mask=inputs["attention_mask"])
        fns["tl plain"] = lambda: tl(inputs["input_ids"], attention_mask=inputs["attention_mask"])
    return fns


MEASUREMENTS = [
    ("bridged", "(a) bridged plain forward / HF plain", PLAIN_TARGET),
    ("canonical cache", "(b) bridged run_with_cache, canonical hooks / HF plain", None),
    ("full cache", "(c) bridged run_with_cache, all incl. hf.<path> / HF plain", None),
    ("hf outputs", "(d) HF hidden_states+attentions (eager) / HF plain", None),
    ("tl cache", "(e) TransformerLens bridge run_with_cache / HF plain", None),
    ("tl plain", "(e') TransformerLens bridge plain forward / HF plain", None),
]


def rows_of(ms: dict, model: str) -> list[dict]:
    """One table row per measurement; rows without a target are information; TransformerLens's rows say
    "not installed" when it is not."""
    rows = []
    for key, what, target in MEASUREMENTS:
        if key not in ms:
            rows.append({"model": model, "measurement": what, "ours_ms": math.nan, "baseline_ms": math.nan,
                         "ratio": math.nan, "target": math.nan, "pass/fail": "not installed"})
            continue
        row = timing_row(model, what, ms[key], ms["hf"], math.inf if target is None else target)
        if target is None:
            row.update(target=math.nan, **{"pass/fail": "info"})
        rows.append(row)
    return rows


def sanity(hf, bridged, inputs: dict) -> str:
    """The bridged outputs must be Hugging Face's: exactly without hooks, to float precision with the cache
    (eager attention instead of sdpa)."""
    with torch.inference_mode():
        reference = hf(**inputs).logits.float()
        plain = (bridged(**inputs).logits.float() - reference).abs().max().item()
        cached = (bridged.run_with_cache(dict(inputs))[0].logits.float() - reference).abs().max().item()
        _, cache = bridged.run_with_cache(dict(inputs), names_filter=lambda n: not n.startswith("hf."))
        n_canonical = len(cache)
        n_all = len(bridged.hook_names)
    return (f"max |bridged - HF| on the logits: plain {plain:.1e}, full cache {cached:.1e}; "
            f"{n_canonical} canonical hook points, {n_all} in all")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model (a smoke run)")
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--vocab", type=int, default=50257)
    parser.add_argument("--batch", type=int, default=8, help="sequences per batch (default 8)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per sequence (default 128)")
    parser.add_argument("--repeats", type=int, default=15, help="timed rounds (default 15)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for torch (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.d_model, args.heads, args.vocab = 2, 256, 4, 8000
        args.batch, args.seq, args.repeats = min(args.batch, 4), min(args.seq, 64), min(args.repeats, 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    start = time.perf_counter()
    hf = gpt2_model(args, device, dtype)
    bridged = wb.from_hf(hf)
    tl = transformer_lens_bridge(hf, args.vocab)
    tl_version = "not installed" if tl is None else importlib.metadata.version("transformer-lens")
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, workbench {wb.__version__}, "
        f"transformer_lens {tl_version}; device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", {dtype}, {torch.get_num_threads()} CPU threads; GPT-2 {args.layers} layers, d_model {args.d_model}, "
        f"{args.heads} heads, vocab {args.vocab}, HF attention {hf.config._attn_implementation}; batch "
        f"{args.batch} x {args.seq} tokens; median of {args.repeats} interleaved rounds after {args.warmup} "
        f"warm-up calls; load average before: {load_average()}"
    )
    inputs = make_inputs(args.batch, args.seq, args.vocab, PAD_ID, device, args.seed)
    print(sanity(hf, bridged, inputs), f"(built in {time.perf_counter() - start:.0f} s)", file=sys.stderr)
    ms = interleaved_times(runs(hf, bridged, tl, inputs), device, args.warmup, args.repeats, args.quiet, "bridge")
    timings = pd.DataFrame(rows_of(ms, "gpt2"))
    print(f"load average after: {load_average()} (on {os.cpu_count()} CPUs)")
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print("\nratio: median of the per-round ratios run / HF plain forward (sdpa); pass when ratio <= target")
        print(timings.to_string(index=False))
    missed = (timings["pass/fail"] == "FAIL").any()
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
