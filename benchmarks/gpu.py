"""GPU fast paths (issue 22), each a ratio or a utilization measured in one run on one CUDA device.

Random-init models of real shapes (a Llama shape and BERT-base), bf16 unless said otherwise:

1. ``extract``: bf16 forward throughput (tokens/s) and model FLOPs utilization (MFU: the forward's matmul
   FLOPs per second over the device's dense bf16 peak, :data:`PEAK_BF16_FLOPS`), Llama shape and BERT-base;
   target: >= 40% on the Llama shape.
2. ``capture``: ``run_with_cache`` of every hook / plain forward, kept on the GPU and offloaded
   (``device="cpu"``: asynchronous copies into pinned memory); target: offloaded <= 1.2x plain.
3. ``generate``: greedy tokens/s at batch 1, 8 and 64: ours (eager and ``model.compile()``) vs Hugging Face's
   ``generate`` (eager, dynamic cache) and its static-cache compiled mode (``cache_implementation="static"``
   with ``torch.compile``); target: our compiled >= HF's static compiled.
4. ``patching``: activation-patching sweeps (positions x layers of ``hook_resid_pre``) and attribution
   (integrated gradients, 32 steps) per second.

Without CUDA it prints why and exits 0 (nothing to measure). Run it with::

    PYTHONPATH=. python benchmarks/gpu.py [--only extract,capture,generate,patching] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

# Dense bf16 tensor-core peaks (FLOP/s) by device-name fragment, from the vendors' data sheets (SXM parts).
PEAK_BF16_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
MFU_TARGET = 0.40
OFFLOAD_TARGET = 1.2
LLAMA_SHAPE = dict(
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=8, num_attention_heads=32,
    num_key_value_heads=8, max_position_embeddings=4096,
)
QUICK_LLAMA_SHAPE = LLAMA_SHAPE | dict(hidden_size=512, intermediate_size=1376, num_hidden_layers=2,
                                        num_attention_heads=8, num_key_value_heads=2)


# FLOPs and utilization (pure arithmetic: tested on the CPU) --------------------------------------------------


def forward_flops(linear_params: int, n_layers: int, attention_width: int, batch: int, seq: int) -> int:
    """Matmul FLOPs of one forward over ``batch`` x ``seq`` tokens: 2 per weight of every linear layer
    (``linear_params``: the weights of every nn.Linear, the unembedding included, embeddings looked up
    excluded) per token, plus the attention products q.k and pattern.v, 2 * 2 * seq^2 * attention_width per
    layer and sequence (``attention_width``: query heads x d_head; counted in full, as the explicit path
    computes them)."""
    return 2 * linear_params * batch * seq + 4 * n_layers * batch * seq * seq * attention_width


def model_forward_flops(model: torch.nn.Module, batch: int, seq: int) -> int:
    """:func:`forward_flops` of a workbench model: its nn.Linear weights and its attention's width; a pooler
    (BERT's) reads one token per sequence, so its weights count once per sequence."""
    per_token, per_sequence = 0, 0
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear):
            if name.split(".")[0] == "pooler":
                per_sequence += module.weight.numel()
            else:
                per_token += module.weight.numel()
    config = model.config
    width = config.n_heads * getattr(config, "d_head", config.d_model // config.n_heads)
    return forward_flops(per_token, config.n_layers, width, batch, seq) + 2 * per_sequence * batch


def mfu(flops: float, seconds: float, peak_flops: float) -> float:
    """Model FLOPs utilization: achieved FLOP/s over the peak."""
    if seconds <= 0 or peak_flops <= 0:
        raise ValueError(f"seconds={seconds} and peak_flops={peak_flops} must be positive")
    return flops / seconds / peak_flops


def peak_bf16_flops(device_name: str) -> float | None:
    """The dense bf16 peak of a device by its name (``torch.cuda.get_device_name``), None when unknown."""
    for fragment, peak in PEAK_BF16_FLOPS.items():
        if fragment in device_name:
            return peak
    return None


# Timing -----------------------------------------------------------------------------------------------------


def cuda_ms(fn: Callable[[], object], repeats: int, warmup: int = 2) -> list[float]:
    """Milliseconds per call (CUDA events), after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def row(part: str, measurement: str, value: float, unit: str, target: str = "") -> dict:
    return {"part": part, "measurement": measurement, "value": round(value, 3), "unit": unit, "target": target}


# Models -----------------------------------------------------------------------------------------------------


def load_llama(shape: dict):
    """(ours, HF's) Llama-shaped causal LMs, same random weights, bf16 on the GPU."""
    import transformers

    import workbench as wb

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpt2_overhead import save_synthetic_tokenizer

    config = transformers.LlamaConfig(**shape, bos_token_id=None, eos_token_id=shape["vocab_size"] - 1,
                                      pad_token_id=0, tie_word_embeddings=False)
    torch.manual_seed(0)
    hf = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        save_synthetic_tokenizer(Path(folder), shape["vocab_size"])
        ours = wb.AutoModelForCausalLM.from_pretrained(folder, device="cuda", dtype=torch.bfloat16).eval()
    return ours, hf.cuda().eval()


def load_bert():
    import transformers

    import workbench as wb

    torch.manual_seed(0)
    config = transformers.BertConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                     intermediate_size=3072)
    with tempfile.TemporaryDirectory() as folder:
        transformers.BertModel(config).save_pretrained(folder)
        return wb.AutoModel.from_pretrained(folder, device="cuda", dtype=torch.bfloat16).eval()


# Parts ------------------------------------------------------------------------------------------------------


def benchmark_extract(llama, bert, args) -> list[dict]:
    peak = peak_bf16_flops(torch.cuda.get_device_name())
    rows = []
    for name, model, batch, seq in [("llama", llama, args.batch, args.seq), ("bert-base", bert, 64, 128)]:
        ids = torch.randint(1000, model.config.vocab_size, (batch, seq), device="cuda")
        with torch.inference_mode():
            ms = statistics.median(cuda_ms(lambda m=model, i=ids: m(input_ids=i), args.repeats))
        rows.append(row("extract", f"{name} bf16 forward {batch}x{seq}", batch * seq / ms * 1e3, "tokens/s"))
        if peak is not None:
            value = mfu(model_forward_flops(model, batch, seq), ms / 1e3, peak)
            rows.append(row("extract", f"{name} MFU", value, "fraction", f">= {MFU_TARGET}" if name == "llama" else ""))
    return rows


def benchmark_capture(llama, args) -> list[dict]:
    ids = torch.randint(1000, llama.config.vocab_size, (args.batch, args.seq), device="cuda")
    with torch.inference_mode():
        plain = cuda_ms(lambda: llama(input_ids=ids), args.repeats)
        kept = cuda_ms(lambda: llama.run_with_cache(ids), args.repeats)
        offloaded = cuda_ms(lambda: llama.run_with_cache(ids, device="cpu"), args.repeats)
    base = statistics.median(plain)
    return [
        row("capture", "run_with_cache (all, on GPU) / plain", statistics.median(kept) / base, "ratio"),
        row("capture", "run_with_cache (all, device='cpu') / plain", statistics.median(offloaded) / base, "ratio",
            f"<= {OFFLOAD_TARGET}"),
    ]


def benchmark_generate(llama, hf, args) -> list[dict]:
    rows = []
    new = args.new_tokens
    for batch in args.gen_batches:
        ids = torch.randint(1000, llama.config.vocab_size, (batch, 32), device="cuda")
        texts = [llama.tokenizer.decode(r) for r in ids.tolist()]
        encoded = llama.tokenize(texts, padding_side="left")
        hf_ids, hf_mask = encoded["input_ids"].cuda(), encoded["attention_mask"].cuda()
        runs = {
            "ours eager": lambda t=texts: llama.generate(t, new, stop_at_eos=False, top_candidates=0),
            "hf eager": lambda i=hf_ids, m=hf_mask: hf.generate(i, attention_mask=m, do_sample=False,
                                                                max_new_tokens=new, eos_token_id=None),
        }
        with torch.inference_mode():
            times = {name: statistics.median(cuda_ms(fn, args.gen_repeats, warmup=1)) for name, fn in runs.items()}
            llama.compile(mode="reduce-overhead")  # a static cache: one CUDA graph for every decoding step
            times["ours compiled"] = statistics.median(cuda_ms(runs["ours eager"], args.gen_repeats, warmup=2))
            llama.compile(enabled=False)
            hf.generation_config.cache_implementation = "static"
            hf.forward = torch.compile(hf.forward, mode="reduce-overhead", fullgraph=True)
            times["hf static compiled"] = statistics.median(cuda_ms(runs["hf eager"], args.gen_repeats, warmup=2))
            hf.generation_config.cache_implementation = None
        for name, ms in times.items():
            rows.append(row("generate", f"{name} batch {batch}", batch * new / ms * 1e3, "tokens/s"))
        rows.append(row("generate", f"ours compiled / hf static compiled, batch {batch}",
                        times["hf static compiled"] / times["ours compiled"], "throughput ratio", ">= 1.0"))
    return rows


def benchmark_patching(bert, args) -> list[dict]:
    import workbench as wb

    ids = torch.randint(1000, bert.config.vocab_size, (1, 64), device="cuda")
    corrupted = torch.randint(1000, bert.config.vocab_size, (1, 64), device="cuda")
    with torch.inference_mode():
        _, clean_cache = bert.run_with_cache(ids, names_filter=lambda n: n.endswith("hook_resid_pre"))

    def sweep() -> None:
        for layer in range(bert.n_layers):
            name = f"blocks.{layer}.hook_resid_pre"
            for pos in range(0, 64, 8):
                def patch(x, hook, p=pos, n=name):
                    x[:, p] = clean_cache[n][:, p]
                with torch.inference_mode():
                    bert.run_with_hooks(corrupted, fwd_hooks=[(name, patch)])

    start = time.perf_counter()
    sweep()
    torch.cuda.synchronize()
    patched = bert.n_layers * 8 / (time.perf_counter() - start)
    start = time.perf_counter()
    wb.attribute(bert, ids, target=lambda out: out.last_hidden_state[:, 0].sum(-1), n_steps=32)
    torch.cuda.synchronize()
    return [row("patching", "activation patching forwards/s (bert-base, 64 tokens)", patched, "forwards/s"),
            row("patching", "integrated gradients (32 steps) attributions/s", 1 / (time.perf_counter() - start),
                "attributions/s")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="extract,capture,generate,patching")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--seq", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--gen-repeats", type=int, default=3)
    parser.add_argument("--gen-batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8, 64])
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--quick", action="store_true", help="a small Llama, short runs (a smoke run)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seq, args.repeats, args.gen_repeats, args.new_tokens, args.gen_batches = 128, 2, 1, 8, [1, 8]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not torch.cuda.is_available():
        print("benchmarks/gpu.py: CUDA is not available on this machine; nothing to measure (skipped)")
        return 0
    import pandas as pd
    import transformers

    transformers.logging.set_verbosity_error()
    parts = set(args.only.split(","))
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}", file=sys.stderr)
    llama, hf = load_llama(QUICK_LLAMA_SHAPE if args.quick else LLAMA_SHAPE)
    bert = load_bert() if parts & {"extract", "patching"} else None
    rows = []
    if "extract" in parts:
        rows += benchmark_extract(llama, bert, args)
    if "capture" in parts:
        rows += benchmark_capture(llama, args)
    if "generate" in parts:
        rows += benchmark_generate(llama, hf, args)
    if "patching" in parts:
        rows += benchmark_patching(bert, args)
    print(pd.DataFrame(rows).to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
