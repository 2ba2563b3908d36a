"""``probes run --model minilm --task upos --data <conllu dir> --out reports/probing``."""

from __future__ import annotations

import argparse
import sys

from .experiment import run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="probes", description="Probing experiments on workbench models.")
    sub = parser.add_subparsers(dest="command", required=True)
    command = sub.add_parser("run", help="probe every layer of the models for the tasks; write CSV + HTML")
    command.add_argument(
        "--model", action="append", required=True, help="folder, alias or hub id (repeatable)"
    )
    command.add_argument(
        "--task", action="append", required=True, help="upos, xpos, deprel, depth, distance, ..."
    )
    command.add_argument(
        "--data", default="sample", help="'sample', 'ud_english_ewt' or a folder of *.conllu"
    )
    command.add_argument("--out", default="reports/probing", help="folder for results.csv and report.html")
    command.add_argument(
        "--layers", default="all", help="'all' or comma-separated layer numbers (0 = embeddings)"
    )
    command.add_argument("--probe", default="linear", choices=["linear", "mlp"])
    command.add_argument("--pooling", default="mean", choices=["first", "mean", "last"])
    command.add_argument("--no-control", action="store_true", help="skip the control tasks")
    command.add_argument("--max-sentences", type=int, default=None)
    command.add_argument("--store", default=None, help="activation store folder (reused across runs)")
    args = parser.parse_args(argv)
    layers = args.layers if args.layers == "all" else [int(x) for x in args.layers.split(",")]
    try:
        results = run(
            args.model,
            args.task,
            data=args.data,
            layers=layers,
            probe=args.probe,
            control=not args.no_control,
            pooling=args.pooling,
            store_dir=args.store,
            max_sentences=args.max_sentences,
        )
    except (FileNotFoundError, ValueError, KeyError) as err:
        print(f"probes: {err}", file=sys.stderr)
        return 2
    folder = results.save(args.out)
    test = results.frame[(results.frame["split"] == "test")]
    best = test.sort_values("value", ascending=False).groupby(["model", "task", "metric"]).first()
    print(best[["layer", "value", "selectivity"]].to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"\nwrote {folder / 'results.csv'} and {folder / 'report.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
