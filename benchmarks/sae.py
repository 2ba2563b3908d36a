"""Sparse-autoencoder training speed: ``sae.train`` tokens/s and peak memory, vs SAELens when it is importable.

Fixed random activations (d_in 768, seed 0) train a top-k SAE with d_sae = 8 x 768 and k = 32, batches of
4096 rows, from activation batches (no model: this times the dictionary's training, not the forward that
produces activations). Each library runs in its own subprocess so peak memory is its own: on CPU the peak
resident set size minus the size before training, on a GPU ``torch.cuda.max_memory_allocated``. tokens/s
counts the timed steps after one untimed warm-up step.

SAELens (``sae_lens``) is timed with its own ``TopKTrainingSAE.training_forward_pass`` and the step
``SAETrainer._train_step`` takes (Adam, gradient clipping to norm 1), fed the same tensors; when it is not
importable its row says so. It is not installed in this project's environment (it requires transformer-lens,
datasets and more): install it in another environment to get the ratio.

    python benchmarks/sae.py [--steps 10] [--batch-size 4096] [--device cpu|cuda] [--autocast]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

D_IN, EXPANSION, K = 768, 8, 32


def activation_batches(steps: int, batch_size: int) -> list[torch.Tensor]:
    """``steps + 1`` fixed random batches [batch_size, D_IN] (one for the warm-up)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch_size, D_IN, generator=generator) for _ in range(steps + 1)]


def peak_bytes(device: str, before: int) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    # ru_maxrss is in KiB on Linux: the process's peak resident set, minus what it held before training.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_ours(batches, device: str, autocast: bool) -> float:
    """Seconds for ``len(batches) - 1`` steps of ``sae.train`` after one warm-up step."""
    from workbench import sae

    options = dict(d_sae=EXPANSION * D_IN, kind="topk", k=K, batch_size=len(batches[0]), device=device,
                   autocast=autocast, progress=False, buffer_size=len(batches[0]))
    sae.train(None, "bench", batches[:1], steps=1, **options)  # warm-up: kernels, allocator
    sync(device)
    start = time.perf_counter()
    sae.train(None, "bench", batches[1:], steps=len(batches) - 1, **options)
    sync(device)
    return time.perf_counter() - start


def run_saelens(batches, device: str, autocast: bool) -> float:
    """The same steps with SAELens's top-k training SAE and its trainer's step (see the module doc)."""
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    model = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=D_IN, d_sae=EXPANSION * D_IN, k=K, device=device))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    dead = torch.zeros(EXPANSION * D_IN, dtype=torch.bool, device=device)
    cast = torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=autocast)

    def step(batch, n):
        with cast:
            output = model.training_forward_pass(
                step_input=TrainStepInput(sae_in=batch.to(device), coefficients={}, dead_neuron_mask=dead,
                                          n_training_steps=n, is_logging_step=False)
            )
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad()

    step(batches[0], 0)
    sync(device)
    start = time.perf_counter()
    for n, batch in enumerate(batches[1:], 1):
        step(batch, n)
    sync(device)
    return time.perf_counter() - start


def child(args) -> dict:
    """One library's run, in this (fresh) process: its row as a dict."""
    batches = activation_batches(args.steps, args.batch_size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    runner = run_ours if args.run == "workbench" else run_saelens
    try:
        seconds = runner(batches, args.device, args.autocast)
    except ImportError as error:
        return {"library": args.run, "status": f"not installed ({error.name})"}
    tokens = args.steps * args.batch_size
    return {"library": args.run, "status": "ok", "tokens_per_s": tokens / seconds, "seconds": seconds,
            "peak_MiB": peak_bytes(args.device, before) / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--autocast", action="store_true", help="bfloat16 autocast in both")
    parser.add_argument("--run", choices=["workbench", "sae_lens"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(child(args)))
        return 0
    rows = []
    for library in ("workbench", "sae_lens"):
        command = [sys.executable, __file__, "--run", library, "--steps", str(args.steps), "--batch-size",
                   str(args.batch_size), "--device", args.device] + (["--autocast"] if args.autocast else [])
        done = subprocess.run(command, capture_output=True, text=True)
        lines = done.stdout.strip().splitlines()
        rows.append(json.loads(lines[-1]) if done.returncode == 0 and lines
                    else {"library": library, "status": f"failed: {done.stderr.strip().splitlines()[-1:]}"})
    name = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"top-k SAE training: d_in {D_IN}, d_sae {EXPANSION * D_IN}, k {K}, batch {args.batch_size}, "
          f"{args.steps} timed steps, {name}{', bf16 autocast' if args.autocast else ''}")
    for row in rows:
        if row["status"] == "ok":
            print(f"  {row['library']:<10} {row['tokens_per_s']:>10,.0f} tokens/s   peak {row['peak_MiB']:,.0f} MiB")
        else:
            print(f"  {row['library']:<10} {row['status']}")
    if all(row["status"] == "ok" for row in rows):
        print(f"  ratio workbench / sae_lens: {rows[0]['tokens_per_s'] / rows[1]['tokens_per_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
