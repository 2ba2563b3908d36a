"""The ``workbench`` command line.

``workbench inspect "some text" --model minilm`` prints, per layer, the norm of the residual stream and
the token each head attends to most; ``workbench hooks --model minilm`` lists the hook points with shapes;
``workbench generate "prompt" --model PATH`` continues a prompt step by step with the top candidates;
``workbench lens "text" --model PATH`` prints the logit lens (the top token of every layer).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import sys
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

# torch, pandas and the models are imported by the commands when they run, never at the top of this module:
# `workbench --help` and `workbench <command> --help` print in a fraction of a second (workbench/__init__.py
# skips its own imports in the command, tests/test_cli.py checks that torch is not imported).
if TYPE_CHECKING:
    import pandas as pd

    from .cache import ActivationCache
    from .model import HookedTransformer

# The top-level help, in plain text (the module docstring above is reStructuredText for the API docs).
DESCRIPTION = """\
The workbench command line: look inside transformer language models from a shell.

  workbench inspect "some text" --model minilm   per layer: residual norm, each head's most attended token
  workbench hooks --model minilm                 the hook points, with shapes
  workbench generate "prompt" --model distilgpt2 continue a prompt, with each step's candidates
  workbench lens "text" --model distilgpt2       the logit lens: the top token of every layer
  workbench report / lab / bench                 notebooks as HTML reports, JupyterLab, benchmarks

Offline, --stand-in runs a model command on a tiny random model of the architecture (labelled as such).
"workbench command --help" describes each command."""

# How long `workbench report` takes, from benchmarks/first_hour.py (CPU seconds: the figure that stays put
# when the machine is shared; wall-clock time is longer when other work runs). 2026-12-07, 2 cores, one torch
# thread per kernel: quick 105 s of CPU, 116 s wall at a load average of 3 (01 11 s, 02 15 s, 03 22 s, 04 17 s,
# 05 9 s, 08 23 s, the runner 8 s of CPU); full 362 s of CPU, 629 s wall while the load fell from 15 to 2.
QUICK_TIME = "about 2 minutes on 2 cores;"
FULL_TIME = "about 6 minutes of CPU on 2 cores, 10 minutes of wall-clock time on a busy machine"

# Argument types and checks shared by the `workbench` and `probes` commands: a bad value is argparse's
# one-line "error: argument --x: ..." (exit code 2), never a traceback.


def positive_int(text: str) -> int:
    """An integer >= 1 (``--max-examples``, ``--folds``, ``--batch-size``, ...)."""
    value = _parse(int, text, "an integer")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (``--seed``, ``--max-new-tokens``)."""
    value = _parse(int, text, "an integer")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (``--temperature``, ``--learning-rate``)."""
    value = _parse(float, text, "a number")
    if not (value > 0 and value != float("inf")):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def probability(text: str) -> float:
    """A number in (0, 1] (``--top-p``)."""
    value = _parse(float, text, "a number")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1], got {text}")
    return value


def port(text: str) -> int:
    """A TCP port number, 1 to 65535 (``workbench lab --port``)."""
    value = _parse(int, text, "a port number")
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number from 1 to 65535, got {text}")
    return value


def name_list(text: str) -> list[str]:
    """``"a,b"`` -> ``["a", "b"]``; an empty list or an empty name (``"a,,b"``) is an error."""
    names = [name.strip() for name in text.split(",")]
    if not any(names):
        raise argparse.ArgumentTypeError("is empty; give one or more comma-separated names")
    if not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty name; separate names with single commas")
    return names


def device(text: str) -> str:
    """``auto`` or a torch device that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    if text == "auto":
        return text
    import torch

    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r} is not a device; use auto, cpu, cuda, cuda:N or mps") from None
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise argparse.ArgumentTypeError(f"{text!r}: there is no CUDA device here (use cpu or auto)")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise argparse.ArgumentTypeError(
                f"{text!r}: there are {torch.cuda.device_count()} CUDA device(s), numbered from 0"
            )
    elif parsed.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text!r}: there is no MPS device here (use cpu or auto)")
    return text


