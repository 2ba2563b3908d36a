"""Forward and generation overhead of the workbench's GPT-2, measured against Hugging Face and against itself.

It times, side by side in one process, on a random-init GPT-2-small shape (n_embd 768, 12 layers, 12 heads,
n_positions 1024, vocab 50257) built with ``transformers.GPT2LMHeadModel`` from a fixed seed, saved with
``save_pretrained`` and loaded with ``workbench.AutoModelForCausalLM.from_pretrained`` from that folder, so the
weights are identical:

1. our LM forward vs Hugging Face's (its default attention implementation, i.e. sdpa), ``--batch`` x ``--seq``
   random token ids with a few rows right-padded through ``attention_mask``; Hugging Face also gets the
   ``position_ids`` that we derive from the mask (cumsum - 1), so both compute the same thing;
   target: ours / HF <= 1.05;
2. ``model.run_with_cache(inputs)`` caching every hook point vs our plain forward; target: <= 1.25;
3. greedy generation, batch 1, a ``--prompt-tokens`` prompt, ``--new-tokens`` new tokens (``stop_at_eos=False``;
   Hugging Face: ``do_sample=False, eos_token_id=None``, so that neither stops early): tokens/s of
   ``model.generate`` with the key/value cache, without it (``use_kv_cache=False``), with the cache but no
   per-step candidates (``top_candidates=0``; by default every step also records the top 5 candidates, which
   costs a top-k and a few decodes per step), and of Hugging Face's ``model.generate`` with its cache. The
   ratios (median of per-round ratios of tokens/s) are the speedup of our key/value cache and our throughput
   over Hugging Face's; they are information, not targets. All four runs must produce the same tokens.

Tokens/s counts new tokens over the whole call (prompt step, decoding and, for ours, building the result).

The model needs a tokenizer for our ``generate`` (it takes text): the script writes a byte-level BPE
``tokenizer.json`` with GPT-2's vocabulary size and end-of-text id (50256), whose merges are synthesized
(pairs of byte characters, so ~2 characters a token), not GPT-2's: nothing is downloaded.

It also reports, as information only, the peak extra memory of a forward of each kind (above what was
allocated before the call; on CPU from the profiler's allocation records, on CUDA from the caching allocator)
and the bytes held by the activation cache (``cache.nbytes``).

Timing: after ``--warmup`` calls of each, the runs of one table are interleaved for ``--repeats`` (forward) and
``--gen-repeats`` (generation) rounds, rotating their order every round, as ``forward_overhead.py`` does, whose
helpers this script imports. The tables show medians of each run and the median of the per-round ratios.
The defaults (forward 8 x 128, 15 rounds; generation 6 rounds; 1 warm-up call of each) take about 3 minutes on
an idle 2-core CPU: setup ~6 s; a forward round (ours, HF, run_with_cache) ~3 s, plus ~10 s of warm-up and
memory measurements; a generation round ~12 s, 6 of them in the run without the key/value cache. Other
processes on the machine stretch that (twice as long under a load average of 3 on 2 cores); the load average
printed before and after tells whether the machine was shared. Run it with::

    python benchmarks/gpt2_overhead.py [--batch 8 --seq 128 --repeats 15 --gen-repeats 6 --new-tokens 64
                                        --prompt-tokens 32 --device cpu|cuda|auto --strict --quiet
                                        --tuned-allocator]

It prints three tables and exits 0 (it is a report, not a test), unless ``--strict`` is given and a target
is missed (exit 1). ``--tuned-allocator`` re-runs the script with glibc keeping freed memory in the process,
as in ``forward_overhead.py`` (whose docstring explains why that matters for ``run_with_cache`` on CPU).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

import workbench as wb

# forward_overhead.py lives beside this file: share its timing, memory and reporting helpers.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_overhead import (  # noqa: E402
    CACHE_TARGET,
    MIB,
    PLAIN_TARGET,
    TUNED_ALLOCATOR_ENV,
    ModelPair,
    allocator_setting,
    interleaved_times,
    load_average,
    make_inputs,
    peak_extra_bytes,
    pick_device,
    timing_row,
)

MODEL_NAME = "gpt2-small"
GPT2_SMALL_SHAPE = dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257)
END_OF_TEXT = "<|endoftext|>"
PROMPT_TEXT = (
    "The capital of France is Paris, and the cat sat on the mat while the keys were on the table in the hall. "
    "Hello world, said the model to the workbench, and it went on writing one token after another. "
)


# Model, tokenizer and inputs -------------------------------------------------------------------------


def save_random_gpt2(folder: Path, seed: int) -> torch.nn.Module:
    """Save a random-init Hugging Face GPT-2-small shape and a synthetic tokenizer to ``folder``; return the HF
    model (eval mode)."""
    import transformers

    torch.manual_seed(seed)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2_SMALL_SHAPE)).eval()
    hf.save_pretrained(folder)
    save_synthetic_tokenizer(folder, GPT2_SMALL_SHAPE["vocab_size"])
    return hf


def save_synthetic_tokenizer(folder: Path, vocab_size: int) -> None:
    """A byte-level BPE tokenizer.json of ``vocab_size`` ids: the 256 byte characters, then merges of two of them
    (letters and the space marker first), then ``<|endoftext|>`` as the last id, as in GPT-2."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    def priority(char: str) -> tuple[int, str]:
        ascii_lower = char.isascii() and char.islower()
        return (0 if ascii_lower else 1 if char == "Ġ" else 2 if char.isascii() and char.isalnum() else 3, char)

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=priority)
    vocab = {char: i for i, char in enumerate(alphabet)}
    merges = []
    for first in alphabet:
        for second in alphabet:
            if len(vocab) == vocab_size - 1:
                break
            merges.append((first, second))
            vocab[first + second] = len(vocab)
    vocab[END_OF_TEXT] = vocab_size - 1
    tokenizer = Tokenizer(models.BPE(vocab, merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([END_OF_TEXT])
    tokenizer.save(str(folder / "tokenizer.json"))
    settings = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": GPT2_SMALL_SHAPE["n_positions"],
        "add_prefix_space": False,
        "bos_token": END_OF_TEXT,
        "eos_token": END_OF_TEXT,
        "unk_token": END_OF_TEXT,
        "model_input_names": ["input_ids", "attention_mask"],
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(settings, indent=2))


def load_pair(device: torch.device, seed: int) -> ModelPair:
    """(ours, Hugging Face's) GPT-2 LM with identical weights, eval mode, float32, on ``device``."""
    with tempfile.TemporaryDirectory() as folder:
        hf = save_random_gpt2(Path(folder), seed)
        ours = wb.AutoModelForCausalLM.from_pretrained(folder, device=device, dtype=torch.float32).eval()
    if ours.tokenizer is None:
        raise RuntimeError("the workbench found no tokenizer beside the saved GPT-2; generation needs one")
    return ModelPair(MODEL_NAME, ours, hf.to(device=device, dtype=torch.float32).eval())


def positions_of(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count real tokens only (what our GPT-2 derives from the mask): cumsum - 1, >= 0."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def max_logit_diff(pair: ModelPair, inputs: dict, hf_inputs: dict) -> float:
    """Largest |ours - HF| of the logits over real (non-padding) tokens: a sanity check."""
    with torch.inference_mode():
        ours = pair.ours(**inputs).logits
        theirs = pair.hf(**hf_inputs).logits
    real = inputs["attention_mask"].bool()
    return (ours[real] - theirs[real]).abs().max().item()


def make_prompt(tokenizer, n_tokens: int) -> str:
    """A text that the tokenizer splits into exactly ``n_tokens`` tokens."""
    ids = tokenizer.encode(PROMPT_TEXT * (1 + n_tokens // 32))[:n_tokens]
    text = tokenizer.decode(ids)
    if len(ids) != n_tokens or len(tokenizer.encode(text)) != n_tokens:
        raise RuntimeError(f"could not make a prompt of {n_tokens} tokens")
    return text


# Forward: our LM vs HF, run_with_cache vs ours -------------------------------------------------------


def benchmark_forward(pair: ModelPair, args: argparse.Namespace, device: torch.device) -> tuple[list, list]:
    """Timing rows and memory rows of the forward comparisons."""
    config = pair.ours.config
    inputs = make_inputs(args.batch, args.seq, config.vocab_size, config.eos_token_id, device, args.seed)
    hf_inputs = inputs | {"position_ids": positions_of(inputs["attention_mask"])}
    if not args.quiet:
        print(
            f"{pair.name}: d_model {config.d_model}, {config.n_layers} layers, vocab {config.vocab_size}, HF "
            f"attention {getattr(pair.hf.config, '_attn_implementation', '?')}, max |ours - HF| on the logits "
            f"{max_logit_diff(pair, inputs, hf_inputs):.2e}",
            file=sys.stderr,
        )
    fns = {
        "ours": lambda: pair.ours(**inputs),
        "hf": lambda: pair.hf(**hf_inputs),
        "cache": lambda: pair.ours.run_with_cache(inputs),
    }
    ms = interleaved_times(fns, device, args.warmup, args.repeats, args.quiet, f"{pair.name} forward")
    timing_rows = [
        timing_row(pair.name, "LM forward vs HF (sdpa)", ms["ours"], ms["hf"], PLAIN_TARGET),
        timing_row(pair.name, "run_with_cache vs plain", ms["cache"], ms["ours"], CACHE_TARGET),
    ]

    with torch.inference_mode():
        _, cache = pair.ours.run_with_cache(inputs)
    cache_info = {"cache_nbytes_mib": cache.nbytes / MIB, "cached_hooks": len(cache)}
    del cache
    no_cache = dict.fromkeys(cache_info, float("nan")) | {"cached_hooks": pd.NA}
    memory_rows = []
    for run, fn in [("ours forward", fns["ours"]), ("HF forward", fns["hf"]), ("ours run_with_cache", fns["cache"])]:
        row = {"model": pair.name, "run": run, "peak_extra_mib": peak_extra_bytes(fn, device) / MIB}
        memory_rows.append(row | (cache_info if fn is fns["cache"] else no_cache))
    return timing_rows, memory_rows


# Generation ------------------------------------------------------------------------------------------


def generation_runs(pair: ModelPair, args: argparse.Namespace) -> tuple[dict, dict]:
    """The generation calls to time, and a function per call that returns its new token ids (to check that
    all of them generate the same tokens)."""
    ours, hf, new = pair.ours, pair.hf, args.new_tokens
    prompt = make_prompt(ours.tokenizer, args.prompt_tokens)
    ids = ours.tokenize(prompt)["input_ids"]
    eos = ours.config.eos_token_id
    fns = {
        "ours kv": lambda: ours.generate(prompt, new, stop_at_eos=False),
        "ours kv top0": lambda: ours.generate(prompt, new, stop_at_eos=False, top_candidates=0),
        "ours no kv": lambda: ours.generate(prompt, new, stop_at_eos=False, use_kv_cache=False),
        "hf kv": lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=new,
                                     eos_token_id=None, pad_token_id=eos),
    }
    new_ids = {name: (lambda fn=fn: fn().new_token_ids[0]) for name, fn in fns.items() if name.startswith("ours")}
    new_ids["hf kv"] = lambda: fns["hf kv"]()[0, ids.shape[1]:].tolist()
    return fns, new_ids


def generation_row(model: str, measurement: str, ours: list[float], baseline: list[float], new_tokens: int) -> dict:
    """Tokens/s (medians) of both, and the median of the per-round throughput ratios ours / baseline."""
    return {
        "model": model,
        "measurement": measurement,
        "ours_tok/s": new_tokens / statistics.median(ours) * 1e3,
        "baseline_tok/s": new_tokens / statistics.median(baseline) * 1e3,
        "ours_ms/tok": statistics.median(ours) / new_tokens,
        "baseline_ms/tok": statistics.median(baseline) / new_tokens,
        "throughput_ratio": statistics.median(b / o for o, b in zip(ours, baseline)),
    }


def benchmark_generation(pair: ModelPair, args: argparse.Namespace, device: torch.device) -> list[dict]:
    fns, new_ids = generation_runs(pair, args)
    with torch.inference_mode():
        generated = {name: get() for name, get in new_ids.items()}
    differing = [name for name, tokens in generated.items() if tokens != generated["ours kv"]]
    if differing:
        print(f"WARNING: {', '.join(differing)} generated other tokens than ours with the KV cache", file=sys.stderr)
    elif not args.quiet:
        print(f"generation: all {len(generated)} runs generate the same {args.new_tokens} tokens", file=sys.stderr)
    ms = interleaved_times(fns, device, args.warmup, args.gen_repeats, args.quiet, f"{pair.name} generate")
    name, new = pair.name, args.new_tokens
    return [
        generation_row(name, "ours: KV cache vs no cache", ms["ours kv"], ms["ours no kv"], new),
        generation_row(name, "ours (KV) vs HF generate (KV)", ms["ours kv"], ms["hf kv"], new),
        generation_row(name, "ours (KV, top_candidates=0) vs HF", ms["ours kv top0"], ms["hf kv"], new),
        generation_row(name, "ours top_candidates=5 vs =0", ms["ours kv"], ms["ours kv top0"], new),
    ]


# Command line ----------------------------------------------------------------------------------------


def note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(text, file=sys.stderr)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8, help="sequences per forward batch (default 8)")
    parser.add_argument("--seq", type=int, default=128, help="tokens per forward sequence (default 128)")
    parser.add_argument("--repeats", type=int, default=15, help="timed forward rounds (default 15)")
    parser.add_argument("--gen-repeats", type=int, default=6, help="timed generation rounds (default 6)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls of each run first (default 1)")
    parser.add_argument("--prompt-tokens", type=int, default=32, help="prompt length for generation (default 32)")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens to generate (default 64)")
    parser.add_argument("--device", default="auto", choices=["cpu", "cuda", "auto"], help="default: auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights and inputs")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the tables")
    parser.add_argument("--tuned-allocator", action="store_true",
                        help="re-run with glibc keeping freed memory in the process (see the module docstring)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.gen_repeats < 1 or args.warmup < 0:
        parser.error("--repeats and --gen-repeats must be at least 1 and --warmup at least 0")
    if args.prompt_tokens < 1 or args.new_tokens < 1:
        parser.error("--prompt-tokens and --new-tokens must be at least 1")
    if args.prompt_tokens + args.new_tokens > GPT2_SMALL_SHAPE["n_positions"] or args.seq > GPT2_SMALL_SHAPE["n_positions"]:
        parser.error(f"sequences are limited to n_positions={GPT2_SMALL_SHAPE['n_positions']} tokens")
    return args


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
        + f", {torch.get_num_threads()} CPU threads; forward batch {args.batch} x {args.seq} tokens, median of "
        f"{args.repeats} interleaved rounds; generation batch 1, {args.prompt_tokens}-token prompt + "
        f"{args.new_tokens} new tokens (greedy), median of {args.gen_repeats} rounds; {args.warmup} warm-up "
        f"call(s) each; allocator: {allocator_setting()}; load average before: {load_average()}"
    )
    start = time.perf_counter()
    pair = load_pair(device, args.seed)
    note(args, f"models built, saved and loaded in {time.perf_counter() - start:.0f} s")
    start = time.perf_counter()
    timing_rows, memory_rows = benchmark_forward(pair, args, device)
    note(args, f"forward timings and memory in {time.perf_counter() - start:.0f} s")
    gc.collect()
    start = time.perf_counter()
    generation_rows = benchmark_generation(pair, args, device)
    note(args, f"generation timings in {time.perf_counter() - start:.0f} s")

    print(f"load average after: {load_average()} (on {os.cpu_count()} CPUs)")
    timings = pd.DataFrame(timing_rows)
    with pd.option_context("display.width", 200, "display.max_columns", None, "display.precision", 3):
        print("\nratio: median of the per-round ratios ours / baseline; pass when ratio <= target")
        print(timings.to_string(index=False))
        print("\nmemory (information only; peak allocated during one call, above what was allocated before it):")
        print(pd.DataFrame(memory_rows).to_string(index=False))
        print("\ngeneration (information only): tokens/s = new tokens / median call time; throughput_ratio = "
              "median of the per-round ratios ours tok/s / baseline tok/s")
        print(pd.DataFrame(generation_rows).to_string(index=False))
    missed = (timings["pass/fail"] == "FAIL").any()
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
