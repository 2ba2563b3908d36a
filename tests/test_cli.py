"""The `workbench` command: inspect (the first main job), hooks, generate and lens (also on a random stand-in),
lab's arguments, and what makes it feel finished: help without importing torch, help on every option, the
same defaults everywhere, a spinner on a terminal."""

from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import cli
from workbench.cli import main

TEXT = "The keys to the cabinet are on the table."


def test_inspect_reports_norms_and_most_attended_tokens(minilm, capsys):
    assert main(["inspect", TEXT, "--format", "csv", "--device", "cpu", "--show-special"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col="layer")
    assert list(table.index) == ["embed", "0", "1", "2", "3", "4", "5"]
    assert list(table.columns) == ["resid_norm"] + [f"h{i}" for i in range(12)]

    _, cache = minilm.run_with_cache(TEXT)
    norms = cache.stack("hook_resid_post")[:, 0].norm(dim=-1).mean(-1)
    assert torch.allclose(torch.tensor(table["resid_norm"].iloc[1:].to_numpy(), dtype=torch.float32), norms, atol=1e-3)
    pattern = cache["blocks.5.attn.hook_pattern"][0, 3]  # [query_pos, key_pos]
    assert table.loc["5", "h3"] == cache.tokens[pattern.mean(0).argmax()]


def test_inspect_can_skip_special_tokens(capsys):
    assert main(["inspect", TEXT, "--skip-special", "--format", "csv", "--device", "cpu"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col="layer")
    heads = table.drop(columns="resid_norm").iloc[1:]
    assert not heads.isin(["[CLS]", "[SEP]"]).any().any()


def test_hooks_lists_every_hook_with_shapes(capsys):
    assert main(["hooks", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "blocks.5.attn.hook_pattern" in out and "[1, 12, 12, 12]" in out


def test_bad_model_is_a_clear_error_not_a_traceback(capsys):
    assert main(["inspect", TEXT, "--model", "./no/such/folder"]) == 2
    assert "no/such/folder" in capsys.readouterr().err


def test_runs_as_a_module():
    result = subprocess.run([sys.executable, "-m", "workbench", "inspect", "Hello there.", "--device", "cpu"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "tokens: [CLS] hello there . [SEP]" in result.stdout


def test_generate_and_lens_commands_on_a_decoder(tmp_path, capsys):
    from tiny_gpt2 import save_tiny_gpt2

    save_tiny_gpt2(tmp_path)
    assert main(["generate", "The cat", "--model", str(tmp_path), "--max-new-tokens", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The cat") and "top_probabilities" in out
    assert main(["lens", "The cat sat", "--model", str(tmp_path), "--target", " mat", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "embed" in out and "rank of ' mat'" in out


def test_generate_on_an_encoder_is_a_clear_error(capsys):
    assert main(["generate", "Hello", "--model", "minilm", "--device", "cpu"]) == 2
    assert "no language-modelling head" in capsys.readouterr().err


def test_inspect_skips_special_tokens_by_default_and_shows_them_on_request(capsys):
    def heads(*options):
        assert main(["inspect", TEXT, "--format", "csv", "--device", "cpu", *options]) == 0
        table = pd.read_csv(io.StringIO(capsys.readouterr().out), index_col="layer")
        return table.drop(columns="resid_norm").iloc[1:]

    assert not heads().isin(["[CLS]", "[SEP]"]).any().any()
    assert heads("--show-special").isin(["[CLS]", "[SEP]"]).any().any()  # MiniLM's heads park on [SEP]


def test_generate_and_lens_run_offline_on_a_labelled_stand_in(tmp_path, capsys):
    missing = str(tmp_path / "gpt2")  # no such folder: the checkpoint of a GPT-2 that is not available
    argv = ["generate", "The cat", "--model", missing, "--max-new-tokens", "3", "--device", "cpu"]
    assert main(argv) == 2
    assert "pass --stand-in" in capsys.readouterr().err

    assert main([*argv, "--stand-in"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"random stand-in: {missing} is not available offline: using a random-initialized tiny GPT-2")
    assert "The cat" in out and "top_probabilities" in out
    assert main(["lens", "The cat sat", "--model", missing, "--stand-in", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("random stand-in: ") and "its outputs are not meaningful" in out and "embed" in out


# The command line itself ----------------------------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices


def test_help_of_every_command_imports_neither_torch_nor_pandas():
    """`workbench ... --help` is instant: the help path imports no heavy module (timed by -X importtime)."""
    for argv in [[], ["--help"], *([command, "--help"] for command in _subcommands(cli._build_parser()))]:
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "workbench", *argv],
                                capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == (2 if not argv else 0), result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert "workbench.cli" in imported, argv
        assert not {"torch", "pandas", "transformers"} & imported, argv
        assert "usage: workbench" in result.stdout + result.stderr


def test_help_of_the_probes_command_imports_neither_torch_nor_pandas():
    """`probes ... --help` is instant too: the package looks its names up on first use."""
    from probes import cli as probes_cli

    for argv in [["--help"], *([command, "--help"] for command in _subcommands(probes_cli.build_parser()))]:
        result = subprocess.run([sys.executable, "-X", "importtime", "-m", "probes", *argv],
                                capture_output=True, text=True, timeout=120, cwd=REPO)
        assert result.returncode == 0, result.stderr
        imported = {line.split("|")[-1].strip() for line in result.stderr.splitlines() if "|" in line}
        assert "probes.cli" in imported, argv
        assert not {"torch", "pandas", "transformers"} & imported, argv
        assert "usage: probes" in result.stdout


def test_top_level_help_is_plain_text(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "`" not in out and "::" not in out
    assert all(command in out for command in _subcommands(cli._build_parser()))


def test_every_option_has_help_and_every_device_defaults_to_auto():
    parser = cli._build_parser()
    for name, command in _subcommands(parser).items():
        for action in command._actions:
            assert action.help, f"workbench {name} {'/'.join(action.option_strings) or action.dest} has no help"
            if action.dest == "device":
                assert action.default == "auto", f"workbench {name} --device defaults to {action.default}"
    assert parser.parse_args(["bench", "--tasks", "sst2"]).device == "auto"


def test_the_command_gives_its_models_their_methods(tmp_path):
    """`python -m workbench` skips workbench/__init__.py's imports (for its help): generate and lens still find
    model.generate and model.logit_lens, which the analysis modules attach."""
    missing = str(tmp_path / "gpt2")
    for argv in (["generate", "The cat", "--max-new-tokens", "2"], ["lens", "The cat"]):
        result = subprocess.run([sys.executable, "-m", "workbench", *argv, "--model", missing, "--stand-in",
                                 "--device", "cpu"], capture_output=True, text=True, timeout=300, cwd=REPO)
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("random stand-in: ") and "Traceback" not in result.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_wait_shows_a_spinner_on_a_terminal_and_nothing_elsewhere():
    terminal = _Terminal()
    with cli.waiting("loading gpt2", terminal):
        time.sleep(0.6)
    shown = terminal.getvalue()
    assert shown.startswith("\rloading gpt2 ... | 0 s") and "\rloading gpt2 ... / " in shown  # it turns
    assert re.search(r"\rloading gpt2 \.\.\. done \(\d+\.\d s\)\n$", shown), shown

    terminal = _Terminal()
    try:
        with cli.waiting("loading x", terminal):
            raise ValueError("no such model")
    except ValueError:
        pass
    assert "loading x ... failed (" in terminal.getvalue()

    log = io.StringIO()
    with cli.waiting("loading gpt2", log):
        pass
    assert log.getvalue() == ""


def test_lab_passes_options_through_and_adds_allow_root_only_as_root(lab_call, tmp_path, monkeypatch, capsys):
    import os

    folder = str(tmp_path / "notebooks")
    monkeypatch.setattr(os, "geteuid", lambda: 1000, raising=False)
    assert main(["lab", "--notebooks-dir", folder, "--port", "8899", "--no-browser", "--", "--ServerApp.token="]) == 0
    assert lab_call[-1][4:] == ["--ServerApp.token=", "--port=8899", "--no-browser"]
    assert capsys.readouterr().err == ""

    monkeypatch.setattr(os, "geteuid", lambda: 0, raising=False)
    assert main(["lab", "--notebooks-dir", folder, "--port", "8899", "--no-browser"]) == 0
    assert lab_call[-1][4:] == ["--port=8899", "--no-browser", "--allow-root"]
    assert capsys.readouterr().err.count("\n") == 1  # the one-line notice
    assert main(["lab", "--notebooks-dir", folder, "--", "--ServerApp.allow_root=True"]) == 0
    assert lab_call[-1][4:] == ["--ServerApp.allow_root=True"]  # already allowed: not twice


def test_generate_and_lens_without_a_model_say_what_to_pass(capsys):
    """MiniLM, the default elsewhere, has no LM head: generate/lens ask for a causal LM instead of failing."""
    for command in ("generate", "lens"):
        assert main([command, "The cat"]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"workbench {command}: error: {command} needs a causal language model")
        assert "--model distilgpt2" in error and "--stand-in" in error and "Traceback" not in error