def output_folder(text: str) -> str:
    """A folder to write into: it may not exist yet, but neither it nor a folder above it may be a file."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; name a folder")
    from pathlib import Path

    path = Path(text)
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                where = "is a file" if folder == path else f"is inside {folder}, which is a file"
                raise argparse.ArgumentTypeError(f"{text} {where}, not a folder; name a folder")
            break
    return text


def _parse(kind, text: str, what: str):
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None


def error_message(err: BaseException) -> str:
    """The message of an error for a one-line report (a KeyError's message without its quotes)."""
    if isinstance(err, KeyError) and len(err.args) == 1 and isinstance(err.args[0], str):
        message = err.args[0]
    else:
        message = str(err)
    return message.strip()


# What a command reports as a usage error (exit code 2) instead of a traceback: the library's validation
# errors (ValueError and its subclasses such as ConfigError, KeyError such as an unknown task, TypeError for a
# model without the needed head) and file problems (OSError: no such file, a file where a folder should be).
USER_ERRORS = (ValueError, KeyError, TypeError, OSError, ModuleNotFoundError)


@contextlib.contextmanager
def waiting(message: str, stream: TextIO | None = None) -> Iterator[None]:
    """While the block runs, ``message ... | 3 s`` on ``stream`` (stderr) with a turning bar and the seconds
    waited, then ``message ... done (3.2 s)``: a wait (loading a model, importing torch) never looks like a hang.

    Only on a terminal: a log file, a pipe or a test's captured stderr gets nothing (their output stays the
    command's own).
    """
    stream = stream if stream is not None else sys.stderr
    if not stream.isatty():
        yield
        return
    start = time.monotonic()
    done = threading.Event()

    def spin() -> None:
        for bar in itertools.cycle("|/-\\"):
            stream.write(f"\r{message} ... {bar} {time.monotonic() - start:.0f} s")
            stream.flush()
            if done.wait(0.25):
                return

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    outcome = "failed"
    redirected = stream is sys.stderr
    if redirected:  # a warning logged meanwhile (a stand-in's notice) starts on a line of its own
        sys.stderr = _ClearsTheSpinner(stream)
    try:
        yield
        outcome = "done"
    finally:
        done.set()
        spinner.join()
        if redirected:
            sys.stderr = stream
        stream.write(f"\r{message} ... {outcome} ({time.monotonic() - start:.1f} s)\n")
        stream.flush()


class _ClearsTheSpinner:
    """``sys.stderr`` while :func:`waiting` shows its spinner: what anything else writes replaces the
    spinner's line instead of continuing it (the spinner draws itself again on the next line)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write("\r\033[K")  # back to the start of the line, and clear it
        return self._stream.write(text)

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def import_model_methods() -> None:
    """Import the modules that give the models their methods ``generate``, ``logit_lens`` and ``fill_mask``
    (see workbench/model.py): workbench/__init__.py, which imports them otherwise, skips its imports in the
    ``workbench`` command so that its help is instant."""
    from . import generation, lens, mask_filling  # noqa: F401


def load(model: str, device: str = "auto", stand_in: bool = False) -> HookedTransformer:
    """The model a command runs on: :func:`workbench.load`, or with ``stand_in`` :func:`workbench.zoo.load`
    (a tiny random model of the architecture when the checkpoint is not available offline, with its notice).

    The workbench's modules are imported here, under the spinner: importing torch alone takes seconds.
    """
    with waiting(f"loading {model}"):
        import_model_methods()
        if stand_in:
            from .zoo import load as load_or_stand_in

            return load_or_stand_in(model, device=device)
        from .api import load as load_checkpoint
        from .hub import CheckpointNotFoundError

        try:
            return load_checkpoint(model, device=device)
        except CheckpointNotFoundError as err:
            raise CheckpointNotFoundError(
                f"{error_message(err)} Or pass --stand-in to run on a tiny random model of its architecture."
            ) from err


def stand_in_label(model) -> str | None:
    """``"random stand-in: <its notice>"`` for a random stand-in (the first line of a command's output),
    else None."""
    from .zoo import stand_in_notice

    notice = stand_in_notice(model)
    return None if notice is None else f"random stand-in: {notice}"


def inspect_table(
    cache: ActivationCache, n_heads: int, show_weights: bool = False, skip_tokens: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """One row per layer: the mean residual-stream norm and, per head, the most attended token.

    The most attended token of a head is the key position with the highest attention averaged over
    all query positions of the (single) input; tokens in ``skip_tokens`` are not candidates.
    """
    import pandas as pd
    import torch

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
    """One row per hook point: its name, shape and dtype."""
    import pandas as pd

    return pd.DataFrame(
        [{"hook": name, "shape": list(t.shape), "dtype": str(t.dtype).replace("torch.", "")} for name, t in cache.items()]
    ).set_index("hook")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="workbench", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command",
                                title="commands (workbench command --help for each)")

    inspect = sub.add_parser("inspect", help="per layer: residual norm and each head's most attended token")
    inspect.add_argument("text", type=_text, help="the text to run through the model")
    _add_model_options(inspect)
    inspect.add_argument("--weights", action="store_true", help="show the mean attention weight beside each token")
    special = inspect.add_mutually_exclusive_group()
    special.add_argument("--skip-special", dest="skip_special", action="store_true", default=True,
                         help="rank only real tokens, not [CLS], [SEP], <s> and other special tokens (the default)")
    special.add_argument("--show-special", dest="skip_special", action="store_false",
                         help="let special tokens be a head's most attended token too")
    inspect.add_argument("--format", choices=["table", "csv", "json"], default="table",
                         help="a table to read (default), or csv / json to process")

    hooks = sub.add_parser("hooks", help="list the hook points of a model, with shapes for a short input")
    _add_model_options(hooks)
    hooks.add_argument("--text", type=_text, default="The keys to the cabinet are on the table.",
                       help="the input whose activations give the shapes (default: a short sentence)")

    generate = sub.add_parser("generate", help="continue a prompt with a causal LM, showing each step's candidates")
    generate.add_argument("prompt", type=_text, help="the text to continue")
    _add_model_options(generate, causal_lm=True)
    generate.add_argument("--max-new-tokens", type=positive_int, default=20,
                          help="how many tokens to add (default: 20)")
    generate.add_argument("--temperature", type=positive_float, default=1.0,
                          help="sample at this temperature (1 with no --top-k/--top-p: the most likely token)")
    generate.add_argument("--top-k", type=positive_int, default=None, help="sample among the k most likely tokens")
    generate.add_argument("--top-p", type=probability, default=None,
                          help="sample among the most likely tokens that make up this probability (nucleus)")
    generate.add_argument("--seed", type=non_negative_int, default=None, help="the random seed of sampling")

    lens = sub.add_parser("lens", help="the logit lens: the most likely next token of every layer")
    lens.add_argument("text", type=_text, help="the text to read the next token of, at every position")
    _add_model_options(lens, causal_lm=True)
    lens.add_argument("--target", type=_text, default=None, help="also show the rank of this token per layer")
    _add_report_commands(sub)
    _add_bench_command(sub)
    return parser


def _add_report_commands(sub) -> None:
    report = sub.add_parser(
        "report",
        help="run the notebooks headless and write each as an offline HTML report",
        description="Run the notebooks headless and write each as an HTML page that opens offline, with an "
        "index. The default is the quick report: the notebooks' small sizes, notebooks that need a checkpoint "
        "not available here skipped (the index says which); " + QUICK_TIME + " --full runs every notebook at "
        "the sizes meant for reading (" + FULL_TIME + "). Every page says at its top what data it used.",
    )
    report.add_argument("--notebooks", default=None,
                        help="which notebooks, by number: 3,4 or 1-3 (default: all; a notebook named here always runs)")
    report.add_argument("--out", type=output_folder, default="reports",
                        help="folder for the HTML files (default: reports)")
    report.add_argument("--device", type=device, default="auto", help="auto (GPU when there is one), cpu, cuda")
    size = report.add_mutually_exclusive_group()
    size.add_argument("--quick", dest="quick", action="store_true", default=True,
                      help="the notebooks' small sizes (the default; " + QUICK_TIME.rstrip(".;") + ")")
    size.add_argument("--full", dest="quick", action="store_false",
                      help="every notebook at the sizes meant for reading (" + FULL_TIME + ")")
    report.add_argument("--data", type=_data_folder, default=None, metavar="DIR",
                        help="a data root laid out like ../shared/data (ud_english_ewt/, glue/, ...), passed to "
                             "every notebook as data_root (default: the small samples committed with workbench)")
    report.add_argument("--stand-ins", action="store_true",
                        help="let the notebooks use tiny random stand-ins for checkpoints that are not available "
                             "(parameter stand_ins=True; their outputs are labelled and not meaningful)")
    report.add_argument("--param", action="append", default=[], metavar="NAME=VALUE", type=_parameter,
                        help="another notebook parameter (a Python literal), e.g. --param max_sentences=100")
    report.add_argument("--threads", type=non_negative_int, default=1,
                        help="torch threads per notebook kernel (default: 1, several times faster than one per "
                             "core when other work shares the machine; 0: torch's default, one per core)")
    report.add_argument("--notebooks-dir", default=None, help="where the notebooks are (default: ./notebooks)")
    report.add_argument("--timeout", type=positive_int, default=600, help="seconds one cell may run (default: 600)")
    lab = sub.add_parser(
        "lab", help="open JupyterLab on the notebooks",
        description="Open JupyterLab on the notebooks. Arguments after -- go to jupyter lab unchanged, e.g. "
                    "workbench lab --port 8899 -- --ServerApp.token=''. As root (e.g. in a container) it passes "
                    "--allow-root itself, and says so.",
    )
    lab.add_argument("--notebooks-dir", default=None, help="where the notebooks are (default: ./notebooks)")
    lab.add_argument("--port", type=port, default=None, help="the port JupyterLab listens on")
    lab.add_argument("--ip", default=None, help="the address JupyterLab listens on (e.g. 0.0.0.0 in a container)")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.add_argument("--allow-root", action="store_true",
                     help="let JupyterLab run as root (passed by itself when running as root)")
    lab.add_argument("jupyter_args", nargs="*", metavar="-- JUPYTER_ARGS",
                     help="more arguments for jupyter lab, after --")


def _text(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give some text")
    return text


def _data_folder(text: str) -> str:
    """``--data DIR`` of ``workbench report``: an existing folder, as an absolute path."""
    from pathlib import Path

    folder = Path(text).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise argparse.ArgumentTypeError(
            f"{text}: {folder.resolve()} {what}; give a data root laid out like ../shared/data "
            "(ud_english_ewt/, glue/, superglue/, ...), or leave --data out for the committed samples"
        )
    return str(folder.resolve())


def _data_root(text: str) -> str:
    from pathlib import Path

    if text != "sample" and not Path(text).is_dir():
        raise argparse.ArgumentTypeError(
            f"{text}: no such folder; give a data root laid out like ../shared/data, or 'sample'"
        )
    return text


def _parameter(item: str) -> tuple[str, object]:
    """``NAME=VALUE`` -> (name, value): a Python literal, or a bare word as a string."""
    import ast

    name, sep, value = item.partition("=")
    name = name.strip()
    if not sep:
        raise argparse.ArgumentTypeError(f"{item!r}: expected NAME=VALUE")
    if not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{item!r}: the name {name!r} is not a Python identifier")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return name, value  # a bare word is a string


def _report(args: argparse.Namespace) -> int:
    from .report import find_notebooks, parse_selection, run_report

    parameters = dict(args.param)
    if args.stand_ins:
        parameters["stand_ins"] = True
    select = parse_selection(args.notebooks) if args.notebooks is not None else None
    find_notebooks(args.notebooks_dir or _default_notebooks_dir(), select)  # a bad selection: before any run
    runs = run_report(args.out, select=select, device=args.device, quick=args.quick, data=args.data,
                      notebooks_dir=args.notebooks_dir, parameters=parameters, timeout=args.timeout,
                      threads=args.threads or None)
    return 0 if all(run.ok for run in runs) else 1


def _default_notebooks_dir():
    from .report import default_notebooks_dir

    return default_notebooks_dir()


def _lab(args: argparse.Namespace) -> int:
    from .report import open_lab

    jupyter_args = list(args.jupyter_args)
    if args.port is not None:
        jupyter_args.append(f"--port={args.port}")
    if args.ip is not None:
        jupyter_args.append(f"--ip={args.ip}")
    if args.no_browser:
        jupyter_args.append("--no-browser")
    if args.allow_root:
        jupyter_args.append("--allow-root")
    elif _running_as_root() and not any("allow-root" in arg or "allow_root" in arg for arg in jupyter_args):
        # JupyterLab refuses to start as root without it: in a container that is what the user means
        print("workbench lab: running as root, so passing --allow-root to jupyter lab", file=sys.stderr)
        jupyter_args.append("--allow-root")
    return open_lab(args.notebooks_dir, jupyter_args)


def _running_as_root() -> bool:
    import os

    return hasattr(os, "geteuid") and os.geteuid() == 0


# Commands that need no model loaded first.
_MODEL_FREE_COMMANDS = {"report": _report, "lab": _lab}


def _add_bench_command(sub) -> None:
    bench = sub.add_parser("bench", help="compare models on GLUE/SuperGLUE/SQuAD/SWAG/RACE/ARC (workbench.bench)")
    bench.add_argument("--models", type=name_list, default=["minilm"],
                       help="comma-separated folders, aliases or hub ids (default: minilm)")
    bench.add_argument("--tasks", type=name_list, required=True,
                       help="comma-separated task names, e.g. sst2,cola,mrpc,rte,copa")
    bench.add_argument("--mode", choices=["zeroshot", "probe", "finetune"], default="probe",
                       help="zero-shot scoring, a probe on frozen features (default) or fine-tuning")
    bench.add_argument("--data", type=_data_root, default="sample",
                       help="data root laid out like ../shared/data (default: sample)")
    bench.add_argument("--out", type=output_folder, default=None,
                       help="folder for results (resumable), results.csv and report.html")
    bench.add_argument("--device", type=device, default="auto", help="auto (GPU when there is one), cpu, cuda, ...")
    bench.add_argument("--max-examples", type=positive_int, default=None, help="the first n examples of each task")
    bench.add_argument("--folds", type=_folds, default=5, help="cross-validation folds (probe mode)")
    bench.add_argument("--pooling", choices=["mean", "first", "last"], default="mean", help="probe mode pooling")
    bench.add_argument("--batch-size", type=positive_int, default=32, help="examples per batch (default: 32)")
    bench.add_argument("--epochs", type=positive_int, default=3, help="fine-tuning epochs")
    bench.add_argument("--learning-rate", type=positive_float, default=2e-5, help="fine-tuning learning rate")
    bench.add_argument("--no-progress", action="store_true", help="no progress bars")


def _folds(text: str) -> int:
    value = _parse(int, text, "an integer")
    if value < 2:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2 (cross-validation needs two folds), got {text}")
    return value


def _bench(args: argparse.Namespace) -> int:
    with waiting("starting workbench bench"):
        import pandas as pd

        from .api import default_device
        from .bench import run
        from .bench.finetune import FinetuneConfig

        import_model_methods()

    config = FinetuneConfig(epochs=args.epochs, learning_rate=args.learning_rate, batch_size=args.batch_size)
    from .bench import get_task

    for task in args.tasks:
        get_task(task)  # an unknown task: before any model is loaded
    # "auto" is resolved here, so that results record (and resume by) the device that ran them
    device = str(default_device()) if args.device == "auto" else args.device
    results = run(models=args.models, tasks=args.tasks, mode=args.mode, device=device, max_examples=args.max_examples, data=args.data, out=args.out,
                  folds=args.folds, pooling=args.pooling, batch_size=args.batch_size, finetune_config=config,
                  progress=not args.no_progress)
    from . import distributed

    distributed.shutdown()  # under torchrun every rank has the results; rank 0 wrote the report and prints
    if not distributed.is_main():
        return 0
    with pd.option_context("display.width", 200, "display.max_rows", None):
        print(results.frame.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    if args.out:
        print(f"\nwrote {args.out}/results.csv and {args.out}/report.html")
    return 0


_MODEL_FREE_COMMANDS["bench"] = _bench


def _add_model_options(parser: argparse.ArgumentParser, causal_lm: bool = False) -> None:
    """--model, --device and --stand-in (``causal_lm``: generate and lens, whose model needs an LM head)."""
    if causal_lm:  # the default model, MiniLM, has no LM head: these commands name theirs
        parser.add_argument("--model", type=_text, default=None,
                            help="a causal LM: folder or Hugging Face hub id, e.g. distilgpt2 (required; offline, add "
                                 "--stand-in to run a tiny random model of its architecture)")
    else:
        parser.add_argument("--model", type=_text, default="minilm",
                            help="folder, alias or hub id (default: minilm)")
    parser.add_argument("--device", type=device, default="auto", help="auto (GPU when there is one), cpu, cuda, ...")
    parser.add_argument("--stand-in", action="store_true",
                        help="when the checkpoint is not available (offline), use a tiny random model of its "
                             "architecture instead; the output says it is a random stand-in")


def main(argv: list[str] | None = None) -> int:
    """Run the ``workbench`` command; returns its exit code.

    0: done; 1: done, but something failed (a notebook of ``workbench report``); 2: a usage error, said in
    one line on stderr (argparse's ``error: ...`` for a bad argument value; argparse exits with 2 itself).
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as stop:  # --help (0) or argparse's one-line error (2): returned, as every other exit
        return stop.code if isinstance(stop.code, int) else 2
    prog = f"{parser.prog} {args.command}"
    try:
        if args.command in _MODEL_FREE_COMMANDS:
            return _MODEL_FREE_COMMANDS[args.command](args)
        if args.model is None:
            raise ValueError(
                f"{args.command} needs a causal language model (the default, MiniLM, has no LM head): pass "
                "--model with a folder or hub id, e.g. --model distilgpt2; offline, add --stand-in to run a tiny "
                "random model of its architecture (labelled as such)"
            )
        model = load(args.model, device=args.device, stand_in=args.stand_in)
        import torch

        with torch.no_grad():
            _run(args, model)
    except USER_ERRORS as err:
        print(f"{prog}: error: {error_message(err)}", file=sys.stderr)
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
        from .zoo import display_name

        _print_stand_in_label(model)
        print(f"model: {display_name(model, args.model)} ({type(model).__name__}, {model.n_layers} layers, "
              f"{model.config.n_heads} heads, device {model.device})")
        print(f"tokens: {' '.join(cache.tokens)}")
        print("resid_norm: mean L2 norm of the residual stream after each layer; "
              "h<i>: the token head i attends to most (averaged over query positions"
              + (", special tokens skipped; --show-special to include them)\n" if args.skip_special else ")\n"))
        print(table.to_string(float_format=lambda v: f"{v:.2f}"))


def _print_stand_in_label(model) -> None:
    label = stand_in_label(model)
    if label is not None:
        print(label, end="\n\n")


def _hooks(args: argparse.Namespace, model) -> None:
    import pandas as pd

    _, cache = model.run_with_cache(args.text)
    _print_stand_in_label(model)
    with pd.option_context("display.max_rows", None, "display.width", 200):
        print(hooks_table(cache).to_string())


def _require_lm_head(args: argparse.Namespace, model) -> None:
    if not hasattr(model, "decode_residual"):
        raise TypeError(f"{args.model} loads as {type(model).__name__}, which has no language-modelling head")


def _generate(args: argparse.Namespace, model) -> None:
    import pandas as pd

    _require_lm_head(args, model)
    result = model.generate(args.prompt, args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                            top_p=args.top_p, seed=args.seed)
    _print_stand_in_label(model)
    print(result.full_text, end="\n\n")
    steps = result.steps[["step", "token", "probability", "top_tokens", "top_probabilities"]]
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(steps.to_string(index=False))


def _lens(args: argparse.Namespace, model) -> None:
    import pandas as pd

    _require_lm_head(args, model)
    lens = model.logit_lens(args.text)
    target = lens.target(args.target) if args.target is not None else None  # a bad target: before any output
    top = lens.top_k(k=1).pivot(index="layer", columns="pos", values="token").loc[lens.layer_names]
    top.columns = [f"{p}:{token}" for p, token in enumerate(lens.tokens[0])]
    _print_stand_in_label(model)
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print("the most likely next token at each position, decoded from each layer's residual stream\n")
        print(top.to_string())
        if args.target is not None:
            print(f"\nrank of {args.target!r} at the last position, per layer\n")
            print(target.to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
