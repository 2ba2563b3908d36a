"""The `workbench` command: inspect (the first main job) and hooks."""

from __future__ import annotations

import io
import subprocess
import sys

import pandas as pd
import torch

from workbench.cli import main

TEXT = "The keys to the cabinet are on the table."


def test_inspect_reports_norms_and_most_attended_tokens(minilm, capsys):
    assert main(["inspect", TEXT, "--format", "csv", "--device", "cpu"]) == 0
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
    assert main(["generate", "Hello", "--device", "cpu"]) == 2
    assert "no language-modelling head" in capsys.readouterr().err
