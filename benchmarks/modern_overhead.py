"""Overhead of the workbench's Llama against Hugging Face's: forward, generation with the key/value cache, and the
memory that loading a checkpoint takes.

A random Llama-shaped model (default: 8 layers, d_model 1024, grouped-query attention 16/4, head_dim 64, d_mlp
2816, vocab 32000; ``--quick``: 2 layers, d_model 256, 8/2 heads, vocab 8000) is built with
``transformers.LlamaForCausalLM`` from a fixed seed, saved with ``save_pretrained`` beside a synthetic byte-level
BPE tokenizer (gpt2_overhead.py's), and loaded by ours, so the weights are identical (Hugging Face's is the
model built, its weights where its constructor allocated them). On the CPU everything is float32; with
``--device cuda`` (a GPU) both run in bfloat16 (ours loaded with ``dtype=torch.bfloat16``).

1. forward: our ``LlamaForCausalLM`` vs Hugging Face's (its default attention, sdpa) on ``--batch`` x ``--seq``
   random ids, some rows right-padded, Hugging Face given the position ids we derive from the mask; target:
   ours / HF <= 1.05 (median of per-round ratios, rounds interleaved as in forward_overhead.py);
2. generation: greedy, batch 1, a ``--prompt-tokens`` prompt and ``--new-tokens`` new tokens, both with their
   key/value cache (ours also with ``top_candidates=0``, which skips the per-step candidate list); the runs
   must generate the same tokens; target: our tokens/s / HF's >= 1.0;
3. loading: a random checkpoint of about ``--load-gb`` GB (the same width, as many layers as it takes; float32
   safetensors) loaded in a fresh subprocess per measurement (so peaks do not mix), to the CPU in float32:
   the growth of the resident memory's high-water mark during ``from_pretrained`` (after imports, and after the
   first meta-device operation, which imports torch's meta kernels once) divided by the file's size, for ours
   and for Hugging Face's; target: ours <= 1.2.

Run it with::

    python benchmarks/modern_overhead.py [--quick] [--device cpu|cuda|auto] [--layers 8 --d-model 1024 ...]

It prints the tables and exits 0 (a report, not a test), unless ``--strict`` is given and a target is missed.
The load average printed before and after tells whether the machine was shared; ratios are within one run.
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

import pandas as pd
import torch

import workbench as wb

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_overhead import (  # noqa: E402
    PLAIN_TARGET,
    interleaved_times,
    load_average,
    make_inputs,
    pick_device,
    timing_row,
)
from gpt2_overhead import generation_row, make_prompt, positions_of, save_synthetic_tokenizer  # noqa: E402

GENERATION_TARGET = 1.0  # our tokens/s / HF's, at least
LOADING_TARGET = 1.2  # peak resident growth while loading / checkpoint size, at most
PAD_ID = 0


def llama_config(args: argparse.Namespace, layers: int):
    import transformers

    return transformers.LlamaConfig(
        vocab_size=args.vocab, hidden_size=args.d_model, intermediate_size=args.d_mlp, num_hidden_layers=layers,
        num_attention_heads=args.heads, num_key_value_heads=args.kv_heads, max_position_embeddings=2048,
        bos_token_id=None, eos_token_id=args.vocab - 1, pad_token_id=PAD_ID, tie_word_embeddings=False,
    )


def save_random_llama(folder: Path, args: argparse.Namespace, layers: int) -> torch.nn.Module:
    """A random Hugging Face Llama (seeded) saved to ``folder`` with a synthetic tokenizer; returns the model."""
    import transformers

    torch.manual_seed(args.seed)
    hf = transformers.LlamaForCausalLM(llama_config(args, layers)).eval()
    hf.save_pretrained(folder)
    save_synthetic_tokenizer(folder, args.vocab)
    return hf


# Forward and generation -----------------------------------------------------------------------------------


def benchmark_forward(ours, hf, args, device) -> dict:
    inputs = make_inputs(args.batch, args.seq, args.vocab, PAD_ID, device, args.seed)
    hf_inputs = inputs | {"position_ids": positions_of(inputs["attention_mask"])}
    with torch.inference_mode():
        real = inputs["attention_mask"].bool()
        diff = (ours(**inputs).logits[real].float() - hf(**hf_inputs).logits[real].float()).abs().max().item()
    print(f"max |ours - HF| on the logits of real tokens: {diff:.2e}", file=sys.stderr)
    fns = {"ours": lambda: ours(**inputs), "hf": lambda: hf(**hf_inputs)}
    ms = interleaved_times(fns, device, args.warmup, args.repeats, args.quiet, "forward")
    return timing_row("llama", f"forward {args.batch} x {args.seq} vs HF (sdpa)", ms["ours"], ms["hf"], PLAIN_TARGET)


def benchmark_generation(ours, hf, args, device) -> list[dict]:
    prompt = make_prompt(ours.tokenizer, args.prompt_tokens)
    ids = ours.tokenize(prompt)["input_ids"]
    new = args.new_tokens
    fns = {
        "ours": lambda: ours.generate(prompt, new, stop_at_eos=False),
        "ours top0": lambda: ours.generate(prompt, new, stop_at_eos=False, top_candidates=0),
        "hf": lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new,
                                  eos_token_id=None, pad_token_id=PAD_ID),
    }
    with torch.inference_mode():
        tokens = {name: fns[name]().new_token_ids[0] for name in ("ours", "ours top0")}
        tokens["hf"] = fns["hf"]()[0, ids.shape[1]:].tolist()
    if len({tuple(t) for t in tokens.values()}) != 1:
        print("WARNING: the runs generated different tokens", file=sys.stderr)
    ms = interleaved_times(fns, device, args.warmup, args.gen_repeats, args.quiet, "generate")
    return [
        generation_row("llama", "ours (KV) vs HF generate (KV)", ms["ours"], ms["hf"], new),
        generation_row("llama", "ours (KV, top_candidates=0) vs HF", ms["ours top0"], ms["hf"], new),
    ]


# Loading memory -------------------------------------------------------------------------------------------

_MEASURE = r"""
import json, sys, torch
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) * 1024
folder, who = sys.argv[1], sys.argv[2]
if who == "ours":
    import workbench as wb
    load = lambda: wb.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
