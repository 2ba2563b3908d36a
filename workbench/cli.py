"""The ``workbench`` command line.

``workbench inspect "some text" --model minilm`` prints, per layer, the norm of the residual stream and
the token each head attends to most; ``workbench hooks --model minilm`` lists the hook points with shapes;
``workbench generate "prompt" --model PATH`` continues a prompt step by step with the top candidates;
``workbench lens "text" --model PATH`` prints the logit lens (the top token of every layer).
"""

from __future__ import annotations

import argparse
import sys

import pandas as pd
import torch

from .api import load
from .cache import ActivationCache


def inspect_table(
    cache: ActivationCache, n_heads: int, show_weights: bool = False, skip_tokens: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """One row per layer: the mean residual-stream norm and, per head, the most attended token.

    The most attended token of a head is the key position with the highest attention averaged over
    all query positions of the (single) input; tokens in ``skip_tokens`` are not candidates.
    """
    tokens = cache.tokens
    resid = cache.stack("hook_resid_post")[:, 0]  # [layer, pos, d_model]
    patterns = cache.stack("attn.hook_pattern")[:, 0]  # [layer, head, query_pos, key_pos]
    received = patterns.mean(dim=2)  # [layer, head, key_pos]
    skipped = torch.tensor([token in skip_tokens for token in tokens])
    if skipped.all():
        raise ValueError("every token of the input is skipped; nothing is left to rank")
    weights, positions = received.masked_fill(skipped, -1.0).max(dim=-1)  # [layer, head]
    rows = [
        {"layer": "embed", "resid_norm": cache["blocks.0.hook_resid_pre"][0].norm(dim=-1).mean().item()}
    ]
    for layer in range(resid.shape[0]):
        row = {"layer": str(layer), "resid_norm": resid[layer].norm(dim=-1).mean().item()}
        for head in range(n_heads):
            token = tokens[positions[layer, head]]
            row[f"h{head}"] = f"{token} {weights[layer, head]:.2f}" if show_weights else token
        rows.append(row)
    return pd.DataFrame(rows).set_index("layer").fillna("")


def hooks_table(cache: ActivationCache) -> pd.DataFrame:
    return pd.DataFrame(
        [{"hook": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for name, t in cache.items()]
    ).set_index("hook")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    inspect = sub.add_parser("inspect", help="per layer: residual norm and each head's most attended token")
    inspect.add_argument("text", help="the text to run through the model")
    _add_model_options(inspect)
    inspect.add_argument("--weights", action="store_true", help="show the mean attention weight beside each token")
    inspect.add_argument("--skip-special", action="store_true",
                         help="rank only real tokens (not [CLS], [SEP] and other special tokens)")
    inspect.add_argument("--format", choices=["table", "csv", "json"], default="table")

    hooks = sub.add_parser("hooks", help="list the hook points of a model, with shapes for a short input")
    _add_model_options(hooks)
    hooks.add_argument("--text", default="The keys to the cabinet are on the table.")

    generate = sub.add_parser("generate", help="continue a prompt with a causal LM, showing each step's candidates")
    generate.add_argument("prompt")
    _add_model_options(generate)
    generate.add_argument("--max-new-tokens", type=int, default=20)
    generate.add_argument("--temperature", type=float, default=1.0)
    generate.add_argument("--top-k", type=int, default=None)
    generate.add_argument("--top-p", type=float, default=None)
    generate.add_argument("--seed", type=int, default=None)

    lens = sub.add_parser("lens", help="the logit lens: the most likely next token of every layer")
    lens.add_argument("text")
    _add_model_options(lens)
    lens.add_argument("--target", default=None, help="also show the rank of this token per layer")
    _add_report_commands(sub)
    _add_bench_command(sub)
    return parser


def _add_report_commands(sub) -> None:
    report = sub.add_parser("report", help="run the notebooks headless and write each as an offline HTML report")
    report.add_argument("--notebooks", default=None, help="which notebooks, by number: 3,4 or 1-3 (default: all)")
    report.add_argument("--out", default="reports", help="folder for the HTML files (default: reports)")
    report.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda")
    report.add_argument("--quick", action="store_true", help="the small sizes the tests use")
    report.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="another notebook parameter (a Python literal), e.g. --param max_sentences=100")
    report.add_argument("--notebooks-dir", default=None, help="where the notebooks are (default: ./notebooks)")
    report.add_argument("--timeout", type=int, default=600, help="seconds one cell may run (default: 600)")
    lab = sub.add_parser("lab", help="open JupyterLab on the notebooks")
    lab.add_argument("--notebooks-dir", default=None, help="where the notebooks are (default: ./notebooks)")


def _report(args: argparse.Namespace) -> int:
    import ast

    from .report import parse_selection, run_report

    parameters = {}
    for item in args.param:
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param {item!r}: expected NAME=VALUE")
        try:
            parameters[name.strip()] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            parameters[name.strip()] = value  # a bare word is a string
    select = parse_selection(args.notebooks) if args.notebooks is not None else None
    runs = run_report(args.out, select=select, device=args.device, quick=args.quick,
                      notebooks_dir=args.notebooks_dir, parameters=parameters, timeout=args.timeout)
    return 0 if all(run.ok for run in runs) else 1


def _lab(args: argparse.Namespace) -> int:
    from .report import open_lab

    return open_lab(args.notebooks_dir)


# Commands that need no model loaded first.
_MODEL_FREE_COMMANDS = {"report": _report, "lab": _lab}


def _add_bench_command(sub) -> None:
    bench = sub.add_parser("bench", help="compare models on GLUE/SuperGLUE/SQuAD/SWAG/RACE/ARC (workbench.bench)")
    bench.add_argument("--models", default="minilm", help="comma-separated folders, aliases or hub ids")
    bench.add_argument("--tasks", required=True, help="comma-separated task names, e.g. sst2,cola,mrpc,rte,copa")
    bench.add_argument("--mode", choices=["zeroshot", "probe", "finetune"], default="probe")
    bench.add_argument("--data", default="sample", help="data root laid out like ../shared/data (default: sample)")
    bench.add_argument("--out", default=None, help="folder for results (resumable), results.csv and report.html")
    bench.add_argument("--device", default="cpu", help="cpu, cuda, ...")
    bench.add_argument("--max-examples", type=int, default=None, help="the first n examples of each task")
    bench.add_argument("--folds", type=int, default=5, help="cross-validation folds (probe mode)")
    bench.add_argument("--pooling", choices=["mean", "first", "last"], default="mean", help="probe mode pooling")
    bench.add_argument("--batch-size", type=int, default=32)
    bench.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs")
    bench.add_argument("--learning-rate", type=float, default=2e-5, help="fine-tuning learning rate")
    bench.add_argument("--no-progress", action="store_true", help="no progress bars")


def _bench(args: argparse.Namespace) -> int:
    from .bench import run
    from .bench.finetune import FinetuneConfig

    config = FinetuneConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size)
    results = run(models=[m for m in args.models.split(",") if m], tasks=[t for t in args.tasks.split(",") if t],
                  mode=args.mode, device=args.device, max_examples=args.max_examples, data=args.data, out=args.out,
                  folds=args.folds, pooling=args.pooling, batch_size=args.batch_size, finetune_config=config,
                  progress=not args.no_progress)
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(results.frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        print(f"\nwrote {args.out}/results.csv and {args.out}/report.html")
    return 0


_MODEL_FREE_COMMANDS["bench"] = _bench


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm", help="folder, alias (minilm) or Hugging Face hub id")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, ...")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    if args.command in _MODEL_FREE_COMMANDS:
        try:
            return _MODEL_FREE_COMMANDS[args.command](args)
        except (FileNotFoundError, ValueError, ModuleNotFoundError) as err:
            print(f"workbench: {err}", file=sys.stderr)
            return 2
    try:
        model = load(args.model, device=args.device)
        with torch.no_grad():
            _run(args, model)
    except (FileNotFoundError, ValueError, TypeError) as err:
        print(f"workbench: {err}", file=sys.stderr)
        return 2
    return 0


