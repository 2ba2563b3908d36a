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
    return parser


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="minilm", help="folder, alias (minilm) or Hugging Face hub id")
    parser.add_argument("--device", default="auto", help="auto (GPU when there is one), cpu, cuda, ...")


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
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
