"""The fast paths' targets on CPU, each a ratio measured side by side in one run (issue 22).

Random-init models built with ``transformers`` from a fixed seed, saved and loaded by the workbench from that
folder, so both libraries hold the same weights (float32):

1. ``forward``: GPT-2-small LM forward, 1 x ``--long`` tokens (nothing padded), ours / Hugging Face's (sdpa);
   target <= 1.0 (the fused causal kernel, ``is_causal``, on both sides).
2. ``capture``: ``run_with_cache`` of every hook / our plain forward, at GPT-2-small 1 x ``--long`` and
   BERT-base 8 x 128, default process settings (no ``wb.keep_freed_memory()``); target <= 1.10. Also with
   ``out=`` a previous cache (its tensors written over: no cache allocated). Timed on the wall clock and on
   the process's CPU time (``[cpu]``: the work done, steadier than the wall clock on a shared machine).
3. ``generate``: greedy tokens/s of ``model.generate`` / Hugging Face's default ``generate`` (eager loop,
   dynamic cache), batch 1 and 8 (prompts of ``--prompt-tokens`` tokens each, nothing padded,
   ``stop_at_eos=False``, ``--new-tokens`` new tokens), GPT-2-small and a Llama shape; target >= 1.2. Both
   libraries must generate the same tokens (the script says so when they do not). Ours runs with its defaults
   (top-5 candidates recorded) and with ``top_candidates=0``.
4. ``roofline``: how fast a batch-1 and batch-8 decoding step of each generation model could be at all. A
   step must read every weight matrix once (each block's, in the layout ``generate`` gives them, and the
   unembedding) and the key/value cache. The roofline step is that minimal work alone: one product of a
   [batch, in] block of rows with every matrix (``F.linear``; the unembedding as ``generate`` computes it)
   plus one-query attention over a cache of the step's length. Beside it, one plain read of the same weights,
   the memory's speed: each one's dot product with itself over its storage (the fastest read found on one
   thread here, as fast as a matrix-vector product; ``w.sum()`` and ``amax`` read at 70-85% of it). Ours and
   Hugging Face's steps are timed directly: a prompt of ``--prompt-tokens`` tokens through the model once
   (the cache filled), then ``--steps`` single-token steps (greedy: the next token's logits and their argmax;
   no candidates record, no ``generate`` loop), each timed; and Hugging Face's ``generate`` per new token
   (``--steps`` + 1 new tokens minus 1, over ``--steps``). Each round (``--step-repeats``, rotating order)
   keeps the median step of each. Rows: ours / roofline; roofline / read; Hugging Face's step, and its
   ``generate`` per token, / roofline = the best ours/HF tokens/s that any implementation of these products
   could reach (checked against the 1.2 target); Hugging Face's step / read (the same for any product at
   all); ours vs Hugging Face's step. ``ours_GB/s`` and ``baseline_GB/s``: the weights' bytes over each time.

5. ``compiled``: greedy tokens/s of ``model.generate`` on a compiled model (``model.compile()``: the prompt
   eagerly, every later step one graph on a static key/value cache) / Hugging Face's static-cache compiled
   mode (``cache_implementation="static"``, ``torch.compile(model.forward, fullgraph=True)``), both inductor's
   default mode (on a GPU ``benchmarks/gpu.py`` runs both with ``mode="reduce-overhead"``: CUDA graphs);
   target >= 1.0. Also ours compiled / ours eager. Compiling both takes a minute or two per model and batch,
   before the timed rounds. Same tokens checked as in ``generate``.

Timing: ``--warmup`` calls of each, then ``--repeats`` rounds in rotating order; each row is the median of the
per-round ratios (a round runs both back to back, so load hits both sides alike). The load average is printed
before and after: on a shared machine the ratios scatter. Run it with::

    PYTHONPATH=. python benchmarks/fast_paths.py [--only forward,capture,generate,roofline,compiled] [--threads 1] [--quick]

It prints one table and exits 0 (a report), or 1 with ``--strict`` when a target is missed.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from tqdm import tqdm

import workbench as wb
from workbench.components.kv_cache import KVCache
from workbench.components.projections import chunked_linear, joint_weight, lay_out_for_decoding
from workbench.generation import next_logits_with_cache

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from forward_overhead import interleaved_times, load_average, make_inputs, save_random_bert  # noqa: E402
from gpt2_overhead import PROMPT_TEXT, save_random_gpt2, save_synthetic_tokenizer  # noqa: E402

FORWARD_TARGET = 1.0  # our GPT-2 1 x 1024 forward / HF's, at most
CAPTURE_TARGET = 1.10  # run_with_cache(everything) / plain forward, at most
GENERATION_TARGET = 1.2  # our greedy tokens/s / HF's default generate, at least
LLAMA_SHAPE = dict(
    vocab_size=32000, hidden_size=1024, intermediate_size=2816, num_hidden_layers=8, num_attention_heads=16,
    num_key_value_heads=4, max_position_embeddings=2048,
)


def load_gpt2(seed: int):
    """(ours, HF's) GPT-2-small LM, same random weights, eval mode."""
    with tempfile.TemporaryDirectory() as folder:
        hf = save_random_gpt2(Path(folder), seed)
        ours = wb.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return ours, hf


def load_llama(seed: int, quick: bool):
    """(ours, HF's) Llama-shaped LM (grouped-query attention), same random weights, eval mode."""
    import transformers

    shape = LLAMA_SHAPE | ({"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 704} if quick else {})
    config = transformers.LlamaConfig(
        **shape, bos_token_id=None, eos_token_id=shape["vocab_size"] - 1, pad_token_id=0, tie_word_embeddings=False
    )
    torch.manual_seed(seed)
    hf = transformers.LlamaForCausalLM(config).eval()
    with tempfile.TemporaryDirectory() as folder:
        hf.save_pretrained(folder)
        save_synthetic_tokenizer(Path(folder), shape["vocab_size"])
        ours = wb.AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    return ours, hf


def load_bert(seed: int):
    with tempfile.TemporaryDirectory() as folder:
        save_random_bert(folder, seed)
        return wb.AutoModel.from_pretrained(folder, dtype=torch.float32).eval()


def ratio_row(model: str, measurement: str, ours: list[float], baseline: list[float], target: float,
              higher_is_better: bool = False) -> dict:
    """Medians in ms and the median per-round ratio: ours/baseline time, or baseline/ours (throughput)."""
    ratios = [b / o if higher_is_better else o / b for o, b in zip(ours, baseline)]
    ratio = statistics.median(ratios)
    passed = ratio >= target if higher_is_better else ratio <= target
    return {
        "model": model, "measurement": measurement, "ours_ms": statistics.median(ours),
        "baseline_ms": statistics.median(baseline), "ratio": round(ratio, 3),
        "target": f"{'>=' if higher_is_better else '<='} {target}", "pass/fail": "pass" if passed else "FAIL",
    }


def prompts_of(tokenizer, batch: int, n_tokens: int) -> list[str]:
    """``batch`` different texts of exactly ``n_tokens`` tokens each (so nothing is padded)."""
    ids = tokenizer.encode(PROMPT_TEXT * (2 + (7 * batch + n_tokens) // 64))  # ~2 characters a token
    texts = []
    for row in range(batch):
        text = tokenizer.decode(ids[row * 7 : row * 7 + n_tokens])
        if len(tokenizer.encode(text)) != n_tokens:
            raise RuntimeError(f"could not make a prompt of {n_tokens} tokens")
        texts.append(text)
    return texts


def benchmark_forward(gpt2, args) -> list[dict]:
    ours, hf = gpt2
    ids = torch.randint(1000, ours.config.vocab_size, (1, args.long), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diff = (ours(input_ids=ids).logits - hf(input_ids=ids).logits).abs().max().item()
    print(f"GPT-2 1 x {args.long}: max |ours - HF| on the logits {diff:.2e}", file=sys.stderr)
    fns = {"ours": lambda: ours(input_ids=ids), "hf": lambda: hf(input_ids=ids)}
    ms = interleaved_times(fns, torch.device("cpu"), args.warmup, args.repeats, args.quiet, "forward")
    return [ratio_row("gpt2-small", f"LM forward 1 x {args.long} vs HF (sdpa)", ms["ours"], ms["hf"], FORWARD_TARGET)]


def capture_times(fns: dict, warmup: int, repeats: int, quiet: bool, label: str) -> dict[str, dict[str, list]]:
    """As ``interleaved_times`` (warm-up, rotating order, each result freed after the clock stops), on two
    clocks: ``wall`` ms and ``cpu`` ms, the process's CPU time. With one thread the CPU time is the work done
    (page faults included, as system time) whatever else a shared machine runs at the time; the wall clock
    also counts the waits for a core."""
    times = {clock: {name: [] for name in fns} for clock in ("wall", "cpu")}
    names = list(fns)
    with torch.inference_mode():
        for fn in fns.values():
            for _ in range(warmup):
                fn()
        for r in tqdm(range(repeats), desc=label, disable=quiet, leave=False, file=sys.stderr):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                gc.collect()
                wall, cpu = time.perf_counter(), time.process_time()
                result = fns[name]()
                times["cpu"][name].append((time.process_time() - cpu) * 1e3)
                times["wall"][name].append((time.perf_counter() - wall) * 1e3)
                del result
    return times


def benchmark_capture(gpt2, bert, args) -> list[dict]:
    """run_with_cache of every hook, fresh and written into a previous cache (``out=``), / the plain forward."""
    rows = []
    gpt_ids = {"input_ids": torch.randint(1000, 50257, (1, args.long), generator=torch.Generator().manual_seed(0))}
    bert_inputs = make_inputs(8, 128, 30522, 0, torch.device("cpu"), 0)
    for name, model, inputs in [("gpt2-small", gpt2[0], gpt_ids), ("bert-base", bert, bert_inputs)]:
        with torch.inference_mode():
            previous = model.run_with_cache(inputs)[1]  # what out= writes into
        fns = {
            "cache": lambda m=model, i=inputs: m.run_with_cache(i),
            "plain": lambda m=model, i=inputs: m(**i),
            "reuse": lambda m=model, i=inputs, p=previous: m.run_with_cache(i, out=p),
        }
        times = capture_times(fns, args.warmup, args.repeats, args.quiet, f"{name} capture")
        shape = "x".join(map(str, inputs["input_ids"].shape))
        for clock, ms in times.items():
            for run, label in [("cache", "all"), ("reuse", "all, out=previous")]:
                rows.append(ratio_row(name, f"run_with_cache ({label}) {shape} vs plain [{clock}]", ms[run],
                                      ms["plain"], CAPTURE_TARGET))
        del previous
    return rows


def benchmark_generation(name: str, pair, args) -> list[dict]:
    ours, hf = pair
    rows = []
    for batch in args.gen_batches:
        prompts = prompts_of(ours.tokenizer, batch, args.prompt_tokens)
        ids = ours.tokenize(prompts)["input_ids"]
        new, pad = args.new_tokens, ours.config.eos_token_id
        fns = {
            "ours": lambda p=prompts, n=new: ours.generate(p, n, stop_at_eos=False),
            "ours top0": lambda p=prompts, n=new: ours.generate(p, n, stop_at_eos=False, top_candidates=0),
            "hf": lambda i=ids, n=new, e=pad: hf.generate(i, attention_mask=torch.ones_like(i), do_sample=False,
                                                         max_new_tokens=n, eos_token_id=None, pad_token_id=e),
        }
        with torch.inference_mode():
            mine = fns["ours"]().new_token_ids
            theirs = fns["hf"]()[:, ids.shape[1] :].tolist()
        if mine != theirs:
            print(f"WARNING: {name} batch {batch}: ours and HF generated different tokens", file=sys.stderr)
        ms = interleaved_times(fns, torch.device("cpu"), args.warmup, args.gen_repeats, args.quiet, f"{name} gen")
        for run, label in [("ours", "top_candidates=5"), ("ours top0", "top_candidates=0")]:
            rows.append(ratio_row(name, f"greedy tok/s batch {batch} ({label}) vs HF generate", ms[run], ms["hf"],
                                  GENERATION_TARGET, higher_is_better=True))
    return rows


def benchmark_compiled(name: str, pair, args) -> list[dict]:
    """Ours compiled (static cache) vs Hugging Face's static-cache compiled generate, and vs ours eager."""
    ours, hf = pair
    rows = []
    eager_forward = hf.forward
    compiled_forward = torch.compile(hf.forward, fullgraph=True)
    for batch in args.gen_batches:
        prompts = prompts_of(ours.tokenizer, batch, args.prompt_tokens)
        ids = ours.tokenize(prompts)["input_ids"]
        new, pad = args.new_tokens, ours.config.eos_token_id

        def ours_run(compiled: bool, p=prompts, n=new):
            ours.compile(enabled=compiled)
            return ours.generate(p, n, stop_at_eos=False)

        def hf_run(i=ids, n=new, e=pad):
            hf.generation_config.cache_implementation, hf.forward = "static", compiled_forward
            try:
                return hf.generate(i, attention_mask=torch.ones_like(i), do_sample=False, max_new_tokens=n,
                                   eos_token_id=None, pad_token_id=e)
            finally:
                hf.generation_config.cache_implementation, hf.forward = None, eager_forward

        fns = {"ours compiled": lambda: ours_run(True), "ours eager": lambda: ours_run(False), "hf compiled": hf_run}
        with torch.inference_mode():
            started = time.perf_counter()
            mine, eager = fns["ours compiled"]().new_token_ids, fns["ours eager"]().new_token_ids
            theirs = fns["hf compiled"]()[:, ids.shape[1] :].tolist()
            print(f"{name} batch {batch}: compiled both in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        if not mine == eager == theirs:
            print(f"WARNING: {name} batch {batch}: compiled/eager/HF generated different tokens", file=sys.stderr)
        try:
            ms = interleaved_times(fns, torch.device("cpu"), args.warmup, args.gen_repeats, args.quiet,
                                   f"{name} compiled")
        finally:
            ours.compile(enabled=False)
        rows.append(ratio_row(name, f"compiled greedy tok/s batch {batch} vs HF static-cache compiled",
                              ms["ours compiled"], ms["hf compiled"], 1.0, higher_is_better=True))
        rows.append(ratio_row(name, f"compiled greedy tok/s batch {batch} vs ours eager", ms["ours compiled"],
                              ms["ours eager"], 1.0, higher_is_better=True))
    return rows


def step_matrices(model) -> list[tuple[torch.Tensor, torch.Tensor | None, bool]]:
    """(weight [out, in], bias or None, whether it is the unembedding) of every matrix a decoding step of our
    ``model`` reads, in the layout ``generate`` gives them (laid out here first): each block's projection
    groups (q/k/v or a gated MLP's two input projections as one joint matrix), then every other linear layer
    (the unembedding; a tied one is the token embedding, read whole). Embedding lookups read one row a token
    and are left out."""
    lay_out_for_decoding(model)
    matrices, seen = [], set()
    for module in model.modules():
        for group in getattr(module, "joint_projections", list)():
            joint = joint_weight(group)
            parts = [joint] if joint is not None else [(linear.weight, linear.bias) for linear in group]
            matrices += [(w, b, False) for w, b in parts]
            seen.update(id(linear) for linear in group)
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module) not in seen:
            matrices.append((module.weight, module.bias, module is model._modules.get("unembed")))
    return matrices


def matrix_bytes(matrices) -> int:
    return sum(t.numel() * t.element_size() for w, b, _ in matrices for t in (w, b) if t is not None)


class RooflineStep:
    """The minimal work of one decoding step of ``batch`` rows: every matrix of :func:`step_matrices` times a
    [batch, in] block, the unembedding as ``generate`` computes it (:func:`chunked_linear`), and per layer
    one-query attention over a key/value cache of ``length`` positions ([batch, kv_heads, length, d_head],
    the cache's head-major layout). ``read()`` reads the same weights once and computes next to nothing: the
    dot product of each one's storage with itself (the same memory twice: one stream from memory)."""

    def __init__(self, model, config, batch: int, length: int) -> None:
        self.matrices = step_matrices(model)
        self.bytes = matrix_bytes(self.matrices)
        self.storages = [flat_storage(t) for w, b, _ in self.matrices for t in (w, b) if t is not None]
        g = torch.Generator().manual_seed(0)
        self.rows = {w.shape[1]: torch.randn(batch, w.shape[1], generator=g) for w, _, _ in self.matrices}
        heads, width = config.num_attention_heads, config.hidden_size
        kv_heads, d_head = getattr(config, "num_key_value_heads", None) or heads, width // heads
        self.query = torch.randn(batch, heads, 1, d_head, generator=g)
        self.caches = [
            [torch.randn(batch, kv_heads, length, d_head, generator=g) for _ in range(2)]
            for _ in range(config.num_hidden_layers)
        ]

    def __call__(self) -> None:
        for w, b, unembed in self.matrices:
            (chunked_linear if unembed else F.linear)(self.rows[w.shape[1]], w, b)
        for k, v in self.caches:
            F.scaled_dot_product_attention(self.query, k, v, enable_gqa=True)

    def read(self) -> None:
        for flat in self.storages:
            torch.dot(flat, flat)


def flat_storage(t: torch.Tensor) -> torch.Tensor:
    """The memory of a matrix stored output- or input-major (or a vector), as one flat view."""
    dense = t if t.is_contiguous() else t.t()
    if not dense.is_contiguous():
        raise ValueError(f"a weight of shape {tuple(t.shape)} with strides {t.stride()} is not one dense block")
    return dense.view(-1)


def decode_steps(ours: bool, model, ids: torch.Tensor, steps: int) -> tuple[list[float], list[list[int]]]:
    """(ms of each of ``steps`` single-token greedy steps, the tokens chosen) after the prompt ``ids`` [batch,
    prompt] ran through ``model`` once: ours through ``next_logits_with_cache`` on a reserved cache, as
    ``generate`` runs it; Hugging Face's through its forward with ``past_key_values``, as its ``generate``."""
    batch, prompt = ids.shape
    mask = torch.ones(batch, prompt + steps + 1, dtype=torch.long)
    # transformers 5.x renames ``past_key_values`` to ``cache`` (the old name warns, then goes).
    cache_name = "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"
    if ours:
        logits, cache = next_logits_with_cache(model, ids, mask[:, :prompt], None)
        if isinstance(cache, KVCache):
            cache.reserve(prompt + steps + 1)
    else:
        out = model(input_ids=ids, attention_mask=mask[:, :prompt], use_cache=True, logits_to_keep=1)
        logits, cache = out.logits[:, -1], hf_cache(out)
    token = logits.argmax(-1, keepdim=True)
    times, chosen = [], [token]
    for step in range(steps):
        length = prompt + step + 1
        start = time.perf_counter()
        if ours:
            logits, cache = next_logits_with_cache(model, token, mask[:, :length], cache)
        else:
            out = model(input_ids=token, attention_mask=mask[:, :length], use_cache=True, **{cache_name: cache})
            logits, cache = out.logits[:, -1], hf_cache(out)
        token = logits.argmax(-1, keepdim=True)
        times.append((time.perf_counter() - start) * 1e3)
        chosen.append(token)
    return times, torch.cat(chosen, 1).tolist()


def roofline_times(ours, hf, ids: torch.Tensor, roofline: RooflineStep, args) -> tuple[dict[str, list], bool]:
    """({"ours", "hf", "hf generate", "roofline", "read"}: per-round ms of a step, whether ours and Hugging
    Face's chose the same tokens). Each round runs ``--steps`` steps of each, in rotating order, and keeps the
    median step; "hf generate" is Hugging Face's ``generate`` per new token, (time of ``--steps`` + 1 new
    tokens - time of 1) / ``--steps``: its step with the loop's own work (logits processors, stopping
    criteria, cache positions). A warm-up round of 2 steps each comes first."""
    tokens = {}

    def decode(is_ours: bool, model, n: int) -> list[float]:
        times, tokens[is_ours] = decode_steps(is_ours, model, ids, n)
        return times

    def hf_generate(n: int) -> list[float]:
        def run(new: int) -> float:
            return time_ms(lambda: hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                               max_new_tokens=new, eos_token_id=None, pad_token_id=0))
        return [(run(n + 1) - run(1)) / n]

    fns = {
        "ours": lambda n: decode(True, ours, n),
        "hf": lambda n: decode(False, hf, n),
        "hf generate": hf_generate,
        "roofline": lambda n: [time_ms(roofline) for _ in range(n)],
        "read": lambda n: [time_ms(roofline.read) for _ in range(n)],
    }
    names, ms = list(fns), {name: [] for name in fns}
    with torch.inference_mode():
        for fn in fns.values():
            fn(2)
        label = f"roofline batch {ids.shape[0]}"
        for r in tqdm(range(args.step_repeats), desc=label, disable=args.quiet, leave=False, file=sys.stderr):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                ms[name].append(statistics.median(fns[name](args.steps)))
    return ms, tokens[True] == tokens[False]


def hf_cache(out):
    return out.cache if hasattr(out, "cache") else out.past_key_values


def benchmark_roofline(name: str, pair, args) -> list[dict]:
    """Per-step ms of ours, Hugging Face's, the roofline step and one read of the weights; rows of their
    ratios, with the GB/s of the weights each side streams (see the module's docstring)."""
    ours, hf = pair
    rows = []
    for batch in args.gen_batches:
        ids = torch.randint(1000, ours.config.vocab_size, (batch, args.prompt_tokens),
                            generator=torch.Generator().manual_seed(batch))
        roofline = RooflineStep(ours, hf.config, batch, args.prompt_tokens + args.steps // 2)
        ms, same = roofline_times(ours, hf, ids, roofline, args)
        if not same:
            print(f"WARNING: {name} batch {batch}: ours and HF decoded different tokens", file=sys.stderr)
        gb = roofline.bytes / 1e9
        label = f"decode step batch {batch} ({gb * 1e3:.0f} MB of weights)"
        for ours_key, base_key, measurement, target, higher in [
            ("ours", "roofline", "ours vs roofline", None, False),
            ("roofline", "read", "roofline (products) vs one read of the weights", None, False),
            ("roofline", "hf", "best possible ours/HF: HF's step / roofline", GENERATION_TARGET, True),
            ("read", "hf", "ceiling ours/HF: HF's step / one read", GENERATION_TARGET, True),
            ("roofline", "hf generate", "best possible ours/HF generate: HF's per token / roofline",
             GENERATION_TARGET, True),
            ("ours", "hf", "ours vs HF's step (direct)", GENERATION_TARGET, True),
        ]:
            row = ratio_row(name, f"{label}: {measurement}", ms[ours_key], ms[base_key], target or 0.0, higher)
            if target is None:
                row["target"], row["pass/fail"] = "", ""
            row["ours_GB/s"] = gb / (row["ours_ms"] / 1e3)
            row["baseline_GB/s"] = gb / (row["baseline_ms"] / 1e3)
            rows.append(row)
    return rows


def time_ms(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="forward,capture,generate,roofline,compiled", help="comma-separated parts to run")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--long", type=int, default=1024, help="tokens of the long GPT-2 forward (default 1024)")
    parser.add_argument("--repeats", type=int, default=7, help="timed forward rounds (default 7)")
    parser.add_argument("--gen-repeats", type=int, default=3, help="timed generation rounds (default 3)")
    parser.add_argument("--gen-batches", type=lambda s: [int(x) for x in s.split(",")], default=[1, 8])
    parser.add_argument("--models", default="gpt2,llama", help="generation models (default gpt2,llama)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--steps", type=int, default=8, help="timed decoding steps a roofline round (default 8)")
    parser.add_argument("--step-repeats", type=int, default=3, help="timed roofline rounds (default 3)")
    parser.add_argument("--quick", action="store_true", help="short sequences and a small Llama (a smoke run)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.long, args.repeats, args.gen_repeats, args.warmup, args.new_tokens = 64, 1, 1, 0, 4
        args.steps, args.step_repeats = 4, 1
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    import transformers

    transformers.logging.set_verbosity_error()
    parts = set(args.only.split(","))
    print(f"load average before: {load_average()}; torch threads {torch.get_num_threads()}", file=sys.stderr)
    rows = []
    decoding = parts & {"generate", "roofline", "compiled"}
    gpt2 = load_gpt2(0) if parts & {"forward", "capture"} or (decoding and "gpt2" in args.models) else None
    if "forward" in parts:
        rows += benchmark_forward(gpt2, args)
    if "capture" in parts:
        rows += benchmark_capture(gpt2, load_bert(0), args)
    llama = load_llama(0, args.quick) if decoding and "llama" in args.models else None
    for name, pair in [("gpt2-small", gpt2 if "gpt2" in args.models else None), ("llama", llama)]:
        if pair is not None and "generate" in parts:
            rows += benchmark_generation(name, pair, args)
        if pair is not None and "roofline" in parts:
            rows += benchmark_roofline(name, pair, args)
        if pair is not None and "compiled" in parts:
            rows += benchmark_compiled(name, pair, args)
    print(f"load average after: {load_average()}", file=sys.stderr)
    table = pd.DataFrame(rows)
    for column in ("ours_GB/s", "baseline_GB/s"):
        if column in table:
            table[column] = table[column].map(lambda x: "" if pd.isna(x) else f"{x:.1f}")
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(table.to_string(index=False))
    return 1 if args.strict and any(r["pass/fail"] == "FAIL" for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