def _run(args: argparse.Namespace, model) -> None:
    commands = {"inspect": _inspect, "hooks": _hooks, "generate": _generate, "lens": _lens}
    commands[args.command](args, model)


def _inspect(args: argparse.Namespace, model) -> None:
    _, cache = model.run_with_cache(
        args.text, names_filter=lambda n: n.endswith(("hook_resid_post", "hook_pattern", "blocks.0.hook_resid_pre"))
    )
    special = frozenset(model.tokenizer.special_tokens.values()) if args.skip_special else frozenset()
    table = inspect_table(cache.to("cpu"), model.config.n_heads, args.weights, special)
    if args.format == "csv":
        print(table.to_csv(float_format="%.3f"), end="")
    elif args.format == "json":
        print(table.reset_index().to_json(orient="records", indent=1))
    else:
        print(f"model: {args.model} ({type(model).__name__}, {model.n_layers} layers, "
              f"{model.config.n_heads} heads, device {model.device})")
        print(f"tokens: {' '.join(cache.tokens)}")
        print("resid_norm: mean L2 norm of the residual stream after each layer; "
              "h<i>: the token head i attends to most (averaged over query positions)\n")
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))


def _hooks(args: argparse.Namespace, model) -> None:
    _, cache = model.run_with_cache(args.text)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(hooks_table(cache).to_string())


def _require_lm_head(args: argparse.Namespace, model) -> None:
    if not hasattr(model, "decode_residual"):
        raise TypeError(f"{args.model} loads as {type(model).__name__}, which has no language-modelling head")


def _generate(args: argparse.Namespace, model) -> None:
    _require_lm_head(args, model)
    result = model.generate(args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed)
    print(result.full_text, end="\n\n")
    steps = result.steps[["step", "token", "probability", "top_tokens", "top_probabilities"]]
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(steps.to_string(index=False))


def _lens(args: argparse.Namespace, model) -> None:
    _require_lm_head(args, model)
    lens = model.logit_lens(args.text)
    top = lens.top_k(k=1).pivot(index="layer", columns="pos", values="token").loc[lens.layer_names]
    top.columns = [f"{p}:{token}" for p, token in enumerate(lens.tokens[0])]
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print("the most likely next token at each position, decoded from each layer's residual stream\n")
        print(top.to_string())
        if args.target is not None:
            print(f"\nrank of {args.target!r} at the last position, per layer\n")
            print(lens.target(args.target).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
