"""Sparse-autoencoder training speed: ``sae.train`` tokens/s and peak memory against SAELens's trainer.

Both trainers get the same in-memory activations: fixed random batches [batch_size, d_in] (seed 0; no model
forward, so this times the dictionary's training, not the model that produces activations), the same d_in,
d_sae, kind (k), batch size and number of steps, Adam at lr 3e-4, no activation normalisation (neither
estimates a scale), no checkpoints. Each library runs in its own fresh subprocess, so its peak memory is its
own: on CPU the peak resident set size minus the size before training (the library imported, the batches
made and torch's optimiser imports done before that), on a GPU ``torch.cuda.max_memory_allocated``. tokens/s
counts the timed steps after one untimed warm-up run of one step (kernels, allocator). The ratio is workbench / SAELens, measured in the same run; ``--repeats`` runs the
two alternately and keeps each library's best time.

- workbench: ``sae.train(None, hook, batches, ...)`` with the batches as its data (its shuffling buffer set to
  one batch), no progress bar.
- SAELens: its own trainer, ``sae_lens.training.sae_trainer.SAETrainer(...).fit()`` on the kind's training
  SAE (``StandardTrainingSAE``, ``TopKTrainingSAE``, ``BatchTopKTrainingSAE``, ``JumpReLUTrainingSAE``), the
  batches as its data provider, wandb off. Its per-step work: forward and loss, dead-feature and firing
  counts, backward, clipping, Adam, schedulers; its progress bar (to the child's stderr) is on, as it always
  is. When ``sae_lens`` is not importable its row says so and no ratio is printed.

The recipes differ where the libraries differ (ours renormalises unit-norm decoders after every step and
shuffles through its buffer; SAELens's top-k rescales by the decoder norms instead): these are the costs a
user of each pays.

    python benchmarks/sae.py [--kind topk] [--steps 10] [--batch-size 4096] [--d-in 768] [--expansion 8]
                             [--k 32] [--device cpu|cuda] [--autocast] [--repeats 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch

KINDS = ("relu", "topk", "batchtopk", "jumprelu")


def activation_batches(steps: int, batch_size: int, d_in: int) -> list[torch.Tensor]:
    """``steps + 1`` fixed random batches [batch_size, d_in] (the first one for the warm-up)."""
    generator = torch.Generator().manual_seed(0)
    return [torch.randn(batch_size, d_in, generator=generator) for _ in range(steps + 1)]


def peak_bytes(device: str, before: int) -> int:
    if device == "cuda":
        return torch.cuda.max_memory_allocated()
    # ru_maxrss is in KiB on Linux: the process's peak resident set, minus what it held before training.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def timed(train, batches: list[torch.Tensor], device: str) -> float:
    """Seconds ``train(batches[1:])`` takes, after an untimed ``train(batches[:1])``."""
    train(batches[:1])
    sync(device)
    start = time.perf_counter()
    train(batches[1:])
    sync(device)
    return time.perf_counter() - start


def ours(args):
    """Our trainer as ``train(batches)`` (imported here, before the memory baseline is taken)."""
    from workbench import sae

    options = dict(
        d_sae=args.expansion * args.d_in,
        kind=args.kind,
        k=args.k if "topk" in args.kind else None,
        batch_size=args.batch_size,
        buffer_size=args.batch_size,
        lr=3e-4,
        normalize=False,
        device=args.device,
        autocast=args.autocast,
        progress=False,
    )
    return lambda data: sae.train(None, "bench", data, steps=len(data), **options)


def saelens_training_sae(args):
    """The kind's SAELens training SAE, with its default settings apart from the sizes (and k)."""
    from sae_lens.saes.batchtopk_sae import BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig
    from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sizes = dict(d_in=args.d_in, d_sae=args.expansion * args.d_in, device=args.device)
    classes = {
        "relu": (StandardTrainingSAE, StandardTrainingSAEConfig, {}),
        "topk": (TopKTrainingSAE, TopKTrainingSAEConfig, {"k": args.k}),
        "batchtopk": (BatchTopKTrainingSAE, BatchTopKTrainingSAEConfig, {"k": args.k}),
        "jumprelu": (JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig, {}),
    }
    model_class, config_class, extra = classes[args.kind]
    return model_class(config_class(**sizes, **extra))