else:
    import transformers
    load = lambda: transformers.LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32)
torch.empty(1, device="meta").normal_()  # torch's meta kernels are imported on first use (~70 MB, once)
before = status("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")  # the high-water mark starts from here
start = __import__("time").perf_counter()
model = load()
seconds = __import__("time").perf_counter() - start
print(json.dumps({"before": before, "peak": status("VmHWM:"), "after": status("VmRSS:"), "seconds": seconds}))
"""


def benchmark_loading(args: argparse.Namespace) -> list[dict]:
    per_layer = 2 * args.d_model * args.d_model // args.heads * (args.heads + args.kv_heads) + 3 * args.d_model * args.d_mlp
    embeddings = 2 * args.vocab * args.d_model
    layers = max(1, round((args.load_gb * 1e9 / 4 - embeddings) / per_layer))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        save_random_llama(Path(folder), args, layers)
        size = (Path(folder) / "model.safetensors").stat().st_size
        root = Path(wb.__file__).parents[1]
        for who in ("ours", "hf"):
            result = subprocess.run([sys.executable, "-c", _MEASURE, folder, who], capture_output=True, text=True,
                                    check=True, cwd=root)
            measured = json.loads(result.stdout.strip().splitlines()[-1])
            rows.append({
                "loader": who, "layers": layers, "checkpoint_mib": size / 2**20,
                "peak_growth_mib": (measured["peak"] - measured["before"]) / 2**20,
                "peak/size": (measured["peak"] - measured["before"]) / size,
                "seconds": measured["seconds"],
                "target": LOADING_TARGET if who == "ours" else float("nan"),
            })
    return rows


# Command line ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small model and checkpoint (a smoke run)")
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--d-model", type=int, default=1024)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--kv-heads", type=int, default=4)
    parser.add_argument("--d-mlp", type=int, default=2816)
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--batch", type=int, default=2, help="sequences per forward batch (default 2)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per forward sequence (default 128)")
    parser.add_argument("--repeats", type=int, default=7, help="timed forward rounds (default 7)")
    parser.add_argument("--gen-repeats", type=int, default=3, help="timed generation rounds (default 3)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--load-gb", type=float, default=1.0, help="size of the loading checkpoint (default 1)")
    parser.add_argument("--skip-loading", action="store_true", help="no loading measurement")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.layers, args.d_model, args.heads, args.kv_heads, args.d_mlp, args.vocab = 2, 256, 8, 2, 688, 8000
        args.repeats, args.gen_repeats, args.load_gb = min(args.repeats, 5), min(args.gen_repeats, 2), 0.1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    print(
        f"torch {torch.__version__}, transformers {transformers.__version__}, workbench {wb.__version__}; device "
        f"{device}" + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
        + f", {dtype}, {torch.get_num_threads()} CPU threads; Llama {args.layers} layers, d_model {args.d_model}, "
        f"heads {args.heads}/{args.kv_heads}, d_mlp {args.d_mlp}, vocab {args.vocab}; load average before: "
        f"{load_average()}"
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        hf = save_random_llama(Path(folder), args, args.layers).to(device=device, dtype=dtype)
        ours = wb.AutoModelForCausalLM.from_pretrained(folder, device=device, dtype=dtype)
    print(f"built, saved and loaded in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    timings = pd.DataFrame([benchmark_forward(ours, hf, args, device)])
    generation = pd.DataFrame(benchmark_generation(ours, hf, args, device))
    del ours, hf
    loading = pd.DataFrame([] if args.skip_loading else benchmark_loading(args))
    print(f"load average after: {load_average()} (on {os.cpu_count()} CPUs)")
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print("\nforward: ratio = median of per-round ratios ours / HF; pass when <= target")
        print(timings.to_string(index=False))
        print(f"\ngeneration: tokens/s = new tokens / median call time; target throughput_ratio >= {GENERATION_TARGET}")
        print(generation.to_string(index=False))
        if not loading.empty:
            print("\nloading (float32 to the CPU, one subprocess each): peak resident growth / checkpoint size")
            print(loading.to_string(index=False))
    missed = (timings["pass/fail"] == "FAIL").any() or (generation["throughput_ratio"].iloc[0] < GENERATION_TARGET)
    if not loading.empty:
        missed = missed or loading.loc[loading["loader"] == "ours", "peak/size"].iloc[0] > LOADING_TARGET
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
