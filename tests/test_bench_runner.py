"""The runner: one call over models x tasks, tidy results, resume after an interruption, the CLI, errors."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from tiny_gpt2 import save_tiny_gpt2
from tiny_hf import save_tiny_hf

import workbench as wb
from workbench.bench import runner
from workbench.cli import main


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, minilm_path):
    folder = tmp_path_factory.mktemp("bert")
    save_tiny_hf(folder, "bert", vocab_size=30522)  # MiniLM's vocabulary: text works
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(minilm_path / name, folder / name)
    return str(folder)


def test_probe_run_gives_a_tidy_frame_csv_and_html(tiny_bert, tmp_path):
    results = wb.bench.run(
        models=[tiny_bert],
        tasks=["sst2", "stsb", "copa"],
        mode="probe",
        data="sample",
        folds=2,
        out=tmp_path,
        progress=False,
    )
    frame = results.frame
    assert list(frame.columns) == runner.COLUMNS
    assert set(frame["task"]) == {"sst2", "stsb", "copa"} and set(frame["mode"]) == {"probe"}
    assert sorted(frame["layer"].unique()) == [0, 1, 2]
    assert set(frame[frame["task"] == "stsb"]["metric"]) == {"pearson", "spearman"}
    assert (frame[frame["task"] == "sst2"]["n"] == 8).all()
    assert (frame["seconds"] > 0).all() and (frame["examples_per_second"] > 0).all()
    assert pd.read_csv(tmp_path / "results.csv").shape == frame.shape
    html = (tmp_path / "report.html").read_text()
    assert "plotly" in html and "Headline metrics" in html
    headline = results.headline()
    assert len(headline) == 3  # one row per task: its best layer's headline metric
    glue = results.glue_score()
    assert list(glue["n_tasks"]) == [2]  # sst2 and stsb are GLUE tasks, copa is not


def test_interrupted_run_resumes_without_redoing_finished_tasks(tiny_gpt2_folder, tmp_path, monkeypatch):
    calls = []
    original = runner.evaluate_one

    def interrupted(model_name, model, spec, *args):
        if calls:
            raise KeyboardInterrupt("simulated interruption after the first result")
        calls.append(spec.name)
        return original(model_name, model, spec, *args)

    monkeypatch.setattr(runner, "evaluate_one", interrupted)
    with pytest.raises(KeyboardInterrupt):
        wb.bench.run(
            models=[tiny_gpt2_folder],
            tasks=["copa", "arc_easy"],
            mode="zeroshot",
            out=tmp_path,
            max_examples=4,
            progress=False,
        )
    stored = list((tmp_path / "results").glob("*.csv"))
    assert len(stored) == 1 and "__copa__zeroshot" in stored[0].name

    redone = []

    def counting(model_name, model, spec, *args):
        redone.append(spec.name)
        return original(model_name, model, spec, *args)

    monkeypatch.setattr(runner, "evaluate_one", counting)
    results = wb.bench.run(
        models=[tiny_gpt2_folder],
        tasks=["copa", "arc_easy"],
        mode="zeroshot",
        out=tmp_path,
        max_examples=4,
        progress=False,
    )
    assert redone == ["arc_easy"]  # copa was read back, not recomputed
    assert set(results.frame["task"]) == {"copa", "arc_easy"}
    assert set(results.frame["metric"]) == {"accuracy", "accuracy_norm"}


@pytest.fixture(scope="module")
def tiny_gpt2_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpt2")
    save_tiny_gpt2(folder)
    return str(folder)


def test_finetune_mode_splits_dev_and_saves_heads(tiny_bert, tmp_path):
    config = wb.bench.FinetuneConfig(epochs=1, batch_size=4, learning_rate=1e-3)
    results = wb.bench.run(
        models=[tiny_bert],
        tasks=["rte"],
        mode="finetune",
        out=tmp_path,
        finetune_config=config,
        progress=False,
    )
    assert list(results.frame["metric"]) == ["accuracy"]
    assert list(results.frame["n"]) == [2]  # scored on 20% of the 8 dev rows
    heads = list((tmp_path / "heads").iterdir())
    assert len(heads) == 1 and (heads[0] / "model.safetensors").is_file()
    assert isinstance(wb.load(heads[0], device="cpu"), wb.BertForSequenceClassification)


def test_incompatible_requests_fail_before_any_work(tiny_bert):
    with pytest.raises(ValueError, match="task 'sst2' cannot be scored zero-shot"):
        wb.bench.run(models=[tiny_bert], tasks=["copa", "sst2"], mode="zeroshot")
    with pytest.raises(ValueError, match="'squad' \\(span extraction\\) has no probe mode"):
        wb.bench.run(models=[tiny_bert], tasks=["squad"], mode="probe")
    with pytest.raises(ValueError, match="mode must be one of"):
        wb.bench.run(models=[tiny_bert], tasks=["sst2"], mode="fewshot")


def test_cli_bench(tiny_gpt2_folder, tmp_path, capsys):
    code = main(
        [
            "bench",
            "--models",
            tiny_gpt2_folder,
            "--tasks",
            "copa,boolq",
            "--mode",
            "zeroshot",
            "--max-examples",
            "3",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "accuracy_norm" in printed and "report.html" in printed
    assert (tmp_path / "results.csv").is_file()
    assert main(["bench", "--models", tiny_gpt2_folder, "--tasks", "sst2", "--mode", "zeroshot"]) == 2
    assert "cannot be scored zero-shot" in capsys.readouterr().err


def test_widget_runs_the_form(tiny_gpt2_folder):
    wb.bench.widget()  # a second call works too (a submodule named "widget" once replaced the function)
    box = wb.bench.widget()
    box.controls["models"].value = tiny_gpt2_folder
    box.controls["tasks"].value = ("copa",)
    box.controls["mode"].value = "zeroshot"
    box.controls["max_examples"].value = 2
    box.run_button.click()
    assert box.results is not None and set(box.results.frame["task"]) == {"copa"}
    box.controls["tasks"].value = ("sst2",)  # not a zero-shot task: the error shows in the widget
    box.run_button.click()
    assert "cannot be scored zero-shot" in box.error
