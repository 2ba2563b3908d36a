"""Random stand-ins keep their label (through save/load, in every label and results table), randomly
initialized heads are never silent, and every analysis runs on the stand-in of every architecture."""

from __future__ import annotations

import logging

import pytest

import workbench as wb
from workbench import zoo

ARCHITECTURES = sorted(zoo.TINY_BUILDERS)
SMALL = zoo.TinySize(n_layers=2, d_model=32, n_heads=2, d_mlp=64, n_positions=64, bpe_vocab_size=300)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# 1. The label survives save_pretrained -> load ----------------------------------------------------------


@pytest.mark.parametrize("architecture", ["gpt2", "bert"])
def test_stand_in_status_survives_save_and_load(architecture, tmp_path, caplog):
    model = zoo.load(f"no-such-org/{architecture}-x", architecture=architecture, device="cpu", size=SMALL)
    assert zoo.is_stand_in(model)
    notice = model.stand_in_notice
    folder = model.save_pretrained(tmp_path / "saved")
    # every way of loading the folder gives back a labelled stand-in
    loaded = [
        wb.load(folder, device="cpu"),
        wb.AutoModel.from_pretrained(folder),
        type(model).from_pretrained(folder),
    ]
    with caplog.at_level(logging.WARNING, logger="workbench.zoo"):
        loaded.append(zoo.load(folder, device="cpu"))
    assert any("random stand-in" in r.getMessage() for r in caplog.records)  # said when loaded by zoo
    for again in loaded:
        assert zoo.is_stand_in(again) and again.stand_in_notice == notice
    assert "random stand-in" in zoo.display_name(loaded[0])


def test_tiny_models_are_stand_ins_and_real_checkpoints_are_not(minilm):
    for architecture in ARCHITECTURES:
        model = zoo.tiny(architecture, task="base", device="cpu", size=SMALL)
        assert zoo.is_stand_in(model), architecture
        assert model.stand_in_notice.startswith("tiny random")
    assert not zoo.is_stand_in(minilm) and minilm.stand_in_notice is None
    assert zoo.display_name(minilm, "minilm") == "minilm"


def test_clearing_the_notice_removes_it_from_the_saved_config(tmp_path):
    model = zoo.tiny("gpt2", task="base", device="cpu", size=SMALL)
    model.stand_in_notice = None
    assert not zoo.is_stand_in(wb.load(model.save_pretrained(tmp_path / "m"), device="cpu"))