def saelens(args):
    """SAELens's trainer as ``train(batches)`` (imported here, before the memory baseline is taken)."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    saelens_training_sae(args)  # imports the SAE classes

    def train(data: list[torch.Tensor]) -> None:
        cfg = SAETrainerConfig(
            total_training_samples=len(data) * args.batch_size,
            train_batch_size_samples=args.batch_size,
            lr=3e-4,
            lr_end=3e-4,
            device=args.device,
            autocast=args.autocast,
            logger=LoggingConfig(log_to_wandb=False),
        )
        SAETrainer(cfg, saelens_training_sae(args), iter(data)).fit()

    return train


def warm_up_torch() -> None:
    """One Adam step on a tiny parameter: torch's first optimiser imports torch._dynamo (about 70 MiB of
    resident memory, once per process), which would otherwise count as the training's memory in whichever
    library had not imported it already."""
    parameter = torch.nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.Adam([parameter])
    parameter.sum().backward()
    optimizer.step()


def child(args) -> dict:
    """One library's run, in this (fresh) process: its row as a dict."""
    try:
        train = (ours if args.run == "workbench" else saelens)(args)
    except ImportError as error:
        return {"library": args.run, "status": f"not installed ({error.name}: pip install sae-lens)"}
    batches = activation_batches(args.steps, args.batch_size, args.d_in)
    warm_up_torch()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # libraries imported, data made
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seconds = timed(train, batches, args.device)
    tokens = args.steps * args.batch_size
    return {
        "library": args.run,
        "status": "ok",
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "peak_MiB": peak_bytes(args.device, before) / 2**20,
    }


def run_child(library: str, args) -> dict:
    command = [sys.executable, __file__, "--run", library] + [
        f"--{name.replace('_', '-')}={getattr(args, name)}"
        for name in ("kind", "steps", "batch_size", "d_in", "expansion", "k", "device")
    ]
    command += ["--autocast"] if args.autocast else []
    done = subprocess.run(command, capture_output=True, text=True)
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        return json.loads(lines[-1])
    return {"library": library, "status": f"failed: {done.stderr.strip().splitlines()[-1:]}"}


def best(rows: list[dict]) -> dict:
    """The fastest successful row of one library (or its first failure)."""
    ok = [row for row in rows if row["status"] == "ok"]
    return max(ok, key=lambda row: row["tokens_per_s"]) if ok else rows[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", default="topk", choices=KINDS)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--d-in", type=int, default=768)
    parser.add_argument("--expansion", type=int, default=8, help="d_sae = expansion * d_in")
    parser.add_argument("--k", type=int, default=32, help="topk, batchtopk: active features per token")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--autocast", action="store_true", help="bfloat16 autocast in both")
    parser.add_argument("--repeats", type=int, default=1, help="alternate runs per library; the best is kept")
    parser.add_argument("--run", choices=["workbench", "sae_lens"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run:
        print(json.dumps(child(args)))
        return 0
    runs: dict[str, list[dict]] = {"workbench": [], "sae_lens": []}
    for _ in range(args.repeats):
        for library in runs:
            runs[library].append(run_child(library, args))
    rows = [best(runs["workbench"]), best(runs["sae_lens"])]
    name = (
        torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    )
    k = f", k {args.k}" if "topk" in args.kind else ""
    print(
        f"{args.kind} SAE training: d_in {args.d_in}, d_sae {args.expansion * args.d_in}{k}, batch "
        f"{args.batch_size}, {args.steps} timed steps, best of {args.repeats}, {name}"
        f"{', bf16 autocast' if args.autocast else ''}"
    )
    for row in rows:
        if row["status"] == "ok":
            print(
                f"  {row['library']:<10} {row['tokens_per_s']:>10,.0f} tokens/s   peak {row['peak_MiB']:,.0f} MiB"
            )
        else:
            print(f"  {row['library']:<10} {row['status']}")
    if all(row["status"] == "ok" for row in rows):
        ours, theirs = rows
        print(
            f"  workbench / sae_lens: {ours['tokens_per_s'] / theirs['tokens_per_s']:.2f}x tokens/s, "
            f"{ours['peak_MiB'] / max(theirs['peak_MiB'], 1e-9):.2f}x peak memory"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
