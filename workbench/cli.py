"""The ``workbench`` command line.

``workbench inspect "some text" --model minilm`` prints, per layer, the norm of the residual stream and
the token each head attends to most; ``workbench hooks --model minilm`` lists the hook points with shapes.
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
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm", help="folder, alias (minilm) or Hugging Face hub id")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, ...")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    try:
        model = load(args.model, device=args.device)
    except (FileNotFoundError, ValueError) as err:
        print(f"workbench: {err}", file=sys.stderr)
        return 2
    with torch.no_grad():
        if args.command == "inspect":
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
        else:
            _, cache = model.run_with_cache(args.text)
            with pd.option_context("display.max_rows", None, "display.width", 200):
                print(hooks_table(cache).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
