"""``probes run --model minilm --task upos --data <conllu dir> --out reports/probing``."""

from __future__ import annotations

import argparse
import sys

from workbench.cli import USER_ERRORS, error_message, output_folder, positive_int


def layer_list(text: str) -> str | list[int]:
    """``"all"`` or comma-separated layer numbers ``"0,3,6"`` (each >= 0, no repeats)."""
    if text.strip() == "all":
        return "all"
    layers = []
    for part in text.split(","):
        part = part.strip()
        if not part.isdigit():
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected 'all' or layer numbers such as 0,3,6 (0 = embeddings), not {part!r}"
            )
        if int(part) in layers:
            raise argparse.ArgumentTypeError(f"{text!r}: layer {part} is named twice")
        layers.append(int(part))
    return layers


def _model_name(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a folder, alias or hub id")
    return text


def _task_name(text: str) -> str:
    from .tasks import task_names

    if text not in task_names():
        raise argparse.ArgumentTypeError(f"unknown task {text!r}; known tasks: {', '.join(task_names())}")
    return text


def _store_location(text: str) -> str:
    """A store folder, or an fsspec URL (``memory://``, ``file://``, ``s3://``) taken as it is."""
    return text if "://" in text else output_folder(text)


def _add_extract_command(sub) -> None:
    """``probes extract``: the activation store of one model on one split, alone or under torchrun."""
    command = sub.add_parser(
        "extract",
        help="extract pooled word activations into a store (alone, or under torchrun: ranks share the chunks)",
        description="Extract pooled word activations into a zarr store. Under `torchrun --nproc-per-node N "
        "-m probes extract ...` every rank takes a share of the chunks and rank 0 finalizes the store; an "
        "interrupted run resumes per chunk, with any number of processes.",
    )
    command.add_argument("--model", type=_model_name, required=True, help="folder, alias or hub id")
    command.add_argument(
        "--data", default="sample", help="'sample', 'ud_english_ewt' or a folder of *.conllu"
    )
    command.add_argument("--split", default="train", choices=["train", "dev", "test"])
    command.add_argument(
        "--store", type=_store_location, required=True, help="store folder or URL (memory://, file://, s3://)"
    )
    command.add_argument("--layers", type=layer_list, default="all", help="'all' or e.g. 0,3,6")
    command.add_argument("--pooling", default="mean", choices=["first", "mean", "last"])
    command.add_argument("--batch-size", type=positive_int, default=32, help="sentences per forward pass")
    command.add_argument("--chunk-rows", type=positive_int, default=None, help="rows (words) per chunk")
    command.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    command.add_argument("--max-sentences", type=positive_int, default=None)
    command.add_argument("--max-chunks", type=positive_int, default=None, help="chunks per rank in this run")
    command.add_argument("--overwrite", action="store_true", help="replace a store made another way")
    command.add_argument("--no-progress", action="store_true")


def _extract(args) -> int:
    import torch

    from workbench import distributed
    from workbench.api import default_device
    from workbench.auto import AutoModel

    from .data import load_treebank
    from .store import extract

    ctx = distributed.init()
    device = default_device()
    if device.type == "cuda" and ctx.distributed:
        device = torch.device("cuda", ctx.local_rank)  # one GPU per rank
    dtype = getattr(torch, args.dtype) if args.dtype else None
    model = AutoModel.from_pretrained(args.model, device=device, **({"dtype": dtype} if dtype else {}))
    sentences = load_treebank(args.data, args.split, max_sentences=args.max_sentences)
    store = extract(
        model,
        [s.words for s in sentences],
        args.store,
        pooling=args.pooling,
        layers=args.layers,
        batch_size=args.batch_size,
        progress=not args.no_progress,
        overwrite=args.overwrite,
        chunk_rows=args.chunk_rows,
        max_chunks=args.max_chunks,
    )
    if ctx.is_main:
        state = (
            "complete" if store.complete else f"{store.manifest['progress']} of {store.n_sentences} sentences"
        )
        print(f"{args.store}: {store.n_words} words x {store.d_model}, layers {store.layers} ({state})")
    distributed.shutdown()
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``probes`` command's parser: ``run`` and ``extract``."""
    parser = argparse.ArgumentParser(prog="probes", description="Probing experiments on workbench models.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")
    command = sub.add_parser("run", help="probe every layer of the models for the tasks; write CSV + HTML")
    command.add_argument(
        "--model",
        action="append",
        type=_model_name,
        required=True,
        help="folder, alias or hub id (repeatable)",
    )
    command.add_argument(
        "--task",
        action="append",
        type=_task_name,
        required=True,
        help="upos, xpos, deprel, depth, distance, ...",
    )
    command.add_argument(
        "--data",
        default="sample",
        help="'sample' (the committed 200/50/50 sentences), 'ud_english_ewt' or a folder of *.conllu",
    )
    command.add_argument(
        "--out", type=output_folder, default="reports/probing", help="folder for results.csv and report.html"
    )
    command.add_argument(
        "--layers",
        type=layer_list,
        default="all",
        help="'all' or comma-separated layer numbers (0 = embeddings)",
    )
    command.add_argument(
        "--probe",
        default="linear",
        choices=["linear", "mlp"],
        help="the classifier trained on each layer: linear (default) or a one-hidden-layer mlp",
    )
    command.add_argument(
        "--pooling",
        default="mean",
        choices=["first", "mean", "last"],
        help="how a word's subword tokens become one vector (default: mean)",
    )
    command.add_argument(
        "--no-control",
        action="store_true",
        help="skip the control tasks (Hewitt & Liang 2019), which give each probe's selectivity",
    )
    command.add_argument(
        "--max-sentences",
        type=positive_int,
        default=None,
        help="the first n sentences of each split (default: all)",
    )
    command.add_argument(
        "--store",
        type=_store_location,
        default=None,
        help="activation store folder or URL, reused across runs (under torchrun: one every rank sees; "
        "default: a temporary folder)",
    )
    command.add_argument(
        "--stream-rows",
        type=positive_int,
        default=None,
        help="read the probes' features from the store this many words at a time instead of loading a split "
        "(probes larger than memory; the MLP, structural and arc probes then train with L-BFGS)",
    )
    command.add_argument(
        "--parallel",
        choices=("units", "data"),
        default="units",
        help="under torchrun: 'units' (default) gives each rank its own probes; 'data' (with --stream-rows) "
        "trains every probe on all ranks, each reading its share of the rows (the fit equals one process's)",
    )
    _add_extract_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``probes`` command; returns its exit code (2: a usage error, said in one line on stderr)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or argparse's one-line error (2)
        return stop.code if isinstance(stop.code, int) else 2
    if args.command == "extract":
        try:
            return _extract(args)
        except USER_ERRORS as err:
            print(f"probes extract: error: {error_message(err)}", file=sys.stderr)
            return 2
    try:
        from workbench import distributed

        from .experiment import run  # here, not at the top: --help must not import torch

        # Under torchrun every rank runs the experiment (extraction and probes shared) and gets the results.
        results = run(
            args.model,
            args.task,
            data=args.data,
            layers=args.layers,
            probe=args.probe,
            control=not args.no_control,
            pooling=args.pooling,
            store_dir=args.store,
            max_sentences=args.max_sentences,
            stream_rows=args.stream_rows,
            parallel=args.parallel,
        )
        distributed.shutdown()
        if not distributed.is_main():
            return 0  # rank 0 writes the report and prints
        folder = results.save(args.out)
    except USER_ERRORS as err:
        print(f"probes {args.command}: error: {error_message(err)}", file=sys.stderr)
        return 2
    test = results.frame[(results.frame["split"] == "test")]
    best = test.sort_values("value", ascending=False).groupby(["model", "task", "metric"]).first()
    print(best[["layer", "value", "selectivity"]].to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {folder / 'results.csv'} and {folder / 'report.html'} (plotly.min.js beside it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
